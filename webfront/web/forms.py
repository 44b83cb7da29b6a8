"""Flask-WTF forms. Field names are plain (`username`, `password`, `text`) for people and tools."""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import EqualTo, InputRequired, Length, ValidationError

from .inputs import MAX_DISPLAY_NAME_CHARS, InvalidInput, display_name, post_text
from .request_ids import new_token, valid_key

csrf = CSRFProtect()

# Always with fullmatch: with match, "$" also matches before a trailing newline ("carol\n").
USERNAME_RE = re.compile(r"[A-Za-z0-9_]{3,20}")

# Names that are, or may one day be, paths of the site itself (`/<username>` shares the root).
RESERVED_NAMES = frozenset(
    ["about", "account", "accounts", "admin", "administrator", "api", "assets", "auth", "compose", "explore", "favicon", "feed", "follow", "followers", "following", "health", "help", "home", "index", "login", "logout", "me", "messages", "metrics", "new", "notifications", "post", "posts", "privacy", "public", "register", "root", "rss", "search", "security", "settings", "signin", "signout", "signup", "static", "status", "support", "system", "terms", "timeline", "tos", "unfollow", "user", "users", "webfront", "well_known", "www"]
)


USERNAME_RULE = "3 to 20 letters, digits or underscores."
MIN_PASSWORD_CHARS = 8


def username_problem(name: str) -> str | None:
    """Why `name` cannot be registered, or None."""
    if not USERNAME_RE.fullmatch(name):
        return USERNAME_RULE
    if name.lower() in RESERVED_NAMES:
        return "This name is reserved."
    return None


def _valid_username(form, field) -> None:
    problem = username_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


def _rule(check):
    """A WTForms validator from one of inputs.py's rules (the API applies the same ones)."""
    def validate(form, field) -> None:
        try:
            check(field.data or "")
        except InvalidInput as exc:
            raise ValidationError(str(exc)) from None
    return validate


def _request_token(form, field) -> None:
    if field.data and not valid_key(field.data):
        field.data = new_token()  # so that sending the form again works
        raise ValidationError("This form was damaged on the way. Check it and send it again.")


class WriteForm(FlaskForm):
    """A form whose submit is one write: sending the same rendered form again (a double click,
    a retry after "cannot save right now") is applied once. The token is made when the form is
    first rendered and kept when it is shown again with an error (request_ids.py)."""

    request_token = HiddenField(default=new_token, validators=[_request_token])


def _strip_spaces(value: str | None) -> str | None:
    # Spaces only, as typed or pasted around a name; a newline stays an error (never a name).
    return value.strip(" ") if isinstance(value, str) else value


class RegisterForm(WriteForm):
    username = StringField("Username", description=USERNAME_RULE, filters=[_strip_spaces],
                           validators=[InputRequired(), _valid_username])
    display_name = StringField("Display name (optional)", validators=[_rule(display_name)],
                               render_kw={"maxlength": MAX_DISPLAY_NAME_CHARS})
    password = PasswordField(
        "Password", description=f"At least {MIN_PASSWORD_CHARS} characters.",
        validators=[InputRequired(), Length(
            min=MIN_PASSWORD_CHARS, max=200,
            message=f"Use {MIN_PASSWORD_CHARS} to 200 characters for your password.")])
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="Passwords do not match.")],
    )


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[InputRequired(), Length(max=20)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=200)])


class PostForm(WriteForm):
    text = TextAreaField("What's happening?", validators=[_rule(post_text)])
    next = HiddenField()  # the page the form is on: back there after posting


class DeleteAccountForm(FlaskForm):
    password = PasswordField("Password", validators=[InputRequired(), Length(max=200)])
    confirm = StringField("Type your username to confirm", validators=[InputRequired()])

