"""A session or API token is for one account, not for a name: after the account is deleted and
someone else signs up with the same name, the old session or token cannot write as them
(`actor_since`, checked by the replicas in the same total order as the writes)."""

from __future__ import annotations

from .conftest import PASSWORD, AuthActions, unique

OTHER_PASSWORD = "another-long-password"


def posts_of(api, name: str) -> int:
    return api.call("GET", f"/users/{name}").get_json()["posts"]


def replace_account(api, name: str, old_token: str) -> str:
    """Deletes `name`'s account with its token and signs the name up again (someone else);
    returns the new account's token."""
    assert api.call("DELETE", f"/users/{name}", old_token).status_code == 204
    r = api.call("POST", "/users", json={"username": name, "password": OTHER_PASSWORD})
    assert r.status_code == 201, r.get_json()
    r = api.call("POST", "/tokens", json={"username": name, "password": OTHER_PASSWORD})
    return r.get_json()["token"]


def test_an_old_token_cannot_write_for_the_new_owner_of_the_name(api):
    name, old = api.signup()
    new = replace_account(api, name, old)

    r = api.call("POST", "/posts", old, json={"text": "from the deleted account"})
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["error"]["code"] == "account_replaced"
    assert "deleted" in r.get_json()["error"]["message"]
    other, _ = api.signup()
    for method, path, body in (("POST", "/follows", {"username": other}),
                               ("DELETE", f"/users/{name}", None)):
        assert api.call(method, path, old, json=body).status_code == 401
    assert posts_of(api, name) == 0
    assert api.call("GET", f"/users/{other}").get_json()["followers"] == 0

    assert api.call("POST", "/posts", new, json={"text": "mine"}).status_code == 201
    assert posts_of(api, name) == 1


def test_an_old_browser_session_cannot_write_for_the_new_owner_of_the_name(app, api):
    browser = app.test_client()
    name, _ = AuthActions(browser).register(unique("s"))
    r = api.call("POST", "/tokens", json={"username": name, "password": PASSWORD})
    replace_account(api, name, r.get_json()["token"])

    r = AuthActions(browser).post("from the deleted account")
    assert posts_of(api, name) == 0
    # The session is void: logged out and sent to log in, with a word why.
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    with browser.session_transaction() as session:
        assert "username" not in session
    assert "was deleted" in browser.get("/login").get_data(as_text=True)


def test_a_token_of_a_deleted_account_is_void_before_the_name_is_taken_again(api):
    name, old = api.signup()
    other, _ = api.signup()
    assert api.call("DELETE", f"/users/{name}", old).status_code == 204
    for method, path, body in (("GET", "/timeline", None),
                               ("POST", "/posts", {"text": "from the deleted account"}),
                               ("POST", "/follows", {"username": other})):
        r = api.call(method, path, old, json=body)
        assert r.status_code == 401, (path, r.get_json())
        assert r.get_json()["error"]["code"] == "account_replaced", path


def test_an_old_token_cannot_read_the_new_owners_home_timeline(api):
    name, old = api.signup()
    new = replace_account(api, name, old)
    assert api.call("POST", "/posts", new, json={"text": "only for me to see here"}).status_code \
        == 201

    r = api.call("GET", "/timeline", old)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "account_replaced"
    r = api.call("GET", "/timeline", new)
    assert r.status_code == 200
    assert [p["text"] for p in r.get_json()["posts"]] == ["only for me to see here"]


def test_an_old_browser_session_is_logged_out_when_it_reads(app, api):
    """The home page and a profile (its follow button reads the session's own follows)."""
    other, _ = api.signup()
    for path in ("/", f"/{other}"):
        browser = app.test_client()
        name, _ = AuthActions(browser).register(unique("s"))
        r = api.call("POST", "/tokens", json={"username": name, "password": PASSWORD})
        replace_account(api, name, r.get_json()["token"])

        r = browser.get(path)
        assert r.status_code == 302 and r.headers["Location"].endswith("/login"), path
        with browser.session_transaction() as session:
            assert "username" not in session


def test_a_session_from_before_accounts_were_told_apart_must_log_in_again(app):
    browser = app.test_client()
    AuthActions(browser).register(unique("s"))
    with browser.session_transaction() as session:
        del session["since"]  # what a session made by the previous version holds
    assert browser.get("/").status_code == 302  # to the login page
    with browser.session_transaction() as session:
        assert "username" not in session


def test_a_token_from_before_accounts_were_told_apart_gets_401_and_writes_nothing(app, api):
    from itsdangerous import URLSafeTimedSerializer

    name, _ = api.signup()
    old = URLSafeTimedSerializer(app.secret_key, salt="webfront-api-token").dumps({"u": name})
    r = api.call("POST", "/posts", old, json={"text": "hello"})
    assert r.status_code == 401 and "get a new one" in r.get_json()["error"]["message"]
    assert posts_of(api, name) == 0
