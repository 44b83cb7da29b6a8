"""replica_server over TCP: handshake, ordering, reads, bad input, recovery, fencing."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest

from webfront import protocol as P
from webfront.replica_process import start_replica


def write(seq: int, op: str, args: dict, epoch: int = 1, rid: str = "") -> dict:
    return {"t": "w", "e": epoch, "s": seq, "ts": 1000 + seq, "rid": rid, "op": op, "a": args}


def connect(proc, secret: bytes = b"") -> socket.socket:
    sock, ready = P.connect(proc.address, secret, "coordinator")
    assert ready["t"] == "ready"
    return sock


def send(sock: socket.socket, *bodies: dict) -> None:
    sock.sendall(b"".join(P.encode_frame(b) for b in bodies))


def wait_logged(proc, needle: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not proc.logged(needle):
        assert time.monotonic() < deadline, f"{needle!r} not in log: {proc.log_lines[-5:]}"
        time.sleep(0.02)


def snapshots_done(proc) -> list[int]:
    """Seqs of the background snapshots the replica finished (durable), from its log."""
    return [int(line.split("event=snapshot s=")[1].split()[0])
            for line in list(proc.log_lines) if "event=snapshot s=" in line]


def log_barrier(proc, timeout: float = 5.0) -> None:
    """Return once every line the replica logged before this call has been read. A new
    connection makes it log an accept line, which its stderr carries after all of them (the
    lines are read by a thread, which may lag behind when the CPUs are busy)."""
    accepted = sum("event=accept " in line for line in list(proc.log_lines))
    sock = socket.create_connection(proc.address, timeout=timeout)
    try:
        deadline = time.monotonic() + timeout
        while sum("event=accept " in line for line in list(proc.log_lines)) <= accepted:
            assert time.monotonic() < deadline, "the replica's accept line never came"
            time.sleep(0.002)
    finally:
        sock.close()


def wait_snapshots_idle(proc, timeout: float = 10.0) -> None:
    """Wait until every background snapshot the replica started has finished or failed."""
    log_barrier(proc)  # so a snapshot started just now is seen as started
    deadline = time.monotonic() + timeout
    while True:
        lines = list(proc.log_lines)
        started = sum("event=snapshot_start" in line for line in lines)
        ended = sum("event=snapshot s=" in line or "event=snapshot_failed" in line
                    or "event=snapshot_aborted" in line for line in lines)
        if ended >= started:
            return
        assert time.monotonic() < deadline, f"snapshot still running: {lines[-5:]}"
        time.sleep(0.005)


def seed(sock: socket.socket, n_posts: int = 5) -> list[dict]:
    send(sock, write(1, "create_user", {"username": "alice", "password_hash": b"h"}))
    acks = [P.recv_frame(sock)]
    for i in range(n_posts):
        send(sock, write(2 + i, "create_post", {"actor": "alice", "text": f"post {i}"}))
        acks.append(P.recv_frame(sock))
    return acks


def commit(sock: socket.socket, seq: int, epoch: int = 1) -> None:
    """Say, as the coordinator of `epoch` does with its heartbeats, that seq is committed:
    the replica may then compact its log to a snapshot at or below it."""
    send(sock, {"t": "hb", "id": 0, "c": seq, "e": epoch})
    assert P.recv_frame(sock)["t"] == "hba"


def test_handshake_with_secret(launch, secret_file: Path) -> None:
    proc = launch(secret_file=secret_file)
    secret = P.read_secret(secret_file)
    sock, ready = P.connect(proc.address, secret, "coordinator")
    assert ready == {"t": "ready", "s": 0, "e": 0, "d": bytes(16), "le": 0}
    sock.close()
    with pytest.raises(P.AuthError):  # the replica does not prove the wrong secret
        P.connect(proc.address, b"wrong", "coordinator")


def test_bad_initiator_mac_refused(launch, secret_file: Path) -> None:
    proc = launch(secret_file=secret_file)
    sock = socket.create_connection(proc.address, timeout=2)
    nonce = os.urandom(16)
    send(sock, P.hello_body("coordinator", nonce))
    welcome = P.recv_frame(sock)
    assert welcome["t"] == "welcome" and welcome["v"] == 1 and welcome["id"] == "r1"
    send(sock, {"t": "auth", "mac": bytes(32)})
    assert P.recv_frame(sock)["code"] == "auth_failed"
    assert sock.recv(10) == b""
    wait_logged(proc, "code=auth_failed")


def test_writes_acks_reads_heartbeat(launch) -> None:
    proc = launch()
    sock = connect(proc)
    acks = seed(sock, 3)
    assert [a["s"] for a in acks] == [1, 2, 3, 4]
    assert P.ack_reply(acks[1])["post"]["id"] == 2 and len(acks[-1]["d"]) == 16
    send(sock, {"t": "r", "id": 9, "min": 4, "q": "user_posts", "a": {"username": "ALICE"}})
    rr = P.recv_frame(sock)
    assert rr["id"] == 9 and rr["s"] == 4
    assert [p["text"] for p in rr["r"]["posts"]] == ["post 2", "post 1", "post 0"]
    send(sock, {"t": "hb", "id": 3})
    hba = P.recv_frame(sock)
    assert hba == {"t": "hba", "id": 3, "s": 4, "e": 1, "d": acks[-1]["d"], "le": 1}
    send(sock, write(2, "create_post", {"actor": "alice", "text": "again"}))
    dup = P.recv_frame(sock)
    assert dup["dup"] is True and "r" not in dup and "rb" not in dup


def test_out_of_order_applied_in_order(launch) -> None:
    proc = launch()
    sock = connect(proc)
    bodies = [write(1, "create_user", {"username": "bob", "password_hash": "x"})]
    bodies += [write(s, "create_post", {"actor": "bob", "text": str(s)}) for s in range(2, 8)]
    send(sock, *reversed(bodies))  # 7, 6, ..., 1: nothing can apply until 1 arrives
    acks = [P.recv_frame(sock) for _ in bodies]
    assert [a["s"] for a in acks] == list(range(1, 8))
    assert all(P.ack_reply(a)["ok"] for a in acks)


def test_read_waits_for_min_then_behind(launch) -> None:
    proc = launch()
    sock = connect(proc)
    send(sock, {"t": "r", "id": 1, "min": 1, "q": "state", "wait": 2000})
    time.sleep(0.1)
    send(sock, write(1, "create_user", {"username": "carol", "password_hash": "x"}))
    frames = [P.recv_frame(sock), P.recv_frame(sock)]
    rr = next(f for f in frames if f["t"] == "rr")
    assert rr["s"] == 1 and rr["r"]["users"] == 1
    start = time.monotonic()
    send(sock, {"t": "r", "id": 2, "min": 50, "q": "state", "wait": 200})
    rr = P.recv_frame(sock)
    assert rr["r"] == {"ok": False, "code": "behind", "msg": rr["r"]["msg"]}
    assert 0.15 < time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1", "undecodable body"),
        (struct.pack(">I", 50 << 20), "exceeds limit"),
        (P.encode_frame({"x": 1}), "'t'"),
    ],
)
def test_bad_frames_close_only_that_connection(launch, payload: bytes, reason: str) -> None:
    proc = launch()
    good = connect(proc)
    bad = connect(proc)
    bad.sendall(payload)
    err = P.recv_frame(bad)
    assert err["t"] == "err" and err["code"] in ("malformed", "too_large")
    assert bad.recv(10) == b""
    wait_logged(proc, reason)
    send(good, {"t": "hb", "id": 1})
    assert P.recv_frame(good)["t"] == "hba"


def test_truncated_frame_logged(launch) -> None:
    proc = launch()
    bad = connect(proc)
    bad.sendall(struct.pack(">I", 100) + b"\x81")
    bad.close()
    wait_logged(proc, "truncated frame")
    send(connect(proc), {"t": "hb", "id": 1})


def test_garbage_before_handshake(launch) -> None:
    proc = launch()
    sock = socket.create_connection(proc.address, timeout=2)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    err = P.recv_frame(sock)  # "GET " read as a length is ~1.2 GB: refused before the body
    assert (err["t"], err["code"]) == ("err", "too_large")
    assert sock.recv(100) == b""
    wait_logged(proc, "code=too_large")
    connect(proc).close()


def test_restart_recovers_digest(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data, fsync="always")
    acks = seed(connect(proc), 20)
    proc.stop()
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"], ready["le"], ready["e"]) == (21, acks[-1]["d"], 1, 1)


def test_snapshot_then_restart(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data, extra_args=["--snapshot-every", "7"])
    sock = connect(proc)
    acks = seed(sock, 20)
    commit(sock, 21)
    proc.stop()
    # Compacted to the snapshot before the newest committed one: both stay, and the log from
    # the older one on (a fallback if the newest is found damaged at start).
    older, _newest = sorted(data.glob("snapshot-*.snap"))
    assert min(int(p.stem) for p in (data / "log").glob("*.log")) == seq_of(older) + 1
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (21, acks[-1]["d"])


def test_torn_tail_is_cut(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data)
    acks = seed(connect(proc), 5)
    proc.stop()
    (segment,) = (data / "log").glob("*.log")
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - 3)  # the last record loses its end
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (5, acks[-2]["d"])
    assert again.logged("event=log_torn_tail")


def test_corrupt_middle_refuses_start(replica_binary: str, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = start_replica(replica_binary, data_dir=data)
    seed(connect(proc), 5)
    proc.stop()
    (segment,) = (data / "log").glob("*.log")
    raw = bytearray(segment.read_bytes())
    raw[30] ^= 0xFF  # inside the first record's body
    segment.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError) as info:
        start_replica(replica_binary, data_dir=data)
    assert str(segment) in str(info.value) and "offset 0" in str(info.value)


def damage(path: Path, where: int) -> bytes:
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0xFF
    path.write_bytes(bytes(raw))
    return bytes(raw)


def snapshots_after_commit(launch, data: Path) -> tuple[list[Path], list[dict]]:
    """A replica (snapshots every 7 writes) that holds 1..21 and was told 21 is committed: it
    compacted to the snapshot before the newest committed one, and is stopped."""
    proc = launch(id="r1", data_dir=data, extra_args=["--snapshot-every", "7"])
    sock = connect(proc)
    acks = seed(sock, 20)
    wait_snapshots_idle(proc)
    commit(sock, 21)
    assert proc.stop() == 0
    snapshots = sorted(data.glob("snapshot-*.snap"))
    assert len(snapshots) == 2, snapshots  # the newest committed one and the one before it
    return snapshots, acks


def seq_of(snapshot: Path) -> int:
    return int(snapshot.name[len("snapshot-"):-len(".snap")])


def snapshot_seqs(data_dir: Path) -> list[int]:
    """The seqs of the snapshot files in a data dir, oldest first."""
    return sorted(seq_of(p) for p in data_dir.glob("snapshot-*.snap"))


@pytest.mark.parametrize("where, expected", [(-20, "checksum mismatch"), (2, "bad header")])
def test_damaged_snapshots_refuse_start_and_are_left_as_they_are(
        launch, tmp_path: Path, where: int, expected: str) -> None:
    """With no intact snapshot, the newest is named, with what is wrong, and nothing is restored
    or renamed (the log before the oldest is gone: guessing would lose acknowledged writes)."""
    data = tmp_path / "r1"
    snapshots, _ = snapshots_after_commit(launch, data)
    damaged = {path: damage(path, where) for path in snapshots}
    with pytest.raises(RuntimeError) as info:
        launch(id="r1", data_dir=data)
    error = str(info.value)
    assert f"corrupt snapshot {snapshots[-1]}" in error and expected in error, error
    assert "no older snapshot is intact either" in error
    assert all(path.read_bytes() == raw for path, raw in damaged.items())
    assert not list(data.glob("*.damaged"))


def test_a_fallback_whose_log_ends_before_the_damaged_snapshot_refuses_start(
        launch, tmp_path: Path) -> None:
    """The snapshot before a damaged one restores, but its log is gone (say a backup copied
    without it): starting would put this replica behind a state it held. Refused, nothing
    renamed."""
    import shutil

    data = tmp_path / "r1"
    (older, newest), _ = snapshots_after_commit(launch, data)
    raw = damage(newest, -20)
    shutil.rmtree(data / "log")
    with pytest.raises(RuntimeError) as info:
        launch(id="r1", data_dir=data)
    error = str(info.value)
    assert f"corrupt snapshot {newest}" in error, error
    assert f"(at {seq_of(older)}) and the log after it reach only seq {seq_of(older)}" in error, error
    assert newest.read_bytes() == raw and not list(data.glob("*.damaged"))


def test_a_damaged_only_snapshot_refuses_start(launch, tmp_path: Path) -> None:
    """One snapshot only (as after a state transfer's install), damaged: nothing to fall back
    to. Refused, naming it, nothing renamed."""
    data = tmp_path / "r1"
    (older, newest), _ = snapshots_after_commit(launch, data)
    older.unlink()
    raw = damage(newest, -20)
    with pytest.raises(RuntimeError) as info:
        launch(id="r1", data_dir=data)
    error = str(info.value)
    assert f"corrupt snapshot {newest}" in error and "checksum mismatch" in error, error
    assert "no older snapshot" not in error
    assert newest.read_bytes() == raw and not list(data.glob("*.damaged"))


@pytest.mark.parametrize("where", [-20, 2])
def test_a_damaged_newest_snapshot_is_passed_over_for_the_one_before(
        launch, tmp_path: Path, where: int) -> None:
    """The newest snapshot damaged: the replica starts from the one before it and the log after
    that one (compaction keeps both), says so, and sets the damaged file aside, unchanged."""
    data = tmp_path / "r1"
    (older, newest), acks = snapshots_after_commit(launch, data)
    raw = damage(newest, where)
    again = launch(id="r1", data_dir=data)
    assert again.logged(f"event=snapshot_damaged path={newest}")
    assert again.logged(f"event=snapshot_loaded s={seq_of(older)}")
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (21, acks[-1]["d"])
    assert sorted(data.glob("snapshot-*.snap")) == [older]
    assert Path(f"{newest}.damaged").read_bytes() == raw


def test_stale_epoch_refused(launch, tmp_path: Path) -> None:
    proc = launch(data_dir=tmp_path / "r1")
    sock = connect(proc)
    send(sock, write(1, "create_user", {"username": "dave", "password_hash": "x"}, epoch=5))
    assert P.recv_frame(sock)["e"] == 5
    send(sock, write(2, "create_post", {"actor": "dave", "text": "old"}, epoch=4))
    err = P.recv_frame(sock)
    assert err == {"t": "err", "s": 2, "code": "stale_epoch", "msg": err["msg"]}
    proc.stop()
    again = launch(data_dir=tmp_path / "r1")
    assert P.connect(again.address, b"", "coordinator")[1]["e"] == 5  # persisted


def test_help_documents_flags(replica_binary: str) -> None:
    import subprocess

    out = subprocess.run([replica_binary, "--help"], capture_output=True, text=True, check=True)
    for flag in ("--id", "--listen", "--data-dir", "--secret-file", "--insecure-no-auth",
                 "--fsync", "--snapshot-every", "--max-frame-bytes"):
        assert flag in out.stdout
    refused = subprocess.run([replica_binary], check=False, capture_output=True, text=True)
    assert refused.returncode != 0 and "secret" in refused.stderr
