"""replica_server state transfer and epochs over TCP (docs/protocol.md, last section).

The test plays the coordinator: it reads a snapshot and log records from a source replica A and
installs them on a target replica B, then checks B holds exactly A's state.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.core.test_replica_process import (
    connect,
    send,
    snapshots_done,
    wait_snapshots_idle,
    write,
)
from webfront import protocol as P
from webfront.core import xxh3_64

CHUNK = 1000  # small, so a snapshot takes several chunks


def call(sock: socket.socket, body: dict) -> dict:
    send(sock, body)
    return P.recv_frame(sock)


def seed_many(sock: socket.socket, first: int, count: int, user: str = "alice") -> list[dict]:
    """create_user at `first`, then count-1 posts with request ids; returns the acks."""
    bodies = [write(first, "create_user", {"username": user, "password_hash": b"h"}, rid=f"{user}-u")]
    bodies += [
        write(s, "create_post", {"actor": user, "text": f"post {s}"}, rid=f"{user}-{s}")
        for s in range(first + 1, first + count)
    ]
    send(sock, *bodies)
    return [P.recv_frame(sock) for _ in bodies]


def read_snapshot(sock: socket.socket) -> tuple[dict, bytes]:
    info = call(sock, {"t": "snap_open", "id": 1})
    assert info["t"] == "snap_info", info
    data = b""
    while len(data) < info["size"]:
        chunk = call(sock, {"t": "snap_read", "id": 2, "x": info["x"], "off": len(data), "len": CHUNK})
        assert chunk["t"] == "snap_data" and chunk["off"] == len(data)
        assert chunk["h"] == xxh3_64(chunk["data"])
        data += chunk["data"]
    assert xxh3_64(data) == info["h"]
    send(sock, {"t": "snap_close", "x": info["x"]})
    return info, data


def install(sock: socket.socket, info: dict, data: bytes, corrupt_at: int | None = None) -> dict:
    begin = {"t": "inst_begin", "id": 10, "s": info["s"], "e": info["e"], "d": info["d"],
             "size": len(data), "h": info["h"]}
    assert call(sock, begin) == {"t": "inst_ok", "id": 10, "off": 0}
    for off in range(0, len(data), CHUNK):
        chunk = data[off:off + CHUNK]
        h = xxh3_64(chunk)
        if corrupt_at is not None and off <= corrupt_at < off + CHUNK:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]  # damaged on the way; hash is the sender's
        reply = call(sock, {"t": "inst_data", "id": 11, "off": off, "data": chunk, "h": h})
        if reply["t"] == "err":
            return reply
        assert reply == {"t": "inst_ok", "id": 11, "off": off + len(chunk)}
    return call(sock, {"t": "inst_end", "id": 12})


def test_epoch_is_durable_and_fences(launch, tmp_path: Path) -> None:
    proc = launch(data_dir=tmp_path / "r1")
    sock = connect(proc)
    ok = call(sock, {"t": "epoch", "id": 1, "e": 3})
    assert ok == {"t": "epoch_ok", "id": 1, "e": 3, "s": 0, "d": bytes(16), "le": 0}
    assert call(sock, {"t": "epoch", "id": 2, "e": 3})["t"] == "epoch_ok"  # same epoch: fine
    err = call(sock, {"t": "epoch", "id": 3, "e": 2})
    assert (err["t"], err["id"], err["code"]) == ("err", 3, "stale_epoch")
    err = call(sock, write(1, "create_user", {"username": "old", "password_hash": "x"}, epoch=2))
    assert (err["code"], err["s"]) == ("stale_epoch", 1)
    assert call(sock, write(1, "create_user", {"username": "new", "password_hash": "x"}, epoch=3))["s"] == 1
    proc.kill()  # no clean shutdown: epoch_ok promised it was on disk already
    again = launch(data_dir=tmp_path / "r1")
    sock = connect(again)
    assert P.connect(again.address, b"", "coordinator")[1]["e"] == 3
    assert call(sock, write(2, "create_post", {"actor": "new", "text": "x"}, epoch=2))["code"] == "stale_epoch"


def test_an_epoch_is_taken_by_one_claim_only_across_restarts(launch, tmp_path: Path) -> None:
    """Two coordinators that picked the same epoch (each with its own state dir, started at
    once) must not both fence a majority: the replica takes the epoch for the first claim."""
    proc = launch(data_dir=tmp_path / "r1")
    sock = connect(proc)
    assert call(sock, {"t": "epoch", "id": 1, "e": 4, "c": b"A" * 8})["t"] == "epoch_ok"
    assert call(sock, {"t": "epoch", "id": 2, "e": 4, "c": b"A" * 8})["t"] == "epoch_ok"
    err = call(sock, {"t": "epoch", "id": 3, "e": 4, "c": b"B" * 8})
    assert (err["t"], err["code"]) == ("err", "stale_epoch") and "another" in err["msg"], err
    assert call(sock, {"t": "epoch", "id": 4, "e": 4})["t"] == "epoch_ok"  # no claim: as before
    proc.kill()
    again = launch(data_dir=tmp_path / "r1")
    sock = connect(again)
    assert call(sock, {"t": "epoch", "id": 5, "e": 4, "c": b"B" * 8})["code"] == "stale_epoch"
    assert call(sock, {"t": "epoch", "id": 6, "e": 5, "c": b"B" * 8})["t"] == "epoch_ok"
    bad = call(sock, {"t": "epoch", "id": 7, "e": 6, "c": "not bytes"})
    assert (bad["t"], bad["code"]) == ("err", "malformed"), bad


def test_snapshot_install_then_log_suffix(launch, tmp_path: Path) -> None:
    a = launch(id="a", data_dir=tmp_path / "a")
    b = launch(id="b", data_dir=tmp_path / "b")
    sa, sb = connect(a), connect(b)
    seed_many(sa, 1, 40)
    info, data = read_snapshot(sa)
    assert (info["s"], info["e"], info["le"]) == (40, 1, 1) and info["size"] > 3 * CHUNK
    # More writes on A after the snapshot: the suffix B needs from the log.
    acks = seed_many(sa, 41, 30, user="bob")
    done = install(sb, info, data)
    assert done == {"t": "inst_done", "id": 12, "s": 40, "d": info["d"]}
    hba = call(sb, {"t": "hb", "id": 1})
    assert (hba["s"], hba["d"], hba["e"], hba["le"]) == (40, info["d"], 1, 1)
    # log_read pages through A's log from 41; the records go to B as ordinary writes.
    sent, frm = 0, 41
    while True:
        page = call(sa, {"t": "log_read", "id": 5, "from": frm, "max": 600})
        assert page["t"] == "log_data" and page["last"] == 70
        if not page["recs"]:
            break
        sb.sendall(b"".join(P.frame_bytes(r) for r in page["recs"]))
        replies = [P.recv_frame(sb) for _ in page["recs"]]
        assert [r["s"] for r in replies] == list(range(frm, frm + len(replies)))
        frm += len(replies)
        sent += len(replies)
    assert sent == 30 and replies[-1]["d"] == acks[-1]["d"]
    # The rid table came along: a retry of an old request id is answered, not applied again.
    retry = call(sb, write(71, "create_post", {"actor": "alice", "text": "dup"}, rid="alice-5"))
    assert P.ack_reply(retry)["post"]["id"] == 5
    state = call(sb, {"t": "r", "id": 7, "q": "state"})
    assert state["r"]["posts"] == 39 + 29
    # Restart B: it recovers the installed snapshot and the writes after it.
    b.kill()
    b2 = launch(id="b", data_dir=tmp_path / "b")
    ready = P.connect(b2.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"], ready["e"]) == (71, retry["d"], 1)
    assert not (tmp_path / "b" / "install.tmp").exists()


def test_install_corrupt_chunk_keeps_old_state(launch) -> None:
    a, b = launch(id="a"), launch(id="b")
    sa, sb = connect(a), connect(b)
    seed_many(sa, 1, 30)
    before = seed_many(sb, 1, 3, user="zed")[-1]
    info, data = read_snapshot(sa)
    err = install(sb, info, data, corrupt_at=CHUNK + 5)
    assert (err["t"], err["id"], err["code"]) == ("err", 11, "bad_chunk")
    assert call(sb, {"t": "inst_end", "id": 12})["code"] == "bad_snapshot"  # install was aborted
    hba = call(sb, {"t": "hb", "id": 1})
    assert (hba["s"], hba["d"]) == (3, before["d"])
    # A snapshot whose chunks hash right but whose whole does not: refused at the end.
    bad = bytearray(data)
    bad[-1] ^= 1
    err = install(sb, info, bytes(bad))
    assert (err["t"], err["code"]) == ("err", "bad_snapshot")
    # Right bytes, wrong claimed digest: refused too.
    err = install(sb, {**info, "d": bytes(16)}, data)
    assert (err["t"], err["code"]) == ("err", "bad_snapshot")
    assert call(sb, {"t": "hb", "id": 2})["d"] == before["d"]
    still = call(sb, write(4, "create_post", {"actor": "zed", "text": "still here"}))
    assert P.ack_reply(still)["ok"]


def test_writes_and_reads_refused_while_installing(launch) -> None:
    a, b = launch(id="a"), launch(id="b")
    sa, sb = connect(a), connect(b)
    seed_many(sa, 1, 5)
    info, data = read_snapshot(sa)
    call(sb, {"t": "inst_begin", "id": 1, "s": 5, "e": info["e"], "d": info["d"],
              "size": len(data), "h": info["h"]})
    other = connect(b)
    err = call(other, write(1, "create_user", {"username": "x_y", "password_hash": "p"}))
    assert (err["code"], err["s"]) == ("installing", 1)
    err = call(other, {"t": "r", "id": 4, "q": "state"})
    assert (err["code"], err["id"]) == ("installing", 4)
    assert call(other, {"t": "hb", "id": 5})["t"] == "hba"
    sb.close()  # the installing connection goes away: the install is dropped
    deadline = 50
    while deadline and call(other, {"t": "r", "id": 6, "q": "state"})["t"] == "err":
        deadline -= 1
    assert call(other, write(1, "create_user", {"username": "x_y", "password_hash": "p"}))["s"] == 1


def test_log_read_compacted_and_bounds(launch, tmp_path: Path) -> None:
    a = launch(data_dir=tmp_path / "a", extra_args=["--snapshot-every", "7", "--snapshot-log-ratio", "0"])
    sa = connect(a)
    assert seed_many(sa, 1, 1)[0]["t"] == "a"
    for s in range(2, 20):
        assert call(sa, write(s, "create_post", {"actor": "alice", "text": "t"}))["t"] == "a"
        wait_snapshots_idle(a)  # one write per loop turn, each background snapshot finished
    # Id r1's trigger offset with --snapshot-every 7 puts its snapshots at 3, 10 and 17.
    assert snapshots_done(a) == [3, 10, 17]
    # Compacted to 10, the snapshot before 17, once the coordinator says 19 is committed
    # (tests/core/test_compaction.py).
    assert call(sa, {"t": "hb", "id": 9, "c": 19, "e": 1})["t"] == "hba"
    for frm in (1, 3, 10):
        err = call(sa, {"t": "log_read", "id": frm, "from": frm, "max": 1000})
        assert (err["t"], err["id"], err["code"]) == ("err", frm, "compacted")
    page = call(sa, {"t": "log_read", "id": 2, "from": 11, "max": 100000})
    assert [P.decode_body(r)["s"] for r in page["recs"]] == list(range(11, 20))
    one = call(sa, {"t": "log_read", "id": 3, "from": 18, "max": 1})  # at least one record
    assert len(one["recs"]) == 1
    assert call(sa, {"t": "log_read", "id": 4, "from": 20, "max": 100})["recs"] == []
    # Too many open snapshots on one connection.
    assert call(sa, {"t": "snap_open", "id": 1})["t"] == "snap_info"
    assert call(sa, {"t": "snap_open", "id": 2})["t"] == "snap_info"
    assert call(sa, {"t": "snap_open", "id": 3})["code"] == "busy"
    assert call(sa, {"t": "snap_read", "id": 4, "x": 99, "off": 0, "len": 10})["code"] == "unknown_transfer"


def test_an_abandoned_install_is_dropped_on_inst_abort(launch, tmp_path: Path) -> None:
    """A transfer whose source was lost mid-way: the coordinator drops the target's unfinished
    install, which otherwise refused reads and log_read (`installing`) until the connection
    closed, and the target keeps its own state."""
    source = launch(data_dir=tmp_path / "a")
    sa = connect(source)
    seed_many(sa, 1, 30)
    info, data = read_snapshot(sa)
    target = launch(id="r2", data_dir=tmp_path / "b")
    sb = connect(target)
    own = seed_many(sb, 1, 3, user="bob")[-1]["d"]
    begin = {"t": "inst_begin", "id": 10, "s": info["s"], "e": info["e"], "d": info["d"],
             "size": len(data), "h": info["h"]}
    assert call(sb, begin)["t"] == "inst_ok"
    chunk = data[:CHUNK]
    assert call(sb, {"t": "inst_data", "id": 11, "off": 0, "data": chunk, "h": xxh3_64(chunk)})["t"] == "inst_ok"
    assert call(sb, {"t": "log_read", "id": 12, "from": 1, "max": 100})["code"] == "installing"
    send(sb, {"t": "inst_abort"})
    page = call(sb, {"t": "log_read", "id": 13, "from": 1, "max": 100000})
    assert page["t"] == "log_data" and len(page["recs"]) == 3
    assert call(sb, {"t": "hb", "id": 14})["d"] == own
    assert not (tmp_path / "b" / "install.tmp").exists()
    assert target.logged("event=install_aborted reason=\"abandoned by the coordinator\"")
