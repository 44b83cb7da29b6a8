"""replica_server's busy-poll: it spins only in a window after a light turn of input, never
while idle and not after a busy turn."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import cpu_over
from webfront import protocol as P


def heartbeats(proc, count: int) -> None:
    """`count` request/reply round trips, each of which opens a busy-poll window."""
    sock, ready = P.connect(proc.address, b"", "coordinator")
    assert ready["t"] == "ready"
    try:
        for i in range(count):
            sock.sendall(P.encode_frame({"t": "hb", "id": i}))
            assert P.recv_frame(sock)["t"] == "hba"
    finally:
        sock.close()


def test_idle_replica_does_not_spin_after_traffic(launch) -> None:
    # A 20 ms window, far longer than the default, so a poll that never ended would show.
    proc = launch(extra_args=["--busy-poll-us", "20000"])
    heartbeats(proc, 200)
    time.sleep(0.1)  # the last window closes
    assert cpu_over(proc.pid, 1.0) < 0.1


def test_replica_spins_in_the_window_after_a_frame(launch) -> None:
    polling = launch(id="polling", extra_args=["--busy-poll-us", "300000"])
    sleeping = launch(id="sleeping", extra_args=["--busy-poll-us", "0"])
    used = {}
    for proc in (polling, sleeping):
        heartbeats(proc, 1)
        used[proc.id] = cpu_over(proc.pid, 0.25)  # inside the 300 ms window
    # Spinning (yielding to anything runnable) costs CPU; sleeping in epoll_wait costs none.
    assert used["polling"] >= 0.05, used
    assert used["sleeping"] < 0.03, used


def test_replica_does_not_spin_after_a_busy_turn(launch) -> None:
    # Many frames in one turn mean a busy cluster: the next ones come anyway, and spinning
    # would take CPU the other processes need. So no window opens (compare the test above).
    proc = launch(extra_args=["--busy-poll-us", "300000"])
    sock, _ = P.connect(proc.address, b"", "coordinator")
    try:
        sock.sendall(b"".join(P.encode_frame({"t": "hb", "id": i}) for i in range(50)))
        for _ in range(50):
            assert P.recv_frame(sock)["t"] == "hba"
        used = cpu_over(proc.pid, 0.25)  # inside what would be the 300 ms window
    finally:
        sock.close()
    assert used < 0.03, used


def test_bad_busy_poll_value_refused(replica_binary: str) -> None:
    for value in ("-1", "1000001", "x"):
        out = subprocess.run([replica_binary, "--insecure-no-auth", "--busy-poll-us", value],
                             capture_output=True, text=True, timeout=10, check=False)
        assert out.returncode == 2, (value, out.stderr)
        assert "--busy-poll-us" in out.stderr
