"""A replica killed -9 under a steady write load.

3 replicas, policy majority, replica fsync batch, 16 closed-loop clients. After a third of the
run, replica 3 is killed with SIGKILL; after two thirds it is started again (same data dir) and
rejoins. Reported: failed writes, the longest window without a successful write (anywhere in
the run and right after the kill), p99 in the steady window before the kill against p99 in the
window around it (the issue's target: within 3x), and a timeline in 100 ms buckets (plotted by
`python -m bench plots`).

Then, on a fresh cluster, the coordinator itself is killed -9 after a third of the run and
started again at once, as the cluster supervisor does: by promoting its warm standby
(`--no-standby`: a new process, a cold start). That part uses bench/retryload.py, a
Python generator whose clients reconnect and resend their write in flight with the same request
id, so it runs at a lower rate than the C generator; it reports the same figures.

    python -m bench failover [--quick] [--duration S] [--out FILE]
"""

from __future__ import annotations

import array
import asyncio
import sys
import time

from bench import common, loadgen, retryload


def analyse(samples: loadgen.Samples, kill_us: int, restart_us: int | None, seconds: float,
            around_us: int) -> dict:
    t = samples.t_us
    lat = samples.lat_ns
    ok = samples.ok
    before = [lat[i] for i in range(len(t)) if ok[i] and t[i] < kill_us]
    around = [lat[i] for i in range(len(t)) if ok[i] and abs(t[i] - kill_us) <= around_us]
    times = sorted(t[i] for i in range(len(t)) if ok[i])
    gap = gap_after_kill = 0
    prev = 0
    for x in times + [int(seconds * 1e6)]:
        gap = max(gap, x - prev)
        if prev <= kill_us + 1_000_000 and x >= kill_us:
            gap_after_kill = max(gap_after_kill, x - max(prev, kill_us))
        prev = x
    steady = loadgen.percentiles(before)
    near = loadgen.percentiles(around)
    buckets: dict[int, list[int]] = {}
    for i in range(len(t)):
        buckets.setdefault(t[i] // 100_000, []).append(lat[i] if ok[i] else -1)
    timeline = []
    for b in sorted(buckets):
        good = [x for x in buckets[b] if x >= 0]
        pct = loadgen.percentiles(good)
        timeline.append({"t_s": round(b * 0.1, 1), "writes": len(good),
                         "errors": len(buckets[b]) - len(good), "p50_us": pct["p50_us"],
                         "p99_us": pct["p99_us"], "max_us": pct["max_us"]})
    return {"kill_at_s": round(kill_us / 1e6, 2),
            "restart_at_s": round(restart_us / 1e6, 2) if restart_us else None,
            "steady_p99_us": steady["p99_us"], "steady_p50_us": steady["p50_us"],
            "around_window_s": round(2 * around_us / 1e6, 1), "around_p99_us": near["p99_us"],
            "around_max_us": near["max_us"],
            "p99_ratio": round(near["p99_us"] / max(0.1, steady["p99_us"]), 2),
            "longest_gap_ms": round(gap / 1000, 1),
            "longest_gap_after_kill_ms": round(gap_after_kill / 1000, 1),
            "timeline": timeline}


def coordinator_kill(args, seconds: float) -> dict:
    """kill -9 the coordinator under load, start it again at once; clients reconnect."""
    with common.our_cluster(3, "majority", "batch", standby=args.standby) as cluster:
        def kill_and_start() -> None:
            cluster.kill_coordinator()
            cluster.start_coordinator()

        kill_at = seconds / 3
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            raw, _, reconnects = runner.run(retryload.run(
                cluster.coordinator_address, cluster.secret(), args.clients, seconds,
                [(kill_at, kill_and_start)]))
    samples = loadgen.Samples()
    skip = args.warmup
    raw = [(t - skip, lat, ok) for t, lat, ok in raw if t >= skip]
    samples.t_us = array.array("I", (int(t * 1e6) for t, _, _ in raw))
    samples.lat_ns = array.array("I", (min(0xFFFFFFFF, int(lat * 1e9)) for _, lat, _ in raw))
    samples.ok = bytearray(1 if ok else 0 for _, _, ok in raw)
    measured = seconds - skip
    result = analyse(samples, int((kill_at - skip) * 1e6), None, measured,
                     min(30_000_000, int((kill_at - skip) * 1e6)))
    errors = sum(1 for _, _, ok in raw if not ok)
    result.update(clients=args.clients, seconds=measured, reconnects=reconnects,
                  standby=args.standby,
                  summary={"clients": args.clients, "requests": len(raw), "errors": errors,
                           "writes_per_s": round((len(raw) - errors) / measured),
                           **loadgen.percentiles([x for x, ok in zip(samples.lat_ns,
                                                                      samples.ok) if ok])})
    return result


def report(label: str, result: dict) -> None:
    summary = result["summary"]
    print(f"{label}: writes {summary['requests']:,}, failed {summary['errors']}; steady p99 "
          f"{result['steady_p99_us']} us, p99 in the {result['around_window_s']} s around the "
          f"kill {result['around_p99_us']} us (x{result['p99_ratio']}); longest gap "
          f"{result['longest_gap_ms']} ms (after the kill {result['longest_gap_after_kill_ms']}"
          f" ms)")


def main(argv: list[str]) -> int:
    p = common.parser("failover", __doc__)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--no-standby", dest="standby", action="store_false",
                   help="restart the killed coordinator cold, without a warm standby")
    args = p.parse_args(argv)
    user_duration = args.duration
    common.settle(args)
    seconds = user_duration or (3.0 if args.quick else 60.0)
    coord_seconds = user_duration or (3.0 if args.quick else 30.0)
    progress = common.Progress(4, "failover")
    progress.step(f"3 replicas, {args.clients} clients, {seconds:.0f} s: steady load")
    with common.our_cluster(3, "majority", "batch") as cluster:
        socks = loadgen.our_sockets(cluster.coordinator_address, cluster.secret(), args.clients)
        try:
            load = loadgen.Load(socks, loadgen.our_request(), "frame", args.warmup, seconds)
            time.sleep(max(0.0, load.measure_from + seconds / 3 - time.monotonic()))
            kill_us = int((time.monotonic() - load.measure_from) * 1e6)
            progress.step("kill -9 replica 3")
            cluster.kill_replica(3)
            time.sleep(max(0.0, load.measure_from + 2 * seconds / 3 - time.monotonic()))
            restart_us = int((time.monotonic() - load.measure_from) * 1e6)
            progress.step("restart replica 3")
            cluster.restart_replica(3)
            summary, samples = load.finish()
        finally:
            loadgen.close_all(socks)
        try:
            rejoined = cluster.wait_state(3, "up", timeout=10)["state"]
        except TimeoutError as exc:
            rejoined = f"not up: {exc}"
    around = min(30_000_000, int(seconds / 3 * 1e6))
    result = analyse(samples, kill_us, restart_us, seconds, around)
    result.update(summary=summary, clients=args.clients, seconds=seconds, rejoined=rejoined)
    progress.step(f"coordinator kill -9 under load ({coord_seconds:.0f} s, reconnecting clients)")
    coord = coordinator_kill(args, coord_seconds)
    progress.finish()
    report("replica kill", result)
    print(f"  replica 3 {rejoined}")
    report("coordinator kill", coord)
    print(f"  reconnects {coord['reconnects']}")
    common.write_results("failover", args, {"results": result, "coordinator": coord})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
