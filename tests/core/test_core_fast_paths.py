"""The replica's fast paths must change speed only, never behaviour.

- Body::decode tries a small reader before msgpack-cxx's generic unpacker (codec/Body.cc); on
  every input both must build the same tree or raise the same FrameError.
- FileLog::read seeks through an in-memory index of (seq, offset); it must serve exactly what
  MemoryLog serves, across segments, after a reopen and after a torn tail was cut.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webfront.core._core import FileLog, FrameError, MemoryLog, decoded_repack


def outcome(body: bytes, generic: bool) -> tuple[str, bytes | str]:
    try:
        return ("ok", decoded_repack(body, generic))
    except FrameError as exc:
        return ("err", str(exc))


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=40),
    st.binary(max_size=40), st.floats(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=30,
)
bodies = st.dictionaries(st.text(max_size=8), values, max_size=10).map(
    lambda d: msgpack.packb({"t": "w", **d}, use_bin_type=True))


@settings(max_examples=400, deadline=None)
@given(bodies, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_fast_reader_agrees_with_msgpack_cxx(body: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(body)
    for pos, byte in flips:  # damage some: both readers must still agree
        if data:
            data[pos % len(data)] = byte
    assert outcome(bytes(data), False) == outcome(bytes(data), True)


@pytest.mark.parametrize("body", [
    b"", b"\x80", b"\x81\xa1t\xa1w\x00",  # empty, no t, trailing byte
    msgpack.packb({"t": "w", "x": "a" * 5000}),  # string over the limit
    msgpack.packb({"t": "w", "x": [[[[1]]]]}),  # too deep
    msgpack.packb({"t": "w", "x": list(range(10_001))}),  # list too long
    msgpack.packb({"t": "inst_data", "data": b"x" * 100_000}),  # the chunk exception
    msgpack.packb({"t": "w", "data": b"x" * 5000}),  # ... only for inst_data
    msgpack.packb({"t": "cu", "e": 1, "rec": b"x" * 5000}),  # and the rec of cu
    msgpack.packb({"t": "w", "rec": b"x" * 5000}),  # ... only for cu
    msgpack.packb({1: 2, "t": "w"}),  # non-string key
    msgpack.packb({"t": "w", "x": msgpack.ExtType(1, b"ab")}),  # ext
])
def test_fast_reader_edge_cases(body: bytes) -> None:
    assert outcome(body, False) == outcome(body, True)


def fill(log, n: int, cut_every: int = 0) -> None:
    for seq in range(1, n + 1):
        log.append(seq, b"body %d " % seq + b"x" * (seq % 37))
        if cut_every and seq % cut_every == 0:
            log.truncate_prefix(seq - cut_every // 2)  # starts a new segment, keeps a tail
    log.sync()


@pytest.mark.parametrize("max_bytes", [1, 50, 700, 1 << 20])
def test_file_log_read_matches_memory_log(tmp_path: Path, max_bytes: int) -> None:
    file_log, mem_log = FileLog(str(tmp_path), "never"), MemoryLog()
    fill(file_log, 500, cut_every=120)
    fill(mem_log, 500, cut_every=120)
    # FileLog drops whole segments only, so it may still hold seqs a MemoryLog dropped: compare
    # from the last truncation point (420) on, and before the oldest segment (361).
    for frm in [0, 1, 360, 421, 450, 479, 480, 481, 499, 500, 501, 600]:
        assert file_log.read(frm, max_bytes) == mem_log.read(frm, max_bytes), frm
    assert file_log.read(481, 1 << 20, 5) == mem_log.read(481, 1 << 20, 5)
    # Appended but not yet synced records are served too, and a reopened log has the same index.
    file_log.append(501, b"tail")
    assert file_log.read(500, 1 << 20)[-1] == (501, b"tail")
    del file_log
    again = FileLog(str(tmp_path), "never")
    assert again.read(481, 1 << 20) == mem_log.read(481, 1 << 20) + [(501, b"tail")]


def test_file_log_index_after_torn_tail(tmp_path: Path) -> None:
    log = FileLog(str(tmp_path), "never")
    fill(log, 50)
    del log
    segment = max((tmp_path / "log").iterdir())
    segment.write_bytes(segment.read_bytes()[:-7])  # cut the last record short
    again = FileLog(str(tmp_path), "never")
    assert again.last_seq == 49
    again.append(50, b"new 50")
    got = again.read(45, 1 << 20)
    assert [s for s, _ in got] == [45, 46, 47, 48, 49, 50] and got[-1][1] == b"new 50"
    assert [s for s, _ in again.replay(47)] == [48, 49, 50]
