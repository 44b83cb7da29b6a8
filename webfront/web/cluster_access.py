"""The app's one door to the cluster, in the style of flaskr's `get_db()`.

`get_cluster()` returns the `ClusterClient` for this request, cached on `g`. The client is
thread-safe and keeps its own pool of authenticated connections to the coordinator, so one
client per app and per process (gunicorn forks: each worker builds its own) serves every
request without a new connection and handshake each time.

`write()` and `read()` add read-your-writes for the browser session: every write's seq goes
into `session["last_seq"]`, and reads carry it as `min_seq`, so whatever replica answers has
applied the user's own writes.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Any

from flask import Flask, current_app, g, session

from webfront.client import ClusterClient, ClusterError, ReadResult, WriteResult


def _secret(config) -> bytes:
    if config.get("CLUSTER_SECRET") is not None:
        secret = config["CLUSTER_SECRET"]
        return secret.encode() if isinstance(secret, str) else bytes(secret)
    path = config.get("CLUSTER_SECRET_FILE")
    if path:
        from webfront.protocol import read_secret

        return read_secret(path)
    return b""


def _address(address: Any) -> str | tuple[str, int]:
    if isinstance(address, (tuple, list)):
        return (str(address[0]), int(address[1]))
    return str(address)


class _ClientHolder:
    """The app's client in this process, made on first use and again after a fork."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._client: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                config = self._app.config
                self._client = ClusterClient(_address(config["COORDINATOR"]),
                                             secret=_secret(config),
                                             timeout=float(config["CLUSTER_TIMEOUT"]))
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


_holders: weakref.WeakSet[_ClientHolder] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Close every app's client in this process (at exit; tests call it after each test)."""
    for holder in list(_holders):
        holder.close()


def get_cluster() -> ClusterClient:
    """The cluster client for this request."""
    if "cluster" not in g:
        g.cluster = current_app.extensions["webfront_cluster"].get()
    return g.cluster


def init_app(app: Flask) -> None:
    holder = _ClientHolder(app)
    _holders.add(holder)
    app.extensions["webfront_cluster"] = holder


def _check(reply: dict) -> dict:
    """Raise the client's exception for an error reply (the client may already have)."""
    if isinstance(reply, dict) and reply.get("ok") is False:
        from webfront.client import BY_CODE

        kind = BY_CODE.get(reply.get("code"), ClusterError)
        raise _make_error(kind, reply.get("code", "error"), reply.get("msg", ""))
    return reply


def _make_error(kind, code: str, message: str) -> ClusterError:
    err = kind(message)
    err.code, err.message = code, message
    return err


def remember_seq(seq: int) -> None:
    if seq and seq > session.get("last_seq", 0):
        session["last_seq"] = int(seq)


def as_account(args: dict[str, Any], key: str = "actor") -> dict[str, Any]:
    """Args naming the account the session or token was issued for (`actor_since`: its
    created_at), so that the replicas refuse the request if that account was deleted and its
    name taken by another (docs/protocol.md). `key` is the argument that names the session's own
    user: `actor` for writes and `relation`, `username` for the home timeline."""
    since = g.get("user_since")
    if since is not None and key in args:
        return {**args, "actor_since": since}
    return args


def write(op: str, args: dict[str, Any], *, request_id: str | None = None) -> WriteResult:
    """A write on behalf of the browser session; its seq is kept for read-your-writes."""
    result = get_cluster().write(op, as_account(args), request_id=request_id)
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
