"""A membership change is made only when a majority of the membership after it holds every
acknowledged write. Without that rule, two removals while a replica was down left only that
replica, which lacked a write; after a coordinator restart the write was gone and its seq given
to another (Raft's rule for changing one member at a time: the new configuration catches up
first)."""

from __future__ import annotations

import pytest

from tests.conftest import post_texts, wait_for
from tests.durability.load import times_listened, wait_converged
from tests.durability.test_divergence import write_history
from webfront.client import Unavailable

pytestmark = pytest.mark.timeout(90)


def member_ids(cluster) -> list[str]:
    return sorted(r["id"] for r in cluster.status()["replicas"])


def test_a_removal_that_would_leave_an_acknowledged_write_on_a_minority_is_refused(
        cluster_factory):
    cluster = cluster_factory()
    write_history(cluster, "alice", ["one"])
    wait_converged(cluster, timeout=10)
    cluster.kill_replica(3)
    cluster.wait_state(3, "down", timeout=5)
    with cluster.client() as client:
        assert client.write("create_post", {"actor": "alice", "text": "acked"}).reply["ok"]
        # Left with 2 and 3, every majority (both) includes 2, which holds the write: safe.
        assert client.remove_replica("1") == "1"
        # Left with 3 alone, which lacks it: refused, nothing changes.
        with pytest.raises(Unavailable, match="membership unchanged.*1 must hold them, and 0 "
                                              "do \\(none\\)"):
            client.remove_replica("2")
    assert member_ids(cluster) == ["2", "3"]

    cluster.restart_replica(3)  # it catches up: now the same removal is safe
    wait_converged(cluster, timeout=15)
    with cluster.client() as client:
        assert client.remove_replica("2") == "2"
    assert member_ids(cluster) == ["3"]
    cluster.restart_coordinator()
    wait_for(lambda: cluster.status()["writable"], timeout=15, what="writable")
    assert post_texts(cluster, "3", "alice") == ["acked", "one"]


def test_a_dead_replica_can_be_removed_while_the_others_hold_everything(cluster_factory):
    """The runbook's "replace a dead host": remove it, then add the new one."""
    cluster = cluster_factory()
    write_history(cluster, "alice", ["one"])
    cluster.kill_replica(3)
    cluster.wait_state(3, "down", timeout=5)
    with cluster.client() as client:
        assert client.write("create_post", {"actor": "alice", "text": "acked"}).reply["ok"]
        assert client.remove_replica("3") == "3"
        # Adding to 1 and 2 (3 members, 2 needed): both hold everything.
        proc = cluster.new_replica()
        wait_for(lambda: times_listened(cluster, proc.id), timeout=10, what="new replica")
        assert client.add_replica(proc.address) == proc.id
    status = wait_converged(cluster, timeout=20)
    assert sorted(r["id"] for r in status["replicas"]) == ["1", "2", proc.id]
    assert post_texts(cluster, proc.id, "alice") == ["acked", "one"]


def test_a_one_replica_cluster_grows_to_two(cluster_factory):
    """Two members need both for a majority, so the one holder of every write is in it."""
    cluster = cluster_factory(replicas=1)
    write_history(cluster, "alice", ["one"])
    proc = cluster.new_replica()
    wait_for(lambda: times_listened(cluster, proc.id), timeout=10, what="new replica")
    with cluster.client() as client:
        assert client.add_replica(proc.address) == proc.id
    status = wait_converged(cluster, timeout=20)
    assert sorted(r["id"] for r in status["replicas"]) == ["1", proc.id]
    assert post_texts(cluster, proc.id, "alice") == ["one"]
