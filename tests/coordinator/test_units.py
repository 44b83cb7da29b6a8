"""Unit tests: sequencer, history, status formatting, client error mapping."""

from __future__ import annotations

import pytest

from webfront.client import Conflict, Forbidden, Invalid, NotFound, _raise_for_reply
from webfront.coordinator.history import History
from webfront.coordinator.sequencer import Sequencer
from webfront.coordinator.status import format_table


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
