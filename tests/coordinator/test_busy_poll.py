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
        poll = BusyPoll(loop, window_us=window_us, light_window_us=0, in_flight=lambda: 0)
        poll.arm()
        t0 = time.process_time()
        loop.run_until_complete(asyncio.sleep(0.15))
        spent = time.process_time() - t0
        assert (least is None or spent > least) and spent < most, spent
        assert not poll._spinning
    finally:
        loop.close()


@pytest.mark.parametrize("in_flight, least, most", [(0, 0.03, 0.2), (100, None, 0.03)])
def test_light_load_gets_the_long_window(in_flight, least, most):
    """With few writes in flight the window is the light one (100 ms here); under load the
    short one (5 ms), whatever the light one says."""
    loop = asyncio.new_event_loop()
    try:
        poll = BusyPoll(loop, window_us=5_000, light_window_us=100_000,
                        in_flight=lambda: in_flight)
        poll.arm()
        t0 = time.process_time()
        loop.run_until_complete(asyncio.sleep(0.2))
        spent = time.process_time() - t0
        assert (least is None or spent > least) and spent < most, spent
    finally:
        loop.close()


def test_zero_window_turns_the_light_one_off_too():
    loop = asyncio.new_event_loop()
    try:
        poll = BusyPoll(loop, window_us=0, light_window_us=100_000, in_flight=lambda: 0)
        poll.arm()
        t0 = time.process_time()
        loop.run_until_complete(asyncio.sleep(0.15))
        assert time.process_time() - t0 < 0.02
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
    # Only heartbeats now (every 100 ms): each opens one window (400 us: nothing in flight).
    assert cpu_over(cluster.procs["coordinator"].pid, 1.0) < 0.1


def test_long_window_spins_and_zero_does_not(cluster_factory):
    """With a window longer than the heartbeat interval, every heartbeat reopens it: the
    coordinator never sleeps. With 0 it sleeps between heartbeats."""
    spinning = cluster_factory(replicas=1, coordinator_args=["--busy-poll-us", "1000000"])
    sleeping = cluster_factory(replicas=1, coordinator_args=["--busy-poll-us", "0",
                                                             "--busy-poll-light-us", "400"])
    time.sleep(0.3)
    assert cpu_over(spinning.procs["coordinator"].pid, 0.5) >= 0.2
    assert cpu_over(sleeping.procs["coordinator"].pid, 0.5) < 0.05


@pytest.mark.parametrize("key", ["busy_poll_us", "busy_poll_light_us"])
@pytest.mark.parametrize("value", [-1, 1_000_001])
def test_bad_window_refused(key, value):
    config = CoordinatorConfig(replicas=[ReplicaConfig("1", "127.0.0.1", 7401)], insecure=True,
                               **{key: value})
    with pytest.raises(ValueError, match="busy poll"):
        config.validate()
    flag = "--" + key.replace("_", "-")
    out = subprocess.run([sys.executable, "-m", "webfront.cli", "coordinator", "--insecure-no-auth",
                          "--replica", "1=127.0.0.1:1", flag, str(value)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0 and "busy poll" in out.stderr, out.stderr
