"""The reply policies (docs/replication.md, "Reply policies") against real processes: when each
answers a write, and how many replicas each needs up.

`first` answers after one ack, `majority` after more than half of all replicas, `all` after
every replica receiving writes (at least a majority). A replica paused with SIGSTOP stays
"receiving writes" here (a high miss threshold keeps it from being declared down), so it holds
up exactly the policies that wait for it; a replica killed -9 is declared down, and the
policies that can do without it go on.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.conftest import post_texts
from webfront.client import Unavailable
from webfront.cluster import LocalCluster

# Paused replicas must not be declared down during these tests: 1000 missed heartbeats.
KEEP_PAUSED_UP = ["--miss-threshold", "1000"]


def post(cluster: LocalCluster, text: str, timeout: float = 5.0):
    with cluster.client(timeout=timeout) as client:
        return client.write("create_post", {"actor": "pat", "text": text})


def make_user(cluster: LocalCluster) -> None:
    with cluster.client(timeout=5.0) as client:
        client.write("create_user", {"username": "pat", "password_hash": b"h"})


class Background:
    """A write sent from a thread: its result (or exception) and when it came."""

    def __init__(self, cluster: LocalCluster, text: str) -> None:
        self.result: object = None
        self.answered_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(cluster, text), daemon=True)
        self._thread.start()

    def _run(self, cluster: LocalCluster, text: str) -> None:
        try:
            self.result = post(cluster, text, timeout=8.0)
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            self.result = exc
        self.answered_at = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@pytest.mark.parametrize("policy, answers", [("first", True), ("majority", True), ("all", False)])
def test_a_paused_replica_holds_up_only_the_policy_that_waits_for_every_replica(
        cluster_factory, policy, answers):
    c = cluster_factory(policy=policy, coordinator_args=KEEP_PAUSED_UP)
    make_user(c)
    c.signal_replica(3, signal.SIGSTOP)
    try:
        w = Background(c, f"under {policy}")
        w.join(1.5)
        assert (w.answered_at is not None) == answers, w.result
        resumed_at = time.monotonic()
    finally:
        c.signal_replica(3, signal.SIGCONT)
    w.join(8.0)
    assert not isinstance(w.result, Exception), w.result
    if not answers:  # `all`: answered once the paused replica ran again and acked
        assert w.answered_at is not None and w.answered_at >= resumed_at
    assert f"under {policy}" in post_texts(c, "3", "pat")  # it got the write all the same


@pytest.mark.parametrize("policy", ["first", "majority", "all"])
def test_one_replica_killed_every_policy_goes_on(cluster_factory, policy):
    """Down, not paused: `all` then waits for the replicas receiving writes, not for it."""
    c = cluster_factory(policy=policy)
    make_user(c)
    c.kill_replica(3)
    c.wait_state(3, "down", timeout=5.0)
    assert post(c, "two of three").reply["post"]["text"] == "two of three"
    for rid in ("1", "2"):
        assert post_texts(c, rid, "pat") == ["two of three"], rid


@pytest.mark.parametrize("policy, accepted", [("first", True), ("majority", False),
                                              ("all", False)])
def test_two_replicas_killed_only_first_accepts_writes(cluster_factory, policy, accepted):
    """One replica of three is less than a majority: `majority` and `all` refuse at once
    (no seq is assigned), `first` goes on with it."""
    c = cluster_factory(policy=policy)
    make_user(c)
    for rid in (2, 3):
        c.kill_replica(rid)
    for rid in (2, 3):
        c.wait_state(rid, "down", timeout=5.0)
    if accepted:
        result = post(c, "one of three")
        assert post_texts(c, "1", "pat") == ["one of three"]
        assert result.reply["post"]["text"] == "one of three"
    else:
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            post(c, "refused", timeout=2.0)
        assert time.monotonic() - t0 < 1.5  # refused at once, not after a wait
        assert post_texts(c, "1", "pat") == []
        assert c.status()["writable"] is False
