"""No read shows a write before a majority has acknowledged it.

Replicas apply a write as it comes, before it is acknowledged. A write that reaches one replica
only, while the others hang, may be dropped by the next coordinator, and its seq (the post's id)
given to another write: a read that showed it would have shown something that never happened.
The coordinator holds such an answer until the writes it saw are acknowledged."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.durability.load import wait_converged
from tests.durability.test_divergence import write_history
from webfront.client import ClusterError

pytestmark = pytest.mark.timeout(60)


def texts(result) -> list[str]:
    return [p["text"] for p in result.reply["posts"]]


def in_thread(call) -> tuple[threading.Thread, dict]:
    """Runs call() in a thread; the dict gets its result or error and when it came."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = call()
        except ClusterError as exc:
            out["error"] = exc
        out["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@contextlib.contextmanager
def write_pending_on_one_replica(cluster, client_timeout: float
                                 ) -> Iterator[tuple[threading.Thread, dict]]:
    """Replicas 2 and 3 hang (SIGSTOP) while a write of alice's, "pending", goes out: replica 1
    applies it, and it waits for a second ack. 2 and 3 stay `suspect` (the cluster runs with
    a high --miss-threshold), so the write is sequenced and sent. They go on at the end.
    Yields the writer's thread and what it will get (in_thread)."""
    write_history(cluster, "alice", ["one"])
    wait_converged(cluster, timeout=10)
    for rid in (2, 3):
        cluster.signal_replica(rid, signal.SIGSTOP)
    try:
        wait_for(lambda: all(r["state"] == "suspect" for r in cluster.status()["replicas"]
                             if r["id"] != "1"), timeout=5, what="2 and 3 suspect")

        def write():
            with cluster.client(timeout=client_timeout) as client:
                return client.write("create_post", {"actor": "alice", "text": "pending"})

        writer, wrote = in_thread(write)
        time.sleep(0.3)  # applied by replica 1, unacknowledged
        yield writer, wrote
    finally:
        for rid in (2, 3):
            cluster.signal_replica(rid, signal.SIGCONT)


@pytest.mark.parametrize("mode", ["linearizable", "session"])
def test_a_read_waits_for_the_writes_it_saw_to_be_acknowledged(cluster_factory, mode):
    cluster = cluster_factory(coordinator_args=["--miss-threshold", "1000"])

    def read():
        with cluster.client(timeout=10) as client:
            return client.read("user_posts", {"username": "alice"},
                               min_seq=0 if mode == "session" else None)

    with write_pending_on_one_replica(cluster, client_timeout=10) as (writer, wrote):
        reader, seen = in_thread(read)
        reader.join(1.0)
        assert not seen, f"answered before the write it saw was acknowledged: {seen}"
    writer.join(10)
    reader.join(10)
    assert wrote["result"].reply["ok"], wrote
    assert texts(seen["result"]) == ["pending", "one"]
    assert seen["at"] >= wrote["at"] - 0.05  # not before the write's own answer (give or take)


def test_a_read_of_a_write_that_is_never_acknowledged_is_not_answered(cluster_factory):
    cluster = cluster_factory(coordinator_args=["--miss-threshold", "1000",
                                                "--read-timeout-ms", "500"])
    # The coordinator answers `timeout` after 500 ms ("the writes it saw were not
    # acknowledged"); the client asks again until its own deadline, then gives up.
    with write_pending_on_one_replica(cluster, client_timeout=3) as (writer, _), \
            cluster.client(timeout=1.5) as client, pytest.raises(ClusterError):
        client.read("user_posts", {"username": "alice"})
    writer.join(10)


def test_reads_go_on_after_a_write_that_failed_but_reached_a_majority_later(cluster_factory):
    """A write answered `timeout` (its acks came too late) is on every replica once they
    resume, but no client was answered for it: reads that see it must not wait for that."""
    cluster = cluster_factory(coordinator_args=["--miss-threshold", "1000",
                                                "--write-timeout-ms", "800"])
    with write_pending_on_one_replica(cluster, client_timeout=0.5) as (writer, wrote):
        writer.join(5)
        assert isinstance(wrote.get("error"), ClusterError), wrote
        time.sleep(1.0)  # the coordinator fails it (write timeout 800 ms)
    wait_converged(cluster, timeout=10)
    for _ in range(3):
        with cluster.client(timeout=2.0) as client:
            assert texts(client.read("user_posts", {"username": "alice"})) == ["pending", "one"]
