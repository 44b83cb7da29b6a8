"""A request whose arguments break a replica's frame limits never reaches a replica.

Sequenced, such a write would be refused by every replica as a malformed frame, closing their
connections, and resent on every reconnect: one request could stall the cluster for good. A read
would close the connection of each replica it is tried on. The coordinator's C++ intake
(cpp_replica/coordinator/ClientFrame.h) checks both against the replicas' own limits and answers
`invalid`.
"""

from __future__ import annotations

import msgpack
import pytest

from webfront.client import Invalid
from webfront.core._core import ClientIntake, FrameError, write_frame
from webfront.protocol import encode_frame, pack_length

pytestmark = pytest.mark.timeout(60)

BREAKING = [
    {"actor": "x" * 5000},
    {"actor": "ann", "blob": b"\0" * 5000},
    {f"k{i}": i for i in range(33)},
    {"deep": {"a": {"b": {"c": 1}}}},
    {"many": list(range(10_001))},
    {"é" * 2100: 1},
]


@pytest.mark.parametrize("args", BREAKING)
def test_limit_breaking_writes_are_refused_and_the_cluster_keeps_going(cluster, args):
    with cluster.client() as client:
        before = client.status()["last_seq"]
        with pytest.raises(Invalid):
            client.write("create_user", {"username": "limits", "password_hash": "h", **args})
        assert client.status()["last_seq"] == before  # no seq was spent on it
        result = client.write("create_user", {"username": "after", "password_hash": "h"})
        assert result.reply["ok"] and result.seq == before + 1
        assert all(r["state"] == "up" for r in client.status()["replicas"])


def test_limit_breaking_reads_are_refused_without_touching_a_replica(cluster):
    with cluster.client() as client:
        client.write("create_user", {"username": "ann", "password_hash": "h"})
        changes = client.status()["events"].get("replica_state", 0)
        for args in BREAKING:
            with pytest.raises(Invalid, match="frame limits"):
                client.read("user", {"username": "ann", **args})
        assert client.read("user", {"username": "ann"}).reply["ok"]
        status = client.status()
        assert all(r["state"] == "up" for r in status["replicas"])
        assert status["events"].get("replica_state", 0) == changes  # no replica went down


def _cw(args: dict, **fields) -> bytes:
    return encode_frame({"t": "cw", "id": 7, "rid": "r1", "op": "create_post", "a": args,
                         **fields})


def test_intake_accepts_arguments_at_the_limits_and_makes_the_same_write_frame():
    args = {"actor": "a" * 4096, "list": [{"x": 1}] * 3, "n": -(1 << 63), "u": (1 << 64) - 1,
            "b": b"\0" * 4096, "f": 1.5, "none": None, "t": True, **{f"k{i}": i for i in range(24)}}
    assert len(args) == 32
    [(cid, rid, tail)] = ClientIntake(1 << 20).feed(_cw(args))
    assert (cid, rid) == (7, "r1")
    frame = write_frame(3, 12345, 1_700_000_000_000_000, tail)
    body = {"t": "w", "e": 3, "s": 12345, "ts": 1_700_000_000_000_000, "rid": "r1",
            "op": "create_post", "a": args}
    # Byte for byte what the Python coordinator encoded before the intake moved to C++.
    assert frame == encode_frame(body)


@pytest.mark.parametrize("args", BREAKING[:-1] + [{"list": [{"x": [1]}]}])
def test_intake_answers_invalid_one_past_a_limit(args):
    [(cid, problem)] = ClientIntake(1 << 20).feed(_cw(args))
    assert cid == 7 and "frame limits" in problem


def test_intake_splits_frames_across_reads_and_passes_other_frames_through():
    intake = ClientIntake(1 << 20)
    stream = _cw({"actor": "ann"}) + encode_frame({"t": "st", "id": 1}) + _cw({}, id="s", rid="")
    got = []
    for i in range(0, len(stream), 5):  # any chunking gives the same frames
        got += intake.feed(stream[i:i + 5])
    assert [type(x) for x in got] == [tuple, bytes, tuple]
    assert msgpack.unpackb(got[1]) == {"t": "st", "id": 1}
    assert got[2][:2] == ("s", "")
    assert msgpack.unpackb(write_frame(1, 1, 0, got[2][2])[4:])["a"] == {}


@pytest.mark.parametrize("frame, why", [
    (_cw({}, id=1.5), "request id"),
    (_cw({}, id=[1]), "request id"),
    (encode_frame({"t": "cw", "rid": "", "op": "x"}), "'id'"),
    (_cw({}, op=3), "op must be a string"),
    (_cw([1]), "a must be a map"),
    (_cw({}, rid="r" * 65), "rid must be a string"),
    (_cw({}, rid=5), "rid must be a string"),
    (_cw({"x": "y" * 5000}, rid=5), "rid must be a string"),  # bad fields before the limits
    (pack_length(5) + b"\xa3cw\x01\x02", "trailing bytes"),
    (pack_length(2) + b"\x91\x01", "not a map"),
    (pack_length((1 << 20) + 1) + b"\x80", "exceeds limit"),
])
def test_intake_refuses_malformed_frames(frame, why):
    with pytest.raises(FrameError, match=why):
        ClientIntake(1 << 20).feed(frame)


@pytest.mark.parametrize("args, why", [
    (b"\x81\xa1x\xa2\xff\xfe", "UTF-8"),  # {"x": invalid UTF-8}
    (b"\x81\x01\x02", "map key"),  # {1: 2}
    (b"\x81\xa1x\x81\x91\x01\x02", "map key"),  # {"x": {[1]: 2}}
])
def test_intake_refuses_what_python_msgpack_could_not_decode(args, why):
    # Every write in a replica's log stays decodable by the Python tools, as before the intake
    # moved to C++ (msgpack with raw=False, strict_map_key=True refused these).
    raw = b"\x85\xa1t\xa2cw\xa2id\x01\xa3rid\xa0\xa2op\xa1o\xa1a" + args
    with pytest.raises(FrameError, match=why):
        ClientIntake(1 << 20).feed(pack_length(len(raw)) + raw)
