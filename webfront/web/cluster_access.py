"""The app's one door to the cluster, in the style of flaskr's `get_db()`.

`get_cluster()` returns a `ClusterClient` cached on `g` for the request. Clients (each one an
authenticated TCP connection to the coordinator) are kept in a small per-process pool between
requests, so a request does not pay for a new connection and handshake.

`write()` and `read()` add read-your-writes for the browser session: every write's seq goes
into `session["last_seq"]`, and reads carry it as `min_seq`, so whatever replica answers has
applied the user's own writes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, session

from webfront.client import ClusterClient, ClusterError, ReadResult, Unavailable, WriteResult

_POOL_SIZE = 8


def _parse_address(address: str | tuple[str, int] | list) -> str | tuple[str, int]:
    if isinstance(address, (tuple, list)):
        return (str(address[0]), int(address[1]))
    host, sep, port = str(address).rpartition(":")
    if sep and port.isdigit():
        return (host.strip("[]") or "127.0.0.1", int(port))
    return str(address)


def _secret(config) -> bytes:
    if config.get("CLUSTER_SECRET") is not None:
        secret = config["CLUSTER_SECRET"]
        return secret.encode() if isinstance(secret, str) else bytes(secret)
    path = config.get("CLUSTER_SECRET_FILE")
    if path:
        return Path(path).read_bytes().strip()
    return b""


class _Pool:
    """Idle clients of one app in one process (gunicorn forks: each worker has its own)."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        config = self._app.config
        factory = config.get("CLUSTER_CLIENT_FACTORY")
        if factory is not None:
            return factory(config)
        return ClusterClient(_parse_address(config["COORDINATOR"]), secret=_secret(config),
                             timeout=float(config["CLUSTER_TIMEOUT"]))

    def give_back(self, client) -> None:
        with self._lock:
            if len(self._idle) < _POOL_SIZE:
                self._idle.append(client)
                return
        client.close()


def get_cluster() -> ClusterClient:
    """The cluster client for this request (one per request, reused from the pool)."""
    if "cluster" not in g:
        g.cluster = current_app.extensions["webfront_pool"].take()
    return g.cluster


def close_cluster(exc: BaseException | None = None) -> None:
    client = g.pop("cluster", None)
    if client is None:
        return
    if isinstance(exc, Unavailable) or g.pop("cluster_broken", False):
        client.close()  # the connection may be half-dead; start afresh next time
    else:
        current_app.extensions["webfront_pool"].give_back(client)


def init_app(app: Flask) -> None:
    app.extensions["webfront_pool"] = _Pool(app)
    app.teardown_appcontext(close_cluster)


def _check(reply: dict) -> dict:
    """Raise the client's exception for an error reply (the client may already have)."""
    if isinstance(reply, dict) and reply.get("ok") is False:
        from webfront import client as c

        kinds = {"invalid": c.Invalid, "conflict": c.Conflict, "not_found": c.NotFound,
                 "forbidden": c.Forbidden, "unavailable": c.Unavailable}
        kind = kinds.get(reply.get("code"), c.ClusterError)
        raise _make_error(kind, reply.get("code", "error"), reply.get("msg", ""))
    return reply


def _make_error(kind, code: str, message: str) -> ClusterError:
    try:
        return kind(code, message)
    except TypeError:
        err = kind(message)
        err.code, err.message = code, message
        return err


def remember_seq(seq: int) -> None:
    if seq and seq > session.get("last_seq", 0):
        session["last_seq"] = int(seq)


def write(op: str, args: dict[str, Any], *, request_id: str | None = None) -> WriteResult:
    """A write on behalf of the browser session; its seq is kept for read-your-writes."""
    try:
        result = get_cluster().write(op, args, request_id=request_id)
    except Unavailable:
        g.cluster_broken = True
        raise
    _check(result.reply)
    remember_seq(result.seq)
    return result


def read(query: str, args: dict[str, Any] | None = None) -> dict:
    """A read that sees at least this session's own writes (session mode)."""
    result: ReadResult = get_cluster().read(query, args or {}, min_seq=session.get("last_seq", 0))
    return _check(result.reply)


def read_linearizable(query: str, args: dict[str, Any] | None = None) -> dict:
    """A read that sees every write acknowledged before it began (API, no session)."""
    result: ReadResult = get_cluster().read(query, args or {}, min_seq=None)
    return _check(result.reply)
