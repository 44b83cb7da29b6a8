"""What every scenario shares: options, the progress line, the machine description, results
as JSON, and starting one of our local clusters with a given fsync policy."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


def parser(scenario: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench {scenario}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the short CI variant (seconds, not minutes)")
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    p.add_argument("--duration", type=float, default=None,
                   help="measured seconds per case (default: 5, or 1 with --quick)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds over all cases; the median is reported (default 3, 1 quick)")
    p.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    return p


def settle(args: argparse.Namespace) -> None:
    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.warmup = 0.2 if args.quick else 1.0
    args.load_start = os.getloadavg()
    args.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    random.seed(args.seed)


class Progress:
    """One status line on stderr: case i/n, elapsed time and a rough time left."""

    def __init__(self, total: int, label: str) -> None:
        self.total = max(1, total)
        self.done = 0
        self.label = label
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        elapsed = time.monotonic() - self.t0
        left = (elapsed / self.done * (self.total - self.done)) if self.done else 0.0
        line = (f"[{self.label} {self.done + 1}/{self.total} {elapsed:5.0f}s elapsed"
                f"{f', ~{left:.0f}s left' if self.done else ''}] {what}")
        print(("\r\033[K" if self.tty else "") + line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)
        self.done += 1

    def finish(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def write_results(name: str, args: argparse.Namespace, data: dict[str, Any]) -> Path:
    doc = {"scenario": name, "quick": args.quick, "seed": args.seed, "duration_s": args.duration,
           "rounds": args.rounds, "machine": machine(), "loadavg_end": os.getloadavg(),
           "argv": sys.argv, **data}
    doc["machine"]["loadavg_start"] = getattr(args, "load_start", doc["machine"]["loadavg_start"])
    doc["machine"]["started"] = getattr(args, "started", doc["machine"]["date"])
    path = args.out or RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"results: {path}", file=sys.stderr)
    return path


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, plus every run's throughput for the spread."""
    ordered = sorted(runs, key=lambda r: r["writes_per_s"])
    mid = dict(ordered[len(ordered) // 2])
    mid["runs_writes_per_s"] = [r["writes_per_s"] for r in runs]
    mid["runs_p50_us"] = [r["p50_us"] for r in runs]
    if len(runs) > 1:
        mid["p50_us_median"] = statistics.median(r["p50_us"] for r in runs)
    return mid


@contextmanager
def our_cluster(replicas: int, policy: str = "majority", fsync: str = "batch",
                web_port: int | None = None, replica_args: list[str] | None = None,
                coordinator_args: list[str] | None = None,
                standby: bool = False) -> Iterator[Any]:
    """A LocalCluster of real replica_server processes with one user, bench1, created.

    With BENCH_KEEP_LOGS=DIR the processes' logs are copied under DIR when it stops."""
    from webfront.cluster import LocalCluster, find_replica_server

    binary = find_replica_server()
    if binary is None:
        raise RuntimeError("replica_server not found: run scripts/bootstrap.sh")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = LocalCluster(Path(tmp), replicas=replicas, policy=policy, web_port=web_port,
                               replica_cmd=[binary, "--fsync", fsync, *(replica_args or [])],
                               coordinator_args=list(coordinator_args or []),
                               standby=standby)
        cluster.start()
        try:
            client = cluster.client(timeout=10.0)
            client.write("create_user", {"username": "bench1", "password_hash": b"h"})
            client.close()
            yield cluster
        finally:
            cluster.stop()
            keep = os.environ.get("BENCH_KEEP_LOGS")
            if keep:  # the processes' logs, for a run worth diagnosing
                dest = Path(keep) / f"{Path(tmp).name}-{replicas}r-{policy}-{fsync}"
                dest.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy2(log, dest / log.name)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class CpuMeter:
    """CPU microseconds per request of groups of server processes over a measured window.

    Unlike throughput on a shared machine, CPU per request hardly moves when other work
    competes for the cores, so it is the number to compare across runs and commits."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = {name: cpu_seconds(pids) for name, pids in groups.items()}

    def per_request(self, requests: int) -> dict[str, float]:
        n = max(1, requests)
        return {f"cpu_us_per_write_{name}": round((cpu_seconds(pids) - self.start[name]) / n * 1e6,
                                                  1)
                for name, pids in self.groups.items()}


def cluster_pids(cluster) -> dict[str, list[int]]:
    procs = cluster.procs.values()
    return {"coordinator": [p.pid for p in procs if p.role == "coordinator"],
            "replicas": [p.pid for p in procs if p.role == "replica"]}


def fmt_table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    """A Markdown table of rows (cols: (key, header))."""
    out = ["| " + " | ".join(h for _, h in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key, "")
            cells.append(f"{v:,}" if isinstance(v, int) else
                         (f"{v:,.1f}" if isinstance(v, float) else str(v)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
