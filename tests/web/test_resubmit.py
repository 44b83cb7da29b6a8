"""Sending a write again is applied once: form request tokens and the API's Idempotency-Key.

Against the real cluster of conftest.py: the web layer turns a form's token or a client's key
into the write's request id, and the replicas apply a request id once. Each check reads back
what the cluster holds (the API's linearizable user_posts), not what the page says.
"""

from __future__ import annotations

import re
import uuid

from webfront.web import create_app

from .conftest import PASSWORD, make_config, unique

TOKEN = re.compile(r'<input[^>]*name="request_token"[^>]*value="([^"]+)"')


def text(response) -> str:
    return response.get_data(as_text=True)


def request_token(page: str) -> str:
    found = TOKEN.findall(page)
    assert found, "no request_token in the page"
    return found[0]


def posts_of(client, username: str) -> list[dict]:
    r = client.get(f"/api/v1/users/{username}/posts?limit=200")
    assert r.status_code == 200, r.get_json()
    return r.get_json()["posts"]


def texts_of(client, username: str) -> list[str]:
    return [p["text"] for p in posts_of(client, username)]


# ----------------------------------------------------------------------------- forms


def test_same_compose_form_twice_is_one_post_and_both_look_published(client, auth):
    name, _ = auth.register()
    token = request_token(text(client.get("/")))
    form = {"text": "said once", "request_token": token}
    for _ in range(2):  # a double click, or "send again" after a 503
        r = client.post("/compose", data=form)
        assert r.status_code == 302 and r.headers["Location"].endswith("/")
    page = text(client.get("/"))
    assert "Your post is published." in page and page.count("said once") == 1
    assert texts_of(client, name) == ["said once"]

    # A new rendering of the form is a new post; so is an edited text under the old token.
    client.post("/compose", data={"text": "said once", "request_token":
                                  request_token(text(client.get("/")))})
    client.post("/compose", data={"text": "said once, edited", "request_token": token})
    assert sorted(texts_of(client, name)) == ["said once", "said once", "said once, edited"]


def test_compose_form_keeps_its_token_after_a_validation_error(client, auth):
    name, _ = auth.register()
    token = request_token(text(client.get("/")))
    r = client.post("/compose", data={"text": "x" * 281, "request_token": token})
    assert r.status_code == 400 and request_token(text(r)) == token
    for _ in range(2):
        client.post("/compose", data={"text": "fixed", "request_token": token})
    assert texts_of(client, name) == ["fixed"]


def test_malformed_form_token_is_refused_and_renewed(client, auth):
    name, _ = auth.register()
    for bad in ("has space", "x" * 65, "<script>"):
        r = client.post("/compose", data={"text": "never", "request_token": bad})
        assert r.status_code == 400 and "damaged" in text(r)
        assert request_token(text(r)) != bad
    assert texts_of(client, name) == []


def test_compose_after_503_keeps_token_and_sending_again_posts_once(own_cluster):
    cluster = own_cluster
    c = create_app(make_config(cluster, CLUSTER_TIMEOUT=2.0)).test_client()
    name = unique()
    c.post("/register", data={"username": name, "password": PASSWORD, "confirm": PASSWORD})
    token = request_token(text(c.get("/")))
    cluster.kill_replica(1)
    cluster.kill_replica(2)
    cluster.wait_state(1, "down")
    cluster.wait_state(2, "down")

    r = c.post("/compose", data={"text": "through the outage", "request_token": token})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    page = text(r)
    assert "not be applied twice" in page and "through the outage</textarea>" in page
    assert request_token(page) == token  # the page's form is the same request

    cluster.restart_replica(1)
    cluster.wait_state(1, "up", timeout=15)
    for _ in range(2):
        r = c.post("/compose", data={"text": "through the outage", "request_token": token})
        assert r.status_code == 302
    assert texts_of(c, name) == ["through the outage"]


def test_register_form_sent_twice_logs_in_both_times(app):
    first, second, other = (app.test_client() for _ in range(3))
    token = request_token(text(first.get("/register")))
    name = unique()
    form = {"username": name, "password": PASSWORD, "confirm": PASSWORD,
            "request_token": token}
    # Two browsers' worth of cookies: the second submit does not know the first succeeded.
    for c in (first, second):
        r = c.post("/register", data=form)
        assert r.status_code == 302, text(r)
        assert f'href="/{name}">{name}</a>' in text(c.get("/"))
    # The password belongs to the request: another one under the token is a new sign-up.
    r = other.post("/register", data={**form, "password": "another password",
                                      "confirm": "another password"})
    assert r.status_code == 400 and "This name is taken." in text(r)


def test_delete_button_sent_twice_says_deleted_both_times(client, auth):
    name, _ = auth.register()
    auth.post("soon gone")
    page = text(client.get("/"))
    post_id = re.search(r'id="post-(\d+)"', page).group(1)
    form = re.search(rf'action="/posts/{post_id}/delete".*?</form>', page, re.DOTALL).group(0)
    data = {"request_token": request_token(form), "next": "/"}
    for _ in range(2):
        r = client.post(f"/posts/{post_id}/delete", data=data)
        assert r.status_code == 302, text(r)
    assert "Post deleted." in text(client.get("/"))
    assert texts_of(client, name) == []
    assert client.post(f"/posts/{post_id}/delete",
                       data={"request_token": "bad token"}).status_code == 400


