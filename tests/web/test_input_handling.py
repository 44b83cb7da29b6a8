"""Hostile and unusual input: every case answers 4xx (never 500), writes nothing it should not,
and ordinary international text keeps working. Against the real cluster of conftest.py."""

from __future__ import annotations

import io
import uuid
from urllib.parse import urlsplit

import pytest

from webfront.web import create_app

from .conftest import ADMIN, PASSWORD, make_config, unique


def text(response) -> str:
    return response.get_data(as_text=True)


def error(response) -> dict:
    body = response.get_json()
    assert body is not None and set(body) == {"error"}, text(response)[:200]
    return body["error"]


class SeqProbe:
    """Whether writes were sent to the cluster between two probes: each probe is a post of its
    own user, and a refused write still takes a seq (the tests share one quiet cluster)."""

    def __init__(self, api) -> None:
        self.api = api
        _, self.token = api.signup()
        self.seq = self.probe()

    def probe(self) -> int:
        r = self.api.call("POST", "/posts", self.token, json={"text": "probe"})
        assert r.status_code == 201
        return r.get_json()["seq"]

    def nothing_written(self) -> bool:
        before, self.seq = self.seq, self.probe()
        return self.seq == before + 1


def posts_of(client, username: str) -> list[dict]:
    r = client.get(f"/api/v1/users/{username}/posts?limit=200")
    assert r.status_code == 200, r.get_json()
    return r.get_json()["posts"]


