"""One replica_server per data dir (a flock on DATA_DIR/lock), and `webfront replica start`
reports a replica that dies at once instead of announcing it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.coordinator.test_cli import webfront
from tests.ops.test_cluster_up import ClusterUp, statuses
from webfront.replica_process import start_replica

pytestmark = pytest.mark.timeout(120)


def lock_fd_flags(pid: int, data: Path) -> int:
    """The open flags of pid's descriptor on data/lock."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == str(data / "lock"):
            fields = dict(line.split(":\t") for line in
                          Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()[:3])
            return int(fields["flags"], 8)
    raise AssertionError(f"pid {pid} holds no descriptor on {data / 'lock'}")


def test_a_second_server_on_the_same_data_dir_exits_at_once(tmp_path):
    data = tmp_path / "r1"
    first = start_replica(id="1", data_dir=data)
    try:
        assert lock_fd_flags(first.pid, data) & os.O_CLOEXEC
        began = time.monotonic()
        with pytest.raises(RuntimeError) as error:
            start_replica(id="1", data_dir=data, ready_timeout=5)
        assert time.monotonic() - began < 2
        message = str(error.value)
        assert "exited with 1" in message and "event=fatal" in message, message
        assert f"in use by another replica_server (pid {first.pid})" in message, message
    finally:
        first.kill()
    # The kernel dropped the lock with the process: a restart needs nothing cleared by hand.
    again = start_replica(id="1", data_dir=data)
    again.stop()


def test_the_lock_survives_background_snapshots_and_a_kill_during_one(cluster_factory):
    cluster = cluster_factory(replica_args=["--snapshot-every", "5",
                                            "--snapshot-log-ratio", "0"])
    with cluster.client(timeout=5) as client:
        client.write("create_user", {"username": "ann", "password_hash": b"h"})
        for i in range(300):  # forked snapshot children come and go meanwhile
            client.write("create_post", {"actor": "ann", "text": f"post {i}"})
        log = Path(cluster.log_path(cluster.replica(1))).read_text()
        assert "event=snapshot " in log and "in use" not in log
        cluster.kill_replica(1)  # perhaps while a child writes a snapshot
        cluster.restart_replica(1)
        cluster.wait_state(1, "up", timeout=15)
        client.write("create_post", {"actor": "ann", "text": "after the restart"})


def test_replica_start_reports_a_replica_that_dies_at_once(tmp_path):
    data = tmp_path / "var"
    up = ClusterUp(data).started()
    try:
        up.seed("ann", [f"post {i}" for i in range(5)])
        replica = next(p for p in up.run()["processes"] if p["id"] == "3")
        os.kill(replica["pid"], signal.SIGKILL)
        segment = min((data / "replica-3" / "log").glob("*.log"))
        raw = bytearray(segment.read_bytes())
        raw[20] ^= 0xFF  # the first record's body: its checksum fails, good records follow
        segment.write_bytes(bytes(raw))

        began = time.monotonic()
        out = webfront("replica", "start", "3", "--data-dir", str(data))
        assert out.returncode == 1, out.stdout
        assert "started" not in out.stdout
        assert "replica 3" in out.stderr and "exited with 1" in out.stderr, out.stderr
        assert "event=fatal" in out.stderr and str(segment) in out.stderr, out.stderr
        assert time.monotonic() - began < 10

        segment.write_bytes(bytes(raw[:20]) + bytes([raw[20] ^ 0xFF]) + bytes(raw[21:]))
        ok = webfront("replica", "start", "3", "--data-dir", str(data))
        assert ok.returncode == 0, ok.stderr
        assert "listening on" in ok.stdout
        up.note_pids()
        deadline = time.monotonic() + 20
        while statuses(data) != [(r, "up") for r in "123"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert statuses(data) == [(r, "up") for r in "123"]
    finally:
        up.stop()
