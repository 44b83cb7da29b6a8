"""Snapshots are encoded in pieces of about 1 MiB and streamed (StateMachine::writeSnapshot):
into the fingerprint's hash, to the file a background snapshot writes, to a transfer's file.

The bytes must be the ones the whole-state encoder produced (old snapshots load, new ones load
in old code, replicas compare fingerprints), and the forked writer must not hold a second copy
of the state beside the one it shares with the replica.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.core.test_background_snapshot import big_data_dir, call, post
from tests.core.test_core_determinism import bodies, workload
from tests.core.test_replica_process import connect, wait_logged
from webfront import protocol as P
from webfront.core import StateMachine, write_body, xxh3_64

PIECE = 1 << 20  # StateMachine::kSnapshotPiece
HEADER = 16  # "RSNAP001" + xxh3_64(payload) (storage/Layout.h)


def rich_bodies(n_long: int) -> list[bytes]:
    """Write bodies for a state with every part of the snapshot layout: the determinism tests'
    workload (users created, deleted and created again, passwords as bytes and as text, short
    posts, follows, unfollows, deleted posts, request ids), then at epoch 2 a user `Writer`
    with `n_long` posts of every length up to 280 (the bulk), every third without a request id."""
    out = bodies(workload(11, 3000))
    rng = random.Random(11)
    first = len(out) + 1
    out.append(write_body(first, "create_user", {"username": "Writer", "password_hash": b"w",
                                                 "display_name": "W"}, epoch=2, rid="w"))
    out += [write_body(s, "create_post", {"actor": "writer", "text": "x" * rng.randrange(1, 281)},
                       epoch=2, ts=20_000 + s, rid=f"w-{s}" if s % 3 else "")
            for s in range(first + 1, first + 1 + n_long)]
    return out


def rich_state(n_long: int) -> StateMachine:
    sm = StateMachine()
    for body in rich_bodies(n_long):
        sm.apply(body)
    return sm


def snapshot_file(payload: bytes) -> bytes:
    return b"RSNAP001" + xxh3_64(payload).to_bytes(8, "little") + payload


def test_snapshot_and_fingerprint_bytes_are_those_of_the_whole_state_encoder() -> None:
    # Expected values computed by the module of commit 1d06fca, whose encoder built the whole
    # state in one string (and hashed that string for the fingerprint). The large state spans
    # several pieces, its posts alone (the fingerprint's bulk) about three.
    for n, size, h, fingerprint in [
        (0, 180816, 6938569018203092887, "10d4641796d2b893865914c221d90fb1"),
        (20000, 6096964, 13156994114936955441, "c6539a0a7aad88d6e8df4f5765192021"),
    ]:
        sm = rich_state(n)
        snap = sm.snapshot()
        assert (len(snap), xxh3_64(snap), sm.fingerprint().hex()) == (size, h, fingerprint), n
        again = StateMachine()
        again.restore(snap)
        assert (again.snapshot(), again.fingerprint()) == (snap, sm.fingerprint())
    assert size > 5 * PIECE


def long_post(seq: int, epoch: int) -> dict:
    return {"t": "w", "e": epoch, "s": seq, "ts": 10_000 + seq, "rid": f"rid-{seq}",
            "op": "create_post", "a": {"actor": "writer", "text": "y" * 280}}


def test_replica_writes_and_sends_the_snapshot_bytes_and_loads_them(launch, tmp_path: Path) -> None:
    """A data dir holding a snapshot file as the old writer made it (whole payload, header
    first) loads; the background snapshot the replica then streams to disk (over 8 MiB: more
    than one writeback chunk) is header + snapshot() of the same writes, and so is the transfer
    snapshot (snap_open); the new file loads again into the same state."""
    data = tmp_path / "r1"
    sm = rich_state(20000)
    epoch = sm.last_epoch
    for s in range(sm.applied + 1, sm.applied + 20_001):
        sm.apply(P.encode_body(long_post(s, epoch)))
    data.mkdir()
    (data / f"snapshot-{sm.applied:020d}.snap").write_bytes(snapshot_file(sm.snapshot()))
    every = 100  # id r1: snapshots where (seq + 61) % 100 == 0
    proc = launch(data_dir=data, extra_args=["--snapshot-every", str(every),
                                             "--snapshot-log-ratio", "0"])
    wait_logged(proc, f"event=snapshot_loaded s={sm.applied}")
    sock = connect(proc)
    target = sm.applied + 1 + (every - (sm.applied + 1 + 61) % every) % every
    for s in range(sm.applied + 1, target + 1):
        body = long_post(s, epoch)
        ack = call(sock, body)
        sm.apply(P.encode_body(body))
        assert ack["d"] == sm.digest
    wait_logged(proc, f"event=snapshot s={target} ", timeout=30)
    payload = sm.snapshot()
    assert len(payload) > 8 << 20
    assert (data / f"snapshot-{target:020d}.snap").read_bytes() == snapshot_file(payload)

    assert transfer(sock, target) == payload
    sock.close()
    proc.stop()

    # Restored from the file (read in pieces, decoded entry by entry): the same state, so the
    # same snapshot bytes.
    again = launch(data_dir=data)
    wait_logged(again, f"event=snapshot_loaded s={target}")
    sock, ready = P.connect(again.address, b"", "coordinator")
    assert (ready["s"], ready["d"]) == (target, sm.digest)
    assert transfer(sock, target) == payload


def transfer(sock, seq: int) -> bytes:
    """The transfer snapshot (snap_open, snap_read) the replica makes of its state at `seq`."""
    info = call(sock, {"t": "snap_open", "id": 1})
    assert (info["t"], info["s"]) == ("snap_info", seq)
    sent = b""
    while len(sent) < info["size"]:
        chunk = call(sock, {"t": "snap_read", "id": 2, "x": info["x"], "off": len(sent),
                            "len": 512 << 10})
        sent += chunk["data"]
    assert xxh3_64(sent) == info["h"]
    return sent


def test_snapshot_children_hold_no_copy_of_the_state(launch, tmp_path: Path) -> None:
    """The forked snapshot writer of a ~42 MiB state adds a couple of MiB to the memory it
    shares with the replica (measured: 2.2 MiB), where building the payload whole added 1.5
    times its size (measured with the old encoder: 65.6 MiB). So does a state transfer's child.

    Measured by the replica (event=snapshot): the child's peak RSS (wait4's ru_maxrss, kept by
    the kernel: no sampling, no timing) minus the replica's RssAnon just before the fork. fork
    copies the page table entries of the anonymous pages, so the child's RSS starts at least
    there; what the child adds on top is its heap growth (the encoder's buffer, or a whole-state
    string) and the code pages it touches. A copy-on-write copy replaces the shared page in the
    child's RSS, so it adds nothing. The difference can only overstate what the child holds."""
    data = tmp_path / "r1"
    seq, _ = big_data_dir(data, 150_000)
    every = 100  # id r1: snapshots where (seq + 61) % 100 == 0
    proc = launch(data_dir=data, extra_args=["--snapshot-every", str(every),
                                             "--snapshot-log-ratio", "0"])
    sock = connect(proc)
    target = seq + 1 + (every - (seq + 1 + 61) % every) % every
    for s in range(seq + 1, target + 1):
        call(sock, post(s))
    wait_logged(proc, f"event=snapshot s={target} ", timeout=60)
    line = next(x for x in proc.log_lines if f"event=snapshot s={target} " in x)
    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    child_kb, parent_kb = int(fields["child_maxrss_kb"]), int(fields["parent_anon_kb"])
    payload = (data / f"snapshot-{target:020d}.snap").stat().st_size - HEADER
    extra = (child_kb - parent_kb) * 1024
    print(f"payload {payload / 2**20:.1f} MiB; replica RssAnon at fork {parent_kb / 1024:.1f} MiB; "
          f"child peak RSS {child_kb / 1024:.1f} MiB: {extra / 2**20:.1f} MiB more")
    assert payload > 40 << 20
    assert parent_kb > payload // 1024  # the state is resident in the replica, as assumed
    assert extra < payload // 2, line

    # The child a state transfer forks (snap_open) writes the same stream to its unnamed file,
    # and is measured the same way (event=snap_ready).
    assert len(transfer(sock, target)) == payload
    line = next(x for x in proc.log_lines if "event=snap_ready" in x)
    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    extra = (int(fields["child_maxrss_kb"]) - int(fields["parent_anon_kb"])) * 1024
    print(f"transfer child: {extra / 2**20:.1f} MiB more than the replica's RssAnon at fork")
    assert int(fields["parent_anon_kb"]) > payload // 1024
    assert extra < payload // 2, line


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS since the start) and VmRSS of a process, in KiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, _, v in (x.partition(":") for x in lines)
            if k in ("VmHWM", "VmRSS")}


