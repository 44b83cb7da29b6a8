"""Request ids for writes from forms and the API, so that sending one again applies it once.

The cluster applies a write once per request id: a repeat gets the first reply
(docs/protocol.md). A write whose outcome is open (a 503 after it got its seq, a double click,
a browser that re-POSTs) is safe to send again only under the id it had the first time, so the
id must come from the page or the API client, not from a fresh uuid per call:

- every write form carries `request_token`, a random token made when the form is rendered;
- an API client may send an `Idempotency-Key` header.

The id is a hash over the acting user, the operation, the token or key and what the write
does (the text, the post id, the followed name, a sign-up's display name and password), so one
user's key can never answer another user's write (nor a post's key a follow, nor one text's key
another text), and it fits the protocol's 64 bytes whatever the parts are. Without a token or
key a write gets a fresh id, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from flask import Flask, abort, current_app, request

from webfront.client import Unavailable, WriteResult

from . import cluster_access

TOKEN_FIELD = "request_token"
KEY_CHARS = "A-Z a-z 0-9 - _ . : ~ + / ="
KEY_RE = re.compile(r"[A-Za-z0-9._:~+/=-]{1,64}")
KEY_RULE = f"1 to 64 characters from {KEY_CHARS}"


def new_token() -> str:
    """A fresh form token: 128 random bits, 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


def valid_key(key: str) -> bool:
    """Whether `key` may be a form token or an Idempotency-Key (see KEY_RULE)."""
    return KEY_RE.fullmatch(key) is not None


def request_id(source: str, actor: str, op: str, key: str, *content: str) -> str:
    """`source:` and 48 hex digits (52 bytes) naming one write of `actor`.

    `content` binds the id to what the form or API call sent, whose content can change under
    one token or key (text edited after a 503, a page the browser restored, a client reusing
    a key): a changed request is a new request. A password from a form among it is safe: the
    hash also covers the form's token, 128 random bits that are stored nowhere, so the id
    cannot be used to test guesses. An API key may be guessable: the API passes a password
    through `secret_digest`.
    """
    digest = hashlib.blake2b(digest_size=24, person=b"webfront-rid")
    for part in (source, actor.lower(), op, key, *content):
        data = part.encode()
        digest.update(len(data).to_bytes(4, "big") + data)  # length first: parts cannot blur
    return f"{source}:{digest.hexdigest()}"


def secret_digest(value: str) -> str:
    """`value` (a password) as an HMAC under the app's session key, for the content of an API
    request id: an Idempotency-Key is the client's choice and may be guessable, unlike a form's
    token, so a password must not go into the id in a form a guess can be checked against."""
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else bytes(key)
    return hmac.new(key, b"request-id-content\0" + value.encode(), hashlib.sha256).hexdigest()


def form_request_id(actor: str, op: str, token: str | None, *content: str) -> str | None:
    """The request id of a form's write, or None (a fresh id) for a form sent without a token
    (a page rendered before tokens existed, a script)."""
    return request_id("web", actor, op, token, *content) if token else None


NOT_CONFIRMED = ("Cannot save changes right now: not enough of the network's servers answered, "
                 "so this is not confirmed. Send it again in a moment; it will not be applied "
                 "twice.")


def write_form(form: Any, op: str, args: dict[str, Any], actor: str,
               *content: str) -> WriteResult | None:
    """The write a `forms.WriteForm` asks for, under its token's request id. After a 503 it is
    None and the form carries NOT_CONFIRMED, its token kept: the page shows the form again
    (status 503), and sending it is the same request."""
    rid = form_request_id(actor, op, form.request_token.data, *content)
    try:
        return cluster_access.write(op, args, request_id=rid)
    except Unavailable:
        form.request_token.errors.append(NOT_CONFIRMED)
        return None


def posted_token() -> str:
    """The `request_token` of a plain action form ("" if none); 400 if it is malformed."""
    token = request.form.get(TOKEN_FIELD, "")
    if token and not valid_key(token):
        abort(400)
    return token


def init_app(app: Flask) -> None:
    # For the small action forms, which are plain HTML rather than WTForms (see _macros.html).
    app.add_template_global(new_token, "new_request_token")
