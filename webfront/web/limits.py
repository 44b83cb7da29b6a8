"""Rate limits on login attempts (Flask-Limiter).

Two limits guard each login route: one per client address and one per account name, so that
neither one address trying many accounts nor many addresses trying one account get far.
Only failed attempts count. `webfront web` keeps the counters in one SQLite file that all its
gunicorn workers share (limit_store.py); an app built without it (tests) counts in memory.
"""

from __future__ import annotations

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from . import limit_store  # noqa: F401  (registers the sqlite:// storage scheme)
from .inputs import InvalidInput, json_object

limiter = Limiter(key_func=get_remote_address, default_limits=[])


def _account_key() -> str:
    name = request.form.get("username")
    if name is None:
        try:  # a body too deep or not UTF-8 counts under "" here; the view answers 400
            body = json_object()
        except InvalidInput:
            body = {}
        if isinstance(body.get("username"), str):
            name = body["username"]
    return "account:" + (name or "").strip().lower()


def _address_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _failed(response) -> bool:
    # A successful form login redirects (302); a successful token request answers 200.
    return response.status_code not in (200, 302) or getattr(response, "login_failed", False)


def login_limits(view):
    """Decorate a login view with the per-address and per-account limits (POST only)."""
    view = limiter.limit(_account_limit, key_func=_account_key, methods=["POST"],
                         deduct_when=_failed, scope="login-account")(view)
    view = limiter.limit(_address_limit, methods=["POST"], deduct_when=_failed,
                         scope="login-address")(view)
    return view
