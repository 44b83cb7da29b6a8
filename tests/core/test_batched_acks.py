"""Protocol 2 on a replica: one turn's acks leave as one `as` frame, in order with the rest."""

from __future__ import annotations

import socket

from tests.core.test_replica_process import send, write
from webfront import protocol as P


def connect_v2(proc) -> socket.socket:
    sock, ready = P.connect(proc.address, b"", "coordinator",
                            versions=(P.PROTOCOL_VERSION, P.BATCHED_ACKS_VERSION))
    assert ready["t"] == "ready"
    return sock


def posts(first: int, last: int) -> list[dict]:
    return [write(s, "create_post", {"actor": "bob", "text": f"p{s}"}) for s in range(first, last + 1)]


def test_one_turns_acks_share_a_frame_and_keep_their_order(launch) -> None:
    proc = launch()
    v2 = connect_v2(proc)
    send(v2, write(1, "create_user", {"username": "bob", "password_hash": b"h"}), *posts(2, 6),
         {"t": "hb", "id": 1}, *posts(7, 8))
    first = P.recv_frame(v2)
    # Everything before the heartbeat was acked before it, in one frame; its reply came next.
    assert first["t"] == "as" and first["s"] == [1, 2, 3, 4, 5, 6]
    assert first["e"] == [1] * 6 and all(len(d) == 16 for d in first["d"])
    assert P.ack_reply({"rb": first["rb"][1]})["post"]["id"] == 2
    hba = P.recv_frame(v2)
    assert hba["t"] == "hba" and hba["s"] == 6 and hba["d"] == first["d"][-1]
    assert P.recv_frame(v2)["s"] == [7, 8]


def test_batched_acks_equal_the_single_ones(launch) -> None:
    """The same writes on a protocol-1 replica: the same seqs, digests and replies."""
    one, two = launch(id="one"), launch(id="two")
    v1 = P.connect(one.address, b"", "coordinator")[0]
    v2 = connect_v2(two)
    bodies = [write(1, "create_user", {"username": "bob", "password_hash": b"h"}), *posts(2, 40),
              write(5, "create_post", {"actor": "bob", "text": "p5"})]  # the last: a duplicate
    send(v1, *bodies)
    send(v2, *bodies)
    singles = [P.recv_frame(v1) for _ in bodies]
    assert all(a["t"] == "a" for a in singles)
    batched: dict[str, list] = {"s": [], "d": [], "rb": []}
    while len(batched["s"]) < len(bodies):
        frame = P.recv_frame(v2)
        assert frame["t"] == "as"
        for key in batched:
            batched[key] += frame[key]
    assert batched["s"] == [a["s"] for a in singles]
    assert batched["d"] == [a["d"] for a in singles]
    assert batched["rb"] == [a.get("rb") for a in singles]  # None for the duplicate
    assert singles[-1].get("dup") is True


def test_version_1_only_gets_single_acks_and_bad_versions_are_refused(launch) -> None:
    proc = launch()
    sock = P.connect(proc.address, b"", "coordinator")[0]
    send(sock, write(1, "create_user", {"username": "bob", "password_hash": b"h"}))
    assert P.recv_frame(sock)["t"] == "a"
    raw = socket.create_connection(proc.address, timeout=2)
    raw.sendall(P.encode_frame(P.hello_body("coordinator", bytes(16), (3, 4))))
    refused = P.recv_frame(raw)
    assert refused["t"] == "err" and refused["code"] == "version"
    raw.close()
