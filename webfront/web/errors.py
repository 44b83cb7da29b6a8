"""Error pages and JSON errors, and the mapping from cluster errors to HTTP statuses.

Pages under /api/ and other JSON endpoints (`*.json`, polled by scripts) get
`{"error": {"code", "message"}}`; everything else gets an HTML page.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Flask,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from webfront.client import (
    AccountReplaced,
    ClusterError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unavailable,
)

from .inputs import InvalidInput, InvalidQuery

STATUS_BY_ERROR: list[tuple[type[ClusterError], int, str]] = [
    (Unavailable, 503, "unavailable"),
    (Invalid, 400, "invalid"),
    (Conflict, 409, "conflict"),
    (NotFound, 404, "not_found"),
    (Forbidden, 403, "forbidden"),
]

EXPLANATIONS = {
    400: "The request was not understood.",
    401: "You need to log in first.",
    403: "You are not allowed to do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    409: "That conflicts with what is already there.",
    413: "That request is too large.",
    429: "Too many attempts. Wait a minute and try again.",
    503: (
        "The network cannot save changes right now: not enough of its servers are reachable "
        "to store your change safely. Reading still works. Please try again in a moment."
    ),
}

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large",
              429: "rate_limited", 503: "unavailable"}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.endswith(".json")


HEADINGS = {400: "Request not understood", 401: "Log in first", 403: "Not allowed",
            404: "Page not found", 405: "Method not allowed", 409: "Already there",
            413: "Request too large", 429: "Too many attempts",
            503: "Cannot save changes right now"}
READ_UNAVAILABLE = ("The network's servers cannot be reached right now. "
                    "Please try again in a moment.")


def error_response(status: int, code: str, message: str, heading: str | None = None,
                   link: tuple[str, str] | None = None):
    """The error as JSON or as a page; `link` (url, text) is where a page sends people on."""
    if wants_json():
        response = jsonify(error={"code": code, "message": message})
        response.status_code = status
        if status == 503:
            response.headers["Retry-After"] = "1"
        return response
    heading = heading or HEADINGS.get(status, f"Error {status}")
    body = render_template("error.html", status=status, heading=heading, message=message,
                           link=link)
    return body, status, ({"Retry-After": "1"} if status == 503 else {})


def _cluster_error(exc: ClusterError):
    for kind, status, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            break
    else:
        status, code = 503, "unavailable"
    message = getattr(exc, "message", "") or str(exc)
    if not wants_json() and status != 503:
        message = _page_message(message, status)
    if status == 503:
        if wants_json():
            message = "the cluster cannot take this request now (no majority of replicas " \
                      "or coordinator unreachable); retry later"
        elif request.method in ("GET", "HEAD"):
            return error_response(503, code, READ_UNAVAILABLE, "Temporarily unavailable")
        else:
            message = EXPLANATIONS[503]
    return error_response(status, code, message)


# What a page says for the cluster's messages (docs/protocol.md): the API passes them on as
# they are, for programs; people get a sentence. `{name}` is the page's username.
PAGE_MESSAGES = {
    "no such user": "There is no user called @{name}.",
    "no such target user": "There is no user called @{name}.",
    "no such post": "That post was already deleted.",
    "not the author": "You can delete only your own posts.",
    "cannot follow yourself": "You cannot follow yourself.",
    "username taken": "That name is taken.",
}


def _page_message(message: str, status: int) -> str:
    """A sentence for a page in place of the cluster's `message`."""
    sentence = PAGE_MESSAGES.get(message)
    name = (request.view_args or {}).get("username")
    if sentence is None or "{name}" in sentence and not name:
        return EXPLANATIONS.get(status, "Something went wrong.")
    return sentence.format(name=name)


def _http_error(exc: HTTPException):
    status = exc.code or 500
    code = HTTP_CODES.get(status, "error")
    message = exc.description if wants_json() and exc.description else EXPLANATIONS.get(
        status, exc.description or "Something went wrong.")
    response = make_response(error_response(status, code, message))
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:  # HTTP requires it with 405
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


# Forms that answer "cannot take this form now" themselves, by endpoint: the form again, what
# was typed kept and the reason by it, rather than an error page that loses it.
_FORM_AGAIN: dict[str, Callable[[str, int], object]] = {}

FORM_EXPIRED = ("This form had expired (did you log in or out in another tab?). "
                "Check it and send it again.")


def shows_form_again(endpoint: str):
    """Register `show(message, status)` as how the view at `endpoint` answers a form it cannot
    take now (a stale CSRF token, too many login attempts) instead of the error page; it may
    return None for the error page after all."""
    def register(show: Callable[[str, int], object]):
        _FORM_AGAIN[endpoint] = show
        return show
    return register


def _form_again_or(message: str, status: int, otherwise: Callable[[], object]):
    show = _FORM_AGAIN.get(request.endpoint or "")
    again = None if show is None or wants_json() else show(message, status)
    return otherwise() if again is None else again


def _csrf_error(exc: CSRFError):
    return _form_again_or(FORM_EXPIRED, 400, lambda: error_response(
        400, "csrf", "The form expired or was not sent from this site. "
        "Go back, reload the page and try again.", "Form expired"))


def _account_replaced(exc: AccountReplaced):
    """The session's or token's account was deleted and its name taken again: the credential
    is void. A token gets 401; a browser is logged out and sent to the login page."""
    if wants_json():
        return error_response(401, "account_replaced",
                              "the account this token was issued for was deleted; get a new token")
    session.clear()
    flash("The account you were logged in to was deleted. Log in again.")
    return redirect(url_for("auth.login"))


def _invalid_input(exc: InvalidInput):
    if isinstance(exc, InvalidQuery) and not wants_json():
        # A page link edited or cut short: the page's first page still works.
        message = f"That page link is not valid: its “{exc.name}” value is wrong."
        return error_response(400, "invalid", message, "Link not valid",
                              (request.path, "Go to the first page"))
    return error_response(400, "invalid", str(exc))


def _rate_limited(exc: RateLimitExceeded):
    return _form_again_or(EXPLANATIONS[429], 429, lambda: error_response(
        429, "rate_limited", EXPLANATIONS[429]))


def init_app(app: Flask) -> None:
    app.register_error_handler(AccountReplaced, _account_replaced)
    app.register_error_handler(ClusterError, _cluster_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(InvalidInput, _invalid_input)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.register_error_handler(HTTPException, _http_error)
