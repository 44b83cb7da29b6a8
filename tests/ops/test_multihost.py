"""Multi-host in miniature: three replicas, each in its own network namespace with its own
address (a veth pair to the root namespace, a private 10.231.T.(4i)/30 used only between the
host end and the namespace this test creates), the coordinator in the root namespace connecting
to them over those links. Writes and reads succeed, the loss of one replica is survived, and it
rejoins. Needs root and `ip netns` (skipped with the reason otherwise). Processes are stopped
by pid and the namespaces deleted at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webfront.chaos import netns
from webfront.client import ClusterClient
from webfront.cluster import ensure_secret, find_replica_server, free_port
from webfront.protocol import read_secret

pytestmark = pytest.mark.netns

REPLICA_PORT = 7401
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespaces():
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"multi-host test needs network namespaces: {why}")
    tag = os.getpid() % 250
    links = [netns.NetnsLink(tag, i, net="10.231", prefix="wfo") for i in range(3)]
    try:
        for link in links:
            link.create()
        yield links
    finally:
        for link in links:
            link.destroy()


def spawn(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_status(client: ClusterClient, check, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = client.status()
            if check(status):
                return status
        except Exception as exc:  # noqa: BLE001 - coordinator still starting
            status = {"error": repr(exc)}
        time.sleep(0.1)
    raise AssertionError(f"cluster status never satisfied the check: {status}")


def test_three_replicas_in_three_namespaces(namespaces, tmp_path):
    binary = find_replica_server()
    assert binary, "replica_server is not built: run scripts/bootstrap.sh"
    secret = ensure_secret(tmp_path / "secret")
    replica_argv = {}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for i, link in enumerate(namespaces, start=1):
            rdir = tmp_path / f"replica-{i}"
            rdir.mkdir()
            argv = link.wrap([binary, "--id", str(i), "--listen", f"{link.ns_ip}:{REPLICA_PORT}",
                              "--data-dir", str(rdir), "--secret-file", str(secret)])
            replica_argv[str(i)] = argv
            procs[str(i)] = spawn(argv, tmp_path / f"replica-{i}.log")
        port = free_port()
        coordinator = [sys.executable, "-m", "webfront.cli", "coordinator",
                       "--listen", f"127.0.0.1:{port}", "--secret-file", str(secret),
                       "--state-dir", str(tmp_path / "coordinator"),
                       "--metrics-port", str(free_port())]
        for i, link in enumerate(namespaces, start=1):
            coordinator += ["--replica", f"{i}={link.ns_ip}:{REPLICA_PORT}"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        procs["coordinator"] = spawn(coordinator, tmp_path / "coordinator.log", env)

        client = ClusterClient(("127.0.0.1", port), read_secret(secret), timeout=5)
        try:
            status = wait_status(client, lambda s: s["writable"] and
                                 all(r["state"] == "up" for r in s["replicas"]))
            assert {r["address"] for r in status["replicas"]} == \
                {f"{link.ns_ip}:{REPLICA_PORT}" for link in namespaces}
            for n in range(20):
                r = client.write("create_user", {"username": f"mh{n}", "password_hash": b"h"})
                assert r.reply["ok"], r.reply
            assert client.read("user", {"username": "mh19"}).reply["ok"]

            stop(procs["2"], signal.SIGKILL)  # a host lost
            wait_status(client, lambda s: s["replicas"][1]["state"] == "down")
            for n in range(20, 30):
                assert client.write("create_user", {"username": f"mh{n}",
                                                    "password_hash": b"h"}).reply["ok"]
            assert client.read("user", {"username": "mh29"}).reply["ok"]

            procs["2"] = spawn(replica_argv["2"], tmp_path / "replica-2.log")  # host back
            status = wait_status(client, lambda s: all(r["state"] == "up" and r["lag"] == 0
                                                       for r in s["replicas"]))
            assert len({r["digest"] for r in status["replicas"]}) == 1
        finally:
            client.close()
    finally:
        for proc in procs.values():
            stop(proc)
