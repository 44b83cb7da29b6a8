"""Fixtures for the security tests: one real cluster shared by the tests that do not break it,
apps configured against it, and helpers to sign up users through the JSON API.

The cluster is real (replica_server processes + coordinator, webfront.cluster.LocalCluster);
the Flask app runs in-process. Tests that need a cluster of their own use `cluster_factory`
from tests/conftest.py.
"""

from __future__ import annotations

import uuid

import pytest

from tests.web.conftest import FAST_HASH, PASSWORD, make_config  # noqa: F401 (re-exported)
from webfront.web import create_app

ADMIN = "sec_admin"


@pytest.fixture(scope="session")
def sec_cluster(tmp_path_factory):
    from webfront.cluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("sec-cluster"), replicas=3, policy="majority")
    c.start()
    yield c
    c.stop()


def sec_config(cluster, **overrides) -> dict:
    """The web tests' app config with CSRF left on (what these tests are about)."""
    return make_config(cluster, **{"WTF_CSRF_ENABLED": True, "ADMINS": [ADMIN], **overrides})


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
