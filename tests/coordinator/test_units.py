"""Unit tests: sequencer, history, status formatting, client error mapping."""

from __future__ import annotations

import pytest

from webfront.client import Conflict, Forbidden, Invalid, NotFound, _raise_for_reply
from webfront.coordinator.history import History
from webfront.coordinator.sequencer import Sequencer
from webfront.coordinator.status import format_table
from webfront.protocol import (
    FrameDecoder,
    ProtocolError,
    ack_reply,
    ack_reply_bytes,
    encode_body,
    encode_frame,
    pack_length,
    packb,
    write_reply,
)


def test_sequencer_is_gap_free_and_timestamps_never_go_back():
    clock = iter([5_000_000, 6_000_000, 1_000_000, 1_000_000, 9_000_000])
    s = Sequencer(clock=lambda: next(clock))
    results = [s.next() for _ in range(5)]
    assert [seq for seq, _ in results] == [1, 2, 3, 4, 5]
    stamps = [ts for _, ts in results]
    assert stamps == [5000, 6000, 6001, 6002, 9000]


def test_sequencer_restart_continues_after_replicas():
    s = Sequencer()
    s.restart(epoch=4, last_seq=41)
    assert s.next()[0] == 42 and s.epoch == 4


def test_request_ids_remember_first_result_bounded():
    s = Sequencer(max_results=2)
    s.begin("a", object())
    assert s.inflight("a") is not None
    s.finish("a", 1, {"ok": True})
    assert s.inflight("a") is None and s.result_of("a") == (1, {"ok": True})
    s.finish("b", 2, {})
    s.finish("c", 3, {})
    assert s.result_of("a") is None and s.result_of("c") == (3, {})
    s.finish("", 4, {})
    assert s.result_of("") is None


def test_history_replays_gap_and_evicts_oldest():
    h = History(max_writes=3, max_bytes=1 << 20)
    for seq in range(1, 6):
        h.append(seq, b"f%d" % seq)
    assert h.first_seq == 3
    assert h.covers_after(2) and h.frames_after(2) == [b"f3", b"f4", b"f5"]
    assert not h.covers_after(1)
    assert h.note_digest(4, b"d") is None and h.note_digest(4, b"x") == b"d"


def test_status_table_lists_replicas():
    status = {"epoch": 2, "committed_seq": 7, "policy": "majority", "writable": True,
              "alarms": ["x diverged"], "replicas": [
                  {"id": "1", "address": "127.0.0.1:1", "pid": 9, "state": "up",
                   "applied_seq": 7, "epoch": 2, "lag": 0, "last_heartbeat_ms": 12.0,
                   "digest": "00" * 16, "note": ""}]}
    table = format_table(status)
    assert "127.0.0.1:1" in table and "up" in table and "ALARM: x diverged" in table


@pytest.mark.parametrize("code,cls", [("invalid", Invalid), ("conflict", Conflict),
                                      ("not_found", NotFound), ("forbidden", Forbidden)])
def test_reply_codes_map_to_errors(code, cls):
    with pytest.raises(cls) as info:
        _raise_for_reply({"ok": False, "code": code, "msg": "m"})
    assert info.value.code == code and info.value.message == "m"


def test_frame_decoder_any_split_and_limits():
    frames = [{"t": "a", "s": n, "d": bytes(16), "rb": encode_body({"ok": True, "n": n})}
              for n in range(5)]
    stream = b"".join(encode_frame(f) for f in frames)
    for step in (1, 3, 7, len(stream) - 1, len(stream)):
        d = FrameDecoder()
        got = []
        for i in range(0, len(stream), step):
            got += d.feed(stream[i:i + step])
        assert got == frames, step
    with pytest.raises(ProtocolError):
        FrameDecoder(max_frame_bytes=10).feed(encode_frame(frames[0]))
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(pack_length(1) + b"\x01")  # not a map
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(pack_length(1) + b"\xc1")  # undecodable


def test_reply_bytes_in_acks_and_write_replies():
    reply = {"ok": True, "post": {"id": 7, "text": "hi"}}
    rb = encode_body(reply)
    assert packb({"t": "cwr", "id": 1, "s": 7, "rb": rb}) == \
        encode_body({"t": "cwr", "id": 1, "s": 7, "rb": rb})
    assert ack_reply({"t": "a", "rb": rb}) == reply and ack_reply_bytes({"t": "a", "rb": rb}) == rb
    assert ack_reply_bytes({"t": "a", "r": reply}) == rb  # a replica_server from before `rb`
    assert write_reply({"t": "cwr", "rb": rb}) == reply
    assert write_reply({"t": "cwr", "r": reply}) == reply  # an older coordinator
    with pytest.raises(ProtocolError):
        write_reply({"t": "cwr", "rb": b"\xc1"})
