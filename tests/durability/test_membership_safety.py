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
        # Left with 2 and 3, a majority of 2 must hold the write: 3 does not.
        with pytest.raises(Unavailable, match="membership unchanged.*only 1 do \\(2\\)"):
            client.remove_replica("1")
    assert member_ids(cluster) == ["1", "2", "3"]

    cluster.restart_replica(3)  # it catches up: now the same removal is safe
    wait_converged(cluster, timeout=15)
    with cluster.client() as client:
        assert client.remove_replica("1") == "1"
    assert member_ids(cluster) == ["2", "3"]
    cluster.restart_coordinator()
    wait_for(lambda: cluster.status()["writable"], timeout=15, what="writable")
    for rid in ("2", "3"):
        assert post_texts(cluster, rid, "alice") == ["acked", "one"], rid


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


def test_an_addition_while_a_member_is_down_is_refused(cluster_factory):
    """3 members, one down: a fourth makes 3 of 4 needed, and only 2 hold every acknowledged
    write. Alone that change is safe, but a second one could leave a write on a minority; the
    rule refuses the first already (and writes would stop until the new replica caught up)."""
    cluster = cluster_factory()
    write_history(cluster, "alice", ["one"])
    cluster.kill_replica(3)
    cluster.wait_state(3, "down", timeout=5)
    proc = cluster.new_replica()
    wait_for(lambda: times_listened(cluster, proc.id), timeout=10, what="new replica")
    with cluster.client() as client, pytest.raises(Unavailable, match="membership unchanged"):
        client.add_replica(proc.address)
    assert member_ids(cluster) == ["1", "2", "3"]
