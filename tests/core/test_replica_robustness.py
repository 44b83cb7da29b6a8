"""replica_server durability per fsync policy and hostile clients (issues 5 and 9)."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.core.test_replica_process import connect, send, wait_logged, write
from webfront import protocol as P


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
def test_acked_write_survives_kill_9(launch, tmp_path: Path, policy: str) -> None:
    data = tmp_path / "r1"
    proc = launch(data_dir=data, fsync=policy)
    sock = connect(proc)
    bodies = [write(1, "create_user", {"username": "ann", "password_hash": "x"})]
    bodies += [write(s, "create_post", {"actor": "ann", "text": f"p{s}"}) for s in range(2, 200)]
    send(sock, *bodies)
    acks = [P.recv_frame(sock) for _ in bodies]
    assert acks[-1]["s"] == 199
    proc.kill()  # SIGKILL right after the last ack: no shutdown path runs
    again = launch(data_dir=data, fsync=policy)
    ready = P.connect(again.address, b"", "coordinator")[1]
    assert (ready["s"], ready["d"]) == (199, acks[-1]["d"])


def test_idle_connection_closed_after_handshake_timeout(launch) -> None:
    proc = launch(extra_args=["--handshake-timeout-ms", "300"])
    idle = socket.create_connection(proc.address)
    start = time.monotonic()
    assert closed_within(idle, 3.0)
    assert 0.25 < time.monotonic() - start < 2.5
    wait_logged(proc, "event=handshake_timeout")
    authed = connect(proc)  # a completed handshake is not subject to the timeout
    time.sleep(0.6)
    send(authed, {"t": "hb", "id": 1})
    assert P.recv_frame(authed)["t"] == "hba"


def test_byte_at_a_time_client(launch) -> None:
    proc = launch(extra_args=["--handshake-timeout-ms", "2000"])
    sock = socket.create_connection(proc.address, timeout=3)
    hello = P.encode_frame(P.hello_body("coordinator", os.urandom(16)))
    for i in range(len(hello)):
        sock.sendall(hello[i:i + 1])
        time.sleep(0.002)
    assert P.recv_frame(sock)["t"] == "welcome"  # slow but complete: served
    # A slowloris that never finishes is cut off by the handshake timeout.
    slow = socket.create_connection(proc.address)
    slow.sendall(struct.pack(">I", 1000))  # a frame of 1000 bytes, then one byte at a time
    for _ in range(30):
        try:
            slow.sendall(b"\x81")
        except OSError:
            break
        time.sleep(0.1)
    assert closed_within(slow, 3.0)


def test_many_connections_bounded(launch) -> None:
    proc = launch(extra_args=["--max-connections", "300", "--handshake-timeout-ms", "3000"])
    base = rss_kib(proc.pid)
    socks = []
    try:
        for _ in range(500):
            s = socket.create_connection(proc.address)
            s.sendall(b"\x00\x00")  # half a length prefix, then nothing
            socks.append(s)
        time.sleep(0.3)
        wait_logged(proc, "reason=too_many_connections")
        closed = sum(closed_within(s, 0.01) for s in socks[300:])
        assert closed >= 190  # those beyond the cap are closed at once
        assert rss_kib(proc.pid) - base < 64 * 1024
    finally:
        for s in socks:
            s.close()
    # Once the flood is gone the replica serves normally.
    time.sleep(0.2)
    sock = connect(proc)
    send(sock, {"t": "hb", "id": 1})
    assert P.recv_frame(sock)["t"] == "hba"


def test_failed_handshakes_rate_limited(launch, secret_file: Path) -> None:
    proc = launch(secret_file=secret_file)
    outcomes = []
    for _ in range(30):
        sock = socket.create_connection(proc.address, timeout=2)
        try:
            send(sock, P.hello_body("coordinator", os.urandom(16)))
            assert P.recv_frame(sock)["t"] == "welcome"
            send(sock, {"t": "auth", "mac": bytes(32)})  # a wrong proof
            outcomes.append(P.recv_frame(sock)["code"])
        except (ConnectionError, OSError):
            outcomes.append("refused")  # closed at accept: this address is rate-limited
        finally:
            sock.close()
    assert outcomes[:20] == ["auth_failed"] * 20 and set(outcomes[20:]) == {"refused"}
    wait_logged(proc, "reason=auth_rate_limit")
    assert sum("code=auth_failed" in line for line in proc.log_lines) == 20


def test_bytes_before_the_handshake_are_capped(launch) -> None:
    """A peer that has not authenticated gets at most 64 KiB read from it: a frame declared
    at the 1 MiB maximum and streamed without end closes the connection, and the replica goes
    on serving the others."""
    proc = launch()
    flood = socket.create_connection(proc.address, timeout=5)
    try:
        flood.sendall(struct.pack(">I", 1 << 20))
        sent = 0
        while sent < (1 << 20) - 1:  # bounded: never completes the declared frame
            sent += flood.send(b"\x80" * min(65536, (1 << 20) - 1 - sent))
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed by the replica while we were still sending: expected
    wait_logged(proc, "bytes before the handshake completed")
    deadline = time.monotonic() + 2
    while not closed_within(flood, 0.2):  # what it sent first: the err frame
        assert time.monotonic() < deadline, "still open"
    flood.close()
    sock = connect(proc)
    send(sock, {"t": "hb", "id": 1})
    assert P.recv_frame(sock)["t"] == "hba"



PAD = "y" * 4000  # an unknown key: ignored, but its bytes are held like any others


def test_reorder_buffer_is_bounded_in_bytes(launch) -> None:
    """Writes held for a missing seq count in bytes too (about 4 KB each here): past the cap a
    write is dropped and logged, never acknowledged; the ones held apply once the gap fills."""
    cap = 100_000
    proc = launch(extra_args=["--max-buffered-bytes", str(cap)])
    sock = connect(proc)
    later = [dict(write(s, "create_post", {"actor": "ann", "text": f"p{s}"}), pad=PAD)
             for s in range(2, 42)]
    fits = cap // (len(P.encode_frame(later[0])) - 4)
    assert 10 < fits < len(later)
    send(sock, *later)  # seq 1 missing: they all wait, as far as the cap allows
    wait_logged(proc, f"event=drop_write reason=reorder_buffer_full s={2 + fits} ")
    send(sock, write(1, "create_user", {"username": "ann", "password_hash": "x"}))
    acks = [P.recv_frame(sock) for _ in range(1 + fits)]
    assert [a["s"] for a in acks] == list(range(1, 2 + fits))
    send(sock, {"t": "hb", "id": 1})
    assert P.recv_frame(sock)["s"] == 1 + fits  # the dropped ones were never applied


def test_parked_reads_are_bounded_in_bytes(launch) -> None:
    """Reads waiting for a seq count in bytes too: past the cap a read is answered `behind` at
    once instead of being held."""
    cap = 50_000
    proc = launch(extra_args=["--max-parked-bytes", str(cap)])
    sock = connect(proc)
    reads = [{"t": "r", "id": i, "min": 100, "wait": 5000, "q": "state", "pad": PAD}
             for i in range(1, 31)]
    parked = cap // (len(P.encode_frame(reads[0])) - 4)
    assert 5 < parked < len(reads)
    send(sock, *reads)
    sock.settimeout(1.0)
    at_once = [P.recv_frame(sock) for _ in range(len(reads) - parked)]
    assert [r["id"] for r in at_once] == list(range(parked + 1, len(reads) + 1))
    assert all(r["r"]["code"] == "behind" for r in at_once)
    with pytest.raises(TimeoutError):  # the first ones are held, waiting for seq 100
        P.recv_frame(sock)
