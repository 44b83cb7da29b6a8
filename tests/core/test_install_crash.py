"""A replica that crashed in the middle of installing a snapshot (state transfer) comes back
with its own state or the installed one, whole, never a mix (storage/Layout.h, "Installing").

A crash cannot be stopped at an exact step from outside, so each test lays out the data dir as
the crash would leave it (the replica's own files, another replica's snapshot as the one being
installed, the log moved aside) and starts the replica on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.core.test_background_snapshot import EVERY_TRIGGER
from tests.core.test_replica_process import connect, send, wait_snapshots_idle, write
from webfront import protocol as P

EVERY = 10


def history(launch, data: Path, rid: str, user: str, snapshotted: int, last: int
            ) -> dict[int, bytes]:
    """A replica `rid` at `data` with `user` and posts up to seq `last`: up to `snapshotted`
    with snapshots every EVERY seqs, the rest with snapshots off (so they are in its log
    only). Stopped; returns its digest after each seq."""
    digests: dict[int, bytes] = {}
    for first, end, every in ((1, snapshotted, EVERY), (snapshotted + 1, last, 0)):
        proc = launch(id=rid, data_dir=data, extra_args=["--snapshot-every", str(every),
                                                         *EVERY_TRIGGER])
        sock = connect(proc)
        bodies = [write(1, "create_user", {"username": user, "password_hash": b"h"})] \
            if first == 1 else []
        bodies += [write(s, "create_post", {"actor": user, "text": f"{user} {s}"})
                   for s in range(max(first, 2), end + 1)]
        send(sock, *bodies)
        for _ in bodies:
            ack = P.recv_frame(sock)
            digests[ack["s"]] = ack["d"]
        wait_snapshots_idle(proc)
        sock.close()
        proc.stop()
    return digests


def newest_snapshot(data: Path) -> tuple[int, Path]:
    path = max(data.glob("snapshot-*.snap"))
    return int(path.name.removeprefix("snapshot-").removesuffix(".snap")), path


def restart(launch, data: Path, rid: str) -> dict:
    """Starts the replica on `data` again; returns its handshake (`s`, `d`)."""
    proc = launch(id=rid, data_dir=data)
    ready = P.connect(proc.address, b"", "coordinator")[1]
    assert not list(data.glob("log.discard-*")) and not (data / "install.snap").exists()
    return ready


def test_a_crash_before_the_commit_keeps_the_replicas_own_state(launch, tmp_path: Path):
    """Staged, log moved aside, not promoted: the replica had its own snapshot at the very seq
    being installed. It used to count that snapshot as the installed one, delete its log and
    come back at the snapshot's seq without the writes after it."""
    own, other = tmp_path / "own", tmp_path / "other"
    mine = history(launch, own, "r1", "alice", 30, 38)
    history(launch, other, "r2", "bob", 30, 30)
    seq, _ = newest_snapshot(own)
    assert seq <= 30  # 31..38 are in its log only
    shutil.copy(newest_snapshot(other)[1], own / "install.snap")
    (own / "log").rename(own / f"log.discard-{seq:020d}")

    ready = restart(launch, own, "r1")
    assert (ready["s"], ready["d"]) == (38, mine[38])


def test_a_crash_after_the_commit_finishes_the_install(launch, tmp_path: Path):
    """Promoted, not cleaned up: the installed snapshot is at a lower seq than the replica's own
    newest one, which would otherwise be loaded, without a log, as the newest."""
    own, other = tmp_path / "own", tmp_path / "other"
    history(launch, own, "r1", "alice", 35, 35)
    theirs = history(launch, other, "r2", "bob", 15, 15)
    own_seq, _ = newest_snapshot(own)
    seq, path = newest_snapshot(other)
    assert seq < own_seq
    shutil.copy(path, own / path.name)
    (own / "log").rename(own / f"log.discard-{seq:020d}")

    ready = restart(launch, own, "r1")
    assert (ready["s"], ready["d"]) == (seq, theirs[seq])
    assert [p.name for p in own.glob("snapshot-*.snap")] == [path.name]


def test_a_crash_after_staging_only_leaves_nothing_behind(launch, tmp_path: Path):
    own, other = tmp_path / "own", tmp_path / "other"
    mine = history(launch, own, "r1", "alice", 25, 25)
    history(launch, other, "r2", "bob", 25, 25)
    shutil.copy(newest_snapshot(other)[1], own / "install.snap")

    ready = restart(launch, own, "r1")
    assert (ready["s"], ready["d"]) == (25, mine[25])
