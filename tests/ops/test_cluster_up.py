"""`webfront cluster up` as an operator runs it: started again on its data dir it comes back with
the same membership (replicas added at runtime too) and data, also when a recorded port was
taken meanwhile; the web front end is waited for, restarted when it dies, and a taken web port
fails the start; the supervisor's messages say what happened; commands on a stopped cluster say
it is stopped."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import replica_command, wait_for
from tests.coordinator.test_cli import ROOT, pid_alive, webfront
from webfront.client import ClusterClient
from webfront.cluster import LocalCluster, free_port
from webfront.protocol import read_secret

pytestmark = pytest.mark.timeout(150)


class ClusterUp:
    """`webfront cluster up` in the foreground; its output is collected by a thread, so a test
    can wait for a line without blocking on the pipe."""

    def __init__(self, data: Path, web_port: int | None = None, *extra: str) -> None:
        self.data = data
        self.web_port = web_port or free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "webfront.cli", "cluster", "up", "--data-dir", str(data),
             "--web-port", str(self.web_port),
             "--replica-command", shlex.join(replica_command()), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
            start_new_session=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        for stream, into in ((self.popen.stdout, self.lines), (self.popen.stderr, self.errors)):
            threading.Thread(target=lambda s=stream, i=into: i.extend(s), daemon=True).start()
        self.pids: set[int] = set()

    def wait_line(self, needle: str, timeout: float = 40.0) -> str:
        def found() -> str | None:
            if self.popen.poll() is not None and not any(needle in x for x in self.lines):
                raise AssertionError(f"cluster up exited {self.popen.returncode}:\n"
                                     + "".join(self.lines + self.errors))
            return next((x for x in self.lines if needle in x), None)
        return wait_for(found, timeout, f"{needle!r} in\n" + "".join(self.lines))

    def started(self) -> ClusterUp:
        self.wait_line("Ctrl-C")
        self.note_pids()
        return self

    def run(self) -> dict:
        return json.loads((self.data / "cluster.json").read_text())

    def note_pids(self) -> None:
        self.pids |= {p["pid"] for p in self.run()["processes"] if p.get("pid")}

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C; then every process it ever ran must be gone."""
        if self.popen.poll() is None:
            self.note_pids()
            self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in self.pids):
            time.sleep(0.1)
        leftover = [p for p in self.pids if pid_alive(p)]
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert not leftover, "supervisor left processes running"

    def client(self) -> ClusterClient:
        run = self.run()
        return ClusterClient(run["coordinator"], read_secret(run["secret_file"]), timeout=10)

    def seed(self, username: str, texts: list[str]) -> None:
        """Create the user and post texts."""
        with self.client() as client:
            client.write("create_user", {"username": username, "password_hash": b"h"})
            for text in texts:
                client.write("create_post", {"actor": username, "text": text})


def statuses(data: Path) -> list[tuple[str, str]]:
    out = webfront("status", "--data-dir", str(data), "--json")
    assert out.returncode == 0, out.stderr
    return [(r["id"], r["state"]) for r in json.loads(out.stdout)["replicas"]]


def posts(client: ClusterClient, username: str) -> list[str]:
    return [p["text"] for p in client.read("user_posts", {"username": username}).reply["posts"]]


def test_up_again_on_its_data_dir_brings_back_membership_and_data(tmp_path):
    data = tmp_path / "var"
    up = ClusterUp(data).started()
    try:
        up.seed("ann", ["first run"])
        new = webfront("replica", "new", "--data-dir", str(data))
        assert new.returncode == 0, new.stderr
        # The retries while the newcomer starts are not failures: nothing on stderr.
        assert new.stderr == "", new.stderr
        up.wait_line("replica 4 added")
        wait_for(lambda: statuses(data) == [(r, "up") for r in "1234"], 20, "4 replicas up")
        first_ports = {p["id"]: p["address"] for p in up.run()["processes"]
                       if p["role"] == "replica"}
    finally:
        up.stop()

    # Stopped: the commands that need the running cluster say so, at once.
    began = time.monotonic()
    stopped = webfront("status", "--data-dir", str(data))
    assert stopped.returncode == 1 and "is not running" in stopped.stderr, stopped.stderr
    assert "Traceback" not in stopped.stderr and time.monotonic() - began < 2.5
    lone = webfront("replica", "start", "1", "--data-dir", str(data))
    assert lone.returncode == 1 and "is not running" in lone.stderr, lone.stderr
    assert "started" not in lone.stdout
    assert not any(p.get("pid") and pid_alive(p["pid"])
                   for p in json.loads((data / "cluster.json").read_text())["processes"])

    again = ClusterUp(data).started()  # within its 20 s start timeout, else it had failed
    try:
        assert statuses(data) == [(r, "up") for r in "1234"]
        ports = {p["id"]: p["address"] for p in again.run()["processes"]
                 if p["role"] == "replica"}
        assert ports == first_ports
        with again.client() as client:
            assert posts(client, "ann") == ["first run"]
            client.write("create_post", {"actor": "ann", "text": "second run"})
            assert posts(client, "ann") == ["second run", "first run"]
    finally:
        again.stop()


