"""Fixtures for the replica core tests: the compiled module and a replica_server launcher."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from webfront.replica_process import ReplicaProcess, find_binary, start_replica


@pytest.fixture(scope="session")
def replica_binary() -> str:
    try:
        return find_binary()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(os.urandom(16).hex().encode())
    return path


@pytest.fixture
def replicas(replica_binary: str) -> Iterator[list[ReplicaProcess]]:
    """A list tests append started replicas to; every one is stopped (by pid) afterwards."""
    started: list[ReplicaProcess] = []
    yield started
    for proc in started:
        if proc.stop(timeout=5.0) is None:  # pragma: no cover - stop() kills on timeout
            proc.kill()


@pytest.fixture
def launch(replica_binary: str, replicas: list[ReplicaProcess]):
    """launch(**kwargs) -> ReplicaProcess, cleaned up after the test."""

    def _launch(**kwargs) -> ReplicaProcess:
        proc = start_replica(replica_binary, **kwargs)
        replicas.append(proc)
        return proc

    return _launch


