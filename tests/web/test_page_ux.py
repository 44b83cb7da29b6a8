"""What people meet on the pages: forms that went stale or were refused come back with what was
typed, messages in sentences, paging, and the markup assistive technology relies on."""

from __future__ import annotations

import re

import pytest

from webfront.web import create_app, timefmt

from .conftest import PASSWORD, author_of, make_config, unique

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def text(response) -> str:
    return response.get_data(as_text=True)


def title(response) -> str:
    return re.search(r"<title>(.*?)</title>", text(response), re.DOTALL).group(1)


def tag(page: str, marker: str) -> str:
    """The whole start tag that contains `marker`."""
    return re.search(r"<[^<>]*" + re.escape(marker) + r"[^<>]*>", page).group(0)


class Browser:
    """A test client that sends forms with the CSRF token of the page they came from, as a
    browser tab does; `csrf_app` turns the check on."""

    def __init__(self, app) -> None:
        self.c = app.test_client()

    def token(self, path: str) -> str:
        return CSRF.search(text(self.c.get(path))).group(1)

    def submit(self, path: str, data: dict, token: str | None = None, page: str = "/login"):
        return self.c.post(path, data={**data, "csrf_token": token or self.token(page)})

    def register(self) -> str:
        name = unique()
        r = self.submit("/register", {"username": name, "password": PASSWORD,
                                      "confirm": PASSWORD}, page="/register")
        assert r.status_code == 302
        return name

    def log_in(self, name: str) -> None:
        assert self.submit("/login", {"username": name, "password": PASSWORD}).status_code == 302

    def log_out(self) -> None:
        assert self.submit("/logout", {}, page="/public").status_code == 302


@pytest.fixture
def csrf_app(backend):
    return create_app(make_config(backend, WTF_CSRF_ENABLED=True))


# ----------------------------------------------------------------------------- stale forms


def test_stale_login_form_when_logged_in_elsewhere_goes_on(csrf_app):
    b = Browser(csrf_app)
    name = b.register()
    b.log_out()
    stale = b.token("/login")
    b.log_in(name)  # in another tab: a new session, a new token
    r = b.submit(f"/login?next=/{name}", {"username": name, "password": PASSWORD}, stale)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/{name}")


def test_stale_login_form_when_logged_out_comes_back_with_the_name(csrf_app):
    b = Browser(csrf_app)
    name = b.register()
    stale = b.token("/public")
    b.log_out()  # in another tab
    r = b.submit("/login", {"username": name, "password": PASSWORD}, stale)
    assert r.status_code == 400
    page = text(r)
    assert f'value="{name}"' in page and "form had expired" in page
    assert 'aria-describedby="login-error"' in tag(page, 'class="card"')
    assert b.c.get("/").status_code == 302  # not logged in by it
    # the form shown again carries a fresh token: sending it logs in
    r = b.submit("/login", {"username": name, "password": PASSWORD}, CSRF.search(page).group(1))
    assert r.status_code == 302


@pytest.mark.parametrize("where,heading", [("/", "Your timeline"), ("/public", "Public timeline")])
def test_stale_post_form_keeps_the_text(csrf_app, where, heading):
    b = Browser(csrf_app)
    name = b.register()
    stale = b.token(where)
    b.log_out()
    b.log_in(name)  # logged out and in again in another tab
    r = b.submit("/compose", {"text": "typed before the tab went stale", "next": where}, stale)
    assert r.status_code == 400
    page = text(r)
    assert f"<h1>{heading}</h1>" in page
    assert "typed before the tab went stale</textarea>" in page
    box = tag(page, 'name="text"')
    assert 'aria-invalid="true"' in box and "text-errors" in box
    assert "form had expired" in page.split('id="text-errors"')[1][:300]
    assert "typed before" not in text(b.c.get(f"/{name}"))  # not posted


def test_other_stale_forms_keep_the_error_page(csrf_app):
    b = Browser(csrf_app)
    b.register()
    r = b.submit("/logout", {}, "stale")
    assert r.status_code == 400 and title(r).startswith("Form expired")


# ----------------------------------------------------------------------------- messages


