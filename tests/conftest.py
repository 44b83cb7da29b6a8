"""Shared fixtures: a real local cluster (replica processes + coordinator) on loopback.

`cluster` is a fresh 3-replica, majority-policy cluster per test, in tmp_path, torn down by pid.
`cluster_factory(replicas=..., policy=..., **kw)` builds others. Replicas are always the real
`replica_server` (REPLICA_SERVER_BIN, else PATH; scripts/sanitize.sh points it at a sanitizer
build).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from bench.common import cpu_seconds
from webfront.cluster import LocalCluster, find_replica_server
from webfront.protocol import connect, encode_frame, recv_frame


def replica_command() -> list[str]:
    binary = find_replica_server()
    if not binary:
        pytest.fail("replica_server is not built: run scripts/bootstrap.sh")
    return [binary]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll predicate every 0.1 s until it returns something true (returned), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cpu_over(pid: int, seconds: float) -> float:
    """CPU seconds (user + system, clock-tick resolution) the process uses in the next
    `seconds` of wall time."""
    before = cpu_seconds([pid])
    time.sleep(seconds)
    return cpu_seconds([pid]) - before


@pytest.fixture
def cluster_factory(tmp_path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def make(replicas: int = 3, policy: str = "majority", **kwargs) -> LocalCluster:
        kwargs.setdefault("replica_cmd", replica_command())
        c = LocalCluster(tmp_path / f"cluster-{len(started)}", replicas=replicas, policy=policy,
                         **kwargs)
        started.append(c)
        c.start()
        return c

    yield make
    for c in started:
        c.stop()


@pytest.fixture(autouse=True)
def _close_cluster_clients():
    """Every Flask app a test made gets its cluster connections closed (no ResourceWarning)."""
    yield
    from webfront.web import cluster_access

    cluster_access.close_all()


@pytest.fixture
def cluster(cluster_factory) -> LocalCluster:
    return cluster_factory()


def ask_replica(cluster: LocalCluster, rid: str, queries: list[tuple[str, dict]]) -> list:
    """Reads straight from one replica (bypassing the coordinator)."""
    host, port = cluster.replica(rid).address.rsplit(":", 1)
    sock, _ready = connect((host, int(port)), cluster.secret(), "coordinator", timeout=5)
    try:
        out = []
        for n, (q, a) in enumerate(queries, 1):
            sock.sendall(encode_frame({"t": "r", "id": n, "min": 0, "q": q, "a": a,
                                       "wait": 1000}))
            while True:
                body = recv_frame(sock)
                if body.get("t") == "rr" and body.get("id") == n:
                    out.append(body["r"])
                    break
        return out
    finally:
        sock.close()


def post_texts(cluster: LocalCluster, rid: str, username: str) -> list[str]:
    """username's posts (newest first) read straight from replica rid ([] if no such user)."""
    (reply,) = ask_replica(cluster, rid, [("user_posts", {"username": username})])
    if not reply["ok"]:
        assert reply["code"] == "not_found", reply
        return []
    return [p["text"] for p in reply["posts"]]
