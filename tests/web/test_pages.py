"""Server-rendered pages: every route, its errors, authorization, escaping."""

from __future__ import annotations

import re

import pytest

from webfront.web import create_app

from .conftest import ADMIN, PASSWORD, author_of, make_config, unique


def text(response) -> str:
    return response.get_data(as_text=True)


def people(response) -> list[str]:
    """The usernames listed on a followers / following page."""
    return re.findall(r'<span class="handle">@(\w+)</span></li>', text(response))


# ----------------------------------------------------------------------------- public pages


def test_home_redirects_visitors_to_public(client):
    r = client.get("/")
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/public")


def test_public_and_forms_render(client):
    for path in ("/public", "/register", "/login"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "text/html" in r.headers["Content-Type"]
    page = text(client.get("/register"))
    for name in ("username", "password", "confirm"):
        assert f'name="{name}"' in page
        assert f'<label for="{name}"' in page


@pytest.mark.parametrize("path", ["/compose", "/logout", "/nobody_x/follow",
                                  "/nobody_x/unfollow", "/posts/1/delete"])
def test_actions_need_post(client, path):
    assert client.get(path).status_code in (404, 405)


@pytest.mark.parametrize("path", ["/compose", "/someone_x/follow", "/someone_x/unfollow",
                                  "/posts/1/delete"])
def test_actions_need_login(client, path):
    r = client.post(path, data={"text": "hi"})
    assert r.status_code == 302
    assert "/login" in r.headers["Location"]


def test_delete_account_page_needs_login(client):
    r = client.get("/settings/delete-account")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_unknown_user_is_404(client):
    for path in ("/no_such_user_x", "/no_such_user_x/followers", "/no_such_user_x/following"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Page not found" in text(r)
        assert "There is no user called @no_such_user_x." in text(r)


def test_security_headers(client):
    r = client.get("/public")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # no inline scripts anywhere in the page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text(r))


def test_session_cookie_flags(client, auth):
    _, r = auth.register()
    cookie = r.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# ----------------------------------------------------------------------------- accounts


def test_register_logs_in_and_shows_home(client, auth):
    name, r = auth.register(display_name="Alice A.")
    assert r.status_code == 302 and r.headers["Location"].endswith("/")
    page = text(client.get("/"))
    assert "Your timeline" in page and name in page
    profile = text(client.get(f"/{name}"))
    assert "Alice A." in profile and f"@{name}" in profile


@pytest.mark.parametrize("bad,message", [
    ("ab", "3 to 20"),
    ("with space", "3 to 20"),
    ("x" * 21, "3 to 20"),
    ("public", "reserved"),
    ("Admin", "reserved"),
    ("api", "reserved"),
    ("logout", "reserved"),
    ("metrics", "reserved"),
    ("settings", "reserved"),
])
def test_register_refuses_bad_and_reserved_names(client, auth, bad, message):
    _, r = auth.register(bad)
    assert r.status_code == 400
    page = text(r)
    assert message in page
    assert f'value="{bad}"' in page  # value kept on error
    assert 'aria-invalid="true"' in page


def test_register_taken_name_is_case_insensitive(client, auth):
    name, _ = auth.register()
    auth.logout()
    _, r = auth.register(name.upper())
    assert r.status_code == 400
    assert "taken" in text(r)


def test_register_password_mismatch(client):
    r = client.post("/register", data={"username": unique(), "password": PASSWORD,
                                       "confirm": PASSWORD + "x"})
    assert r.status_code == 400 and "do not match" in text(r)


def test_login_logout(client, auth):
    name, _ = auth.register()
    auth.logout()
    assert client.get("/").status_code == 302
    r = auth.login(name, "wrong password")
    assert r.status_code == 401 and "Wrong username or password" in text(r)
    assert f'value="{name}"' in text(r)
    r = auth.login(name.upper())  # names ignore case
    assert r.status_code == 302
    assert client.get("/").status_code == 200
    r = auth.logout()
    assert r.status_code == 302 and r.headers["Location"].endswith("/public")
    assert client.get("/").status_code == 302


def test_login_unknown_user(client, auth):
    r = auth.login(unique())
    assert r.status_code == 401


def test_password_is_hashed_with_scrypt(backend, client, auth):
    from webfront.web.cluster_access import get_cluster

    name, _ = auth.register()
    with client.application.app_context():
        user = get_cluster().read("user", {"username": name}).reply["user"]
    stored = user["password_hash"]
    stored = stored.decode() if isinstance(stored, bytes) else stored
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_login_next_is_local_only(client, auth):
    name, _ = auth.register()
    auth.logout()
    r = client.post("/login?next=//evil.example/", data={"username": name,
                                                         "password": PASSWORD})
    assert r.headers["Location"] in ("/", "http://localhost/")
    auth.logout()
    r = client.post(f"/login?next=/{name}", data={"username": name, "password": PASSWORD})
    assert r.headers["Location"].endswith(f"/{name}")


def test_delete_account(client, auth):
    name, _ = auth.register()
    auth.post("soon gone")
    assert client.get("/settings/delete-account").status_code == 200
    r = client.post("/settings/delete-account", data={"confirm": "someone_else",
                                                      "password": PASSWORD})
    assert r.status_code == 400 and "own username" in text(r)
    r = client.post("/settings/delete-account", data={"confirm": name, "password": "nope"})
    assert r.status_code == 400 and "Wrong password" in text(r)
    assert client.get(f"/{name}").status_code == 200
    r = client.post("/settings/delete-account", data={"confirm": name, "password": PASSWORD})
    assert r.status_code == 302
    assert client.get(f"/{name}").status_code == 404
    assert "soon gone" not in text(client.get("/public"))
    assert client.get("/").status_code == 302  # logged out


# ----------------------------------------------------------------------------- posts


def test_post_is_visible_at_once_with_author_and_time(client, auth):
    name, _ = auth.register()
    r = auth.post("  hello, replicated world  ")
    assert r.status_code == 302
    page = text(client.get("/"))
    assert "hello, replicated world" in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z" title="[^"]+ UTC">'
                     r"(just now|\d+ s ago)</time>", page)
    assert f'href="/{name}">{name}</a>' in page
    assert "hello, replicated world" in text(client.get("/public"))
    assert "hello, replicated world" in text(client.get(f"/{name}"))


def test_post_validation_keeps_text(client, auth):
    auth.register()
    r = auth.post("x" * 281)
    assert r.status_code == 400
    page = text(r)
    assert "At most 280 characters" in page and "x" * 281 in page
    r = auth.post("   ")
    assert r.status_code == 400 and "Write something" in text(r)
    assert auth.post("é" * 280).status_code == 302  # code points, not bytes


def test_post_is_escaped(client, auth):
    auth.register()
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    auth.post(payload)
    for path in ("/", "/public"):
        page = text(client.get(path))
        assert payload not in page
        assert "&lt;script&gt;alert(" in page
        assert "<img src=x" not in page


def test_display_name_is_escaped(client, auth):
    name, _ = auth.register(display_name="<b>bold</b>")
    page = text(client.get(f"/{name}"))
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_delete_own_post_only(client, auth, app):
    alice, _ = auth.register()
    auth.post("alice's first words")
    auth.post("alice's words")
    page = text(client.get("/"))
    ids = re.findall(r'id="post-(\d+)"', page)
    # each post's own form (the URLs are built once per page and filled in per post)
    assert re.findall(r'action="/posts/(\d+)/delete"', page) == ids and len(set(ids)) == 2
    assert page.count(f'href="/{alice}">{alice}</a>') >= 2
    post_id = int(ids[0])
    auth.logout()

    auth.register()
    assert f"/posts/{post_id}/delete" not in text(client.get("/public"))  # no button
    r = client.post(f"/posts/{post_id}/delete")
    assert r.status_code == 403
    assert "alice&#39;s words" in text(client.get("/public"))
    assert client.post("/posts/999999999/delete").status_code == 404
    auth.logout()

    auth.login(alice)
    r = client.post(f"/posts/{post_id}/delete", data={"next": f"/{alice}"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/{alice}")
    assert "alice&#39;s words" not in text(client.get("/public"))


def test_paging_older_posts(backend, client, auth):
    c, name = author_of(backend, [f"numbered post {i}" for i in range(7)], PAGE_SIZE=3)
    seen = []
    path = f"/{name}"
    for _ in range(4):
        page = text(c.get(path))
        seen += re.findall(r"numbered post (\d)", page)
        m = re.search(r'<a rel="next" href="([^"]+)"', page)
        if not m:
            break
        path = m.group(1).replace("&amp;", "&")
    assert seen == [str(i) for i in range(6, -1, -1)]  # newest first, each once
    home = text(c.get("/"))
    assert re.findall(r"numbered post (\d)", home) == ["6", "5", "4"]
    assert 'rel="next"' in home


# ----------------------------------------------------------------------------- follows


def test_follow_unfollow_and_lists(client, auth):
    bob, _ = auth.register()
    auth.post("bob says hi")
    auth.logout()
    alice, _ = auth.register()
    assert "bob says hi" not in text(client.get("/"))

    page = text(client.get(f"/{bob}"))
    assert f'action="/{bob}/follow"' in page
    r = client.post(f"/{bob}/follow")
    assert r.status_code == 302
    page = text(client.get(f"/{bob}"))
    assert f'action="/{bob}/unfollow"' in page
    assert 'class="followers-count">1<' in page
    assert "bob says hi" in text(client.get("/"))
    assert people(client.get(f"/{bob}/followers")) == [alice]
    assert people(client.get(f"/{alice}/following")) == [bob]

    r = client.post(f"/{bob}/unfollow")
    assert r.status_code == 302
    assert "bob says hi" not in text(client.get("/"))
    assert people(client.get(f"/{bob}/followers")) == []


def test_cannot_follow_self_or_nobody(client, auth):
    me, _ = auth.register()
    assert f'action="/{me}/follow"' not in text(client.get(f"/{me}"))
    assert client.post(f"/{me}/follow").status_code == 403
    assert client.post("/nobody_zz_9/follow").status_code == 404


def test_follow_acts_only_for_the_session_user(client, auth):
    """There is no way to name the actor: a forged field is ignored."""
    bob, _ = auth.register()
    auth.logout()
    carol, _ = auth.register()
    auth.logout()
    mallory, _ = auth.register()
    client.post(f"/{carol}/follow", data={"actor": bob, "username": bob})
    assert people(client.get(f"/{carol}/followers")) == [mallory]


# ----------------------------------------------------------------------------- CSRF


def test_csrf_rejects_post_without_token(backend):
    app = create_app(make_config(backend, WTF_CSRF_ENABLED=True))
    c = app.test_client()
    r = c.post("/register", data={"username": unique(), "password": PASSWORD,
                                  "confirm": PASSWORD})
    assert r.status_code == 400
    assert "expired or was not sent from this site" in text(r)
    # with the token from the form it works
    page = text(c.get("/register"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    name = unique()
    r = c.post("/register", data={"username": name, "password": PASSWORD, "confirm": PASSWORD,
                                  "csrf_token": token})
    assert r.status_code == 302
    assert c.post("/logout").status_code == 400  # logout needs the token too
    assert c.get("/").status_code == 200
    # and the JSON API is exempt (it uses bearer tokens)
    r = c.post("/api/v1/users", json={"username": unique(), "password": PASSWORD})
    assert r.status_code == 201


# ----------------------------------------------------------------------------- admin


def test_action_forms_carry_the_token_and_ids_stay_unique(backend):
    # Every delete button is a small form with the CSRF token; the page must stay valid HTML
    # (no repeated id) and the token from it must be accepted.
    app = create_app(make_config(backend, WTF_CSRF_ENABLED=True))
    c = app.test_client()
    page = text(c.get("/register"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    name = unique()
    assert c.post("/register", data={"username": name, "password": PASSWORD,
                                     "confirm": PASSWORD, "csrf_token": token}).status_code == 302
    # Logging in starts a new session, so a new token.
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text(c.get("/"))).group(1)
    for i in range(3):
        assert c.post("/compose", data={"text": f"note {i}", "csrf_token": token}).status_code == 302
    page = text(c.get("/"))
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    forms = re.findall(r'<form method="post" action="/posts/(\d+)/delete"', page)
    assert len(forms) == 3
    tokens = re.findall(r'<form method="post" action="/posts/\d+/delete"[^>]*>\s*'
                        r'<input name="csrf_token" type="hidden" value="([^"]+)">', page)
    assert len(tokens) == 3
    assert c.post(f"/posts/{forms[0]}/delete", data={"csrf_token": tokens[0]}).status_code == 302
    assert c.post(f"/posts/{forms[1]}/delete").status_code == 400  # and without it: refused
    assert page.count("note ") == 3 and text(c.get("/")).count("note ") == 2


def test_admin_page_only_for_admins(backend, client, auth):
    assert client.get("/admin/cluster").status_code == 302  # to login
    assert client.get("/admin/cluster.json").status_code == 401
    auth.register()
    assert client.get("/admin/cluster").status_code == 403
    assert client.get("/admin/cluster.json").status_code == 403
    assert "/admin/cluster" not in text(client.get("/"))
    auth.logout()

    admin = unique("adm")
    app = create_app(make_config(backend, ADMINS=[admin]))
    c = app.test_client()
    c.post("/register", data={"username": admin, "password": PASSWORD, "confirm": PASSWORD})
    page = text(c.get("/admin/cluster"))
    assert "Cluster status" in page and "admin.js" in page
    assert page.count('<tr data-id="') >= 1
    assert "state-up" in page
    data = c.get("/admin/cluster.json").get_json()
    assert data["reachable"] is True
    for replica in data["replicas"]:
        for key in ("id", "state", "applied_seq", "lag", "digest", "last_heartbeat_ms"):
            assert key in replica
    assert ADMIN  # the default test admin name is reserved for API tests


def test_metrics(client):
    client.get("/public")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "webfront_http_requests_total" in text(r)


def test_request_too_large(client, auth):
    auth.register()
    r = client.post("/compose", data={"text": "x" * 70_000})
    assert r.status_code == 413


def test_login_rate_limited(backend):
    app = create_app(make_config(backend, LOGIN_ACCOUNT_RATE_LIMIT="3 per minute",
                                 LOGIN_RATE_LIMIT="1000 per minute"))
    c = app.test_client()
    name = unique()
    c.post("/register", data={"username": name, "password": PASSWORD, "confirm": PASSWORD})
    c.post("/logout")
    codes = [c.post("/login", data={"username": name, "password": "bad"}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = c.post("/login", data={"username": name, "password": PASSWORD})
    assert r.status_code == 429  # the account is locked for the window, even with the password
    # another account from the same address is still fine
    assert c.post("/login", data={"username": unique(), "password": "bad"}).status_code == 401

    app = create_app(make_config(backend, LOGIN_RATE_LIMIT="2 per minute"))
    c = app.test_client()
    codes = [c.post("/login", data={"username": unique(), "password": "bad"}).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]


# /favicon.ico is no user either, but is answered: test_page_ux.py::test_favicon.
@pytest.mark.parametrize("path", ["/wp-login.php", "/a", "/x" * 30])
def test_implausible_names_are_404(client, path):
    assert client.get(path).status_code == 404
