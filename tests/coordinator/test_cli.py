"""`webfront cluster up`, `webfront status` and `webfront replica start` as a person runs them."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import replica_command
from webfront.cluster import free_port

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


def webfront(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "webfront.cli", *args], capture_output=True,
                          text=True, timeout=30, env=env, cwd=ROOT, check=False, **kwargs)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_cluster_up_status_lock_and_clean_stop(tmp_path):
    data = tmp_path / "var"
    up = start_cluster_up(data, "--replica-command", shlex.join(replica_command()))
    try:
        assert oct((data / "secret").stat().st_mode & 0o777) == "0o600"
        run = json.loads((data / "cluster.json").read_text())
        pids = [p["pid"] for p in run["processes"]]
        assert all(pid and pid_alive(pid) for pid in pids)

        status = webfront("status", "--data-dir", str(data), "--json")
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert [r["state"] for r in st["replicas"]] == ["up"] * 3
        assert all(r["pid"] for r in st["replicas"])
        table = webfront("status", "--data-dir", str(data))
        assert "STATE" in table.stdout and "up" in table.stdout

        second = webfront("cluster", "up", "--data-dir", str(data))
        assert second.returncode == 2 and "already running" in second.stderr

        replica3 = next(p for p in run["processes"] if p["id"] == "3")
        os.kill(replica3["pid"], signal.SIGKILL)
        time.sleep(0.5)
        again = webfront("replica", "start", "3", "--data-dir", str(data))
        assert again.returncode == 0, again.stderr
        new_pid = json.loads((data / "cluster.json").read_text())
        pids.append(next(p["pid"] for p in new_pid["processes"] if p["id"] == "3"))
        time.sleep(0.6)  # the supervisor adopts it
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    leftover = [p for p in pids if pid_alive(p)]
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, "supervisor left processes running"


def start_cluster_up(data: Path, *extra: str) -> subprocess.Popen:
    """`webfront cluster up` in the foreground as a person starts it; returns once it is up."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    up = subprocess.Popen(
        [sys.executable, "-m", "webfront.cli", "cluster", "up", "--data-dir", str(data),
         "--web-port", str(free_port()), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        start_new_session=True)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        lines.append(line)
        if "Ctrl-C" in line or not line:
            break
    if not any("Ctrl-C" in line for line in lines):
        up.kill()
        up.wait(10)
        raise AssertionError("cluster up did not start:\n" + "".join(lines))
    return up


def replica_pid(data: Path, rid: str) -> int:
    run = json.loads((data / "cluster.json").read_text())
    return next(p["pid"] for p in run["processes"] if p["id"] == rid)


def test_dead_replica_stays_dead_unless_restart_dead(tmp_path):
    """Failures stay visible by default; with --restart-dead the supervisor restarts it."""
    for restart, data in ((False, tmp_path / "plain"), (True, tmp_path / "restarting")):
        up = start_cluster_up(data, *(["--restart-dead"] if restart else []))
        try:
            old = replica_pid(data, "2")
            os.kill(old, signal.SIGKILL)
            deadline = time.monotonic() + 10
            states = []
            while time.monotonic() < deadline:
                st = json.loads(webfront("status", "--data-dir", str(data), "--json").stdout)
                states = [r["state"] for r in st["replicas"]]
                new = replica_pid(data, "2")
                if restart and new != old and pid_alive(new) and states == ["up"] * 3:
                    break
                if not restart and states[1] == "down" and time.monotonic() > deadline - 7:
                    break  # down, and left down for 3 s (the supervisor checks every 50 ms)
                time.sleep(0.2)
            if restart:
                assert states == ["up"] * 3 and replica_pid(data, "2") != old
            else:
                assert states[1] == "down" and replica_pid(data, "2") in (old, None)
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(20)


@pytest.mark.parametrize(("toml", "expected"), [
    (None, "cannot read config file"),
    ('heartbeat_ms = "100"\n', "heartbeat_ms must be an integer, not '100'"),
    ('[[replicas]]\nhost = "127.0.0.1"\nport = 7401\n', "[[replicas]] entry 1: missing id"),
    ('hearbeat_ms = 100\npolicy = "first"\n', "unknown key hearbeat_ms"),
    ('[[replicas]]\nid = "1"\nhost = "127.0.0.1"\nport = 7401\nweight = 2\n',
     "[[replicas]] entry 1: unknown weight"),
    ("policy = \n", "is not valid TOML"),
])
def test_coordinator_config_errors_are_one_line_and_exit_2(tmp_path, toml, expected):
    path = tmp_path / "coordinator.toml"
    if toml is not None:
        path.write_text(toml)
    out = webfront("coordinator", "--config", str(path), "--insecure-no-auth",
                   *([] if toml and "replicas" in toml else ["--replica", "1=127.0.0.1:7401"]))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    assert out.stderr.startswith("webfront coordinator: ")


def test_replica_flags_replace_the_files_replica_list(tmp_path):
    """As documented: flags override the file, and `--replica` flags the whole list."""
    from webfront.client import ClusterClient
    from webfront.replica_process import start_replica

    replica = start_replica(id="1", data_dir=tmp_path / "r1")
    port = free_port()
    config = tmp_path / "coordinator.toml"
    config.write_text(f'listen = "127.0.0.1:{port}"\ninsecure = true\n'
                      '[[replicas]]\nid = "9"\nhost = "127.0.0.1"\nport = 1\n')
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "webfront.cli", "coordinator", "--config", str(config),
         "--replica", f"1=127.0.0.1:{replica.port}"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        with ClusterClient(("127.0.0.1", port), b"", timeout=10) as client:
            deadline = time.monotonic() + 10
            while True:
                status = client.status()
                if status["writable"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert [r["id"] for r in status["replicas"]] == ["1"]
            assert status["writable"]
    finally:
        coordinator.terminate()
        coordinator.wait(10)
        replica.stop()
