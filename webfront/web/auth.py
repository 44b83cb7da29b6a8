"""Accounts: register, log in, log out, delete one's account; `login_required`.

Passwords are hashed here (scrypt) and only the hash goes to the cluster. The session holds
the username and the seq of the user's last write (`last_seq`, for read-your-writes).
"""

from __future__ import annotations

import functools

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash

from webfront.client import Conflict, NotFound

from . import cluster_access, errors
from .forms import USERNAME_RE, DeleteAccountForm, LoginForm, RegisterForm
from .inputs import display_name, local_target
from .limits import login_limits
from .request_ids import write_form

bp = Blueprint("auth", __name__)

# Checked against when the account does not exist, so a wrong name costs as long as a wrong
# password and response times do not tell which accounts exist.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


MAX_PASSWORD_CHARS = 200


def check_credentials(username: str, password: str, *, linearizable: bool = False) -> dict | None:
    """The user record if `password` is right for `username`, else None."""
    read = cluster_access.read_linearizable if linearizable else cluster_access.read
    user = None
    # A name no account can have is not looked up: a 5000-character one broke the protocol's
    # frame limits (a 400 naming them) instead of being wrong credentials.
    if USERNAME_RE.fullmatch(username) and len(password) <= MAX_PASSWORD_CHARS:
        try:
            user = read("user", {"username": username})["user"]
        except NotFound:
            pass
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    stored = user.get("password_hash") or ""
    if isinstance(stored, bytes):
        stored = stored.decode("utf-8", "replace")
    if not check_password_hash(stored, password):
        return None
    user.pop("password_hash", None)
    return user


def load_logged_in_user() -> None:
    g.user = session.get("username")
    g.user_since = session.get("since")
    if g.user is not None and type(g.user_since) is not int:
        # A session from before accounts were told apart by created_at: log in again.
        session.clear()
        g.user = g.user_since = None


@bp.app_context_processor
def inject_admin() -> dict:
    return {"is_admin": is_admin()}


def is_admin() -> bool:
    user = g.get("user")
    admins = {a.lower() for a in current_app.config["ADMINS"]}
    return bool(user) and user.lower() in admins


def init_app(app) -> None:
    # Before CSRFProtect's and the limiter's checks: the forms they refuse are shown again
    # for whoever is logged in (`errors.shows_form_again`).
    app.before_request(load_logged_in_user)


def login_required(view):
    @functools.wraps(view)
    def wrapped(**kwargs):
        if g.user is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(**kwargs)

    return wrapped


def _log_in(user: dict) -> None:
    """The session is for this account: its name and its created_at (see as_account)."""
    last_seq = session.get("last_seq", 0)
    session.clear()  # a new session id's worth of state; no fixation
    session["username"] = user["username"]
    session["since"] = user["created_at"]
    session["last_seq"] = last_seq
    session.permanent = True


@bp.route("/register", methods=("GET", "POST"))
def register():
    if g.user:
        return redirect(url_for("timeline.home"))
    form = RegisterForm()
    if form.validate_on_submit():
        args = {"username": form.username.data, "password_hash": hash_password(form.password.data)}
        shown = display_name(form.display_name.data)  # None: the username is shown
        if shown is not None:
            args["display_name"] = shown
        # No user yet: the name asked for is the actor. The password is part of the request,
        # so a form sent again with another one cannot log in to the account made with the first.
        try:
            result = write_form(form, "create_user", args, form.username.data,
                                shown or "", form.password.data)
        except Conflict:
            form.username.errors.append("This name is taken.")
        else:
            if result is not None:
                _log_in(result.reply["user"])
                flash("Welcome! Your account is ready.")
                return redirect(url_for("timeline.home"))
            return render_template("register.html", form=form), 503, {"Retry-After": "1"}
    status = 400 if form.errors else 200
    return render_template("register.html", form=form), status


def _after_login():
    return redirect(local_target(request.args.get("next"), url_for("timeline.home")))


@bp.route("/login", methods=("GET", "POST"))
@login_limits
def login():
    if g.user:
        return _after_login()
    form = LoginForm()
    if form.validate_on_submit():
        user = check_credentials(form.username.data.strip(), form.password.data)
        if user is not None:
            _log_in(user)
            flash(f"Logged in as {user['username']}.")
            return _after_login()
        form.password.errors.append("Wrong username or password.")
    status = 401 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@errors.shows_form_again("auth.login")
def _login_again(message: str, status: int):
    """A login form not taken (its CSRF token went stale as another tab logged in or out; too
    many attempts): logged in by now, on to where the login would go; else the form again."""
    if g.user:
        return _after_login()
    return render_template("login.html", form=LoginForm(), form_error=message), status


@bp.get("/logout")
def logout_page():
    """405, not the profile route's "no such user" that a GET here would otherwise reach:
    logging out is a POST with a CSRF token (a link could log anyone out)."""
    abort(405, valid_methods=["POST"])


@bp.route("/logout", methods=("POST",))
def logout():
    # CSRFProtect has checked the token before we get here.
    last_seq = session.get("last_seq", 0)
    session.clear()
    cluster_access.remember_seq(last_seq)
    flash("You are logged out.")
    return redirect(url_for("timeline.public"))


@bp.route("/settings/delete-account", methods=("GET", "POST"))
@login_required
def delete_account():
    form = DeleteAccountForm()
    if form.validate_on_submit():
        if form.confirm.data.strip().lower() != g.user.lower():
            form.confirm.errors.append("Type your own username to confirm.")
        elif check_credentials(g.user, form.password.data) is None:
            form.password.errors.append("Wrong password.")
        else:
            result = cluster_access.write("delete_user", {"actor": g.user})
            session.clear()
            cluster_access.remember_seq(result.seq)
            flash("Your account and your posts are deleted.")
            return redirect(url_for("timeline.public"))
    status = 400 if form.errors else 200
    return render_template("delete_account.html", form=form), status
