"""Which replica a new coordinator continues from (H) after two takeovers in a row.

Coordinator 1 dies just after its write at seq N+1 reached replica 1 only. Coordinator 2
fences replicas 2 and 3, records that its epoch begins at N+1 and dies, with or without a write
of its own at N+1 acknowledged by 2 and 3. Coordinator 3 then sees all three. Replica 1's seq
is the highest, but its last write was overwritten by epoch 2: it must not be H. Taking it
wedged the cluster for good (replica 1 sent to state transfer with no replica up to copy
from) and called 2 and 3, the holders of the acknowledged write, diverged.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import post_texts, wait_for
from tests.durability.load import times_listened, wait_converged
from tests.durability.test_divergence import divergences, events, rogue_write, write_history

pytestmark = pytest.mark.timeout(120)


def two_takeovers(cluster, epoch_two_writes: bool) -> int | None:
    """The scenario of the module docstring up to coordinator 3's start; returns the seq of
    coordinator 2's acknowledged write, if it made one."""
    seq = write_history(cluster, "alice", ["one", "two"])
    wait_converged(cluster, timeout=10)
    first_epoch = cluster.status()["epoch"]
    cluster.kill_coordinator()
    rogue_write(cluster, "1", first_epoch, seq + 1, "create_post",
                {"actor": "alice", "text": "never acknowledged"})
    cluster.kill_replica(1)
    cluster.start_coordinator()
    wait_for(lambda: cluster.status()["writable"], timeout=15, what="epoch 2 writable")
    assert cluster.status()["epoch"] == first_epoch + 1
    acked = None
    if epoch_two_writes:
        with cluster.client() as client:
            r = client.write("create_post", {"actor": "alice", "text": "acknowledged"})
        assert r.reply["ok"] and r.seq == seq + 1, (r.reply, r.seq)
        acked = r.seq
        wait_for(lambda: all(post_texts(cluster, rid, "alice")[0] == "acknowledged"
                             for rid in ("2", "3")), timeout=5, what="2 and 3 applied it")
    cluster.kill_coordinator()
    cluster.restart_replica(1)
    wait_for(lambda: times_listened(cluster, "1") >= 2, timeout=10, what="replica 1 restarted")
    cluster.start_coordinator()
    return acked


@pytest.mark.parametrize("epoch_two_writes", [False, True], ids=["epoch2-silent",
                                                                 "epoch2-acked"])
def test_a_replica_holding_an_overwritten_suffix_is_not_taken_as_h(cluster_factory,
                                                                  epoch_two_writes):
    cluster = cluster_factory()
    acked = two_takeovers(cluster, epoch_two_writes)

    status = wait_converged(cluster, timeout=20)  # every replica up, one digest
    assert status["writable"]
    begin = events(cluster, "epoch_begin")[-1]
    assert int(begin["after_seq"]) == (acked or acked_seq_before(cluster))
    assert divergences(cluster) == []  # a stale suffix is expected, not an alarm
    # Replica 1 was rebuilt from the others; the write no majority saw is gone everywhere.
    assert [e for e in events(cluster, "state_transfer_end", "1")]
    want = (["acknowledged"] if acked else []) + ["two", "one"]
    for rid in ("1", "2", "3"):
        assert post_texts(cluster, rid, "alice") == want, rid
    with cluster.client() as client:
        assert client.write("create_post", {"actor": "alice", "text": "after"}).reply["ok"]


def acked_seq_before(cluster) -> int:
    """The seq of the last write every coordinator agreed on when epoch 2 wrote nothing: the
    seq epoch 2 continued after."""
    return int(events(cluster, "epoch_begin")[-2]["after_seq"])


