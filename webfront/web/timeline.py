"""Timelines: home (own and followed users' posts), public, and writing or deleting a post."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from . import cluster_access, errors
from .auth import login_required
from .forms import PostForm
from .inputs import INT64_MAX, MAX_POST_CHARS, local_target, post_text, query_int
from .request_ids import form_request_id, posted_token, write_form

bp = Blueprint("timeline", __name__)
bp.add_app_template_global(MAX_POST_CHARS, "max_post_chars")


def page_args() -> dict:
    """`before` from the query string (for "older posts"), and the page size; 400 if `before`
    is not a number the API would take either."""
    args: dict = {"limit": current_app.config["PAGE_SIZE"]}
    before = query_int("before", 0, INT64_MAX)
    if before is not None:
        args["before"] = before
    return args


def _read_timeline(kind: str) -> dict:
    if kind == "home":
        args = cluster_access.as_account({"username": g.user, **page_args()}, "username")
        return cluster_access.read("home", args)
    return cluster_access.read("public", page_args())


TITLES = {"home": "Your timeline", "public": "Public timeline"}


def timeline_page(kind: str, form: PostForm | None):
    """The home or public timeline, with `form` (a post box) on it if given."""
    page = _read_timeline(kind)
    return render_template("timeline.html", kind=kind, title=TITLES[kind], posts=page["posts"],
                           next=page.get("next"), form=form)


def _post_box() -> PostForm | None:
    """An empty post box for the logged-in user that brings them back to this page."""
    return PostForm(next=request.path) if g.user else None


@bp.route("/")
def home():
    if g.user is None:
        return redirect(url_for("timeline.public"))
    return timeline_page("home", _post_box())


@bp.route("/public")
def public():
    return timeline_page("public", _post_box())


@bp.get("/compose")
def compose_page():
    """405, not the profile route's "no such user" that a GET here would otherwise reach: the
    compose form lives on the timelines and posts here."""
    abort(405, valid_methods=["POST"])


def _back_to(form: PostForm) -> str:
    return local_target(form.next.data, url_for("timeline.home"))


def _compose_again(form: PostForm, status: int, headers: dict | None = None):
    """The page the post box was on again (the URL stays /compose), the text and the reason
    by it kept; a `next` that is no timeline gets the home page."""
    kind = "public" if _back_to(form) == url_for("timeline.public") else "home"
    return timeline_page(kind, form), status, headers or {}


@errors.shows_form_again("timeline.compose")
def _stale_compose(message: str, status: int):
    if g.user is None:  # logged out in another tab: nothing to show the post box on
        return None
    form = PostForm()
    form.text.errors = [message]
    return _compose_again(form, status)


@bp.route("/compose", methods=("POST",))
@login_required
def compose():
    form = PostForm()
    if form.validate_on_submit():
        text = post_text(form.text.data)  # as validated: CRLF as LF, stripped
        # The text is part of the request: an edited text under the same token is a new post.
        if write_form(form, "create_post", {"actor": g.user, "text": text}, g.user, text):
            flash("Your post is published.")
            return redirect(_back_to(form))
        return _compose_again(form, 503, {"Retry-After": "1"})
    # Show the error next to the field, the text kept, above the timeline.
    return _compose_again(form, 400)


# Why the stand-in: a page of one's own posts has a delete form per post, and building each URL
# with url_for cost 20 us; the route is built once per request around this id, then filled in.
_ANY_POST_ID = 918273645546372819


@bp.app_template_global()
def delete_post_url(post_id: int) -> str:
    template = g.get("delete_post_url")
    if template is None:
        template = g.delete_post_url = url_for("timeline.delete_post", post_id=_ANY_POST_ID)
    return template.replace(str(_ANY_POST_ID), str(int(post_id)))


@bp.route("/posts/<int:post_id>/delete", methods=("POST",))
@login_required
def delete_post(post_id: int):
    # CSRFProtect has checked the token before we get here.
    if post_id > INT64_MAX:  # ids are int64 seqs; a larger one cannot exist (and cannot be encoded)
        abort(404)
    rid = form_request_id(g.user, "delete_post", posted_token(), str(post_id))
    cluster_access.write("delete_post", {"actor": g.user, "id": post_id}, request_id=rid)
    flash("Post deleted.")
    return redirect(local_target(request.form.get("next"), url_for("timeline.home")))