# ----------------------------------------------------------------------------- API


def test_same_idempotency_key_is_one_post_with_one_id_and_no_key_is_two(api):
    name, token = api.signup()
    key = str(uuid.uuid4())
    replies = [api.call("POST", "/posts", token, json={"text": "keyed"},
                        headers={"Idempotency-Key": key}) for _ in range(2)]
    # The IETF draft's form, a quoted string, is the same key.
    replies.append(api.call("POST", "/posts", token, json={"text": "keyed"},
                            headers={"Idempotency-Key": f'"{key}"'}))
    assert [r.status_code for r in replies] == [201, 201, 201]
    assert replies[0].get_json() == replies[1].get_json() == replies[2].get_json()
    assert texts_of(api.client, name) == ["keyed"]

    for _ in range(2):
        assert api.call("POST", "/posts", token, json={"text": "unkeyed"}).status_code == 201
    assert sorted(texts_of(api.client, name)) == ["keyed", "unkeyed", "unkeyed"]


def test_one_key_is_separate_per_user_and_per_operation(api):
    (alice, alice_token), (bob, bob_token) = api.signup(), api.signup()
    key = {"Idempotency-Key": "shared-key-1"}
    ids = {}
    for user, token in ((alice, alice_token), (bob, bob_token)):
        for _ in range(2):
            r = api.call("POST", "/posts", token, json={"text": f"by {user}"}, headers=key)
            assert r.status_code == 201 and r.get_json()["author"] == user
        ids[user] = r.get_json()["id"]
        assert texts_of(api.client, user) == [f"by {user}"]
    assert ids[alice] != ids[bob]
    # Alice's post's key does not answer her follow with the post's reply.
    assert api.call("POST", "/follows", alice_token, json={"username": bob},
                    headers=key).status_code == 204
    assert api.call("GET", f"/users/{alice}").get_json()["following"] == 1


def test_malformed_idempotency_key_is_400_and_writes_nothing(api):
    name, token = api.signup()
    for bad in ("", "x" * 65, "has space", "semi;colon", '"unterminated'):
        r = api.call("POST", "/posts", token, json={"text": "never"},
                     headers={"Idempotency-Key": bad})
        assert r.status_code == 400, bad
        error = r.get_json()["error"]
        assert error["code"] == "invalid" and "Idempotency-Key" in error["message"]
    new_name = unique("a")
    r = api.call("POST", "/users", json={"username": new_name, "password": PASSWORD},
                 headers={"Idempotency-Key": "x" * 65})
    assert r.status_code == 400
    assert api.call("GET", f"/users/{new_name}").status_code == 404
    assert texts_of(api.client, name) == []


def test_signup_sent_twice_with_a_key_is_created_both_times(api):
    name, key = unique("a"), {"Idempotency-Key": uuid.uuid4().hex}
    body = {"username": name, "password": PASSWORD}
    first = api.call("POST", "/users", json=body, headers=key)
    again = api.call("POST", "/users", json=body, headers=key)
    assert first.status_code == again.status_code == 201, again.get_json()
    assert first.get_json() == again.get_json()
    assert api.call("POST", "/users", json=body).status_code == 409  # without it: taken


def test_a_delete_sent_again_with_its_key_gets_the_first_answer(api):
    """Without a key the second DELETE of a post is a 404 (it is gone); with the key it is the
    same request, so the client that lost the first answer gets that answer: 204."""
    name, token = api.signup()
    post_id = api.call("POST", "/posts", token, json={"text": "to go"}).get_json()["id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    statuses = [api.call("DELETE", f"/posts/{post_id}", token, headers=key).status_code
                for _ in range(2)]
    assert statuses == [204, 204]
    assert api.call("DELETE", f"/posts/{post_id}", token).status_code == 404
    assert texts_of(api.client, name) == []
    gone, gone_token = api.signup()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    statuses = [api.call("DELETE", f"/users/{gone}", gone_token, headers=key).status_code
                for _ in range(2)]
    assert statuses == [204, 204]
    # without the key, a new request: the token's account is gone (account_replaced)
    assert api.call("DELETE", f"/users/{gone}", gone_token).status_code == 401


def test_openapi_documents_the_key_on_writes(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, method in (("/users", "post"), ("/posts", "post"), ("/follows", "post"),
                         ("/users/{username}", "delete"), ("/posts/{id}", "delete"),
                         ("/follows/{username}", "delete")):
        params = doc["paths"][path][method].get("parameters", [])
        header = [p for p in params if p["name"] == "Idempotency-Key"]
        assert header and header[0]["in"] == "header" and not header[0]["required"], path
        assert "64" in header[0]["schema"]["pattern"]
