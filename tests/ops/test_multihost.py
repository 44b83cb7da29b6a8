"""Multi-host in miniature: three replicas, each in its own network namespace with its own
address (a veth pair to the root namespace, a private 10.231.T.(4i)/30 used only between the
host end and the namespace this test creates), the coordinator in the root namespace connecting
to them over those links. Writes and reads succeed, the loss of one replica is survived, and it
rejoins. The cluster is a `LocalCluster` whose replicas are placed (`Placement`: the namespace's
address, `ip netns exec NS` as the command prefix) and listen on free ports. Needs root and
`ip netns` (skipped with the reason otherwise). Processes are stopped by pid and the namespaces
deleted at the end.
"""

from __future__ import annotations

import os
import time

import pytest

from webfront.chaos import netns
from webfront.cluster import LocalCluster, Placement, find_replica_server

pytestmark = pytest.mark.netns


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


def wait_converged(cluster: LocalCluster, timeout: float = 20.0) -> list[dict]:
    """The replicas' status entries once all are up, at lag 0 and with one digest (for up to
    timeout; a rejoined replica's digest in the status trails its seq by a heartbeat)."""
    deadline = time.monotonic() + timeout
    while True:
        replicas = cluster.status()["replicas"]
        done = all(r["state"] == "up" and r["lag"] == 0 for r in replicas) and \
            len({r["digest"] for r in replicas}) == 1
        if done or time.monotonic() > deadline:
            return replicas
        time.sleep(0.1)


def test_three_replicas_in_three_namespaces(namespaces, tmp_path):
    assert find_replica_server(), "replica_server is not built: run scripts/bootstrap.sh"
    placements = {str(i): Placement(link.ns_ip, tuple(link.wrap([])))
                  for i, link in enumerate(namespaces, start=1)}
    with LocalCluster(tmp_path, replicas=3, placements=placements) as cluster:
        client = cluster.client(timeout=5)
        try:
            status = cluster.status()
            assert [r["address"].rpartition(":")[0] for r in status["replicas"]] == \
                [link.ns_ip for link in namespaces]
            for n in range(20):
                r = client.write("create_user", {"username": f"mh{n}", "password_hash": b"h"})
                assert r.reply["ok"], r.reply
            assert client.read("user", {"username": "mh19"}).reply["ok"]

            cluster.kill_replica(2)  # a host lost
            cluster.wait_state(2, "down", timeout=20)
            for n in range(20, 30):
                assert client.write("create_user", {"username": f"mh{n}",
                                                    "password_hash": b"h"}).reply["ok"]
            assert client.read("user", {"username": "mh29"}).reply["ok"]

            cluster.restart_replica(2)  # host back, same command line in its namespace
            replicas = wait_converged(cluster)
            assert {r["state"] for r in replicas} == {"up"} and {r["lag"] for r in replicas} == {0}
            assert len({r["digest"] for r in replicas}) == 1, replicas
        finally:
            client.close()
