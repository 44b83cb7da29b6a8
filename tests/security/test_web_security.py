"""Web hardening on the real app (CSRF ON, real cluster), extending tests/web rather than
repeating it: CSRF on every form and every state-changing route, headers on every kind of page,
escaping of user text on every page that shows it, token tampering, and authorization across
users through both the pages and the API.
"""

from __future__ import annotations

import re

import pytest
from itsdangerous import URLSafeTimedSerializer

from .conftest import PASSWORD, api_signup, bearer, unique

pytestmark = pytest.mark.slow

CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
HOSTILE = ["<script>alert(1)</script>", "<b>x</b>"]


def csrf_token(html: str) -> str:
    m = CSRF_INPUT.search(html)
    assert m, "no csrf_token input in the form"
    return m.group(1) or m.group(2)


def login(client, username: str, password: str = PASSWORD) -> None:
    token = csrf_token(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"username": username, "password": password,
                                    "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]


@pytest.fixture
def two_users(app):
    """Two users made through the API, `alice` logged in on a browser-like client."""
    api = app.test_client()
    alice, alice_token = api_signup(api, unique("alice"))
    bob, bob_token = api_signup(api, unique("bob"))
    r = api.post("/api/v1/posts", json={"text": "bob's post"}, headers=bearer(bob_token))
    assert r.status_code == 201
    client = app.test_client()
    login(client, alice)
    return {"client": client, "api": api, "alice": alice, "bob": bob,
            "alice_token": alice_token, "bob_token": bob_token, "bob_post": r.get_json()["id"]}


def test_every_post_form_carries_a_csrf_token(app, two_users):
    client, bob = two_users["client"], two_users["bob"]
    anon = app.test_client()
    pages = [(anon, "/login"), (anon, "/register"), (client, "/"),
             (client, f"/{bob}"), (client, "/settings/delete-account"), (client, "/public")]
    forms_seen = 0
    for c, path in pages:
        html = c.get(path).get_data(as_text=True)
        for form in re.findall(r"<form\b.*?</form>", html, re.DOTALL | re.IGNORECASE):
            if re.search(r'method="post"', form, re.IGNORECASE):
                forms_seen += 1
                assert 'name="csrf_token"' in form, (path, form[:200])
    assert forms_seen >= 6


def test_state_changing_routes_refuse_missing_or_wrong_csrf(app, two_users):
    client, api = two_users["client"], two_users["api"]
    alice, bob = two_users["alice"], two_users["bob"]
    routes = [("/compose", {"text": "csrf attack"}),
              (f"/posts/{two_users['bob_post']}/delete", {}),
              (f"/{bob}/follow", {}), (f"/{bob}/unfollow", {}),
              ("/settings/delete-account", {"password": PASSWORD, "confirm": alice}),
              ("/logout", {})]
    for token in (None, "forged-token"):
        for path, data in routes:
            body = dict(data, **({"csrf_token": token} if token else {}))
            r = client.post(path, data=body)
            assert r.status_code == 400, (path, token, r.status_code)
    # Nothing happened: alice exists with no posts and follows nobody, still logged in.
    me = api.get(f"/api/v1/users/{alice}").get_json()
    assert (me["posts"], me["following"]) == (0, 0)
    assert api.get(f"/api/v1/users/{bob}").get_json()["posts"] == 1
    assert client.get("/").status_code == 200
    # Login and register forms too (login CSRF stops session fixation by a third site).
    anon = app.test_client()
    assert anon.post("/login", data={"username": alice, "password": PASSWORD}).status_code == 400
    assert anon.post("/register", data={"username": unique(), "password": PASSWORD,
                                        "confirm": PASSWORD}).status_code == 400


@pytest.mark.parametrize("path", ["/public", "/login", "/register", "/", "/{bob}",
                                  "/{bob}/followers", "/{bob}/following", "/nosuchuser_x",
                                  "/settings/delete-account", "/admin/cluster",
                                  "/api/v1/public", "/api/v1/openapi.json", "/api/v1/health",
                                  "/api/v1/users/nosuchuser_x", "/api/v1/timeline"])
def test_security_headers_on_every_page(two_users, path):
    r = two_users["client"].get(path.format(bob=two_users["bob"]))
    h = r.headers
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (path, csp)
    assert "unsafe-inline" not in csp
    assert h.get("X-Content-Type-Options") == "nosniff"
    assert h.get("X-Frame-Options") == "DENY"


def test_no_inline_script_in_pages(two_users):
    client, bob = two_users["client"], two_users["bob"]
    for path in ("/", "/public", f"/{bob}", "/login"):
        html = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
            assert "src=" in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers


def test_user_text_is_escaped_on_every_page(app, nocsrf_app):
    api = app.test_client()
    author, token = api_signup(api, unique("xss"), display_name=HOSTILE[0])
    fan, fan_token = api_signup(api, unique("fan"), display_name=HOSTILE[1])
    for text in HOSTILE:
        assert api.post("/api/v1/posts", json={"text": text},
                        headers=bearer(token)).status_code == 201
    assert api.post("/api/v1/follows", json={"username": author},
                    headers=bearer(fan_token)).status_code == 204
    assert api.post("/api/v1/follows", json={"username": fan},
                    headers=bearer(token)).status_code == 204
    client = app.test_client()
    login(client, author)
    pages = ["/", "/public", f"/{author}", f"/{author}/followers", f"/{author}/following",
             f"/{fan}"]
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html, path
        assert "<b>x</b>" not in html, path
    # And it is shown, as text, where it belongs.
    for path in ("/", "/public", f"/{author}"):
        html = client.get(path).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "&lt;b&gt;x&lt;/b&gt;" in html, path
    for path in (f"/{author}/followers", f"/{author}/following"):
        assert "&lt;b&gt;x&lt;/b&gt;" in client.get(path).get_data(as_text=True), path
    # The API returns it verbatim as JSON data (escaping is the renderer's job), never HTML.
    r = api.get(f"/api/v1/users/{author}")
    assert r.mimetype == "application/json" and r.get_json()["display_name"] == HOSTILE[0]


def test_tampered_and_foreign_tokens_refused(app, two_users):
    api, token = two_users["api"], two_users["alice_token"]
    assert api.get("/api/v1/timeline", headers=bearer(token)).status_code == 200
    payload, _, signature = token.rpartition(".")
    # Change the first character: every bit of it counts (the last one of a base64 signature
    # carries padding bits, so "B" -> "A" there can decode to the same signature).
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged_payload = URLSafeTimedSerializer("x").dumps({"u": two_users["bob"]}).split(".")[0]
    for bad in (payload + "." + flipped, forged_payload + token[token.index("."):],
                URLSafeTimedSerializer("guessed-key", salt="webfront-api-token").dumps(
                    {"u": two_users["bob"]}),
                URLSafeTimedSerializer(app.secret_key, salt="other-salt").dumps(
                    {"u": two_users["bob"]}),
                token + "x", "", "null"):
        r = api.get("/api/v1/timeline", headers=bearer(bad) if bad else {})
        assert r.status_code == 401, bad


def test_nobody_acts_on_someone_elses_behalf_through_the_api(two_users):
    api, alice, bob = two_users["api"], two_users["alice"], two_users["bob"]
    at, bt = two_users["alice_token"], two_users["bob_token"]
    # Extra fields naming another actor are ignored: the token decides who acts.
    assert api.post("/api/v1/follows", json={"username": alice, "actor": bob},
                    headers=bearer(at)).status_code == 403  # alice following herself
    assert api.get(f"/api/v1/users/{bob}").get_json()["following"] == 0
    r = api.post("/api/v1/posts", json={"text": "as bob?", "actor": bob}, headers=bearer(at))
    assert r.status_code == 201 and r.get_json()["author"].lower() == alice.lower()
    assert api.delete(f"/api/v1/posts/{two_users['bob_post']}",
                      headers=bearer(at)).status_code == 403
    assert api.delete(f"/api/v1/users/{bob}", headers=bearer(at)).status_code == 403
    assert api.delete(f"/api/v1/follows/{alice}", headers=bearer(bt)).status_code in (204, 404)
    assert api.get(f"/api/v1/users/{bob}").get_json()["posts"] == 1
    for method, path in (("GET", "/api/v1/cluster"), ("DELETE", f"/api/v1/users/{bob}")):
        assert api.open(path, method=method).status_code == 401
    assert api.get("/api/v1/cluster", headers=bearer(at)).status_code == 403


def test_pages_refuse_acting_for_others(two_users):
    client, api, bob = two_users["client"], two_users["api"], two_users["bob"]
    html = client.get("/").get_data(as_text=True)
    token = csrf_token(html)
    r = client.post(f"/posts/{two_users['bob_post']}/delete", data={"csrf_token": token})
    assert r.status_code in (302, 403)
    assert api.get(f"/api/v1/users/{bob}").get_json()["posts"] == 1
    assert client.get("/admin/cluster").status_code in (403, 404)
    assert client.get("/admin/cluster.json").status_code in (403, 404)


@pytest.mark.parametrize("post_id", [2**63, 2**64, 10**30])
def test_post_ids_beyond_int64_are_404_not_500(two_users, post_id):
    """Found by schemathesis: such an id could not be encoded for the cluster (was a 500)."""
    api, client = two_users["api"], two_users["client"]
    r = api.delete(f"/api/v1/posts/{post_id}", headers=bearer(two_users["alice_token"]))
    assert r.status_code == 404
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post(f"/posts/{post_id}/delete", data={"csrf_token": token}).status_code == 404


def test_api_request_size_limit_before_parsing(two_users):
    r = two_users["api"].post("/api/v1/users", data=b"{" + b" " * (2 << 20) + b"}",
                              content_type="application/json")
    assert r.status_code == 413
