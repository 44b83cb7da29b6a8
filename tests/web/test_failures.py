"""Losing the majority: writes answer a plain 503, reading pages keep working."""

from __future__ import annotations

from types import SimpleNamespace

from webfront.web import create_app

from .conftest import PASSWORD, make_config, unique


def test_no_majority_gives_503_and_reads_still_work(own_cluster):
    cluster = own_cluster
    app = create_app(make_config(cluster, CLUSTER_TIMEOUT=2.0))
    c = app.test_client()
    name = unique()
    assert c.post("/register", data={"username": name, "password": PASSWORD,
                                      "confirm": PASSWORD}).status_code == 302
    assert c.post("/compose", data={"text": "written before the outage"}).status_code == 302
    api = app.test_client()
    api.post("/api/v1/users", json={"username": name + "_a", "password": PASSWORD})
    token = api.post("/api/v1/tokens", json={"username": name + "_a",
                                             "password": PASSWORD}).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    cluster.kill_replica(1)
    cluster.kill_replica(2)
    cluster.wait_state(1, "down")
    cluster.wait_state(2, "down")

    r = c.post("/compose", data={"text": "written during the outage"})
    assert r.status_code == 503
    page = r.get_data(as_text=True)
    # The form comes back with its text (and its request token: tests/web/test_resubmit.py).
    assert "Cannot save changes right now" in page and "not be applied twice" in page
    assert "written during the outage</textarea>" in page

    r = api.post("/api/v1/posts", json={"text": "api during the outage"}, headers=bearer)
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
    health = api.get("/api/v1/health").get_json()
    assert health["status"] == "ok" and health["writes_possible"] is False

    # reading pages keep working from the surviving replica
    for path in ("/public", "/", f"/{name}", f"/{name}/followers"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.get_data(as_text=True).split("<main>")[1][:600])
    assert "written before the outage" in c.get("/public").get_data(as_text=True)
    assert "written during the outage" not in c.get("/public").get_data(as_text=True)
    anonymous = app.test_client()
    assert "written before the outage" in anonymous.get("/public").get_data(as_text=True)

    # and writes come back with the replicas
    cluster.restart_replica(1)
    cluster.wait_state(1, "up", timeout=15)
    assert c.post("/compose", data={"text": "written after"}).status_code == 302
    assert "written after" in c.get("/").get_data(as_text=True)


def test_coordinator_unreachable():
    """No coordinator at all: pages say so plainly with 503, health says so, nothing hangs."""
    from webfront.cluster import free_port

    nowhere = SimpleNamespace(coordinator_address=("127.0.0.1", free_port()), secret=lambda: b"")
    admin = unique("adm")
    app = create_app(make_config(nowhere, CLUSTER_TIMEOUT=0.3, ADMINS=[admin]))
    c = app.test_client()
    r = c.get("/public")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert "Temporarily unavailable" in r.get_data(as_text=True)
    r = c.post("/register", data={"username": unique(), "password": PASSWORD,
                                  "confirm": PASSWORD})
    assert r.status_code == 503 and "Cannot save changes" in r.get_data(as_text=True)
    health = c.get("/api/v1/health").get_json()
    assert health["cluster_reachable"] is False and health["writes_possible"] is False
    r = c.get("/api/v1/public")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
    with c.session_transaction() as session:
        session["username"], session["since"] = admin, 1  # no cluster to log in through
    page = c.get("/admin/cluster")
    assert page.status_code == 200
    assert "coordinator cannot be reached" in page.get_data(as_text=True)


def test_health_says_what_the_coordinator_says(cluster_factory):
    """Under policy `all` with one replica of three down the coordinator still takes writes
    (every replica that receives them must ack, at least a majority): health agrees. It used to
    count `up` replicas itself and said no."""
    cluster = cluster_factory(policy="all")
    cluster.kill_replica(3)
    cluster.wait_state(3, "down")
    app = create_app(make_config(cluster, CLUSTER_TIMEOUT=2.0))
    c = app.test_client()
    health = c.get("/api/v1/health").get_json()
    assert health["writes_possible"] is True and health["replicas_up"] == 2
    r = c.post("/api/v1/users", json={"username": unique(), "password": PASSWORD})
    assert r.status_code == 201