def test_cluster_errors_read_as_sentences_on_pages_only(client, auth, api):
    auth.register()
    auth.post("not for others to delete")
    post_id = re.search(r'id="post-(\d+)"', text(client.get("/"))).group(1)
    auth.logout()
    auth.register()
    cases = [(client.get("/nobody_zz_8"), 404, "There is no user called @nobody_zz_8."),
             (client.post("/nobody_zz_8/follow"), 404, "There is no user called @nobody_zz_8."),
             (client.post("/posts/999999999/delete"), 404, "That post was already deleted."),
             (client.post(f"/posts/{post_id}/delete"), 403, "You can delete only your own posts.")]
    for r, status, sentence in cases:
        assert r.status_code == status and sentence in text(r)
        assert not re.search(r"no such|not the author", text(r))
    r = api.call("GET", "/users/nobody_zz_8")
    assert r.get_json()["error"] == {"code": "not_found", "message": "no such user"}


def test_a_bad_page_link_says_so_and_links_the_first_page(client, api):
    r = client.get("/public?before=x")
    assert r.status_code == 400
    assert "That page link is not valid" in text(r) and "must be an integer" not in text(r)
    assert '<a href="/public">Go to the first page</a>' in text(r)
    assert "must be an integer" in api.call("GET", "/public?before=x").get_json()["error"][
        "message"]


@pytest.mark.parametrize("path,status,heading", [
    ("/nobody_zz_8", 404, "Page not found"), ("/posts/1/delete", 405, "Method not allowed")])
def test_error_pages_have_descriptive_titles(client, path, status, heading):
    r = client.get(path)
    assert r.status_code == status
    assert title(r) == f"{heading} · webfront" and f"<h1>{heading}</h1>" in text(r)


def test_login_rate_limit_shows_the_form_again(backend):
    app = create_app(make_config(backend, LOGIN_ACCOUNT_RATE_LIMIT="1 per minute"))
    c = app.test_client()
    name = unique()
    c.post("/login", data={"username": name, "password": "bad"})
    r = c.post("/login", data={"username": name, "password": "bad"})
    assert r.status_code == 429
    page = text(r)
    assert title(r).startswith("Log in") and f'value="{name}"' in page
    assert re.search(r'id="login-error" role="alert">[^<]*Wait a minute', page)


# ----------------------------------------------------------------------------- posting


