"""replica_server snapshots in a forked child, staggered per replica (storage/Layout.h).

A snapshot must not stall the event loop (heartbeats keep being answered while a large state is
written), a kill -9 at any moment of a background snapshot must recover the same state, the log
it covers is dropped only once it is durable, and replicas with different ids snapshot at
different seqs.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from pathlib import Path

import msgpack
import pytest

from tests.core.test_replica_process import (
    connect,
    send,
    snapshot_seqs,
    snapshots_done,
    wait_logged,
    wait_snapshots_idle,
    write,
)
from webfront import protocol as P
from webfront.core import StateMachine, xxh3_64

TEXT = "x" * 280
# These tests are about the mechanics of one snapshot at its trigger, on a large state:
# snapshot at every trigger, not only once the log has grown as large as the last snapshot.
EVERY_TRIGGER = ["--snapshot-log-ratio", "0"]


def call(sock: socket.socket, body: dict) -> dict:
    send(sock, body)
    return P.recv_frame(sock)


def big_data_dir(data: Path, posts: int) -> tuple[int, bytes]:
    """A data dir holding only a snapshot of user `big` with `posts` 280-character posts (built
    in-process: much faster than sending them). Returns (seq, digest)."""
    sm = StateMachine()
    pack = msgpack.Packer()
    sm.apply(pack.pack(write(1, "create_user", {"username": "big", "password_hash": b"h"})))
    for s in range(2, posts + 2):
        sm.apply(pack.pack(write(s, "create_post", {"actor": "big", "text": TEXT})))
    payload = sm.snapshot()
    data.mkdir(parents=True, exist_ok=True)
    header = b"RSNAP001" + xxh3_64(payload).to_bytes(8, "little")
    (data / f"snapshot-{sm.applied:020d}.snap").write_bytes(header + payload)
    return sm.applied, sm.digest


def post(seq: int) -> dict:
    return write(seq, "create_post", {"actor": "big", "text": TEXT})


def child_pid(proc, seq: int, timeout: float = 10.0) -> int:
    needle = f"event=snapshot_start s={seq} "
    wait_logged(proc, needle, timeout)
    line = next(line for line in proc.log_lines if needle in line)
    return int(line.split("pid=")[1].split()[0])


def children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if status == "Z":  # dead, waiting for its (new) parent to reap it
            return True
        time.sleep(0.01)
    return False


def segments(data: Path) -> list[int]:
    return sorted(int(p.stem) for p in (data / "log").glob("*.log"))


def test_heartbeats_answered_while_a_large_snapshot_is_written(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    base, _ = big_data_dir(data, 200_000)  # a ~60 MB snapshot
    proc = launch(data_dir=data, extra_args=["--snapshot-every", "50", *EVERY_TRIGGER])
    sock = connect(proc)
    rtts_during: list[float] = []
    seq = base
    deadline = time.monotonic() + 60
    # A write and a heartbeat in one send, as the coordinator mixes them: the heartbeat is
    # answered in the turn that applies (and, fsync batch, syncs) the write, or the next.
    while len(snapshots_done(proc)) < 3 or len(rtts_during) < 20:
        assert time.monotonic() < deadline, f"{len(snapshots_done(proc))} snapshots, {proc.log_lines[-3:]}"
        seq += 1
        start = time.monotonic()
        send(sock, post(seq), {"t": "hb", "id": seq})
        frames = [P.recv_frame(sock), P.recv_frame(sock)]
        rtt = time.monotonic() - start
        assert {f["t"] for f in frames} == {"a", "hba"}
        if children(proc.pid):  # the snapshot child is writing
            rtts_during.append(rtt)
    rtts_during.sort()
    print(f"heartbeat+write round trips during snapshots: n={len(rtts_during)} "
          f"p50={rtts_during[len(rtts_during) // 2] * 1e3:.1f} ms max={rtts_during[-1] * 1e3:.1f} ms; "
          f"snapshots {snapshots_done(proc)}")
    # The monitor declares a replica down after 3 missed 100 ms heartbeats; a synchronous
    # snapshot of this state stalled the loop for several hundred ms. The turn of each fork
    # pays for copying the page tables (as Redis's BGSAVE does): under ASan, whose shadow
    # memory makes the process larger, on a slower machine, one took 154 ms. Those turns, one
    # per snapshot started, get a loose bound; every other turn while a child writes, 100 ms.
    forks = sum("event=snapshot_start" in line for line in list(proc.log_lines))
    assert rtts_during[-1] < 1.0, rtts_during[-5:]
    assert rtts_during[-forks - 1] < 0.1, (forks, rtts_during[-forks - 5:])
    assert snapshots_done(proc)[0] % 50 == 20  # id r1: (seq + 30) % 50 == 0; later ones late


def test_kill_9_during_background_snapshot_recovers(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    seq, digest = big_data_dir(data, 60_000)  # ~18 MB: a snapshot takes a while to write
    every = 100  # id r1: snapshots where (seq + 61) % 100 == 0
    for delay in (0.0, 0.01, 0.03, 0.08, 0.2):
        proc = launch(data_dir=data, extra_args=["--snapshot-every", str(every), *EVERY_TRIGGER])
        sock = connect(proc)
        assert P.connect(proc.address, b"", "coordinator")[1]["d"] == digest
        target = seq + 1 + (every - (seq + 1 + 61) % every) % every
        while seq < target:  # up to the trigger, acked (logged) one by one
            seq += 1
            ack = call(sock, post(seq))
            digest = ack["d"]
        pid = child_pid(proc, target)
        # A few more writes after the trigger, then kill -9 the replica mid-snapshot.
        for _ in range(3):
            seq += 1
            digest = call(sock, post(seq))["d"]
        time.sleep(delay)
        proc.kill()
        assert gone(pid), "the snapshot child outlived its replica"
        again = launch(data_dir=data, extra_args=["--snapshot-every", str(every), *EVERY_TRIGGER])
        ready = P.connect(again.address, b"", "coordinator")[1]
        assert (ready["s"], ready["d"]) == (seq, digest), delay
        assert not (data / "snapshot.tmp").exists()
        again.stop()


def test_log_dropped_only_after_the_snapshot_is_durable(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    base, _ = big_data_dir(data, 150_000)
    every = 20  # id r1: snapshots where (seq + 12) % 20 == 0
    proc = launch(data_dir=data, extra_args=["--snapshot-every", str(every), *EVERY_TRIGGER])
    sock = connect(proc)
    first = base + 1 + (every - (base + 1 + 12) % every) % every
    for s in range(base + 1, first + 1):
        call(sock, post(s))
    pid = child_pid(proc, first)
    os.kill(pid, signal.SIGSTOP)  # long before it could have written ~45 MB
    try:
        # The child is stuck: the loop goes on, the old snapshot and the whole log are kept.
        for s in range(first + 1, first + 2 * every):
            assert call(sock, post(s))["s"] == s
        # The coordinator says all of it is committed: compaction waits only for durability.
        hb = {"t": "hb", "id": 1, "c": first + 2 * every - 1, "e": 1}
        assert call(sock, hb)["s"] == first + 2 * every - 1
        assert snapshot_seqs(data) == [base]
        assert segments(data)[0] <= base + 1 and first + 1 in segments(data)
        page = call(sock, {"t": "log_read", "id": 2, "from": base + 1, "max": 1 << 16})
        assert page["t"] == "log_data" and msgpack.unpackb(page["recs"][0])["s"] == base + 1
        assert not proc.logged("event=snapshot s=")
    finally:
        os.kill(pid, signal.SIGCONT)
    last = first + 2 * every - 1
    wait_logged(proc, f"event=snapshot s={first} ", timeout=20)
    # Committed and durable: compacted to base, the snapshot before it (kept as a fallback, with
    # the log after it), which was already the oldest: nothing to delete yet.
    assert snapshot_seqs(data) == [base, first]
    assert call(sock, {"t": "log_read", "id": 4, "from": base + 1, "max": 1000})["t"] == "log_data"
    # The trigger at first + every passed while that child ran: the next snapshot starts as soon
    # as it is reaped, at `last`. A child that dies (here: killed) fails the snapshot: nothing is
    # deleted, and the next trigger tries again.
    pid = child_pid(proc, last)
    os.kill(pid, signal.SIGKILL)
    wait_logged(proc, f"event=snapshot_failed s={last} ")
    assert snapshot_seqs(data) == [base, first] and segments(data)[0] <= base + 1
    assert not (data / "snapshot.tmp").exists()
    retry = last + 1 + (every - (last + 1 + 12) % every) % every
    for s in range(last + 1, retry + 1):
        call(sock, post(s))
    # Committed before it is durable: compacting to first (the snapshot before retry) waits
    # for retry's child, so base and the log after it stay while that child is stuck.
    pid = child_pid(proc, retry)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert call(sock, {"t": "hb", "id": 5, "c": retry, "e": 1})["t"] == "hba"
        assert snapshot_seqs(data) == [base, first] and segments(data)[0] <= base + 1
        assert not proc.logged(f"event=snapshot s={retry} ")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_logged(proc, f"event=snapshot s={retry} ", timeout=20)
    assert snapshots_done(proc) == [first, retry]
    # Durable and committed: compacted to first when the child was reaped; base and the log
    # before first go only now.
    assert snapshot_seqs(data) == [first, retry] and segments(data)[0] == first + 1
    err = call(sock, {"t": "log_read", "id": 3, "from": first, "max": 1000})
    assert (err["t"], err["code"]) == ("err", "compacted")
    assert call(sock, {"t": "log_read", "id": 6, "from": first + 1, "max": 1})["t"] == "log_data"


def test_replicas_with_different_ids_snapshot_at_different_seqs(launch, tmp_path: Path) -> None:
    every = 100
    procs = [launch(id=rid, data_dir=tmp_path / rid,
                    extra_args=["--snapshot-every", str(every), *EVERY_TRIGGER])
             for rid in ("1", "2", "3")]
    socks = [connect(p) for p in procs]
    bodies = [write(1, "create_user", {"username": "u", "password_hash": b"h"})]
    bodies += [write(s, "create_post", {"actor": "u", "text": f"p{s}"}) for s in range(2, 301)]
    digests = set()
    for body in bodies:  # one write per loop turn, so each snapshot lands on its trigger seq
        digests.add(tuple(call(sock, body)["d"] for sock in socks))
    for p in procs:
        wait_snapshots_idle(p)
    done = {p.id: snapshots_done(p) for p in procs}
    # frac(k x golden ratio) of the interval: ids 1, 2, 3 trigger at (seq + 61|23|85) % 100 == 0.
    assert done == {"1": [39, 139, 239], "2": [77, 177, 277], "3": [15, 115, 215]}
    for sock in socks:  # all of it committed: each compacts to the snapshot before its newest
        assert call(sock, {"t": "hb", "id": 9, "c": 300, "e": 1})["t"] == "hba"
    for p in procs:
        assert snapshot_seqs(tmp_path / p.id) == done[p.id][-2:]
    seqs = sorted(s for v in done.values() for s in v)
    assert min(b - a for a, b in itertools.pairwise(seqs)) >= 23
    # Snapshots change nothing the replicas compare: same digest at every seq.
    assert all(len(set(d)) == 1 for d in digests)
    hbs = [call(sock, {"t": "hb", "id": 1}) for sock in socks]
    assert len({(h["s"], h["d"]) for h in hbs}) == 1


@pytest.mark.parametrize("compacted", [False, True], ids=["before-compaction", "mid-compaction"])
def test_recovery_after_a_crash_around_a_snapshot(launch, tmp_path: Path, compacted: bool) -> None:
    """The data dir a crash leaves right after a background snapshot at 20 became durable: an
    older snapshot-10 (the one the log was compacted to; gone if the crash came in the middle
    of compacting to 20, after the snapshots and before the log), the segments starting at 1
    (records 1..20, rolled at the trigger) and 21, and a snapshot.tmp of a later attempt cut
    short. Recovery uses snapshot-20 + records 21..30; the log is kept back to the oldest
    snapshot, and compacted to 20 once a coordinator says 20 is committed."""
    data = tmp_path / "r1"
    proc = launch(data_dir=data, extra_args=["--snapshot-every", "0"])
    sock = connect(proc)
    acks = [call(sock, write(1, "create_user", {"username": "big", "password_hash": b"h"}))]
    acks += [call(sock, post(s)) for s in range(2, 31)]
    proc.stop()
    (segment,) = (data / "log").glob("*.log")
    raw, records, off = segment.read_bytes(), [], 0
    while off < len(raw):
        n = int.from_bytes(raw[off:off + 4], "little")
        records.append(raw[off:off + 20 + n])
        off += 20 + n
    assert len(records) == 30
    segment.write_bytes(b"".join(records[:20]))
    (data / "log" / f"{21:020d}.log").write_bytes(b"".join(records[20:]))
    sm = StateMachine()
    for seq, rec in enumerate(records, start=1):
        sm.apply(rec[20:])
        if seq in ((20,) if compacted else (10, 20)):
            payload = sm.snapshot()
            header = b"RSNAP001" + xxh3_64(payload).to_bytes(8, "little")
            (data / f"snapshot-{seq:020d}.snap").write_bytes(header + payload)
    (data / "snapshot.tmp").write_bytes(b"RSNAP001 cut short")
    again = launch(data_dir=data)
    wait_logged(again, "event=snapshot_loaded s=20")
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (30, acks[-1]["d"])
    assert not (data / "snapshot.tmp").exists()
    sock = connect(again)
    kept = 20 if compacted else 10
    assert segments(data) == ([21] if compacted else [1, 21])
    err = call(sock, {"t": "log_read", "id": 1, "from": kept, "max": 1000})
    assert (err["t"], err["code"]) == ("err", "compacted")
    page = call(sock, {"t": "log_read", "id": 2, "from": kept + 1, "max": 1 << 20})
    assert [msgpack.unpackb(r)["s"] for r in page["recs"]] == list(range(kept + 1, 31))
    # Committed: compacted to 10 if it is there (the snapshot before 20), else nothing to do.
    assert call(sock, {"t": "hb", "id": 3, "c": 30, "e": 1})["t"] == "hba"
    assert snapshot_seqs(data) == ([20] if compacted else [10, 20])
    assert segments(data) == ([21] if compacted else [1, 21])


def test_snapshots_wait_until_the_log_is_as_large_as_the_last_one(launch, tmp_path: Path) -> None:
    """The default pace (--snapshot-log-ratio 1): a trigger is skipped while the log since the
    last snapshot is smaller than that snapshot, so rewriting a large state does not become the
    replica's main work. The replica logs each skip with both sizes; they are checked against
    the bytes actually sent."""
    data = tmp_path / "r1"
    every = 20  # id r1: triggers where (seq + 12) % 20 == 0, i.e. 8, 28, 48, ...
    proc = launch(data_dir=data, extra_args=["--snapshot-every", str(every)])
    sock = connect(proc)
    bodies = [write(1, "create_user", {"username": "big", "password_hash": b"h"})]
    bodies += [write(s, "create_post", {"actor": "big", "text": TEXT}) for s in range(2, 301)]
    size = {b["s"]: len(P.encode_frame(b)) - 4 for b in bodies}  # body bytes, as logged
    for body in bodies:  # one write per loop turn: a snapshot starts at its trigger seq
        call(sock, body)
        wait_snapshots_idle(proc)
    done = snapshots_done(proc)
    deferred = {}
    for line in proc.log_lines:
        if "event=snapshot_deferred s=" in line:
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            deferred[int(f["s"])] = (int(f["log_bytes"]), int(f["snapshot_bytes"]))
    assert len(done) >= 3 and len(deferred) >= 3, (done, deferred)
    assert all((t + 12) % every == 0 for t in done + list(deferred))  # this replica's triggers
    for t, (log_bytes, snap_bytes) in deferred.items():
        last = max(d for d in done if d < t)
        assert log_bytes == sum(size[s] for s in range(last + 1, t + 1))
        assert log_bytes < snap_bytes
    # Each snapshot after the first came at the first trigger where the log since the previous
    # one had reached that one's size (known from the skips that followed it).
    for prev, cur in itertools.pairwise(done):
        skipped = [t for t in deferred if prev < t < cur]
        if skipped:
            assert sum(size[s] for s in range(prev + 1, cur + 1)) >= deferred[skipped[0]][1]
            assert skipped == list(range(prev + every, cur, every))
