"""A write whose ack was lost with its connection is credited when the replica comes back.

Policy `majority`, 3 replicas; the coordinator reaches replica 2 through a test proxy
(ack_proxy.py). Replica 3 is paused (SIGSTOP) but still only `suspect`; replica 2 applies and
logs a write, its ack is swallowed, then its connection is cut. When it reconnects, its
handshake reports that it applied the write, with the digest the coordinator recorded for that
seq, so the write has a majority (1 and 2) and must be answered then, not at the write timeout.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ask_replica, wait_for
from tests.coordinator.ack_proxy import AckProxy
from webfront.cluster import LocalCluster
from webfront.protocol import connect, encode_frame, recv_frame, write_reply

pytestmark = pytest.mark.timeout(60)

WRITE_TIMEOUT_S = 8.0
# A paused replica misses 10 heartbeats a second and is `down` after 50: ~5 s of `suspect`,
# longer than the test needs (the write is sent ~0.3 s after the pause).
COORDINATOR_FLAGS = ["--heartbeat-ms", "100", "--miss-threshold", "50",
                     "--write-timeout-ms", str(int(WRITE_TIMEOUT_S * 1000))]


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[tuple[str, int]], AckProxy]]:
    started: list[AckProxy] = []

    def make(target: tuple[str, int]) -> AckProxy:
        proxy = AckProxy(target).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def route_through(cluster: LocalCluster, rid: str, dial: str) -> None:
    """Restart the cluster's coordinator so that it dials `dial` for replica rid.

    The coordinator keeps its membership in its state dir (members.json wins over the flags), so
    the new incarnation gets a fresh state dir, as a coordinator moved to another host would: it
    learns the epoch from the replicas' handshakes. LocalCluster.stop still ends it by pid.
    """
    proc = cluster.procs["coordinator"]
    cluster.kill_coordinator()
    argv = list(proc.argv)
    at = argv.index(f"{rid}={cluster.replica(rid).address}")
    argv[at] = f"{rid}={dial}"
    state_dir = Path(argv[argv.index("--state-dir") + 1])
    argv[argv.index("--state-dir") + 1] = str(state_dir.with_name(state_dir.name + "-routed"))
    proc.argv = argv
    cluster.start_coordinator()
    cluster.wait_writable(10.0)


def routed_cluster(cluster_factory, proxy_factory) -> tuple[LocalCluster, AckProxy]:
    """3 replicas, policy majority; the coordinator reaches replica 2 through a proxy."""
    cluster = cluster_factory(replicas=3, policy="majority", coordinator_args=COORDINATOR_FLAGS)
    proxy = proxy_factory(cluster.replica_addresses()["2"])
    route_through(cluster, "2", proxy.dial)
    assert proxy.accepted >= 1, "the coordinator did not connect through the proxy"
    return cluster, proxy


def replica_position(cluster: LocalCluster, rid: str) -> tuple[int, str]:
    """(applied seq, digest hex) straight from the replica's handshake."""
    sock, ready = connect(cluster.replica_addresses()[rid], cluster.secret(), "coordinator",
                          timeout=3.0)
    sock.close()
    return ready["s"], ready["d"].hex()


def acked_seqs(body: dict) -> list[int]:
    if body["t"] == "a":
        return [body["s"]]
    if body["t"] == "as":
        return list(body["s"])
    return []


class OneWrite:
    """One client write, sent once (no retry, unlike ClusterClient: the test needs the
    coordinator's own first answer) from a background thread; `answer` and `answered_at`
    (time.monotonic) once it came."""

    def __init__(self, cluster: LocalCluster, op: str, args: dict) -> None:
        self.sock, _ready = connect(cluster.coordinator_address, cluster.secret(), "client",
                                    timeout=3.0)
        self.frame = {"t": "cw", "rid": uuid.uuid4().hex, "op": op, "a": args, "id": 1}
        self.answer: dict | None = None
        self.sent_at = self.answered_at = 0.0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="one-write", daemon=True)

    def _run(self) -> None:
        try:
            self.sock.settimeout(WRITE_TIMEOUT_S + 4.0)
            self.sock.sendall(encode_frame(self.frame))
            while True:
                body = recv_frame(self.sock)
                if body.get("id") == 1:
                    break
            self.answered_at = time.monotonic()
            self.answer = body
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def send(self) -> float:
        self.sent_at = time.monotonic()
        self.thread.start()
        return self.sent_at

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        self.sock.close()  # ends the thread (recv fails) if it still waits
        self.thread.join(2.0)
        assert not self.thread.is_alive(), "the writing thread hung"


