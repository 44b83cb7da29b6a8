"""Replicated writes through the coordinator: small posts (80 characters), closed-loop clients.

For every replica count (1, 3, 5), reply policy (majority, first) and replica fsync policy
(never, batch) one local cluster of real replica_server processes is started; on it the C load
generator (bench/loadgen.c) runs 1, 16 and 64 clients, each with its own authenticated
connection and one write in flight. Rounds are interleaved (every case once per round) so that
noise from other work on the machine hits all cases alike; the median round is reported.
`--busy-poll on off` adds the busy-polling of the coordinator and replicas (on by default) as
one more dimension, for an interleaved A/B of it.

    python -m bench replication [--quick] [--duration S] [--rounds N] [--out FILE]
"""

from __future__ import annotations

import sys
import time

from bench import common, loadgen

FULL = {"replicas": [1, 3, 5], "clients": [1, 16, 64], "policies": ["majority", "first"],
        "fsyncs": ["never", "batch"], "busy_polls": ["on"]}
QUICK = {"replicas": [1, 3], "clients": [1, 64], "policies": ["majority"],
         "fsyncs": ["never", "batch"], "busy_polls": ["on"]}
# "off" turns busy-polling off in the coordinator and every replica; "on" keeps their defaults.
BUSY_POLL_OFF = ["--busy-poll-us", "0"]


def measure(cluster, clients: int, warmup: float, seconds: float) -> dict:
    socks = loadgen.our_sockets(cluster.coordinator_address, cluster.secret(), clients)
    try:
        load = loadgen.Load(socks, loadgen.our_request(), "frame", warmup, seconds)
        time.sleep(max(0.0, load.measure_from - time.monotonic()))
        meter = common.CpuMeter(common.cluster_pids(cluster))
        summary, _ = load.finish()
        # The meter also counts the drain after the window: a few ms, under 1%.
        summary.update(meter.per_request(summary["requests"]))
    finally:
        loadgen.close_all(socks)
    return summary


def run(args, matrix: dict) -> list[dict]:
    groups = [(r, p, f, b) for f in matrix["fsyncs"] for p in matrix["policies"]
              for r in matrix["replicas"] for b in matrix["busy_polls"]]
    total = args.rounds * len(groups) * len(matrix["clients"])
    progress = common.Progress(total, "replication")
    runs: dict[tuple, list[dict]] = {}
    for rnd in range(args.rounds):
        for replicas, policy, fsync, busy_poll in groups:
            off = BUSY_POLL_OFF if busy_poll == "off" else []
            with common.our_cluster(replicas, policy, fsync,
                                    replica_args=args.replica_args + off,
                                    coordinator_args=off) as cluster:
                for clients in matrix["clients"]:
                    progress.step(f"round {rnd + 1}: {replicas} replicas, {policy}, fsync {fsync},"
                                  f" busy poll {busy_poll}, {clients} clients")
                    r = measure(cluster, clients, args.warmup, args.duration)
                    r.update(replicas=replicas, policy=policy, fsync=fsync, busy_poll=busy_poll)
                    runs.setdefault((replicas, policy, fsync, busy_poll, clients), []).append(r)
    progress.finish()
    return [common.median_run(v) for v in runs.values()]


def ratios(rows: list[dict]) -> list[dict]:
    """Throughput of 3 (and 5) replicas over 1 replica, same policy, fsync and clients."""
    by = {(r["replicas"], r["policy"], r["fsync"], r.get("busy_poll", "on"), r["clients"]): r
          for r in rows}
    out = []
    for (replicas, policy, fsync, busy_poll, clients), r in by.items():
        one = by.get((1, policy, fsync, busy_poll, clients))
        if replicas > 1 and one and one["writes_per_s"]:
            out.append({"replicas": replicas, "policy": policy, "fsync": fsync,
                        "busy_poll": busy_poll, "clients": clients,
                        "ratio": round(r["writes_per_s"] / one["writes_per_s"], 3)})
    return out


COLUMNS = [("replicas", "replicas"), ("policy", "policy"), ("fsync", "fsync"),
           ("busy_poll", "busy poll"), ("clients", "clients"), ("writes_per_s", "writes/s"), ("p50_us", "p50 us"),
           ("p99_us", "p99 us"), ("p999_us", "p99.9 us"), ("errors", "errors"),
           ("cpu_us_per_write_coordinator", "coordinator CPU us/write"),
           ("cpu_us_per_write_replicas", "replicas CPU us/write (sum)")]


def main(argv: list[str]) -> int:
    p = common.parser("replication", __doc__)
    p.add_argument("--snapshot-every", type=int, default=None,
                   help="pass --snapshot-every N to every replica (default: the replica's)")
    p.add_argument("--replicas", type=int, nargs="*", default=None, help="only these counts")
    p.add_argument("--clients", type=int, nargs="*", default=None, help="only these counts")
    p.add_argument("--fsync", nargs="*", default=None, help="only these fsync policies")
    p.add_argument("--policy", nargs="*", default=None, help="only these reply policies")
    p.add_argument("--busy-poll", nargs="*", default=None, choices=["on", "off"],
                   help="busy-polling in the coordinator and replicas (default: on)")
    args = p.parse_args(argv)
    args.replica_args = ([] if args.snapshot_every is None
                         else ["--snapshot-every", str(args.snapshot_every)])
    common.settle(args)
    matrix = dict(QUICK if args.quick else FULL)
    for key, chosen in (("replicas", args.replicas), ("clients", args.clients),
                        ("fsyncs", args.fsync), ("policies", args.policy),
                        ("busy_polls", args.busy_poll)):
        if chosen:
            matrix[key] = chosen
    rows = run(args, matrix)
    rows.sort(key=lambda r: (r["fsync"], r["policy"], r["busy_poll"], r["replicas"],
                             r["clients"]))
    rat = ratios(rows)
    print(common.fmt_table(rows, COLUMNS))
    print()
    print(common.fmt_table(rat, [("replicas", "replicas"), ("policy", "policy"),
                                 ("fsync", "fsync"), ("busy_poll", "busy poll"),
                                 ("clients", "clients"), ("ratio", "throughput / 1 replica")]))
    common.write_results("replication", args, {"results": rows, "ratios": rat,
                                               "replica_args": args.replica_args})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