def test_restart_restores_a_snapshot_without_a_second_copy_of_the_state(launch, tmp_path: Path) -> None:
    """A replica restarting from a ~42 MiB snapshot peaks a few MiB above the RSS it then keeps
    (measured: 0.6 to 3.7 MiB over 68 MiB), where reading the file whole and unpacking it into
    one msgpack tree peaked 45 MiB above its RSS after the start (169 MiB over 124 MiB; its RSS
    stays high: the freed tree's small blocks are interleaved with the state's).

    Peak and steady RSS are the kernel's (VmHWM, VmRSS), read once the replica listens: the
    restore is then over, nothing else has run, and whatever the restore held on top of the
    state (the payload, a tree) shows as peak minus current. A quarter of the payload leaves
    the new code a margin of 7 MiB and fails the old one by a factor of four."""
    data = tmp_path / "r1"
    seq, digest = big_data_dir(data, 150_000)
    payload = (data / f"snapshot-{seq:020d}.snap").stat().st_size - HEADER
    proc = launch(data_dir=data, ready_timeout=60)
    mem = memory_kb(proc.pid)
    ready = P.connect(proc.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (seq, digest)
    extra = (mem["VmHWM"] - mem["VmRSS"]) * 1024
    print(f"payload {payload / 2**20:.1f} MiB; peak RSS {mem['VmHWM'] / 1024:.1f} MiB, "
          f"then {mem['VmRSS'] / 1024:.1f} MiB: {extra / 2**20:.1f} MiB more at the peak")
    assert payload > 40 << 20
    assert mem["VmRSS"] * 1024 > payload  # the state is resident, as assumed
    assert extra < payload // 4, mem


def test_a_snapshot_refused_midway_changes_nothing(launch, tmp_path: Path) -> None:
    """A snapshot whose checksum is right but whose entries stop halfway (the decoder finds out
    only after restoring half the posts) is refused: an install leaves the live state as it
    was, and a replica does not start from such a file."""
    sm = rich_state(20000)
    payload = sm.snapshot()
    cut = payload[: len(payload) // 2]
    target = launch(id="b", data_dir=tmp_path / "b")
    sock = connect(target)
    before = call(sock, {"t": "w", "s": 1, "e": 1, "ts": 1, "rid": "", "op": "create_user",
                         "a": {"username": "zed", "password_hash": b"h"}})
    begin = {"t": "inst_begin", "id": 10, "s": sm.applied, "e": sm.last_epoch, "d": sm.digest,
             "size": len(cut), "h": xxh3_64(cut)}
    assert call(sock, begin)["t"] == "inst_ok"
    for off in range(0, len(cut), 512 << 10):
        chunk = cut[off:off + (512 << 10)]
        assert call(sock, {"t": "inst_data", "id": 11, "off": off, "data": chunk,
                           "h": xxh3_64(chunk)})["t"] == "inst_ok"
    err = call(sock, {"t": "inst_end", "id": 12})
    assert (err["t"], err["code"]) == ("err", "bad_snapshot")
    assert "bad snapshot: insufficient bytes" in err["msg"], err
    hba = call(sock, {"t": "hb", "id": 1})
    assert (hba["s"], hba["d"]) == (1, before["d"])
    sock.close()

    data = tmp_path / "r1"
    data.mkdir()
    (data / f"snapshot-{sm.applied:020d}.snap").write_bytes(snapshot_file(cut))
    with pytest.raises(RuntimeError, match="bad snapshot: insufficient bytes"):
        launch(data_dir=data)
