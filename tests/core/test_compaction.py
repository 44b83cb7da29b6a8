"""replica_server compacts its log only up to a snapshot the coordinator says is committed, and
hands out a stored snapshot at or below a seq (`snap_open` with `at_most`).

Why (docs/replication.md, "Compaction waits for the commit"): a snapshot may include writes a
new coordinator overwrites, and the log before it may hold the only copy of agreed writes that
another replica lacks. Each test plays the coordinator over TCP against a real replica_server.
"""

from __future__ import annotations

from pathlib import Path

from tests.core.test_replica_process import (
    connect,
    send,
    snapshot_seqs,
    snapshots_done,
    wait_snapshots_idle,
    write,
)
from tests.core.test_state_transfer import call, install, seed_many
from webfront import protocol as P
from webfront.core import xxh3_64

SNAPSHOT_EVERY = ["--snapshot-every", "7", "--snapshot-log-ratio", "0"]


def log_reads_from(sock, seq: int) -> bool:
    reply = call(sock, {"t": "log_read", "id": seq, "from": seq, "max": 100000})
    if reply["t"] == "err":
        assert reply["code"] == "compacted", reply
        return False
    assert P.decode_body(reply["recs"][0])["s"] == seq
    return True


def heartbeat(sock, committed: int, epoch: int = 1) -> None:
    assert call(sock, {"t": "hb", "id": 7, "c": committed, "e": epoch})["t"] == "hba"


def seeded(launch, data_dir: Path, last: int = 19):
    """A replica (id r1: snapshots at 3, 10, 17, ... with --snapshot-every 7) holding 1..last."""
    proc = launch(data_dir=data_dir, extra_args=SNAPSHOT_EVERY)
    sock = connect(proc)
    digests = {1: seed_many(sock, 1, 1)[0]["d"]}
    for s in range(2, last + 1):
        ack = call(sock, write(s, "create_post", {"actor": "alice", "text": f"post {s}"}))
        assert ack["t"] == "a", ack
        digests[s] = ack["d"]
        wait_snapshots_idle(proc)
    assert snapshots_done(proc) == [s for s in range(3, last + 1, 7)]
    return proc, sock, digests


def test_log_is_kept_until_the_coordinator_says_a_snapshot_is_committed(launch, tmp_path: Path):
    proc, sock, _ = seeded(launch, tmp_path / "a")
    # No committed seq yet: every snapshot and the whole log stay.
    assert snapshot_seqs(tmp_path / "a") == [3, 10, 17]
    assert log_reads_from(sock, 1)
    # A committed seq from a coordinator of another epoch than the stored one is not ours.
    heartbeat(sock, committed=19, epoch=2)
    assert log_reads_from(sock, 1)
    # Committed 12: compacted to 3, the snapshot before 10 (the newest at or below it). 10
    # stays with the log after it: the start falls back on it if 17 is found damaged.
    heartbeat(sock, committed=12)
    assert snapshot_seqs(tmp_path / "a") == [3, 10, 17]
    assert not log_reads_from(sock, 3) and log_reads_from(sock, 4)
    assert proc.logged("event=compacted s=3 committed=12")
    heartbeat(sock, committed=11)  # an older committed seq changes nothing
    assert log_reads_from(sock, 4)
    heartbeat(sock, committed=19)
    assert snapshot_seqs(tmp_path / "a") == [10, 17]
    assert not log_reads_from(sock, 10) and log_reads_from(sock, 11)


def test_a_restart_keeps_what_was_not_compacted(launch, tmp_path: Path):
    proc, sock, digests = seeded(launch, tmp_path / "a")
    heartbeat(sock, committed=12)  # compacted to 3
    sock.close()
    assert proc.stop() == 0
    again = launch(data_dir=tmp_path / "a", extra_args=SNAPSHOT_EVERY)
    assert again.logged("event=snapshot_loaded s=17")  # restored from the newest
    assert snapshot_seqs(tmp_path / "a") == [3, 10, 17]
    sock = connect(again)
    assert not log_reads_from(sock, 3) and log_reads_from(sock, 4)  # the log back to 3 is kept
    assert call(sock, {"t": "hb", "id": 1})["d"] == digests[19]