def test_lost_ack_is_credited_from_the_returning_replicas_handshake(cluster_factory,
                                                                     proxy_factory):
    cluster, proxy = routed_cluster(cluster_factory, proxy_factory)
    client = cluster.client(timeout=5.0)
    try:
        client.write("create_user", {"username": "ann", "password_hash": b"h"})
    finally:
        client.close()

    cluster.signal_replica(3, signal.SIGSTOP)
    write: OneWrite | None = None
    try:
        cluster.wait_state(3, "suspect", timeout=3.0)
        seq = cluster.status()["last_seq"] + 1  # the only writer: ours is the next seq
        write = OneWrite(cluster, "create_post", {"actor": "ann", "text": "hello"})
        assert proxy.swallow() == 1, "the coordinator's connection to replica 2 is not open"
        write.send()

        # Replica 2 applied, logged and acked seq, and the proxy ate that ack.
        wait_for(lambda: any(seq in acked_seqs(b) for b in proxy.swallowed()), 3.0,
                 f"replica 2 acking seq {seq} (into the proxy)")
        applied2, _ = replica_position(cluster, "2")
        assert applied2 >= seq, (applied2, seq)
        assert write.answer is None, f"answered before replica 2's ack could count: " \
                                     f"{write.answer}"
        assert proxy.cut() == 1
        cut_at = time.monotonic()
        write.wait(WRITE_TIMEOUT_S + 2.0)
        assert write.error is None, f"the write's connection failed: {write.error!r}"
        assert write.answer is not None, "no answer at all within the write timeout + 2 s"
        after_cut = write.answered_at - cut_at
        assert after_cut < 3.0, (
            f"write seq {seq} (applied and logged on replicas 1 and 2, replica 2's ack lost with "
            f"its connection, replica 3 paused and suspect) was answered {after_cut:.1f}s after "
            f"the cut ({write.answered_at - write.sent_at:.1f}s after it was sent) with "
            f"{write.answer}: replica 2's reconnection, reporting seq {applied2} and its digest, "
            "did not count as its ack")
        assert write.answer["t"] == "cwr", write.answer
        assert write.answer["s"] == seq, write.answer
        assert write_reply(write.answer)["ok"], write.answer
        assert proxy.accepted >= 2, "the coordinator did not reconnect through the proxy"
        state3 = next(r for r in cluster.status()["replicas"] if r["id"] == "3")["state"]
        assert state3 == "suspect", f"replica 3 is {state3}: the test lost its premise"
    finally:
        cluster.signal_replica(3, signal.SIGCONT)
        if write is not None:
            write.wait(0.0)

    # Exactly one post, on replicas 1 and 2 alike (read directly) and through the coordinator.
    for rid in ("1", "2"):
        state = ask_replica(cluster, rid, [("state", {})])[0]
        assert (state["users"], state["posts"]) == (1, 1), (rid, state)
    client = cluster.client(timeout=5.0)
    try:
        user = client.read("user", {"username": "ann"}).reply["user"]
    finally:
        client.close()
    assert user["posts"] == 1, user
    assert replica_position(cluster, "1") == replica_position(cluster, "2")


def test_proxy_is_transparent(cluster_factory, proxy_factory):
    """Through the proxy (never swallowing) replica 2 is a member like any: it is up, applies
    every write, and after a cut the coordinator reconnects through the proxy and it is up
    again at the same seq and digest as replica 1."""
    cluster, proxy = routed_cluster(cluster_factory, proxy_factory)

    def converged() -> bool:
        status = cluster.status()
        reps = {r["id"]: r for r in status["replicas"]}
        return reps["2"]["state"] == "up" and \
            reps["1"]["applied_seq"] == reps["2"]["applied_seq"] == status["last_seq"] and \
            reps["1"]["digest"] == reps["2"]["digest"]

    client = cluster.client(timeout=5.0)
    try:
        client.write("create_user", {"username": "bob", "password_hash": b"h"})
        client.write("create_post", {"actor": "bob", "text": "one"})
        wait_for(converged, 5.0, "replica 2 up at the last seq")
        assert proxy.cut() == 1
        wait_for(lambda: proxy.accepted >= 2, 5.0, "the coordinator reconnecting through the proxy")
        last = client.write("create_post", {"actor": "bob", "text": "two"}).seq
        wait_for(converged, 5.0, "replica 2 up again through the proxy, caught up")
        assert client.read("user", {"username": "bob"}).reply["user"]["posts"] == 2
    finally:
        client.close()
    assert ask_replica(cluster, "2", [("state", {})])[0]["posts"] == 2
    assert replica_position(cluster, "1") == replica_position(cluster, "2")
    assert replica_position(cluster, "2")[0] == last
    assert not proxy.swallowed()
