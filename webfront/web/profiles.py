"""Profiles: a user's posts and counts, who follows them, whom they follow; follow buttons."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from . import cluster_access
from .auth import login_required
from .forms import USERNAME_RE
from .timeline import page_args

bp = Blueprint("profiles", __name__)


@bp.url_value_preprocessor
def _plausible_username(endpoint, values) -> None:
    # `/wp-login.php`, `/apple-touch-icon.png` and friends are not users: 404 without asking.
    if values and "username" in values and not USERNAME_RE.fullmatch(values["username"]):
        abort(404)


@bp.app_template_global()
def profile_url(username: str) -> str:
    """url_for of a profile, once per author per request: a timeline page names the same few
    authors many times, and werkzeug's URL building was a third of the page's rendering."""
    urls = g.setdefault("profile_urls", {})
    url = urls.get(username)
    if url is None:
        url = urls[username] = url_for("profiles.profile", username=username)
    return url


def _is_following(target: str) -> bool:
    """Whether the logged-in user follows `target` (one `relation` query)."""
    if not g.user or g.user.lower() == target.lower():
        return False
    args = cluster_access.as_account({"actor": g.user, "target": target})
    return cluster_access.read("relation", args)["following"]


@bp.route("/<username>")
def profile(username: str):
    user = cluster_access.read("user", {"username": username})["user"]
    user.pop("password_hash", None)
    page = cluster_access.read("user_posts", {"username": user["username"], **page_args()})
    return render_template("profile.html", profile=user, posts=page["posts"],
                           next=page.get("next"), following=_is_following(user["username"]))


def _people(username: str, which: str):
    user = cluster_access.read("user", {"username": username})["user"]
    user.pop("password_hash", None)
    args = {"username": user["username"], **page_args()}
    args["limit"] = min(args["limit"] * 2, 200)
    page = cluster_access.read(which, args)
    return render_template("people.html", profile=user, which=which, users=page["users"],
                           total=page.get("total", len(page["users"])), next=page.get("next"))


@bp.route("/<username>/followers")
def followers(username: str):
    return _people(username, "followers")


@bp.route("/<username>/following")
def following(username: str):
    return _people(username, "following")


def _not_self(username: str) -> None:
    # The cluster refuses it too, but only after giving the write a seq.
    if username.lower() == g.user.lower():
        abort(403)


@bp.route("/<username>/follow", methods=("POST",))
@login_required
def follow(username: str):
    _not_self(username)
    result = cluster_access.write("follow", {"actor": g.user, "target": username})
    if result.reply.get("changed", True):
        flash(f"You now follow {username}.")
    return redirect(url_for("profiles.profile", username=username))


@bp.route("/<username>/unfollow", methods=("POST",))
@login_required
def unfollow(username: str):
    _not_self(username)
    result = cluster_access.write("unfollow", {"actor": g.user, "target": username})
    if result.reply.get("changed", True):
        flash(f"You no longer follow {username}.")
    else:
        flash(f"You did not follow {username}.")
    return redirect(url_for("profiles.profile", username=username))
