"""The JSON API under /api/v1: every route, its errors and its authorization."""

from __future__ import annotations

import re

import pytest
from itsdangerous import URLSafeTimedSerializer

from webfront.web import create_app

from .conftest import ADMIN, PASSWORD, make_config, unique

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_openapi_describes_every_route(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in doc["paths"].items()
                  for method in item if method != "parameters"}
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1"):])
        path = path.replace("{post_id}", "{id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed.add((path, method))
    assert routed == documented


def test_signup_token_and_profile(api):
    name = unique("a")
    r = api.call("POST", "/users", json={"username": name, "password": PASSWORD,
                                          "display_name": "Ann"})
    assert r.status_code == 201
    user = r.get_json()["user"]
    assert user["username"] == name and user["display_name"] == "Ann"
    assert ISO.match(user["created_at"])
    assert "password_hash" not in r.get_data(as_text=True)

    r = api.call("POST", "/users", json={"username": name.upper(), "password": PASSWORD})
    assert r.status_code == 409 and error_code(r) == "conflict"

    r = api.call("POST", "/tokens", json={"username": name, "password": "wrong password"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = api.call("POST", "/tokens", json={"username": unique(), "password": PASSWORD})
    assert r.status_code == 401
    r = api.call("POST", "/tokens", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200 and r.get_json()["token"]

    r = api.call("GET", f"/users/{name}")
    assert r.status_code == 200
    body = r.get_json()
    assert body["username"] == name and body["posts"] == 0 and "password_hash" not in body
    r = api.call("GET", "/users/nobody_here_1")
    assert r.status_code == 404 and error_code(r) == "not_found"


@pytest.mark.parametrize("body", [
    None, "not json", [], {"username": 5, "password": PASSWORD}, {"username": "ok_name"},
    {"username": "ok_name", "password": True}, {"username": "ab", "password": PASSWORD},
    {"username": "public", "password": PASSWORD}, {"username": "good_name", "password": "short"},
    {"username": "good_name", "password": PASSWORD, "display_name": 3},
])
def test_signup_rejects_bad_bodies(client, body):
    if body == "not json":
        r = client.post("/api/v1/users", data="{not json",
                        headers={"Content-Type": "application/json"})
    elif body is None:
        r = client.post("/api/v1/users")
    else:
        r = client.post("/api/v1/users", json=body)
    assert r.status_code == 400 and error_code(r) == "invalid"
    assert client.get("/api/v1/users/good_name").status_code == 404  # nothing changed


def test_posts_timelines_and_paging(api):
    alice, ta = api.signup()
    r = api.call("POST", "/posts", ta, json={"text": "  first <b>post</b>  "})
    assert r.status_code == 201
    post = r.get_json()
    assert post["author"] == alice and post["text"] == "first <b>post</b>"
    assert ISO.match(post["created_at"]) and post["id"] == post["seq"]
    ids = [post["id"]]
    for i in range(4):
        ids.append(api.call("POST", "/posts", ta, json={"text": f"p{i}"}).get_json()["id"])

    page = api.call("GET", f"/users/{alice}/posts?limit=2").get_json()
    assert [p["id"] for p in page["posts"]] == ids[:-3:-1]
    page2 = api.call("GET", f"/users/{alice}/posts?limit=2&before={page['next']}").get_json()
    assert [p["id"] for p in page2["posts"]] == [ids[2], ids[1]]

    assert [p["id"] for p in api.call("GET", "/timeline", ta).get_json()["posts"]] == ids[::-1]
    public = api.call("GET", "/public?limit=200").get_json()["posts"]
    assert post["id"] in [p["id"] for p in public]
    for bad in ("limit=0", "limit=201", "limit=x", "before=-1"):
        r = api.call("GET", f"/public?{bad}")
        assert r.status_code == 400 and error_code(r) == "invalid", bad
    assert api.call("GET", "/users/nobody_zz/posts").status_code == 404


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": "x" * 281},
                                  {"text": 5}, {"text": None}, ["text"]])
def test_create_post_rejects_bad_bodies(api, body):
    name, token = api.signup()
    r = api.call("POST", "/posts", token, json=body)
    assert r.status_code == 400 and error_code(r) == "invalid"
    assert api.call("GET", f"/users/{name}").get_json()["posts"] == 0


def test_tokens_are_required_and_checked(app, api):
    name, _token = api.signup()
    for method, path, body in [("POST", "/posts", {"text": "hi"}), ("GET", "/timeline", None),
                               ("POST", "/follows", {"username": name}),
                               ("DELETE", f"/follows/{name}", None),
                               ("DELETE", "/posts/1", None), ("DELETE", f"/users/{name}", None),
                               ("GET", "/cluster", None)]:
        r = api.call(method, path, json=body)
        assert r.status_code == 401, (method, path)
        r = api.call(method, path, "forged.token.value", json=body)
        assert r.status_code == 401 and error_code(r) == "unauthorized", (method, path)
    # a token signed with another key is refused
    other = URLSafeTimedSerializer("other key", salt="webfront-api-token").dumps({"u": name})
    assert api.call("GET", "/timeline", other).status_code == 401


def test_tokens_expire(backend):
    app = create_app(make_config(backend, API_TOKEN_MAX_AGE=-1))
    c = app.test_client()
    name = unique("a")
    c.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    token = c.post("/api/v1/tokens", json={"username": name,
                                           "password": PASSWORD}).get_json()["token"]
    r = c.get("/api/v1/timeline", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "token_expired"


def test_delete_post_only_own(api):
    alice, ta = api.signup()
    _bob, tb = api.signup()
    pid = api.call("POST", "/posts", ta, json={"text": "mine"}).get_json()["id"]
    r = api.call("DELETE", f"/posts/{pid}", tb)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert api.call("DELETE", "/posts/987654321", ta).status_code == 404
    assert api.call("DELETE", f"/posts/{pid}", ta).status_code == 204
    assert api.call("GET", f"/users/{alice}/posts").get_json()["posts"] == []


def test_delete_account_only_own(api):
    alice, ta = api.signup()
    _bob, tb = api.signup()
    r = api.call("DELETE", f"/users/{alice}", tb)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert api.call("GET", f"/users/{alice}").status_code == 200
    assert api.call("DELETE", f"/users/{alice}", ta).status_code == 204
    assert api.call("GET", f"/users/{alice}").status_code == 404
    # the token outlives the account but can do nothing (docs/protocol.md: account_replaced)
    r = api.call("POST", "/posts", ta, json={"text": "ghost"})
    assert r.status_code == 401 and error_code(r) == "account_replaced"


def test_follows(api):
    alice, ta = api.signup()
    bob, tb = api.signup()
    carol, tc = api.signup()
    api.call("POST", "/posts", tb, json={"text": "from bob"})
    assert api.call("POST", "/follows", ta, json={"username": bob}).status_code == 204
    assert api.call("POST", "/follows", ta, json={"username": bob}).status_code == 204  # again
    # the actor is always the token's user: a forged field changes nothing
    assert api.call("POST", "/follows", tc, json={"username": bob, "actor": alice}) \
        .status_code == 204
    followers = api.call("GET", f"/users/{bob}/followers").get_json()
    assert sorted(u["username"] for u in followers["users"]) == sorted([alice, carol])
    assert followers["total"] == 2
    following = api.call("GET", f"/users/{alice}/following").get_json()
    assert [u["username"] for u in following["users"]] == [bob]
    assert [p["text"] for p in api.call("GET", "/timeline", ta).get_json()["posts"]] == \
        ["from bob"]

    r = api.call("POST", "/follows", ta, json={"username": alice})
    assert r.status_code == 403  # no self-follow
    assert api.call("POST", "/follows", ta, json={"username": "nobody_zz"}).status_code == 404
    assert api.call("POST", "/follows", ta, json={"user": bob}).status_code == 400
    assert api.call("POST", "/follows", ta, json={"username": 7}).status_code == 400

    assert api.call("DELETE", f"/follows/{bob}", ta).status_code == 204
    assert api.call("GET", "/timeline", ta).get_json()["posts"] == []
    assert api.call("GET", f"/users/{alice}/following").get_json()["users"] == []
    assert api.call("GET", "/users/nobody_zz/followers").status_code == 404
    assert api.call("GET", "/users/nobody_zz/following").status_code == 404


def test_cluster_is_for_admins(backend, api):
    _, token = api.signup()
    r = api.call("GET", "/cluster", token)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    app = create_app(make_config(backend, ADMINS=[ADMIN + "_x"]))
    c = app.test_client()
    name = ADMIN + "_x"
    c.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    token = c.post("/api/v1/tokens", json={"username": name,
                                           "password": PASSWORD}).get_json()["token"]
    r = c.get("/api/v1/cluster", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    status = r.get_json()
    assert status["replicas"] and {"id", "state", "applied_seq"} <= set(status["replicas"][0])


def test_health(client):
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "ok" and body["writes_possible"] is True


def test_metrics_content_type_names_its_charset_once(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].count("charset") == 1, r.headers["Content-Type"]


def test_unknown_route_and_method_are_json(client):
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.put("/api/v1/posts", json={})
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_too_large(api):
    _, token = api.signup()
    r = api.call("POST", "/posts", token, json={"text": "x" * 100_000})
    assert r.status_code == 413 and error_code(r) == "too_large"


def test_token_rate_limit(backend):
    app = create_app(make_config(backend, LOGIN_ACCOUNT_RATE_LIMIT="2 per minute"))
    c = app.test_client()
    name = unique("a")
    c.post("/api/v1/users", json={"username": name, "password": PASSWORD})
    codes = [c.post("/api/v1/tokens", json={"username": name, "password": "bad"}).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]
    assert error_code(c.post("/api/v1/tokens", json={"username": name,
                                                     "password": PASSWORD})) == "rate_limited"
