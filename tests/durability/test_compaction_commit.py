"""The coordinator's heartbeats tell each replica the committed seq, and replicas compact their
logs up to it (docs/replication.md, "Compaction waits for the commit"). Real processes; the
case this exists for (a takeover leaving acknowledged writes only below a compacted snapshot)
is in test_takeover_rank.py."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import wait_for
from tests.core.test_replica_process import snapshot_seqs
from tests.durability.test_divergence import write_history

pytestmark = pytest.mark.timeout(90)

SNAPSHOTS = ["--snapshot-every", "20", "--snapshot-log-ratio", "0"]


def snapshot_files(cluster, rid: str) -> list[int]:
    return snapshot_seqs(cluster.data_dir / f"replica-{rid}")


def snapshots_taken_in(cluster, rid: str) -> set[int]:
    """Seqs of the snapshots replica rid has taken in: its child wrote the file, and it reaped
    the child and compacted (a file is on disk a moment before that)."""
    text = (cluster.data_dir / f"replica-{rid}.log").read_text(errors="replace")
    return {int(s) for s in re.findall(r"event=snapshot s=(\d+) ms=", text)}


def compactions(cluster, rid: str) -> list[tuple[int, int]]:
    """(snapshot seq, committed seq) of each compaction in replica rid's log."""
    text = (cluster.data_dir / f"replica-{rid}.log").read_text(errors="replace")
    return [(int(s), int(c)) for s, c in re.findall(r"event=compacted s=(\d+) committed=(\d+)",
                                                     text)]


def test_replicas_compact_to_the_committed_seq_their_coordinator_sends(cluster_factory):
    cluster = cluster_factory(replica_args=SNAPSHOTS)
    last = write_history(cluster, "alice", [f"post {i}" for i in range(60)])
    for rid in ("1", "2", "3"):
        # Two snapshots left on each: the newest committed one, and the one before it that the
        # log was compacted to (a fallback at start if the newest is found damaged).
        wait_for(lambda rid=rid: len(snapshot_files(cluster, rid)) == 2
                 and compactions(cluster, rid), timeout=10, what=f"replica {rid} compacted")
        time.sleep(0.5)  # several heartbeats, every write committed: nothing more to compact
        assert len(snapshot_files(cluster, rid)) == 2, snapshot_files(cluster, rid)
        assert all(s <= c <= last for s, c in compactions(cluster, rid)), compactions(cluster, rid)
    # With one replica down the other two still hold a majority: the commit goes on, and so
    # does their compaction.
    cluster.stop_replica(3)
    before = {rid: compactions(cluster, rid)[-1][0] for rid in ("1", "2")}
    last = write_history(cluster, "bob", [f"post {i}" for i in range(60)])
    for rid in ("1", "2"):
        wait_for(lambda rid=rid: compactions(cluster, rid)[-1][0] > before[rid]
                 and len(snapshot_files(cluster, rid)) == 2, timeout=10,
                 what=f"replica {rid} compacted again")
        assert compactions(cluster, rid)[-1][1] <= last


def test_with_no_majority_up_nothing_is_committed_and_the_log_is_kept(cluster_factory):
    """Policy first keeps answering with one replica of three: what it writes then is not on a
    majority, so the commit stays where it was and that replica keeps its snapshots and log,
    up to 4 snapshots; past that it compacts anyway, and says so."""
    cluster = cluster_factory(policy="first", replica_args=SNAPSHOTS)
    committed = write_history(cluster, "alice", ["one"])
    wait_for(lambda: all(r["state"] == "up" for r in cluster.status()["replicas"]),
             timeout=10, what="all up")
    cluster.stop_replica(2)
    cluster.stop_replica(3)
    write_history(cluster, "bob", [f"post {i}" for i in range(90)])
    wait_for(lambda: len(snapshot_files(cluster, "1")) >= 3
             and snapshot_files(cluster, "1")[-1] in snapshots_taken_in(cluster, "1"),
             timeout=10, what="snapshots taken in")
    assert len(snapshot_files(cluster, "1")) <= 4
    done = compactions(cluster, "1")
    assert done and all(c <= committed for _, c in done), done
    log = (cluster.data_dir / "replica-1.log").read_text(errors="replace")
    assert log.count("event=compacted") == log.count("forced=1") == len(done)
