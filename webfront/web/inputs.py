"""Rules for what people and programs send: numbers in query strings, JSON bodies, redirect
targets, post text and display names. The pages (forms.py, timeline.py, ...) and the API
(api.py) share them, so both accept and refuse the same things.

A rule broken raises `InvalidInput`: a 400 with its message (errors.py), JSON under /api/ and
an error page elsewhere; the forms turn it into a field error instead.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from flask import Flask, json, request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_POST_CHARS = 280
MAX_DISPLAY_NAME_CHARS = 50
INT64_MAX = 2**63 - 1  # ids and seqs are int64: msgpack cannot send a larger one

_ASCII_DIGITS = re.compile(r"[0-9]+")
# Bidi embeddings, overrides and isolates: they reorder the text around them ("gnp.exe").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TEXT_RULE = "control characters and text-direction overrides are not allowed"


class InvalidInput(ValueError):
    """Input that breaks one of the rules here; the message says which."""


class InvalidQuery(InvalidInput):
    """A query parameter (`name`) that breaks its rule: on a page, a link edited or cut short."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def query_int(name: str, low: int, high: int) -> int | None:
    """The query parameter `name` as an int in [low, high], None if absent or empty.
    Only ASCII digits: str.isdigit() takes "²", which int() refuses, and int() takes "٣",
    "+1", " 1" and "1_0"."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not _ASCII_DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidQuery(name, f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(raw)


def json_object() -> dict:
    """The request's body as a JSON object whose strings are all valid Unicode."""
    try:
        body = json.loads(request.get_data(cache=True))
    except RecursionError:  # the parser recurses per level: [[[[...]]]] of 64 KiB is too deep
        raise InvalidInput("the body is nested too deeply") from None
    except ValueError:
        raise InvalidInput("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if not _all_utf8(body):
        # "\ud83d" alone (or its CESU-8 bytes) parses, but cannot be stored or hashed.
        raise InvalidInput("the body has a string that is not valid UTF-8 (a lone surrogate)")
    return body


def _all_utf8(value) -> bool:
    stack = [value]  # a loop, not recursion: the depth is whatever the client sent
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def local_target(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default` (for `next` parameters).

    Browsers drop tabs and newlines inside URLs, read "\\" as "/" and any number of slashes
    as "//", so "/\\t/evil.example", "/\\\\evil.example" and "///evil.example" lead off the
    site although they start with "/" and urlsplit finds no host in some of them."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(unicodedata.category(c).startswith("C") for c in target)):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _forbidden(text: str, allowed: str) -> bool:
    return any(c in _BIDI_CONTROLS or unicodedata.category(c) == "Cc" and c not in allowed
               for c in text)


def _blank(text: str) -> bool:
    """Nothing visible: only whitespace and format characters (zero-width space, joiners)."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def post_text(raw: str) -> str:
    """The post to store for what was sent: newlines as LF (browsers send a textarea's as CRLF,
    and its counter counts LF), no surrounding whitespace; InvalidInput if it breaks a rule."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if _forbidden(text, "\n\t"):
        raise InvalidInput(f"Remove the special characters: {TEXT_RULE}.")
    if _blank(text):
        raise InvalidInput("Write something first.")
    if len(text) > MAX_POST_CHARS:
        raise InvalidInput(f"At most {MAX_POST_CHARS} characters ({len(text)} now).")
    return text


def display_name(raw: str | None) -> str | None:
    """The display name to store, or None for "use the username" (nothing visible sent)."""
    name = (raw or "").strip()
    if _forbidden(name, ""):
        raise InvalidInput(f"Remove the special characters: {TEXT_RULE}.")
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidInput(f"At most {MAX_DISPLAY_NAME_CHARS} characters.")
    return None if _blank(name) else name


def _limit_streamed_body() -> None:
    # A chunked body has no Content-Length; werkzeug then stops reading at MAX_CONTENT_LENGTH
    # without an error (when the server terminates the stream, as gunicorn does), so the
    # request would go on with a truncated body. Read it, and answer 413 if more was coming.
    limit = request.max_content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if limit is None or not chunked or "wsgi.input_terminated" not in request.environ:
        return
    if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    app.before_request(_limit_streamed_body)