def raw_json(client, path: str, body: bytes | str, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/api/v1" + path, data=body, headers=headers)


# ----------------------------------------------------------------------------- JSON bodies

# A lone surrogate as a JSON escape and as its raw (CESU-8) bytes, which json.loads also takes.
SURROGATES = ["\\ud83d", b"\xed\xa0\xbd".decode("latin-1")]


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("path,template", [
    ("/posts", '{"text": "hi %s"}'),
    ("/users", '{"username": "good_name_s", "password": "%s long enough"}'),
    ("/users", '{"username": "good_name_s", "password": "long enough", "display_name": "a%s"}'),
    ("/users", '{"username": "bad%s", "password": "long enough"}'),
    ("/tokens", '{"username": "bad%s", "password": "long enough"}'),
    ("/tokens", '{"username": "good_name_s", "password": "x%s"}'),
    ("/follows", '{"username": "x%s"}'),
])
def test_lone_surrogates_in_json_are_400(api, path, template, surrogate):
    _, token = api.signup()
    body = (template % surrogate).encode("latin-1")
    r = raw_json(api.client, path, body, token)
    assert r.status_code == 400 and error(r)["code"] == "invalid"
    assert "UTF-8" in error(r)["message"]


@pytest.mark.parametrize("path", ["/posts", "/users", "/tokens", "/follows"])
def test_deeply_nested_json_is_400(api, path):
    _, token = api.signup()
    body = '{"x": ' + "[" * 30000 + "]" * 30000 + "}"
    assert len(body) < 64 * 1024
    r = raw_json(api.client, path, body, token)
    assert r.status_code == 400 and error(r)["code"] == "invalid"


def test_chunked_body_over_the_limit_is_413_like_a_declared_one(api):
    """gunicorn passes a chunked body through with wsgi.input_terminated; werkzeug stopped
    reading it at MAX_CONTENT_LENGTH without an error, so the body was silently cut."""
    name, token = api.signup()
    prefix = b'{"text": "cut here"}'
    for body in (b'{"text": "' + b"x" * 70_000 + b'"}', prefix + b" " * 70_000):
        r = api.client.post("/api/v1/posts", input_stream=io.BytesIO(body),
                            headers={"Content-Type": "application/json",
                                     "Transfer-Encoding": "chunked",
                                     "Authorization": f"Bearer {token}"},
                            environ_overrides={"wsgi.input_terminated": True})
        assert r.status_code == 413 and error(r)["code"] == "too_large"
    assert posts_of(api.client, name) == []
    # a small chunked body still works
    r = api.client.post("/api/v1/posts", input_stream=io.BytesIO(prefix),
                        headers={"Content-Type": "application/json",
                                 "Transfer-Encoding": "chunked",
                                 "Authorization": f"Bearer {token}"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 201 and r.get_json()["text"] == "cut here"


# ----------------------------------------------------------------------------- query strings


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "%EF%BC%91", "+1", "1_0", "%201"])
def test_query_numbers_are_ascii_digits_only(api, client, auth, value):
    """"²".isdigit() is True but int() refuses it (500); "٣" and "１" were taken as 3 and 1."""
    name, token = api.signup()
    for path in ("/public", f"/users/{name}/posts", "/timeline", f"/users/{name}/followers",
                 f"/users/{name}/following"):
        for param in ("limit", "before"):
            r = api.call("GET", f"{path}?{param}={value}", token)
            assert r.status_code == 400 and error(r)["code"] == "invalid", (path, param)
            assert param in error(r)["message"]
    me, _ = auth.register()
    for path in ("/public", "/", f"/{me}", f"/{me}/followers", f"/{me}/following"):
        r = client.get(f"{path}?before={value}")
        assert r.status_code == 400, path
        assert "before" in text(r)


def test_huge_before_is_400_on_pages_and_api(api, client, auth):
    me, _ = auth.register()
    huge = "9" * 23
    for path in ("/public", "/", f"/{me}", f"/{me}/followers", f"/{me}/following"):
        assert client.get(f"{path}?before={huge}").status_code == 400, path
    for path in ("/public", f"/users/{me}/posts", f"/users/{me}/followers"):
        assert api.call("GET", f"{path}?before={huge}").status_code == 400, path
    # the largest int64 is fine
    assert client.get(f"/public?before={2**63 - 1}").status_code == 200
    assert client.get("/public?before=").status_code == 200


# ----------------------------------------------------------------------------- redirects

EVIL_NEXT = ["/%09/evil.example", "/%0D%0A/evil.example", "/%0A/evil.example",
             "/\\evil.example", "/%5C%5Cevil.example", "//evil.example", "/%2F/evil.example",
             "/%2F%2F%2Fevil.example",
             "https://evil.example/", "/%00/evil.example", "/%C2%85/evil.example"]


def is_local(location: str) -> bool:
    parts = urlsplit(location)
    return parts.netloc in ("", "localhost") and parts.scheme in ("", "http") \
        and not parts.path.startswith("//") and "\\" not in location


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_login_next_cannot_leave_the_site(client, auth, target):
    name, _ = auth.register()
    auth.logout()
    r = client.post(f"/login?next={target}", data={"username": name, "password": PASSWORD})
    assert r.status_code == 302
    assert is_local(r.headers["Location"]) and "evil" not in r.headers["Location"]
    assert urlsplit(r.headers["Location"]).path == "/"


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_delete_post_next_cannot_leave_the_site(client, auth, target):
    from urllib.parse import unquote

    name, _ = auth.register()
    auth.post("to be deleted")
    post_id = posts_of(client, name)[0]["id"]
    r = client.post(f"/posts/{post_id}/delete", data={"next": unquote(target)})
    assert r.status_code == 302
    assert is_local(r.headers["Location"]) and "evil" not in r.headers["Location"]
    assert urlsplit(r.headers["Location"]).path == "/"


def test_local_next_still_works(client, auth):
    name, _ = auth.register()
    auth.logout()
    r = client.post(f"/login?next=/{name}%3Fbefore%3D5",
                    data={"username": name, "password": PASSWORD})
    assert r.headers["Location"].endswith(f"/{name}?before=5")
    auth.post("x")
    post_id = posts_of(client, name)[0]["id"]
    r = client.post(f"/posts/{post_id}/delete", data={"next": "/public?before=9"})
    assert r.headers["Location"].endswith("/public?before=9")


# ----------------------------------------------------------------------------- Idempotency-Key


def test_a_key_reused_with_another_body_is_another_request(api):
    alice, ta = api.signup()
    bob, _ = api.signup()
    carol, _ = api.signup()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.call("POST", "/posts", ta, json={"text": "first text"}, headers=key)
    again = api.call("POST", "/posts", ta, json={"text": "first text"}, headers=key)
    other = api.call("POST", "/posts", ta, json={"text": "other text"}, headers=key)
    assert first.status_code == again.status_code == other.status_code == 201
    assert first.get_json() == again.get_json()
    assert other.get_json()["text"] == "other text" and other.get_json()["id"] != \
        first.get_json()["id"]
    assert sorted(p["text"] for p in posts_of(api.client, alice)) == ["first text", "other text"]

    for target in (bob, carol):
        assert api.call("POST", "/follows", ta, json={"username": target},
                        headers=key).status_code == 204
    following = api.call("GET", f"/users/{alice}/following").get_json()["users"]
    assert sorted(u["username"] for u in following) == sorted([bob, carol])

    # a DELETE's path is part of the request too
    ids = [p["id"] for p in posts_of(api.client, alice)]
    for post_id in ids:
        assert api.call("DELETE", f"/posts/{post_id}", ta, headers=key).status_code == 204
    assert posts_of(api.client, alice) == []

    # A sign-up sent again with the key and another password is a new request: the name is
    # taken (it was 201, and the second password was never set).
    name = unique("a")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"username": name, "password": PASSWORD}
    assert api.call("POST", "/users", json=body, headers=key).status_code == 201
    r = api.call("POST", "/users", json={**body, "password": "another password"}, headers=key)
    assert r.status_code == 409
    assert api.call("POST", "/users", json=body, headers=key).status_code == 201
    assert api.call("POST", "/tokens", json=body).status_code == 200


