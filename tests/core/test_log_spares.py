"""Log segments made from zero-filled spares (storage/SpareSegment.h): what a crash leaves and
how recovery reads it. Real replica_server processes, killed with SIGKILL (no clean close, so
the newest segment keeps its unused zeros)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from webfront import protocol as P
from webfront.replica_process import start_replica

from .test_replica_process import connect, seed

SPARE_BYTES = 4 << 20


def records_end(raw: bytes) -> int:
    """Where the records of a segment end (the first all-zero header)."""
    off = 0
    while off + 20 <= len(raw) and raw[off:off + 20] != bytes(20):
        off += 20 + int.from_bytes(raw[off:off + 4], "little")
    return off


def crashed_replica(launch, data: Path, posts: int = 5) -> tuple[list[dict], Path]:
    proc = launch(data_dir=data)
    acks = seed(connect(proc), posts)
    proc.kill()
    (segment,) = (data / "log").glob("*.log")
    return acks, segment


def test_a_fresh_log_writes_into_a_spare_and_a_clean_stop_drops_its_zeros(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data)
    seed(connect(proc), 5)
    (segment,) = (data / "log").glob("*.log")
    assert segment.stat().st_size == SPARE_BYTES  # the records went into the zeros
    spare = data / "log" / "spare.zero"  # the next one, made in the background
    deadline = time.monotonic() + 10
    while not (spare.exists() and spare.stat().st_size == SPARE_BYTES):
        assert time.monotonic() < deadline, "no spare made after the first was taken"
        time.sleep(0.01)
    proc.stop()
    assert segment.stat().st_size == records_end(segment.read_bytes()) > 0


def test_crash_leaves_zeros_that_recovery_reads_as_the_end(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    acks, segment = crashed_replica(launch, data)
    assert segment.stat().st_size == SPARE_BYTES
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (acks[-1]["s"], acks[-1]["d"])
    assert not again.logged("log_torn_tail")  # zeros are expected, not a torn write
    # Writing goes on after the recovered records.
    sock = connect(again)
    sock.sendall(P.encode_frame({"t": "w", "e": 1, "s": 7, "ts": 2000, "rid": "",
                                 "op": "create_post", "a": {"actor": "alice", "text": "after"}}))
    assert P.recv_frame(sock)["s"] == 7


def test_torn_append_into_zeros_is_cut_with_a_warning(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    acks, segment = crashed_replica(launch, data)
    raw = bytearray(segment.read_bytes())
    end = records_end(bytes(raw))
    raw[end:end + 40] = b"\x30\x00\x00\x00" + b"\xab" * 36  # half a record, then zeros
    segment.write_bytes(bytes(raw))
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (acks[-1]["s"], acks[-1]["d"])
    assert again.logged(f"event=log_torn_tail file={segment} offset={end}")


def test_damage_before_later_records_refuses_start(replica_binary: str, launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    _, segment = crashed_replica(launch, data)
    raw = bytearray(segment.read_bytes())
    raw[30] ^= 0xFF  # inside the first record's body; good records and zeros follow
    segment.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError) as info:
        start_replica(replica_binary, data_dir=data)
    assert str(segment) in str(info.value) and "offset 0" in str(info.value)


def test_a_full_spare_rolls_to_the_next_segment(launch, tmp_path: Path) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data, extra_args=["--snapshot-every", "0"])
    sock = connect(proc)
    acks = seed(sock, 0)
    text = "x" * 270
    batch, seq = 500, 2
    while len(list((data / "log").glob("*.log"))) < 2:  # ~300 bytes a record: ~14,000 records
        assert seq < 40_000, "no second segment"
        sock.sendall(b"".join(P.encode_frame({"t": "w", "e": 1, "s": s, "ts": 1000 + s, "rid": "",
                                              "op": "create_post", "a": {"actor": "alice", "text": text}})
                              for s in range(seq, seq + batch)))
        for _ in range(batch):
            acks.append(P.recv_frame(sock))
        seq += batch
    first, second = sorted((data / "log").glob("*.log"))
    assert first.stat().st_size == records_end(first.read_bytes()) <= SPARE_BYTES  # closed: no zeros
    assert second.stat().st_size == SPARE_BYTES
    proc.kill()
    again = launch(data_dir=data)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (acks[-1]["s"], acks[-1]["d"])
