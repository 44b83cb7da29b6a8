"""Fixtures for the web tests: `app`, `client`, `auth` (flaskr's AuthActions), `api`.

The app talks to a real local cluster: real `replica_server` processes plus a coordinator,
started by webfront.cluster.LocalCluster (see tests/conftest.py).
"""

from __future__ import annotations

import uuid

import pytest

from webfront.web import create_app

ADMIN = "admin_root"
PASSWORD = "correct horse battery"
# Cheap scrypt parameters keep the suite fast; production uses werkzeug's default scrypt.
FAST_HASH = "scrypt:1024:8:1"


@pytest.fixture
def own_cluster(cluster_factory):
    """A fresh 3-replica majority cluster for a test that breaks it (kills replicas)."""
    return cluster_factory()


@pytest.fixture(scope="session")
def web_cluster(tmp_path_factory):
    """One real cluster shared by the web tests that do not break it (starting one per test
    costs about a second). Tests that kill replicas use the per-test `cluster` fixture."""
    from webfront.cluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("web-cluster"), replicas=3, policy="majority")
    c.start()
    yield c
    c.stop()


@pytest.fixture
def backend(web_cluster):
    return web_cluster


def make_config(backend, **overrides) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-" + uuid.uuid4().hex,
        "COORDINATOR": backend.coordinator_address,
        "CLUSTER_SECRET": backend.secret(),
        "WTF_CSRF_ENABLED": False,
        "ADMINS": [ADMIN],
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "LOGIN_ACCOUNT_RATE_LIMIT": "1000 per minute",
    }
    config.update(overrides)
    return config


@pytest.fixture
def app(backend):
    return create_app(make_config(backend))


@pytest.fixture
def client(app):
    return app.test_client()


def unique(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def author_of(backend, texts: list[str], **config):
    """A client of an app configured with `config`, logged in as a new user who has posted
    `texts` in order; and the user's name."""
    c = create_app(make_config(backend, **config)).test_client()
    name = unique()
    c.post("/register", data={"username": name, "password": PASSWORD, "confirm": PASSWORD})
    for t in texts:
        assert c.post("/compose", data={"text": t}).status_code == 302
    return c, name


class AuthActions:
    def __init__(self, client) -> None:
        self._client = client

    def register(self, username: str | None = None, password: str = PASSWORD,
                 display_name: str = "", follow_redirects: bool = False):
        username = username or unique()
        response = self._client.post("/register", data={
            "username": username, "password": password, "confirm": password,
            "display_name": display_name}, follow_redirects=follow_redirects)
        return username, response

    def login(self, username: str, password: str = PASSWORD):
        return self._client.post("/login", data={"username": username, "password": password})

    def logout(self):
        return self._client.post("/logout")

    def post(self, text: str):
        return self._client.post("/compose", data={"text": text})


@pytest.fixture
def auth(client):
    return AuthActions(client)


class ApiActions:
    """A JSON API client: `token_for(user)` signs up and logs in; requests carry the token."""

    def __init__(self, client) -> None:
        self.client = client

    def signup(self, username: str | None = None, password: str = PASSWORD) -> tuple[str, str]:
        username = username or unique("a")
        r = self.client.post("/api/v1/users", json={"username": username, "password": password})
        assert r.status_code == 201, r.get_json()
        r = self.client.post("/api/v1/tokens", json={"username": username, "password": password})
        assert r.status_code == 200, r.get_json()
        return username, r.get_json()["token"]

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open("/api/v1" + path, method=method, headers=headers, **kwargs)


@pytest.fixture
def api(client):
    return ApiActions(client)