def test_openapi_says_a_key_with_another_body_is_another_request(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    header = next(p for p in doc["paths"]["/posts"]["post"]["parameters"]
                  if p["name"] == "Idempotency-Key")
    assert "still gets the first result" not in header["description"]
    assert "another body" in header["description"]


# ----------------------------------------------------------------------------- usernames


def test_username_with_a_trailing_newline_is_refused_before_the_cluster(client, api):
    name = unique()
    seqs = SeqProbe(api)
    r = client.post("/register", data={"username": name + "\n", "password": PASSWORD,
                                       "confirm": PASSWORD})
    assert r.status_code == 400 and "3 to 20" in text(r)
    r = api.call("POST", "/users", json={"username": name + "\n", "password": PASSWORD})
    assert r.status_code == 400 and "3 to 20" in error(r)["message"]
    assert seqs.nothing_written()
    assert client.get(f"/{name}%0A").status_code == 404
    assert api.call("GET", f"/users/{name}%0A").status_code == 404


# ----------------------------------------------------------------------------- text content

BAD_IN_POSTS = ["a\x00b", "bell\x07", "esc\x1b[31m", "del\x7f", "c1\x85x", "rtl\u202egnp.exe",
                "iso\u2066late\u2069", "lre\u202a"]
BAD_IN_NAMES = BAD_IN_POSTS + ["tab\tname", "line\nname", "cr\rname"]
BLANK = ["\u200b", " \u200b\u200c\u2060 ", "\ufeff", "\r\n\r\n"]


@pytest.mark.parametrize("bad", BAD_IN_POSTS)
def test_posts_refuse_control_and_bidi_override_characters(api, client, auth, bad):
    name, token = api.signup()
    r = api.call("POST", "/posts", token, json={"text": bad})
    assert r.status_code == 400 and error(r)["code"] == "invalid"
    assert "character" in error(r)["message"]
    me, _ = auth.register()
    r = auth.post(bad)
    assert r.status_code == 400 and "character" in text(r)
    assert posts_of(client, name) == posts_of(client, me) == []


@pytest.mark.parametrize("blank", BLANK)
def test_a_post_of_invisible_characters_is_empty(api, client, auth, blank):
    name, token = api.signup()
    r = api.call("POST", "/posts", token, json={"text": blank})
    assert r.status_code == 400 and error(r)["code"] == "invalid"
    me, _ = auth.register()
    r = auth.post(blank)
    assert r.status_code == 400 and "Write something" in text(r)
    assert posts_of(client, name) == posts_of(client, me) == []


@pytest.mark.parametrize("bad", BAD_IN_NAMES)
def test_display_names_refuse_control_and_bidi_override_characters(api, client, bad):
    r = api.call("POST", "/users", json={"username": unique("a"), "password": PASSWORD,
                                         "display_name": bad})
    assert r.status_code == 400 and "display_name" in error(r)["message"]
    name = unique()
    r = client.post("/register", data={"username": name, "password": PASSWORD,
                                       "confirm": PASSWORD, "display_name": bad})
    assert r.status_code == 400 and "character" in text(r)
    assert api.call("GET", f"/users/{name}").status_code == 404


RTL_NAME = "José \u200fעברית\u200e"  # RLM and LRM are marks, not overrides: fine
INTERNATIONAL = "Grüße, José! 👍🏽 👩‍👩‍👧 漢字かな العربية שלום\nsecond line\twith a tab"


def test_international_text_emoji_and_newlines_still_work(api, client, auth):
    _, token = api.signup()
    r = api.call("POST", "/posts", token, json={"text": INTERNATIONAL})
    assert r.status_code == 201 and r.get_json()["text"] == INTERNATIONAL
    me, _ = auth.register(display_name="Zoë 李 👍🏽")
    assert auth.post(INTERNATIONAL).status_code == 302
    assert [p["text"] for p in posts_of(client, me)] == [INTERNATIONAL]
    assert api.call("GET", f"/users/{me}").get_json()["display_name"] == "Zoë 李 👍🏽"
    r = api.call("POST", "/users", json={"username": unique("a"), "password": PASSWORD,
                                         "display_name": RTL_NAME})
    assert r.status_code == 201 and r.get_json()["user"]["display_name"] == RTL_NAME


def test_display_name_is_stripped_then_checked_then_falls_back(api, client):
    padded = "  " + "n" * 50 + "  "
    name = unique("a")
    r = api.call("POST", "/users", json={"username": name, "password": PASSWORD,
                                         "display_name": padded})
    assert r.status_code == 201 and r.get_json()["user"]["display_name"] == "n" * 50
    for blank in ("   ", "\u200b"):
        name = unique("a")
        r = api.call("POST", "/users", json={"username": name, "password": PASSWORD,
                                             "display_name": blank})
        assert r.status_code == 201 and r.get_json()["user"]["display_name"] == name
    r = api.call("POST", "/users", json={"username": unique("a"), "password": PASSWORD,
                                         "display_name": "n" * 51})
    assert r.status_code == 400

    for display, stored in ((padded, "n" * 50), ("   ", None)):
        c = client.application.test_client()
        name = unique()
        r = c.post("/register", data={"username": name, "password": PASSWORD,
                                      "confirm": PASSWORD, "display_name": display})
        assert r.status_code == 302, text(r)
        assert c.get(f"/api/v1/users/{name}").get_json()["display_name"] == (stored or name)


def test_crlf_counts_as_one_character_and_is_stored_as_lf(api, client, auth):
    """Browsers send a textarea's newlines as CRLF; their counter sees LF."""
    lines = ["x" * 10] * 25
    lf = "\n".join(lines)
    assert len(lf) == 274
    crlf = (lf + "abcdef").replace("\n", "\r\n")  # 280 characters, 304 with the CRs
    me, _ = auth.register()
    assert auth.post(crlf).status_code == 302
    assert [p["text"] for p in posts_of(client, me)] == [lf + "abcdef"]
    _, token = api.signup()
    r = api.call("POST", "/posts", token, json={"text": "one\rtwo\r\nthree"})
    assert r.status_code == 201 and r.get_json()["text"] == "one\ntwo\nthree"
    r = api.call("POST", "/posts", token, json={"text": crlf})
    assert r.status_code == 201 and "\r" not in r.get_json()["text"]


# ----------------------------------------------------------------------------- follows, tokens


def test_self_follow_is_refused_before_the_cluster(api, client, auth):
    name, token = api.signup()
    seqs = SeqProbe(api)
    r = api.call("POST", "/follows", token, json={"username": name.upper()})
    assert r.status_code == 403 and error(r)["code"] == "forbidden"
    r = api.call("DELETE", f"/follows/{name}", token)
    assert r.status_code == 403
    assert "unfollow" in error(r)["message"] and "cannot follow" not in error(r)["message"]
    assert seqs.nothing_written()
    me, _ = auth.register()
    seqs = SeqProbe(api)
    assert client.post(f"/{me}/follow").status_code == 403
    assert client.post(f"/{me}/unfollow").status_code == 403
    assert seqs.nothing_written()


def test_unfollow_says_so_only_when_it_unfollowed(client, auth):
    bob, _ = auth.register()
    auth.logout()
    auth.register()
    r = client.post(f"/{bob}/unfollow", follow_redirects=True)
    assert r.status_code == 200
    assert f"You no longer follow {bob}" not in text(r)
    assert f"You did not follow {bob}" in text(r)
    client.post(f"/{bob}/follow")
    r = client.post(f"/{bob}/unfollow", follow_redirects=True)
    assert f"You no longer follow {bob}" in text(r)


def test_token_with_an_overlong_name_or_password_is_401(api, client):
    seqs = SeqProbe(api)
    for body in ({"username": "x" * 5000, "password": PASSWORD},
                 {"username": "good_name", "password": "p" * 10_000},
                 {"username": "name\n", "password": PASSWORD}):
        r = api.call("POST", "/tokens", json=body)
        assert r.status_code == 401 and error(r)["code"] == "unauthorized"
        assert "frame" not in error(r)["message"]
    assert seqs.nothing_written()


# ----------------------------------------------------------------------------- admin JSON


def test_admin_cluster_json_answers_errors_in_json(backend, client, auth):
    r = client.get("/admin/cluster.json")
    assert r.status_code == 401 and r.is_json and error(r)["code"] == "unauthorized"
    auth.register()
    r = client.get("/admin/cluster.json")
    assert r.status_code == 403 and r.is_json and error(r)["code"] == "forbidden"
    app = create_app(make_config(backend))
    c = app.test_client()
    c.post("/register", data={"username": ADMIN, "password": PASSWORD, "confirm": PASSWORD})
    c.post("/login", data={"username": ADMIN, "password": PASSWORD})
    r = c.get("/admin/cluster.json")
    assert r.status_code == 200 and r.is_json and "replicas" in r.get_json()


def test_get_on_the_post_only_pages_is_405_and_changes_nothing(client, auth):
    """GET /compose and GET /logout reached the profile route ("no such user", 404)."""
    auth.register()
    for path in ("/compose", "/logout"):
        r = client.get(path)
        assert r.status_code == 405 and r.headers["Allow"] == "POST", (path, r.status_code)
        assert "no such user" not in r.get_data(as_text=True)
    with client.session_transaction() as session:
        assert session.get("username")  # still logged in: a GET does not log out
