"""Browser tests: Debian's Chromium driven by Playwright, against `webfront web` (real gunicorn)
on a free port, in front of a real local cluster. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from .conftest import PASSWORD, unique
from .web_process import running_web

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def browser_cluster(tmp_path_factory):
    from webfront.cluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("browser-cluster"), replicas=3,
                     policy="majority")
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def admin_name():
    return unique("boss")


@pytest.fixture(scope="module")
def site(browser_cluster, admin_name, tmp_path_factory):
    """`webfront web` under gunicorn with 2 workers; yields its base URL."""
    with running_web(browser_cluster, tmp_path_factory.mktemp("web"), admins=admin_name) as (
            url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(**options):
        options.setdefault("viewport", {"width": 1100, "height": 800})
        ctx = browser.new_context(**options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.csp_errors = []
        page.on("console", lambda m: "Content Security Policy" in m.text
                and page.csp_errors.append(m.text))
        page.set_default_timeout(10_000)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def register(page, site: str, username: str, display_name: str = "") -> None:
    page.goto(site + "/register")
    page.get_by_label("Username").fill(username)
    if display_name:
        page.get_by_label("Display name (optional)").fill(display_name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    sync_api.expect(page.get_by_role("heading", name="Your timeline")).to_be_visible()


def post(page, text: str) -> None:
    page.get_by_label("What's happening?").fill(text)
    page.get_by_role("button", name="Post").click()
    sync_api.expect(page.locator(".post .text", has_text=text)).to_be_visible()


def test_social_journey(site, new_page):
    expect = sync_api.expect
    SHOTS.mkdir(parents=True, exist_ok=True)
    bob_name, alice_name = unique("bob"), unique("alice")

    bob = new_page()
    register(bob, site, bob_name, "Bob Builder")
    post(bob, "Bob here: can we fix it?")

    alice = new_page()
    register(alice, site, alice_name, "Alice")
    # the counter counts down as she types, and turns red past 280
    box = alice.get_by_label("What's happening?")
    expect(alice.locator("#text-count")).to_have_text("280 characters left")
    box.fill("x" * 279)
    expect(alice.locator("#text-count")).to_have_text("1 character left")
    box.fill("x" * 281)
    expect(alice.locator("#text-count")).to_have_text("1 character too many")
    box.fill("👍" * 280)  # characters, not UTF-16 units: no maxlength cuts it at 140
    expect(box).to_have_value("👍" * 280)
    expect(alice.locator("#text-count")).to_have_text("0 characters left")
    box.fill("hello")
    expect(alice.locator("#text-count")).to_have_text("275 characters left")
    box.fill("x" * 290)
    expect(alice.locator("#text-count")).to_have_text("10 characters too many")
    expect(alice.get_by_role("button", name="Post")).to_be_disabled()
    post(alice, "Alice's first post <script>alert(1)</script>")  # seen at once, escaped
    expect(alice.locator(".post time").first).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT.*Z$"))
    expect(alice.locator(".post time").first).to_have_text(re.compile(r"just now|s ago"))

    # follow bob: his post joins her timeline
    alice.goto(f"{site}/{bob_name}")
    expect(alice.get_by_role("heading", name=re.compile("Bob Builder"))).to_be_visible()
    alice.get_by_role("button", name="Follow").click()
    expect(alice.get_by_role("button", name="Unfollow")).to_be_visible()
    expect(alice.locator(".followers-count")).to_have_text("1")
    alice.get_by_role("link", name="Home").click()
    expect(alice.locator(".post .text", has_text="Bob here")).to_be_visible()
    texts = alice.locator(".post .text").all_inner_texts()
    assert texts[0].startswith("Alice's first post") and texts[1].startswith("Bob here")
    alice.screenshot(path=str(SHOTS / "home-timeline.png"), full_page=True)

    # she is on his followers page
    alice.goto(f"{site}/{bob_name}/followers")
    expect(alice.locator("ul.people")).to_contain_text(alice_name)

    # bob deletes his post, once he has said yes to the question; log out
    bob.reload()
    delete = bob.locator(".post", has_text="Bob here").get_by_role("button", name="Delete")
    expect(delete).to_have_accessible_name(re.compile(r"^Delete your post from "))
    questions = []
    bob.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    delete.click()
    bob.reload()
    expect(bob.locator(".post .text", has_text="Bob here")).to_have_count(1)
    assert questions == ["Delete this post for good?"]
    bob.once("dialog", lambda d: d.accept())
    delete.click()
    expect(bob.locator(".post .text", has_text="Bob here")).to_have_count(0)

    alice.get_by_role("button", name="Log out").click()
    expect(alice.get_by_role("heading", name="Public timeline")).to_be_visible()
    expect(alice.get_by_role("link", name="Log in")).to_be_visible()
    alice.goto(site + "/")
    expect(alice).to_have_url(site + "/public")

    # and logs back in
    alice.get_by_role("link", name="Log in").click()
    alice.get_by_label("Username").fill(alice_name)
    alice.get_by_label("Password").fill(PASSWORD)
    alice.get_by_role("button", name="Log in").click()
    expect(alice.get_by_role("heading", name="Your timeline")).to_be_visible()
    assert not alice.csp_errors and not bob.csp_errors


def test_admin_page_shows_a_replica_go_down(site, new_page, browser_cluster, admin_name):
    expect = sync_api.expect
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page()
    register(page, site, admin_name)
    page.get_by_role("link", name="Cluster").click()
    expect(page.get_by_role("heading", name="Cluster status")).to_be_visible()
    rows = page.locator("#replica-rows tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#replica-rows .state-up")).to_have_count(3)
    page.screenshot(path=str(SHOTS / "admin-cluster.png"), full_page=True)

    victim = browser_cluster.replica(3)
    os.kill(victim.pid, signal.SIGKILL)  # kill -9 by pid
    victim.popen.wait(5)
    # no reload: the page's script polls and redraws the table
    row = page.locator('#replica-rows tr[data-id="3"]')
    expect(row.locator(".state")).to_have_text("down", timeout=15_000)
    expect(page.locator("#replica-rows .state-up")).to_have_count(2)
    page.screenshot(path=str(SHOTS / "admin-cluster-replica-down.png"), full_page=True)
    assert not page.csp_errors

    # other accounts are refused
    other = new_page()
    register(other, site, unique("nosy"))
    response = other.goto(site + "/admin/cluster")
    assert response.status == 403


def test_admin_page_works_without_javascript(site, new_page, admin_name):
    page = new_page(java_script_enabled=False)
    # the admin account may exist already (other test); 201 or 409 are both fine
    r = page.request.post(site + "/api/v1/users",
                          data={"username": admin_name, "password": PASSWORD})
    assert r.status in (201, 409)
    page.goto(site + "/login")
    page.get_by_label("Username").fill(admin_name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(site + "/admin/cluster")
    sync_api.expect(page.locator("#replica-rows tr")).to_have_count(3)
    sync_api.expect(page.locator("#replica-rows .state").first).to_have_text(
        re.compile("up|down|suspect|recovering"))


def test_phone_sized_public_timeline(site, new_page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(viewport={"width": 390, "height": 760}, is_mobile=True)
    register(page, site, unique("phone"))
    post(page, "Posted from a small screen")
    page.goto(site + "/public")
    sync_api.expect(page.locator(".post .text").first).to_be_visible()
    # nothing overflows sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(SHOTS / "public-phone.png"), full_page=True)


def luminance(css_color: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", css_color)[:3]]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def style(locator, prop: str) -> str:
    return locator.evaluate(f"e => getComputedStyle(e)[{prop!r}]")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_contrast_of_danger_button_and_input_borders(site, new_page, scheme):
    page = new_page(color_scheme=scheme)
    register(page, site, unique("contrast"))
    page.goto(site + "/settings/delete-account")
    button = page.get_by_role("button", name="Delete my account")
    assert contrast(style(button, "color"), style(button, "backgroundColor")) >= 4.5
    card_bg = style(page.locator("form.card"), "backgroundColor")
    for field in (page.get_by_label("Password"), page.get_by_label("Type your username")):
        border = style(field, "borderTopColor")
        assert contrast(border, style(field, "backgroundColor")) >= 3, scheme
        assert contrast(border, card_bg) >= 3, scheme
    # Cancel stands apart from the button
    gap = page.get_by_role("link", name="Cancel").bounding_box()["x"] - (
        button.bounding_box()["x"] + button.bounding_box()["width"])
    assert gap >= 8
    page.screenshot(path=str(SHOTS / f"delete-account-{scheme}.png"), full_page=True)


def test_targets_skip_link_and_current_page_on_a_phone(site, new_page):
    page = new_page(viewport={"width": 390, "height": 760}, is_mobile=True)
    register(page, site, unique("touch"))
    post(page, "a post to delete some day")
    targets = [page.locator("header.site ul a"), page.locator("header.site button"),
               page.locator(".post form.delete button")]
    for locator in targets:
        for i in range(locator.count()):
            box = locator.nth(i).bounding_box()
            assert box["width"] >= 24 and box["height"] >= 24, (locator, i, box)
    sync_api.expect(page.get_by_role("link", name="Home")).to_have_attribute(
        "aria-current", "page")
    skip = page.get_by_role("link", name="Skip to main content")
    assert skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0  # out of sight
    page.keyboard.press("Tab")
    sync_api.expect(skip).to_be_focused()
    assert skip.bounding_box()["y"] >= 0  # seen when focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
