"""Command line: `python -m webfront.chaos --duration 60 --seed 1 --out DIR`.

Starts a cluster in DIR, runs the workload and the nemesis for the duration, heals every fault,
waits for the replicas to converge, reads the final state of each one and checks the history.
Writes DIR/history.jsonl, DIR/final.json and DIR/summary.json; prints the summary. Exits 0 when
every check passes, 1 when one fails (naming the first bad operation), 2 when the run itself
could not be made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from webfront.chaos import checker, netns
from webfront.chaos.cluster import ChaosCluster
from webfront.chaos.history import HistoryWriter
from webfront.chaos.nemesis import ALL_KINDS, Nemesis
from webfront.chaos.state import collect_final_state
from webfront.chaos.workload import Workload


def run(out: str | Path, duration: float = 60.0, seed: int = 1, replicas: int = 3,
        processes: int = 6, faults: Sequence[str] = ("kill", "pause", "partition"),
        use_netns: bool | None = None, max_ops: int = 200_000, progress: bool = False,
        log=print, replica_cmd: list[str] | None = None,
        policy: str = "majority") -> dict[str, Any]:
    """One whole chaos run; returns the checker's summary (also written to out/summary.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = tuple(faults)
    notes: list[str] = []
    if use_netns is None:
        use_netns = any(k in ("partition", "netem") for k in kinds)
    if use_netns:
        ok, why = netns.available()
        if not ok:
            notes.append(f"partitions and netem skipped: {why}")
            use_netns = False
    if "netem" in kinds and use_netns:
        ok, why = netns.netem_available()
        if not ok:
            notes.append(f"netem skipped: {why}")
            kinds = tuple(k for k in kinds if k != "netem")
    if not use_netns:
        kinds = tuple(k for k in kinds if k not in ("partition", "netem"))
    for note in notes:
        log(f"chaos: {note}")

    history_path = out / "history.jsonl"
    if history_path.exists():
        history_path.unlink()
    with ChaosCluster(out / "cluster", replicas=replicas, policy=policy, netns=use_netns,
                      replica_cmd=replica_cmd, standby=True) as cluster, \
            HistoryWriter(history_path) as history:
        log(f"chaos: seed {seed}, {duration:.0f} s, {replicas} replicas, policy {policy}, faults "
            f"{', '.join(kinds) or 'none'}, web {cluster.web_url}")
        workload = Workload(cluster.web_url, history, seed, processes=processes,
                            max_ops=max_ops, session_reader=cluster.session_read)
        nemesis = Nemesis(cluster, history, seed, kinds=kinds, log=log if not progress else
                          (lambda _m: None))
        start = time.monotonic()
        deadline = start + duration
        workload.start(deadline)
        if kinds:
            nemesis.start(deadline - 2.0)  # the last seconds run clean
        ticker = _Progress(workload, nemesis, start, duration) if progress else None
        try:
            while time.monotonic() < deadline + 1:
                time.sleep(0.2)
                if ticker:
                    ticker.show()
                if not workload.join(0):
                    continue
                break
        finally:
            workload.stop()
            nemesis.stop()
            finished = workload.join(15.0)
            if ticker:
                ticker.done()
        if not finished:
            log("chaos: some clients did not finish within 15 s")
        status = cluster.wait_converged(timeout=30.0)
        (out / "status.json").write_text(json.dumps(status, indent=1, default=str))
        states = {r["id"]: r.get("state") for r in status.get("replicas", [])}
        final = collect_final_state(cluster.addresses, cluster.secret(), workload.usernames,
                                    states)
    (out / "final.json").write_text(json.dumps(final, indent=1, default=str))
    ops_faults = checker.read_history(history_path)
    summary = checker.check(*ops_faults, final)
    summary.update(seed=seed, duration=duration, replica_count=replicas, fault_kinds=list(kinds),
                   notes=notes, harness_errors=(workload.errors + nemesis.errors)[:50])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    log(checker.format_summary(summary))
    for note in notes:
        log(f"  note: {note}")
    return summary


class _Progress:
    """One self-rewriting status line on a terminal."""

    def __init__(self, workload: Workload, nemesis: Nemesis, start: float, duration: float) -> None:
        self.workload, self.nemesis, self.start, self.duration = workload, nemesis, start, duration
        self._last = 0.0
        self._lock = threading.Lock()

    def show(self) -> None:
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        self._last = now
        active = ",".join(f"{f.kind}:{f.target}" for f in self.nemesis.active) or "-"
        line = (f"\r[{now - self.start:5.1f}/{self.duration:.0f}s] ops {self.workload.op_count:6d}"
                f"  faults {sum(self.nemesis.counts.values()):3d}  active {active:24s}")
        sys.stderr.write(line)
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webfront.chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="directory for the cluster and results")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--policy", choices=("majority", "first", "all"), default="majority",
                        help="the coordinator's reply policy (default majority)")
    parser.add_argument("--clients", type=int, default=6, help="concurrent client processes")
    parser.add_argument("--faults", default="kill,pause,partition",
                        help=f"comma-separated, from {','.join(ALL_KINDS)} (default "
                        "kill,pause,partition); partition/netem need root and ip netns")
    parser.add_argument("--no-netns", action="store_true", help="run replicas on loopback")
    parser.add_argument("--max-ops", type=int, default=200_000)
    parser.add_argument("--replica-cmd", help="command for a replica instead of the replica_server "
                        "on PATH (e.g. a sanitizer build)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.faults.split(",") if k]
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        parser.error(f"unknown fault kinds: {', '.join(bad)}")
    try:
        summary = run(args.out, args.duration, args.seed, args.replicas, args.clients, kinds,
                      use_netns=False if args.no_netns else None, max_ops=args.max_ops,
                      progress=sys.stderr.isatty(),
                      replica_cmd=shlex.split(args.replica_cmd) if args.replica_cmd else None,
                      policy=args.policy)
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"chaos: the run could not be made: {exc}", file=sys.stderr)
        return 2
    return 0 if summary["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
