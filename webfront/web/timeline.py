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

from . import cluster_access
from .auth import login_required
from .forms import PostForm
from .inputs import INT64_MAX, local_target, post_text, query_int
from .request_ids import form_request_id, posted_token, write_form

bp = Blueprint("timeline", __name__)


def page_args() -> dict:
    """`before` from the query string (for "older posts"), and the page size; 400 if `before`
    is not a number the API would take either."""
    args: dict = {"limit": current_app.config["PAGE_SIZE"]}
    before = query_int("before", 0, INT64_MAX)
    if before is not None:
        args["before"] = before
    return args


def home_page(form: PostForm):
    args = cluster_access.as_account({"username": g.user, **page_args()}, "username")
    page = cluster_access.read("home", args)
    return render_template("timeline.html", kind="home", title="Your timeline",
                           posts=page["posts"], next=page.get("next"), form=form)


@bp.route("/")
def home():
    if g.user is None:
        return redirect(url_for("timeline.public"))
    return home_page(PostForm())


@bp.route("/public")
def public():
    page = cluster_access.read("public", page_args())
    return render_template("timeline.html", kind="public", title="Public timeline",
                           posts=page["posts"], next=page.get("next"),
                           form=PostForm() if g.user else None)


@bp.get("/compose")
def compose_page():
    """405, not the profile route's "no such user" that a GET here would otherwise reach: the
    compose form lives on the home page and posts here."""
    abort(405, valid_methods=["POST"])


@bp.route("/compose", methods=("POST",))
@login_required
def compose():
    form = PostForm()
    if form.validate_on_submit():
        text = post_text(form.text.data)  # as validated: CRLF as LF, stripped
        # The text is part of the request: an edited text under the same token is a new post.
        if write_form(form, "create_post", {"actor": g.user, "text": text}, g.user, text):
            flash("Your post is published.")
            return redirect(url_for("timeline.home"))
        return home_page(form), 503, {"Retry-After": "1"}
    # Show the error next to the field, the text kept, above the timeline.
    return home_page(form), 400


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
