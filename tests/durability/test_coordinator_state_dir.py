"""The coordinator's state dir damaged or full (docs/failures.md, "Coordinator state dir").

It holds `epoch.json` and `members.json`. A damaged file stops the coordinator's start with the
file's name (it must not start from a guess); a full disk refuses membership changes, changing
nothing, and stops a restarted coordinator before it claims an epoch; no write is acknowledged
that way, and once space is freed it starts and everything acknowledged before is there."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import ask_replica, replica_command
from tests.durability.disk import fill, tmpfs
from tests.durability.load import wait_converged
from webfront.client import ClusterError, Unavailable
from webfront.cluster import LocalCluster


def post_count(cluster: LocalCluster, rid: str) -> int:
    return ask_replica(cluster, rid, [("user", {"username": "ann"})])[0]["user"]["posts"]


def wait_exit(cluster: LocalCluster, timeout: float = 15.0) -> int:
    popen = cluster.procs["coordinator"].popen
    try:
        return popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("the coordinator kept running on a state dir it cannot use")


def start_with_posts(cluster: LocalCluster, posts: int) -> None:
    cluster.start()
    with cluster.client(timeout=5.0) as client:
        client.write("create_user", {"username": "ann", "password_hash": b"h"})
        for i in range(posts):
            client.write("create_post", {"actor": "ann", "text": f"post {i}"})


def test_a_damaged_epoch_file_stops_the_start_and_is_left_for_the_operator(tmp_path):
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command())
    try:
        start_with_posts(cluster, 20)
        cluster.kill_coordinator()
        path = tmp_path / "coordinator" / "epoch.json"
        good = path.read_text()
        path.write_text(good[: len(good) // 2])  # torn by something outside the coordinator

        cluster.start_coordinator()
        assert wait_exit(cluster) == 2
        log = (tmp_path / "coordinator.log").read_text()
        assert "event=fatal" in log and "epoch.json is corrupt" in log, log[-2000:]
        assert path.read_text() == good[: len(good) // 2]  # not overwritten by a guess

        path.write_text(good)  # the operator restores it
        cluster.start_coordinator()
        cluster.wait_writable(20)
        assert [post_count(cluster, rid) for rid in "123"] == [20] * 3
        assert json.loads(path.read_text())["epoch"] > json.loads(good)["epoch"]
    finally:
        cluster.stop()


@pytest.fixture
def small_state_dir(tmp_path):
    """A 1 MiB tmpfs at tmp_path/coordinator (where LocalCluster puts the coordinator's dir)."""
    with tmpfs(tmp_path / "coordinator", "1m") as mount:
        yield mount


def test_a_full_state_dir_changes_no_membership_and_a_restart_waits_for_space(
        small_state_dir, tmp_path):
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command())
    try:
        start_with_posts(cluster, 50)
        members = (small_state_dir / "members.json").read_text()
        epoch = json.loads((small_state_dir / "epoch.json").read_text())["epoch"]
        filler = fill(small_state_dir)

        with cluster.client(timeout=5.0) as client:
            # The running coordinator needs no disk for writes: they go on.
            client.write("create_post", {"actor": "ann", "text": "after the disk filled"})
            newcomer = cluster.new_replica()
            time.sleep(0.3)  # its port open
            with pytest.raises(Unavailable, match="membership unchanged.*No space left"):
                client.add_replica(newcomer.address)
            with pytest.raises(Unavailable, match="membership unchanged.*No space left"):
                client.remove_replica("3")
            status = client.status()
            assert sorted(r["id"] for r in status["replicas"]) == ["1", "2", "3"]
            assert all(r["state"] == "up" for r in status["replicas"]), status
            assert status["majority"] == 2
        assert (small_state_dir / "members.json").read_text() == members
        assert not (small_state_dir / "members.json.tmp").exists()

        # A restarted coordinator must claim a new epoch, durably, before it sequences: it
        # cannot, so it stops, and no write is acknowledged meanwhile.
        cluster.kill_coordinator()
        cluster.start_coordinator()
        with cluster.client(timeout=1.0) as client, pytest.raises(ClusterError):
            client.write("create_post", {"actor": "ann", "text": "never acknowledged"})
        assert wait_exit(cluster) == 4
        log = (tmp_path / "coordinator.log").read_text()
        assert "event=fatal" in log and "No space left on device" in log, log[-2000:]
        assert json.loads((small_state_dir / "epoch.json").read_text())["epoch"] == epoch

        filler.unlink()  # the operator frees space
        cluster.start_coordinator()
        cluster.wait_writable(20)
        wait_converged(cluster, timeout=20)
        assert [post_count(cluster, rid) for rid in "123"] == [51] * 3
        assert json.loads((small_state_dir / "epoch.json").read_text())["epoch"] > epoch
    finally:
        cluster.stop()
