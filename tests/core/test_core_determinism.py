"""Determinism, snapshots, bad input and the log conformance test, through the module."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from webfront.core import (
    FileLog,
    FrameError,
    FrameReader,
    MemoryLog,
    Replica,
    StateMachine,
    StorageError,
    decode_body,
    pack,
    unpack,
    write_body,
)


def workload(seed: int, n: int) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    names = [f"user{i}" for i in range(12)]
    ops: list[tuple[str, dict]] = [
        ("create_user", {"username": u, "password_hash": b"h"}) for u in names
    ]
    for _ in range(n):
        kind = rng.random()
        a, b = rng.choice(names), rng.choice(names)
        if kind < 0.5:
            ops.append(("create_post", {"actor": a, "text": f"hello {rng.random()}"}))
        elif kind < 0.7:
            ops.append(("follow", {"actor": a, "target": b}))
        elif kind < 0.8:
            ops.append(("unfollow", {"actor": a, "target": b}))
        elif kind < 0.9:
            ops.append(("delete_post", {"actor": a, "id": rng.randrange(1, len(ops) + 1)}))
        elif kind < 0.95:
            ops.append(("delete_user", {"actor": a}))
        else:
            ops.append(("create_user", {"username": a, "password_hash": "p"}))
    return ops


def bodies(ops: list[tuple[str, dict]], start: int = 1) -> list[bytes]:
    return [
        write_body(start + i, op, args, ts=10_000 + i, rid=f"rid-{start + i}")
        for i, (op, args) in enumerate(ops)
    ]


def test_two_replicas_same_replies_and_digests() -> None:
    a, b = StateMachine(), StateMachine()
    for body in bodies(workload(1, 2000)):
        assert a.apply(body) == b.apply(body)
        assert a.digest == b.digest
    assert a.applied == 2012 and a.digest != bytes(16)
    assert a.snapshot() == b.snapshot()


def test_digest_depends_on_order_and_content() -> None:
    ops = bodies(workload(2, 50))
    a, b = StateMachine(), StateMachine()
    for body in ops:
        a.apply(body)
    changed = ops[:-1] + [write_body(len(ops), "create_post", {"actor": "user1", "text": "x"})]
    for body in changed:
        b.apply(body)
    assert a.applied == b.applied and a.digest != b.digest


def test_snapshot_restore_continue() -> None:
    ops = bodies(workload(3, 3000))
    a = StateMachine()
    for body in ops[:1500]:
        a.apply(body)
    b = StateMachine()
    b.restore(a.snapshot())
    assert (b.applied, b.digest, b.snapshot()) == (a.applied, a.digest, a.snapshot())
    for body in ops[1500:]:
        assert a.apply(body) == b.apply(body)
    assert a.digest == b.digest and a.fingerprint() == b.fingerprint()


def test_restore_rejects_garbage() -> None:
    with pytest.raises(RuntimeError):
        StateMachine().restore(b"\x93\x01\x02\x03")


def test_exactly_once_by_request_id() -> None:
    r = Replica()
    r.apply("create_user", {"username": "alice", "password_hash": b"h"})
    first = r.apply("create_post", {"actor": "alice", "text": "once"}, rid="abc")
    again = r.apply("create_post", {"actor": "alice", "text": "once"}, rid="abc")
    assert first == again and r.query("state")["posts"] == 1 and r.applied == 3
    empty1 = r.apply("create_post", {"actor": "alice", "text": "x"}, rid="")
    empty2 = r.apply("create_post", {"actor": "alice", "text": "x"}, rid="")
    assert empty1["post"]["id"] != empty2["post"]["id"]  # the empty rid is never remembered


def test_request_id_table_evicts_oldest() -> None:
    r = Replica()
    r.apply("create_user", {"username": "alice", "password_hash": b"h"}, rid="first")
    for i in range(100_000):
        r.apply("nope", {}, rid=f"r{i}")
    # "first" was evicted: the retry is applied again and now conflicts.
    assert r.apply("create_user", {"username": "alice", "password_hash": b"h"}, rid="first")[
        "code"
    ] == "conflict"
    assert r.apply("nope", {}, rid="r99999")["code"] == "invalid"


BAD_ARGS = {
    "create_user": [
        {}, {"username": 5, "password_hash": b"h"}, {"username": "ab", "password_hash": b"h"},
        {"username": "a" * 21, "password_hash": b"h"}, {"username": "bad name", "password_hash": b"h"},
        {"username": "okname"}, {"username": "okname", "password_hash": b""},
        {"username": "okname", "password_hash": b"x" * 257},
        {"username": "okname", "password_hash": b"h", "display_name": "d" * 51},
        {"username": "okname", "password_hash": b"h", "display_name": 7},
    ],
    "delete_user": [{}, {"actor": 1}, {"actor": None}],
    "create_post": [
        {}, {"actor": "alice"}, {"actor": "alice", "text": ""}, {"actor": "alice", "text": " \t\n"},
        {"actor": "alice", "text": "x" * 281}, {"actor": "alice", "text": b"bytes"},
        {"actor": 3, "text": "hi"},
    ],
    "delete_post": [{}, {"actor": "alice"}, {"actor": "alice", "id": "1"}, {"actor": "alice", "id": 1.5}],
    "follow": [{}, {"actor": "alice"}, {"actor": "alice", "target": 2}, {"target": "alice"}],
    "unfollow": [{}, {"actor": "alice", "target": [1]}],
    "no_such_op": [{}],
}


def _seeded() -> Replica:
    r = Replica()
    r.apply("create_user", {"username": "alice", "password_hash": b"h"})
    r.apply("create_user", {"username": "bob", "password_hash": b"h"})
    r.apply("create_post", {"actor": "alice", "text": "hello"})
    r.apply("follow", {"actor": "bob", "target": "alice"})
    return r


@pytest.mark.parametrize(("op", "args"), [(op, a) for op, many in BAD_ARGS.items() for a in many])
def test_bad_arguments_are_invalid_and_change_no_state(op: str, args: dict) -> None:
    a, b = _seeded(), _seeded()
    before = a.fingerprint()
    reply = a.apply(op, args)
    assert reply["ok"] is False and reply["code"] == "invalid", reply
    assert a.fingerprint() == before
    assert a.applied == 5  # the seq is consumed on every replica alike
    assert b.apply(op, args) == reply and a.digest == b.digest


def test_invalid_utf8_is_invalid() -> None:
    a, b = _seeded(), _seeded()
    before = a.fingerprint()
    # Hand-built msgpack: str type (0xa2) holding invalid UTF-8 bytes as the text.
    raw = pack({"t": "w", "e": 1, "s": 5, "ts": 0, "rid": "", "op": "create_post",
                "a": {"actor": "alice", "text": "XX"}}).replace(b"\xa2XX", b"\xa2\xff\xfe")
    assert unpack(a.sm.apply(raw)) == unpack(b.sm.apply(raw))
    assert unpack(a.sm.apply(raw.replace(b"\x05", b"\x06", 1)))["code"] == "invalid"
    assert a.fingerprint() == before


def test_args_not_a_map_is_invalid() -> None:
    r = _seeded()
    for args in (None, 5, [1, 2], "x"):
        assert r.apply("create_post", args)["code"] == "invalid"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\xc1", "undecodable"),
        (pack([1, 2]), "not a map"),
        (pack({"x": 1}), "'t'"),
        (pack({"t": "w", "a": {"s": "x" * 5000}}), "a string is longer than 4096 bytes"),
        (pack({"t": "w", "a": {"b": {"c": {"d": {}}}}}), "nesting"),
        (pack({"t": "w", "a": list(range(10_001))}), "a list has more than 10000 items"),
        (pack({"t": "w", "a": {str(i): i for i in range(33)}}), "a map has more than 32 entries"),
        (pack({"t": "w"}) + b"\x00", "trailing"),
    ],
)
def test_codec_limits(body: bytes, needle: str) -> None:
    with pytest.raises(FrameError, match="malformed") as info:
        decode_body(body)
    assert needle in str(info.value)


def test_write_missing_frame_fields_is_malformed_and_changes_nothing() -> None:
    r = _seeded()
    digest = r.digest
    with pytest.raises(FrameError, match="malformed"):
        r.sm.apply(pack({"t": "w", "e": 1, "s": 5, "rid": "", "op": "create_post", "a": {}}))
    assert r.digest == digest and r.applied == 4


def test_frame_reader_splits_and_limits() -> None:
    reader = FrameReader(100)
    frame = b"\x00\x00\x00\x02ab"
    assert reader.feed(frame[:3]) == []
    assert reader.feed(frame[3:] + frame) == [b"ab", b"ab"]
    reader.feed(b"\x00\x00")
    assert reader.pending == 2
    with pytest.raises(FrameError, match="too_large"):
        FrameReader(100).feed(b"\x00\x00\x01\x00")


@pytest.fixture(params=["memory", "file"])
def log_factory(request, tmp_path: Path):
    if request.param == "memory":
        return lambda: MemoryLog()
    return lambda: FileLog(str(tmp_path), "batch")


def test_log_conformance(log_factory) -> None:
    """The same contract for every Log implementation."""
    log = log_factory()
    assert log.last_seq == 0 and log.replay() == []
    for seq in range(1, 11):
        log.append(seq, f"body {seq}".encode())
    log.sync()
    assert log.last_seq == 10
    assert log.replay(7) == [(8, b"body 8"), (9, b"body 9"), (10, b"body 10")]
    with pytest.raises(RuntimeError):
        log.append(10, b"again")
    log.truncate_prefix(5)
    assert [s for s, _ in log.replay()][-5:] == [6, 7, 8, 9, 10]
    log.append(11, b"body 11")
    assert log.replay(10) == [(11, b"body 11")]


def test_file_log_reopens_and_checks(tmp_path: Path) -> None:
    log = FileLog(str(tmp_path), "always")
    for seq in range(1, 4):
        log.append(seq, b"x" * 10)
    del log
    again = FileLog(str(tmp_path), "never")
    assert again.last_seq == 3 and len(again.replay()) == 3
    del again
    (segment,) = (tmp_path / "log").glob("*.log")
    raw = bytearray(segment.read_bytes())
    raw[25] ^= 1
    segment.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match=r"offset 0"):
        FileLog(str(tmp_path), "batch")