def only_replica_3_holds_the_acknowledged_posts(cluster, compacted: bool = False) -> int:
    """Coordinator 1 gets three posts acknowledged by replicas 1 and 3 (2 is down); its next
    write reaches replica 3 only. Coordinator 2 fences 1 and 2, records that its epoch begins
    after the three posts, and dies before it catches 2 up (its record is written here into
    the state dir, as it would have left it). Coordinator 3 then starts with only 2 and 3:
    replica 3's last write is overwritten, and the three acknowledged posts before it are on no
    other replica there. With `compacted`, replica 3 first compacts its log past what 2 holds
    (coordinator 1's heartbeats say the posts are committed). Returns the seq of the last of
    them."""
    seq = write_history(cluster, "alice", ["one"])
    wait_for(lambda: all(r["state"] == "up" and r["applied_seq"] == seq
                         for r in cluster.status()["replicas"]), timeout=10, what="converged")
    first_epoch = cluster.status()["epoch"]
    cluster.stop_replica(2)
    with cluster.client(timeout=5) as client:
        for text in ("acked 1", "acked 2", "acked 3"):
            assert client.write("create_post", {"actor": "alice", "text": text}).reply["ok"]
    acked = seq + 3
    if compacted:
        wait_for(lambda: compacted_past(cluster, "3", seq + 1), timeout=10, what="3 compacted")
    cluster.kill_coordinator()
    rogue_write(cluster, "3", first_epoch, acked + 1, "create_post",
                {"actor": "alice", "text": "never acknowledged"})
    path = cluster.data_dir / "coordinator" / "epoch.json"
    state = json.loads(path.read_text())
    state["epoch"] = first_epoch + 1
    state["history"] = [h for h in state["history"] if h[0] <= first_epoch] + \
        [[first_epoch + 1, acked + 1]]
    path.write_text(json.dumps(state))
    cluster.kill_replica(1)
    cluster.restart_replica(2)
    wait_for(lambda: times_listened(cluster, "2") >= 2, timeout=10, what="replica 2 restarted")
    cluster.start_coordinator()
    begin = wait_for(lambda: events(cluster, "epoch_begin")[-1:] if len(
        events(cluster, "epoch_begin")) >= 2 else None, timeout=15, what="epoch 3 begins")[0]
    assert int(begin["after_seq"]) == acked  # H includes the acknowledged posts
    return acked


def compacted_past(cluster, rid: str, seq: int) -> bool:
    """Replica rid's log no longer holds seq (a compaction to a snapshot at or after it)."""
    text = (cluster.data_dir / f"replica-{rid}.log").read_text(errors="replace")
    return any(int(s) >= seq for s in re.findall(r"event=compacted s=(\d+)", text))


WANT = ["acked 3", "acked 2", "acked 1", "one"]


def test_the_agreed_part_of_a_replica_with_an_overwritten_suffix_still_counts(cluster_factory):
    """Ranking such a replica below all (as a first fix did) lost the acknowledged posts; now
    its log serves replica 2's catch-up, then it is rebuilt from 2."""
    cluster = cluster_factory()
    only_replica_3_holds_the_acknowledged_posts(cluster)
    wait_for(lambda: all(r["state"] == "up" for r in cluster.status()["replicas"]
                         if r["id"] != "1"), timeout=20, what="2 and 3 up")
    for rid in ("2", "3"):
        assert post_texts(cluster, rid, "alice") == WANT, rid
    assert divergences(cluster) == []


def test_when_that_part_of_its_log_is_compacted_its_stored_snapshot_serves(cluster_factory):
    """With a snapshot at every write, replica 3's log no longer reaches back to what 2 lacks,
    and its newest snapshot has the overwritten post. It kept its log and snapshots past the
    seq coordinator 1 said was committed, so it gives 2 a snapshot within its agreed part, then
    its log up to the acknowledged posts: the cluster goes on without replica 1. (Before its
    compaction waited for the commit, it stayed unwritable until replica 1 returned.)"""
    cluster = cluster_factory(replica_args=["--snapshot-every", "1",
                                            "--snapshot-log-ratio", "0"])
    acked = only_replica_3_holds_the_acknowledged_posts(cluster, compacted=True)
    wait_for(lambda: cluster.status()["writable"], timeout=30, what="writable without 1")
    transfer = [e for e in events(cluster, "state_transfer_start") if e["replica"] == "2"]
    assert transfer and transfer[0]["source"] == "3" and int(transfer[0]["seq"]) <= acked
    wait_for(lambda: all(r["state"] == "up" for r in cluster.status()["replicas"]
                         if r["id"] != "1"), timeout=20, what="2 and 3 up")
    for rid in ("2", "3"):
        assert post_texts(cluster, rid, "alice") == WANT, rid
    # Replica 3, the only holder, was rebuilt only from a replica holding all of it (it used
    # to be installed from 2's older snapshot first: lost when 2 had not copied from it yet).
    assert all(int(e["seq"]) >= acked for e in events(cluster, "state_transfer_start", "3"))
    assert not [a for a in cluster.status()["alarms"] if "only replica 3 holds" in a]
    assert divergences(cluster) == []
    with cluster.client() as client:
        assert client.write("create_post", {"actor": "alice", "text": "after"}).reply["ok"]
