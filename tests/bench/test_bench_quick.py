"""The benchmarks' quick mode runs and writes well-formed results (no timing assertions: the
numbers on a shared CI machine say nothing; docs/benchmarks.md has the real runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "bench", *args, "--quick", "--out", str(out)],
                   cwd=ROOT, check=True, timeout=180, capture_output=True)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_replication_quick(tmp_path: Path) -> None:
    from webfront.cluster import find_replica_server

    if find_replica_server() is None:
        pytest.skip("replica_server not built")
    doc = run_bench(tmp_path, "replication")
    assert doc["scenario"] == "replication" and doc["quick"] is True
    assert doc["machine"]["nproc"] >= 1
    rows = doc["results"]
    assert {(r["replicas"], r["clients"]) for r in rows} >= {(1, 64), (3, 1), (3, 64)}
    for r in rows:
        assert r["writes_per_s"] > 0
        assert r["errors"] == 0
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"]
    assert all(x["ratio"] > 0 for x in doc["ratios"])


@pytest.mark.slow
def test_core_quick(tmp_path: Path) -> None:
    doc = run_bench(tmp_path, "core")
    assert doc["scenario"] == "core"
    assert doc["results"], "no benchmark lines parsed"
    module = [r for r in doc["results"] if r["via"] == "module"]
    assert module and module[0]["commands_per_s"] > 0


def test_machine_quick(tmp_path: Path) -> None:
    from bench.machine import CASES

    doc = run_bench(tmp_path, "machine")
    assert doc["scenario"] == "machine" and doc["quick"] is True
    r = doc["results"]
    assert r["cpus"] >= 1 and r["rounds"] == 1 and len(r["runs"]) == 1
    assert r["fsync_fs"] and r["fsync_fs"] != "unknown"
    for name, _ in CASES:
        asked = r["rtt_n_asked"] if name.startswith("rtt") else r["fsync_n_asked"]
        assert 0 < r[f"{name}_n"] <= asked, name
        assert 0 < r[f"{name}_p50_us"] <= r[f"{name}_p99_us"], name
    # Each round's completions are sorted, so the k-th to finish dominates the (k-1)-th.
    for q in ("p50", "p99"):
        first, second, third = (r[f"fsync_3_{k}_{q}_us"] for k in ("first", "second", "third"))
        assert first <= second <= third


def processes_with_arg(arg: str) -> list[int]:
    """Pids whose command line holds `arg` (the echo server has its parent's, being a fork)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if arg.encode() in cmdline.read_bytes().split(b"\0"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("phase", ["done", "round trips", "fsyncs"])
def test_machine_binary_leaves_nothing(tmp_path: Path, phase: str) -> None:
    """bench/machine.c removes its fsync files and its echo server, whether it ends by itself or
    by SIGTERM in the middle of a case."""
    import signal
    import time

    from bench.machine import machine_binary

    work = tmp_path / "fsync"
    work.mkdir()
    counts = {"done": ("200", "20"), "round trips": ("10000000", "20"),
              "fsyncs": ("10", "10000000")}[phase]
    proc = subprocess.Popen([str(machine_binary()), *counts, "3", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if phase == "round trips":
            assert proc.stdout.readline().startswith("cpus=")
            deadline = time.monotonic() + 2
            while len(processes_with_arg(str(work))) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(processes_with_arg(str(work))) == 2  # it and its echo server
        elif phase == "fsyncs":
            deadline = time.monotonic() + 4
            while not list(work.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert list(work.iterdir())
        if phase != "done":
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (0 if phase == "done" else 128 + signal.SIGTERM), stderr
    assert list(work.iterdir()) == []
    assert processes_with_arg(str(work)) == []


@pytest.mark.slow
def test_recovery_quick(tmp_path: Path) -> None:
    """A restart replays what was logged; an emptied replica is rebuilt end to end through the
    coordinator, from a peer's whole log or, once the peers' logs are compacted, by state
    transfer, and is up at the cluster's last seq."""
    from webfront.cluster import find_replica_server

    if find_replica_server() is None:
        pytest.skip("replica_server not built")
    doc = run_bench(tmp_path, "recovery")
    assert [r["applied_after"] for r in doc["results"]] == [r["commands"] for r in doc["results"]]
    rebuilt = {r["peers_log"]: r for r in doc["rebuilds"]}
    assert rebuilt["whole"]["how"] == "log catch-up" and rebuilt["whole"]["snapshot_mb"] == 0
    assert rebuilt["whole"]["log_records_forwarded"] > 0
    assert rebuilt["compacted"]["how"] == "state transfer"
    assert rebuilt["compacted"]["snapshot_mb"] > 0
    for r in rebuilt.values():
        assert r["commands"] > 0 and r["applied_when_up"] == r["commands"]
        assert r["rebuild_s"] > 0 and r["commands_per_s"] > 0