def test_a_recorded_port_taken_meanwhile_moves_that_replica_and_its_membership(tmp_path):
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command())
    try:
        cluster.start()
        with cluster.client(timeout=5) as client:
            client.write("create_user", {"username": "bob", "password_hash": b"h"})
        old = cluster.replica(2).address
    finally:
        cluster.stop()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", int(old.rpartition(":")[2])))
    squatter.listen()
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command())
    try:
        cluster.start()
        new = cluster.replica(2).address
        assert new != old and cluster.moved == {"2": (old, new)}
        members = json.loads((tmp_path / "coordinator" / "members.json").read_text())
        assert {m["id"]: m["port"] for m in members["replicas"]}["2"] == int(
            new.rpartition(":")[2])
        with cluster.client(timeout=5) as client:
            assert client.read("user", {"username": "bob"}).reply["ok"]
            assert client.write("create_post", {"actor": "bob", "text": "moved"}).reply["ok"]
        assert all(r["state"] == "up" for r in cluster.status()["replicas"])
    finally:
        cluster.stop()
        squatter.close()


def test_a_taken_web_port_fails_the_start_without_printing_the_url(tmp_path):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    up = ClusterUp(tmp_path / "var", port)
    try:
        code = up.popen.wait(15)
    finally:
        squatter.close()
        if up.popen.poll() is None:  # it started after all: stop it (the test fails)
            up.stop()
    time.sleep(0.2)  # the output threads catch up
    assert code == 1
    assert f"web port 127.0.0.1:{port} is in use" in "".join(up.errors), up.errors
    assert not any("http://" in line for line in up.lines), up.lines


def test_the_banner_waits_for_the_web_front_end_which_is_restarted_when_it_dies(tmp_path):
    data = tmp_path / "var"
    up = ClusterUp(data).started()
    try:
        # Listening as soon as the URL is printed
        socket.create_connection(("127.0.0.1", up.web_port), timeout=1).close()
        web = next(p for p in up.run()["processes"] if p["role"] == "web")
        os.kill(web["pid"], signal.SIGKILL)
        line = up.wait_line("web front end (pid", 10)
        assert f"(pid {web['pid']}) killed by signal 9 (SIGKILL)" in line and "restarting" in line
        up.wait_line("web front end restarted", 10)
        up.note_pids()

        def healthy() -> bool:
            try:
                url = f"http://127.0.0.1:{up.web_port}/api/v1/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(healthy, 20, "web front end back")

        # A replica's death reads the same way.
        replica = next(p for p in up.run()["processes"] if p["id"] == "2")
        os.kill(replica["pid"], signal.SIGKILL)
        line = up.wait_line("replica 2 (pid", 10)
        assert "killed by signal 9 (SIGKILL)" in line, line
    finally:
        up.stop()


def test_a_coordinator_that_exits_on_an_error_is_reported_with_its_log_line(tmp_path):
    data = tmp_path / "var"
    up = ClusterUp(data).started()
    try:
        epoch = data / "coordinator" / "epoch.json"
        good = epoch.read_text()
        epoch.write_text(good[: len(good) // 2])
        coordinator = next(p for p in up.run()["processes"] if p["role"] == "coordinator")
        os.kill(coordinator["pid"], signal.SIGKILL)
        up.wait_line("coordinator (pid", 10)
        line = up.wait_line("exited with 2", 15)
        assert "epoch.json is corrupt" in line and str(data / "coordinator.log") in line, line
        epoch.write_text(good)  # the operator repairs it; the backoff's next try starts it
        up.note_pids()
        wait_for(lambda: statuses(data) == [(r, "up") for r in "123"], 30, "coordinator back")
    finally:
        up.stop()