def test_past_three_retained_snapshots_the_oldest_is_compacted_anyway(launch, tmp_path: Path):
    """Disk stays bounded while the commit lags (policy first with no majority up)."""
    proc, sock, _ = seeded(launch, tmp_path / "a", last=25)  # snapshots 3, 10, 17, 24
    assert snapshot_seqs(tmp_path / "a") == [3, 10, 17, 24]  # the first is the compacted one
    for s in range(26, 33):
        assert call(sock, write(s, "create_post", {"actor": "alice", "text": "t"}))["t"] == "a"
        wait_snapshots_idle(proc)
    assert snapshots_done(proc)[-1] == 31
    assert snapshot_seqs(tmp_path / "a") == [10, 17, 24, 31]
    assert proc.logged('event=compacted s=10 committed=0 forced=1')
    assert not log_reads_from(sock, 10) and log_reads_from(sock, 11)


def test_the_kept_fallback_snapshot_does_not_count_as_forced(launch, tmp_path: Path):
    """Compacted to 3 at committed 12, the committed snapshot 10 is kept as the fallback: when
    snapshots 24 and 31 make four past 3, compacting to 10 goes no further than the commit, so
    it is an ordinary compaction, not a forced one (which warns)."""
    proc, sock, _ = seeded(launch, tmp_path / "a")
    heartbeat(sock, committed=12)
    assert snapshot_seqs(tmp_path / "a") == [3, 10, 17]
    for s in range(20, 33):
        assert call(sock, write(s, "create_post", {"actor": "alice", "text": "t"}))["t"] == "a"
        wait_snapshots_idle(proc)
    assert snapshots_done(proc)[-2:] == [24, 31]
    assert snapshot_seqs(tmp_path / "a") == [10, 17, 24, 31]
    assert proc.logged("event=compacted s=10 committed=12")
    assert not proc.logged("forced=1")


def test_snap_open_at_most_hands_out_a_stored_snapshot(launch, tmp_path: Path):
    """A replica whose writes after seq V are not agreed can still give another replica its
    state up to V: its stored snapshot at or below V, then its log up to V."""
    _, ss, digests = seeded(launch, tmp_path / "a")
    info = call(ss, {"t": "snap_open", "id": 1, "at_most": 16})
    assert info["t"] == "snap_info" and info["s"] == 10, info
    assert info["d"] == digests[10] and info["le"] == 1 and info["e"] == 1
    data = b""
    while len(data) < info["size"]:
        chunk = call(ss, {"t": "snap_read", "id": 2, "x": info["x"], "off": len(data), "len": 4096})
        assert chunk["h"] == xxh3_64(chunk["data"])
        data += chunk["data"]
    assert len(data) == info["size"] and xxh3_64(data) == info["h"]
    send(ss, {"t": "snap_close", "x": info["x"]})

    target = launch(id="r2", data_dir=tmp_path / "b")
    st = connect(target)
    assert install(st, info, data) == {"t": "inst_done", "id": 12, "s": 10, "d": digests[10]}
    records = call(ss, {"t": "log_read", "id": 3, "from": 11, "max": 100000})["recs"]
    upto = [r for r in records if P.decode_body(r)["s"] <= 16]
    send(st, *[{"t": "cu", "e": 1, "rec": r} for r in upto])
    acks = [P.recv_frame(st) for _ in upto]
    assert [a["s"] for a in acks] == list(range(11, 17)) and acks[-1]["d"] == digests[16]


def test_snap_open_at_most_without_such_a_snapshot(launch, tmp_path: Path):
    _, sock, _ = seeded(launch, tmp_path / "a")
    err = call(sock, {"t": "snap_open", "id": 4, "at_most": 2})
    assert (err["t"], err["id"], err["code"]) == ("err", 4, "compacted")
    memory = launch(id="r3")  # no data dir: no stored snapshots
    err = call(connect(memory), {"t": "snap_open", "id": 5, "at_most": 100})
    assert (err["t"], err["code"]) == ("err", "compacted")


def test_malformed_committed_seq_closes_only_that_connection(launch, tmp_path: Path):
    proc, sock, digests = seeded(launch, tmp_path / "a", last=5)
    err = call(sock, {"t": "hb", "id": 1, "c": "ten", "e": 1})
    assert (err["t"], err["code"]) == ("err", "malformed")
    assert call(connect(proc), {"t": "hb", "id": 2})["d"] == digests[5]
