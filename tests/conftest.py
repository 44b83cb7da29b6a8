"""Shared fixtures: a real local cluster (replica processes + coordinator) on loopback.

`cluster` is a fresh 3-replica, majority-policy cluster per test, in tmp_path, torn down by pid.
`cluster_factory(replicas=..., policy=..., **kw)` builds others. Replicas are always the real
`replica_server` (REPLICA_SERVER_BIN, else PATH; scripts/sanitize.sh points it at a sanitizer
build).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from webfront.cluster import LocalCluster, find_replica_server


def replica_command() -> list[str]:
    binary = find_replica_server()
    if not binary:
        pytest.fail("replica_server is not built: run scripts/bootstrap.sh")
    return [binary]


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


@pytest.fixture
def cluster(cluster_factory) -> LocalCluster:
    return cluster_factory()