def test_post_from_public_goes_back_to_public(client, auth):
    auth.register()
    page = text(client.get("/public"))
    assert 'name="next" type="hidden" value="/public"' in page
    r = client.post("/compose", data={"text": "from public", "next": "/public"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/public")
    r = client.post("/compose", data={"text": "   ", "next": "/public"})
    assert r.status_code == 400 and "<h1>Public timeline</h1>" in text(r)
    r = client.post("/compose", data={"text": "elsewhere", "next": "//evil.example/"})
    assert r.headers["Location"] in ("/", "http://localhost/")


def test_post_box_without_javascript(client, auth):
    auth.register()
    page = text(client.get("/"))
    box = tag(page, 'name="text"')
    assert "maxlength" not in box and 'data-limit="280"' in box
    assert 'aria-describedby="text-count"' in box and "aria-invalid" not in box
    assert re.search(r'<span class="counter" id="text-count">Up to 280 characters</span>', page)
    assert "aria-live" not in page
    assert auth.post("👍" * 280).status_code == 302  # characters, not UTF-16 units


def test_post_box_error_is_tied_to_the_box(client, auth):
    auth.register()
    page = text(auth.post("x" * 281))
    box = tag(page, 'name="text"')
    assert 'aria-invalid="true"' in box
    assert 'aria-describedby="text-count text-errors"' in box
    assert re.search(r'id="text-errors"><li>At most 280', page)


def test_delete_buttons_say_which_post(client, auth):
    auth.register()
    auth.post("first")
    page = text(client.get("/"))
    assert re.search(r'Delete<span class="visually-hidden"> your post from (just now|\d+ s ago)'
                     r"</span></button>", page)


def test_exact_time_is_shown_for_posts_over_a_day_old(client, auth, monkeypatch):
    auth.register()
    auth.post("dated")
    assert 'class="exact-time"' not in text(client.get("/"))
    later = timefmt.now_us() + 2 * timefmt.DAY_US
    monkeypatch.setattr(timefmt, "now_us", lambda: later)
    page = text(client.get("/"))
    assert re.search(r'>2 days ago</time>\s*<span class="exact-time">\d{4}-\d\d-\d\d '
                     r"\d\d:\d\d:\d\d UTC</span>", page)


# ----------------------------------------------------------------------------- accounts


def test_register_describes_the_rules_before_they_are_broken(client, auth):
    page = text(client.get("/register"))
    assert 'aria-describedby="username-hint"' in tag(page, 'name="username"')
    assert re.search(r'id="username-hint">3 to 20 letters, digits or underscores.<', page)
    assert 'aria-describedby="password-hint"' in tag(page, 'name="password"')
    assert 'id="password-hint">At least 8 characters.<' in page
    _, r = auth.register(password="short")
    assert r.status_code == 400 and "Use 8 to 200 characters for your password." in text(r)
    assert "Field must be" not in text(r)
    assert 'aria-describedby="password-hint password-errors"' in tag(text(r), 'name="password"')


def test_register_strips_spaces_around_the_name(client, auth):
    name = unique()
    _, r = auth.register(f"  {name} ")
    assert r.status_code == 302
    assert client.get(f"/api/v1/users/{name}").status_code == 200


def test_login_page_when_logged_in_goes_home(client, auth):
    name, _ = auth.register()
    r = client.get("/login")
    assert r.status_code == 302 and r.headers["Location"] in ("/", "http://localhost/")
    assert client.get(f"/login?next=/{name}").headers["Location"].endswith(f"/{name}")


# ----------------------------------------------------------------------------- pages


def test_people_pages_read_as_sentences(client, auth):
    bob, _ = auth.register()
    auth.logout()
    alice, _ = auth.register()
    client.post(f"/{bob}/follow")
    r = client.get(f"/{bob}/followers")
    assert title(r) == f"Followers of {bob} · webfront" and ">1 follower<" in text(r)
    r = client.get(f"/{alice}/following")
    assert title(r) == f"People {alice} follows · webfront"
    assert ">Following 1 person<" in text(r)
    assert ">Following 0 people<" in text(client.get(f"/{bob}/following"))
    profile = text(client.get(f"/{bob}"))
    assert "</strong> follower</a>" in profile and "</strong> posts</span>" in profile


def test_paging_past_the_end_and_back(backend):
    c, name = author_of(backend, [f"paged {i}" for i in range(3)], PAGE_SIZE=2)
    first = c.get(f"/{name}")
    assert "(older posts)" not in title(first) and "Newest posts" not in text(first)
    older = re.search(r'<a rel="next" href="([^"]+)"', text(first)).group(1).replace("&amp;", "&")
    r = c.get(older)
    assert title(r).endswith("(older posts) · webfront")
    assert f'<a href="/{name}">Newest posts</a>' in text(r) and "paged 0" in text(r)
    r = c.get(f"/{name}?before=1")
    assert "No older posts." in text(r) and "No posts yet." not in text(r)
    assert "Newest posts" in text(r)


def test_empty_home_timeline_says_how_to_fill_it(client, auth):
    auth.register()
    page = text(client.get("/"))
    assert re.search(r'Follow people from the <a href="/public">Public timeline</a> to see '
                     r"their posts here.", page)
    assert "Follow people from" not in text(client.get("/public"))


def test_user_text_is_marked_for_its_own_direction(client, auth):
    name, _ = auth.register(display_name="שלום")
    auth.post("עברית")
    page = text(client.get(f"/{name}"))
    assert '<p class="text" dir="auto">עברית</p>' in page
    assert '<span dir="auto">שלום</span>' in page
    auth.logout()
    fan, _ = auth.register()
    client.post(f"/{name}/follow")
    assert f'<a href="/{name}" dir="auto">שלום</a>' in text(client.get(f"/{fan}/following"))


def test_skip_link_and_current_page_in_the_nav(client, auth):
    page = text(client.get("/public"))
    assert re.search(r'<body>\s*<a class="skip-link" href="#main">Skip to main content</a>', page)
    assert '<main id="main"' in page
    assert '<a href="/public" aria-current="page">Public</a>' in page
    assert '<a href="/login">Log in</a>' in page


def test_favicon(client):
    page = text(client.get("/public"))
    assert 'rel="icon" href="/static/favicon.svg"' in page
    r = client.get("/favicon.ico")
    assert r.status_code in (301, 302) and r.headers["Location"].endswith("/static/favicon.svg")
    r = client.get("/static/favicon.svg")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"


def test_logged_in_pages_are_not_cached(client, auth):
    assert "no-store" not in client.get("/public").headers.get("Cache-Control", "")
    name, _ = auth.register()
    for path in ("/", "/public", f"/{name}"):
        assert client.get(path).headers["Cache-Control"] == "private, no-store", path
    assert "no-store" not in client.get("/static/style.css").headers.get("Cache-Control", "")
    assert "no-store" not in client.get("/api/v1/public").headers.get("Cache-Control", "")
