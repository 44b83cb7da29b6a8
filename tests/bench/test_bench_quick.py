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
