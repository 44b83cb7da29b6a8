"""The Flask front end: server-rendered pages, a JSON API, and the cluster's status page.

The app keeps no data of its own. Every read and write goes to the cluster through
`cluster_access.get_cluster()`, a client built from the app's configuration (`COORDINATOR`,
`CLUSTER_SECRET_FILE`). Any number of gunicorn workers can run it side by side.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from flask import Flask, Response, g, redirect, url_for

from . import (
    admin,
    api,
    auth,
    cluster_access,
    errors,
    inputs,
    metrics,
    profiles,
    request_ids,
    timeline,
)
from .forms import csrf
from .limits import limiter
from .timefmt import init_app as init_time_filters

# Content-Security-Policy: nothing inline, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `test_config` (tests, `serve.main`) overrides the defaults.

    The session key must come from the caller (`SECRET_KEY`) or the environment
    (`WEBFRONT_SECRET_KEY`); the app refuses to start without one.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("WEBFRONT_SECRET_KEY"),
        COORDINATOR=os.environ.get("WEBFRONT_COORDINATOR", "127.0.0.1:7000"),
        CLUSTER_SECRET_FILE=os.environ.get("WEBFRONT_SECRET_FILE"),
        CLUSTER_SECRET=None,  # bytes; wins over CLUSTER_SECRET_FILE (tests)
        CLUSTER_TIMEOUT=3.0,
        ADMINS=[a for a in os.environ.get("WEBFRONT_ADMINS", "").split(",") if a],
        PASSWORD_HASH_METHOD="scrypt",
        API_TOKEN_MAX_AGE=24 * 3600,
        LOGIN_RATE_LIMIT="10 per minute",
        LOGIN_ACCOUNT_RATE_LIMIT="5 per minute",
        RATELIMIT_STORAGE_URI="memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=64 * 1024,
        PAGE_SIZE=30,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind HTTPS (a TLS-terminating proxy), set WEBFRONT_SECURE_COOKIES=1.
        SESSION_COOKIE_SECURE=os.environ.get("WEBFRONT_SECURE_COOKIES") == "1",
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        WTF_CSRF_TIME_LIMIT=None,  # token lives as long as the session
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    if isinstance(app.config["ADMINS"], str):
        app.config["ADMINS"] = [a for a in app.config["ADMINS"].split(",") if a]
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError(
            "no session key: set WEBFRONT_SECRET_KEY or pass SECRET_KEY (see webfront web --help)"
        )

    inputs.init_app(app)  # first: a truncated chunked body must be refused before any reads it
    auth.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    cluster_access.init_app(app)
    errors.init_app(app)
    request_ids.init_app(app)
    init_time_filters(app)
    metrics.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(timeline.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens, not cookies
    # Last: its `/<username>` rule must not shadow the fixed paths above.
    app.register_blueprint(profiles.bp)

    @app.get("/favicon.ico")
    def favicon():
        # Asked for by browsers and tools that do not read the page's <link rel=icon>.
        return redirect(url_for("static", filename="favicon.svg"), 301)

    @app.after_request
    def security_headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if g.get("user") and response.mimetype == "text/html":
            # A logged-in page shows the user's own timeline: not for shared caches, nor for
            # the back button after logging out on a shared computer.
            h.setdefault("Cache-Control", "private, no-store")
        return response

    return app
