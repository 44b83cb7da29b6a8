"""replica_server's catch-up record frame `cu` (docs/protocol.md, "Coordinator -> replica" and
"Reading state from the source replica"): fencing is by the sender's epoch, not by the epoch the
forwarded record was born in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_replica_process import connect, send, write
from tests.core.test_state_transfer import call
from webfront import protocol as P


def cu(sender: int, record: dict | bytes) -> dict:
    rec = record if isinstance(record, bytes) else P.encode_body(record)
    return {"t": "cu", "e": sender, "rec": rec}


def records(epoch: int) -> list[dict]:
    """Writes of an older epoch, as a source's log holds them. Seq 3 is larger than the 4096
    bytes a bin field may have in other frames (its reply is `invalid`, it still counts)."""
    return [
        write(1, "create_user", {"username": "alice", "password_hash": b"h"}, epoch=epoch, rid="u"),
        write(2, "create_post", {"actor": "alice", "text": "old epoch"}, epoch=epoch, rid="p2"),
        write(3, "create_user", {"username": "bob", "password_hash": b"x" * 4000,
                                 "display_name": "b" * 1000}, epoch=epoch),
        write(4, "follow", {"actor": "alice", "target": "alice"}, epoch=epoch),
        write(5, "create_post", {"actor": "alice", "text": "five"}, epoch=epoch),
    ]


def test_cu_is_fenced_by_its_sender_not_by_the_record(launch, tmp_path: Path) -> None:
    recs = records(epoch=3)
    fresh = connect(launch(id="fresh"))
    expected = [call(fresh, r) for r in recs]  # a replica that applies them as live writes
    assert [a["s"] for a in expected] == [1, 2, 3, 4, 5] and P.ack_reply(expected[2])["code"] == "invalid"

    proc = launch(id="r", data_dir=tmp_path / "r")
    sock = connect(proc)
    assert call(sock, {"t": "epoch", "id": 1, "e": 5})["t"] == "epoch_ok"

    # A record of epoch 3 from a sender of epoch 5: applied, acked exactly as a live write.
    assert call(sock, cu(5, recs[0])) == expected[0]
    # From a sender of epoch 4: refused, connection kept open.
    err = call(sock, cu(4, recs[1]))
    assert (err["t"], err["code"], err["s"]) == ("err", "stale_epoch", 2)
    # A live write keeps its own check: e=3 < 5.
    err = call(sock, recs[1])
    assert (err["t"], err["code"], err["s"]) == ("err", "stale_epoch", 2)
    # Ordering as for writes: 4 and 5 wait in the reorder buffer for 2 and 3.
    send(sock, cu(5, recs[3]), cu(5, recs[4]), cu(5, recs[1]), cu(5, recs[2]))
    acks = [P.recv_frame(sock) for _ in range(4)]
    assert acks == expected[1:], acks
    dup = call(sock, cu(5, recs[0]))
    assert (dup["s"], dup["dup"], dup["d"]) == (1, True, expected[-1]["d"])
    # The epoch stays 5; the last applied write is of epoch 3.
    hb = call(sock, {"t": "hb", "id": 9})
    assert (hb["s"], hb["e"], hb["le"], hb["d"]) == (5, 5, 3, expected[-1]["d"])

    # Logged as the record's bytes: log_read returns them exactly, and a restart replays them.
    logged = call(sock, {"t": "log_read", "id": 10, "from": 1, "max": 1 << 20})
    assert logged["recs"] == [P.encode_body(r) for r in recs]
    proc.kill()
    again = launch(id="r", data_dir=tmp_path / "r")
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["e"], ready["d"]) == (5, 5, expected[-1]["d"])


def test_buffered_cu_is_refused_when_its_sender_is_fenced_meanwhile(launch) -> None:
    recs = records(epoch=3)
    sock = connect(launch())
    assert call(sock, {"t": "epoch", "id": 1, "e": 5})["t"] == "epoch_ok"
    send(sock, cu(5, recs[1]))  # seq 2 waits for seq 1
    assert call(sock, {"t": "epoch", "id": 2, "e": 6})["t"] == "epoch_ok"
    send(sock, cu(6, recs[0]))
    ack, err = P.recv_frame(sock), P.recv_frame(sock)
    assert (ack["t"], ack["s"]) == ("a", 1)
    assert (err["t"], err["code"], err["s"]) == ("err", "stale_epoch", 2)
    assert call(sock, {"t": "hb", "id": 3})["s"] == 1


def test_cu_with_a_record_that_is_not_a_write_is_malformed(launch) -> None:
    proc = launch()
    sock = connect(proc)
    err = call(sock, cu(1, {"t": "r", "id": 1, "q": "state"}))
    assert (err["t"], err["code"]) == ("err", "malformed")
    with pytest.raises(ConnectionError):  # closed
        P.recv_frame(sock)
    sock = connect(proc)
    err = call(sock, cu(1, b"\xc1"))  # not MessagePack
    assert (err["t"], err["code"]) == ("err", "malformed")
    assert call(connect(proc), {"t": "hb", "id": 1})["s"] == 0  # nothing changed
