"""`webfront cluster up` restarts a dead coordinator at once; `webfront replica new`,
`webfront replicas add/remove` change the membership of the running cluster."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import replica_command
from tests.coordinator.test_cli import ROOT, pid_alive, webfront
from webfront.client import ClusterClient
from webfront.cluster import free_port
from webfront.protocol import read_secret

pytestmark = pytest.mark.timeout(90)


def status(data) -> dict:
    out = webfront("status", "--data-dir", str(data), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what}: {last}")


def test_supervisor_restarts_coordinator_and_replica_new_add_remove(tmp_path):
    data = tmp_path / "var"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    up = subprocess.Popen(
        [sys.executable, "-m", "webfront.cli", "cluster", "up", "--data-dir", str(data),
         "--web-port", str(free_port()), "--replica-command", shlex.join(replica_command())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        start_new_session=True)
    pids: list[int] = []
    client = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if "Ctrl-C" in line or not line:
                break
        run = json.loads((data / "cluster.json").read_text())
        pids = [p["pid"] for p in run["processes"] if p["pid"]]
        client = ClusterClient(run["coordinator"], read_secret(run["secret_file"]), timeout=5)
        client.write("create_user", {"username": "alice", "password_hash": b"h"})
        coordinator = next(p for p in run["processes"] if p["role"] == "coordinator")
        os.kill(coordinator["pid"], signal.SIGKILL)
        killed = time.monotonic()
        r = client.write("create_post", {"actor": "alice", "text": "after the kill"})
        resumed = time.monotonic() - killed
        print(f"write completed {resumed * 1000:.0f} ms after the coordinator's kill -9")
        assert r.reply["ok"] and resumed < 1.5

        new = webfront("replica", "new", "--data-dir", str(data))
        assert new.returncode == 0, new.stderr
        run = json.loads((data / "cluster.json").read_text())
        pids += [p["pid"] for p in run["processes"] if p["pid"]]
        wait_for(lambda: [r["state"] for r in status(data)["replicas"]] == ["up"] * 4, 20,
                 "new replica not up")
        assert len({r["digest"] for r in status(data)["replicas"]}) == 1
        gone = webfront("replicas", "remove", "4", "--data-dir", str(data))
        assert gone.returncode == 0, gone.stderr
        assert [r["id"] for r in status(data)["replicas"]] == ["1", "2", "3"]
        assert client.write("create_post", {"actor": "alice", "text": "3 again"}).reply["ok"]
    finally:
        if client is not None:
            client.close()
        up.send_signal(signal.SIGTERM)
        up.wait(20)
    run = json.loads((data / "cluster.json").read_text())
    pids += [p["pid"] for p in run["processes"] if p["pid"]]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    leftover = [p for p in set(pids) if pid_alive(p)]
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, "supervisor left processes running"
