"""The coordinator's busy-poll (busypoll.py): a window of spinning after output, never more."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from tests.conftest import cpu_over
from webfront.coordinator.busypoll import BusyPoll
from webfront.coordinator.config import CoordinatorConfig, ReplicaConfig


@pytest.mark.parametrize("window_us, least, most", [(50_000, 0.01, 0.1), (0, None, 0.02)])
def test_loop_polls_through_the_window_then_sleeps(window_us, least, most):
    """For a 50 ms window the poll's callback reschedules itself, so the loop selects with a
    zero timeout on every pass (CPU spent); after it, or with no window, the loop sleeps."""
    loop = asyncio.new_event_loop()
    try:
        poll = BusyPoll(loop, window_us=window_us)
        poll.arm()
        t0 = time.process_time()
        loop.run_until_complete(asyncio.sleep(0.15))
        spent = time.process_time() - t0
        assert (least is None or spent > least) and spent < most, spent
        assert not poll._spinning
    finally:
        loop.close()


def test_idle_coordinator_sleeps_after_traffic(cluster_factory):
    cluster = cluster_factory()
    client = cluster.client(timeout=5.0)
    try:
        client.write("create_user", {"username": "ida", "password_hash": b"h"})
        for i in range(200):
            client.write("create_post", {"actor": "ida", "text": f"p{i}"})
    finally:
        client.close()
    time.sleep(0.2)
    # Only heartbeats now (every 100 ms): each opens one 50 us window.
    assert cpu_over(cluster.procs["coordinator"].pid, 1.0) < 0.1


def test_long_window_spins_and_zero_does_not(cluster_factory):
    """With a window longer than the heartbeat interval, every heartbeat reopens it: the
    coordinator never sleeps. With 0 it sleeps between heartbeats."""
    spinning = cluster_factory(replicas=1, coordinator_args=["--busy-poll-us", "1000000"])
    sleeping = cluster_factory(replicas=1, coordinator_args=["--busy-poll-us", "0"])
    time.sleep(0.3)
    assert cpu_over(spinning.procs["coordinator"].pid, 0.5) >= 0.2
    assert cpu_over(sleeping.procs["coordinator"].pid, 0.5) < 0.05


@pytest.mark.parametrize("value", [-1, 1_000_001])
def test_bad_window_refused(value):
    config = CoordinatorConfig(replicas=[ReplicaConfig("1", "127.0.0.1", 7401)], insecure=True,
                               busy_poll_us=value)
    with pytest.raises(ValueError, match="busy poll"):
        config.validate()
    out = subprocess.run([sys.executable, "-m", "webfront.cli", "coordinator", "--insecure-no-auth",
                          "--replica", "1=127.0.0.1:1", "--busy-poll-us", str(value)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0 and "busy poll" in out.stderr, out.stderr
