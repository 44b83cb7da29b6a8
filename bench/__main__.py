"""Entry point: python -m bench SCENARIO [--quick] [--seed N] [--duration S] [--rounds N] [--out F]

Scenarios (each writes its results as JSON under bench/results/ unless --out says otherwise):
  machine      the machine's own baselines: loopback TCP round trip, fdatasync (1 and 3 writers)
  core         state machine apply throughput and timeline latency (C++ alone, and the module)
  replication  writes through the coordinator: 1/3/5 replicas, 1/16/64 clients, policies, fsync
  peers        ours (3 replicas) against etcd (3 members) and Redis (master + 2 replicas)
  http         wrk against gunicorn: public timeline, home timeline, POST through the API
  failover     steady write load while a replica is killed -9; latency over time
  recovery     replica restart replay time for a long log
  plots        draw docs/img/*.png from the JSON results
  report       print the Markdown tables of docs/benchmarks.md from the JSON results
  quick        every scenario with --quick (what CI may run; well under a minute of load each)
"""

from __future__ import annotations

import importlib
import signal
import sys

SCENARIOS = {
    "machine": "bench.machine",
    "core": "bench.core",
    "replication": "bench.replication",
    "peers": "bench.peers",
    "http": "bench.http",
    "failover": "bench.failover",
    "recovery": "bench.recovery",
    "plots": "bench.plots",
    "report": "bench.report",
}


def main(argv: list[str]) -> int:
    # SIGTERM unwinds like Ctrl-C, so every cluster, etcd and Redis started is stopped by pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if argv and argv[0] == "quick":
        status = 0
        for name in ("machine", "core", "replication", "peers", "http", "failover", "recovery"):
            print(f"== {name} --quick", file=sys.stderr, flush=True)
            status |= importlib.import_module(SCENARIOS[name]).main(["--quick"] + argv[1:])
        return status
    if not argv or argv[0] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    return importlib.import_module(SCENARIOS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
