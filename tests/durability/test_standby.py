"""The warm standby coordinator (`webfront coordinator --standby`, LocalCluster(standby=True),
what `webfront cluster up` runs): imported and idle, holding no socket, promoted when the
coordinator dies; never promoted if it was started another way than a new coordinator would
be; gone with its supervisor."""

from __future__ import annotations

import os
import time

from tests.conftest import ask_replica, replica_command
from webfront.cluster import LocalCluster


def sockets_of(pid: int) -> int:
    fds = os.listdir(f"/proc/{pid}/fd")
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in fds
               if os.path.exists(f"/proc/{pid}/fd/{fd}"))


def post_count(cluster: LocalCluster, rid: str) -> int:
    return ask_replica(cluster, rid, [("user", {"username": "ann"})])[0]["user"]["posts"]


def test_a_killed_coordinator_is_replaced_by_its_idle_standby(tmp_path):
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command(), standby=True)
    try:
        cluster.start()
        standby = cluster.procs["standby"]
        with cluster.client(timeout=5.0) as client:
            client.write("create_user", {"username": "ann", "password_hash": b"h"})
            for i in range(20):
                client.write("create_post", {"actor": "ann", "text": f"before {i}"})
            time.sleep(1.5)  # past its idle second: imported, waiting
            assert standby.alive() and sockets_of(standby.pid) == 0  # bound and dialled nothing

            cluster.kill_coordinator()
            cluster.start_coordinator()
            assert cluster.procs["coordinator"].pid == standby.pid  # promoted, not a new one
            for i in range(20):
                client.write("create_post", {"actor": "ann", "text": f"after {i}"})
        assert [post_count(cluster, rid) for rid in "123"] == [40] * 3
        spare = cluster.procs["standby"]
        assert spare.pid != standby.pid and spare.alive()  # the next one is ready

        # Its supervisor gone (the pipe closed), a standby exits rather than linger; the
        # supervisor's loop (ensure_standby) starts another.
        spare.popen.stdin.close()
        assert spare.popen.wait(10) == 0
        cluster.ensure_standby()
        assert cluster.procs["standby"].pid != spare.pid and cluster.procs["standby"].alive()
    finally:
        cluster.stop()


def test_a_standby_started_another_way_is_not_promoted(tmp_path, monkeypatch):
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command(), standby=True)
    try:
        cluster.start()
        standby = cluster.procs["standby"]
        cluster.kill_coordinator()
        # The environment a new coordinator would get changed since the standby started: it
        # would run with the old one, so a cold start it is.
        monkeypatch.setenv("WEBFRONT_CLOCK_SKEW_MS", "5")
        cluster.start_coordinator()
        assert cluster.procs["coordinator"].pid != standby.pid
        assert standby.popen.poll() is not None  # stopped, not left behind
        cluster.wait_writable(20)
        with cluster.client(timeout=5.0) as client:
            client.write("create_user", {"username": "ann", "password_hash": b"h"})
    finally:
        cluster.stop()
