"""Fixtures for the security tests: one real cluster shared by the tests that do not break it,
apps configured against it, and helpers to sign up users through the JSON API.

The cluster is real (replica_server processes + coordinator, webfront.cluster.LocalCluster);
the Flask app runs in-process. Tests that need a cluster of their own use `cluster_factory`
from tests/conftest.py.
"""

from __future__ import annotations

import uuid

import pytest

from webfront.web import cluster_access, create_app

ADMIN = "sec_admin"
PASSWORD = "correct horse battery"
FAST_HASH = "scrypt:1024:8:1"


@pytest.fixture(scope="session")
def sec_cluster(tmp_path_factory):
    from webfront.cluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("sec-cluster"), replicas=3, policy="majority")
    c.start()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _close_cluster_clients():
    yield
    cluster_access.close_all()


def sec_config(cluster, **overrides) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "sec-" + uuid.uuid4().hex,
        "COORDINATOR": cluster.coordinator_address,
        "CLUSTER_SECRET": cluster.secret(),
        "ADMINS": [ADMIN],
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "LOGIN_ACCOUNT_RATE_LIMIT": "1000 per minute",
    }
    config.update(overrides)
    return config


def unique(prefix: str = "s") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(sec_cluster):
    """CSRF is ON here (unlike tests/web), so form tests see what a browser sees."""
    return create_app(sec_config(sec_cluster))


@pytest.fixture
def nocsrf_app(sec_cluster):
    return create_app(sec_config(sec_cluster, WTF_CSRF_ENABLED=False))


def api_signup(client, username: str | None = None, password: str = PASSWORD,
               display_name: str | None = None) -> tuple[str, str]:
    """Creates a user through the API and returns (username, bearer token)."""
    username = username or unique()
    body = {"username": username, "password": password}
    if display_name is not None:
        body["display_name"] = display_name
    r = client.post("/api/v1/users", json=body)
    assert r.status_code == 201, r.get_json()
    r = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert r.status_code == 200, r.get_json()
    return username, r.get_json()["token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
