"""Shared fixtures: a real local cluster (replica processes + coordinator) on loopback.

`cluster` is a fresh 3-replica, majority-policy cluster per test, in tmp_path, torn down by pid.
`cluster_factory(replicas=..., policy=..., **kw)` builds others. Replicas are the real
`replica_server` when it is built; otherwise (or with WEBFRONT_FAKE_REPLICA=1) the Python
stand-in tests/coordinator/fake_replica.py, so coordinator tests run before the C++ exists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest

from webfront.cluster import LocalCluster, find_replica_server


def replica_command() -> list[str]:
    binary = None if os.environ.get("WEBFRONT_FAKE_REPLICA") == "1" else find_replica_server()
    if binary:
        return [binary]
    return [sys.executable, "-m", "tests.coordinator.fake_replica"]


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
