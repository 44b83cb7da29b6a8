"""The cluster client used by the web workers: a blocking, thread-safe library.

Each call borrows a connection from a small pool (so threads never share a socket mid-call),
sends one frame and waits for its reply within a per-call deadline. Writes carry a request id;
after a lost connection or a timeout the same id is sent again until the deadline, and the
coordinator (and the replicas behind it) answer a retried id with its first result.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from webfront.protocol import ProtocolError, connect, encode_frame, recv_frame, write_reply


class ClusterError(Exception):
    code: str = "error"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unavailable(ClusterError):
    """No majority, coordinator unreachable or the call timed out (HTTP 503)."""

    code = "unavailable"


class Invalid(ClusterError):
    code = "invalid"


class Conflict(ClusterError):
    code = "conflict"


class NotFound(ClusterError):
    code = "not_found"


class Forbidden(ClusterError):
    code = "forbidden"


class AccountReplaced(Forbidden):
    """The write was for an account that was deleted, its name since taken by another
    (`actor_since`, docs/protocol.md): the session or token that sent it is void."""

    code = "account_replaced"


BY_CODE: dict[str, type[ClusterError]] = {
    "invalid": Invalid, "conflict": Conflict, "not_found": NotFound, "forbidden": Forbidden,
    "account_replaced": AccountReplaced, "unavailable": Unavailable, "timeout": Unavailable,
}


@dataclass(frozen=True)
class WriteResult:
    seq: int
    reply: dict


@dataclass(frozen=True)
class ReadResult:
    seq: int  # the serving replica's applied seq
    reply: dict


def _parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(address, tuple):
        return address
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _raise_for_reply(reply: Any) -> None:
    if isinstance(reply, dict) and reply.get("ok") is False:
        code = str(reply.get("code", "error"))
        cls = BY_CODE.get(code, ClusterError)
        raise cls(str(reply.get("msg", code)), code)


# Retry pause after a refused or broken connection or a "starting" coordinator: doubles from
# 10 ms up to this. Kept short so that a restarted coordinator (writable a few hundred ms after
# a kill) is found within ~50 ms of being ready; a refused connect on a LAN costs microseconds.
RETRY_DELAY_MAX = 0.05


class _Retry(Exception):
    """The connection broke or timed out: try again on a fresh one."""


class ClusterClient:
    def __init__(self, address: str | tuple[str, int], secret: bytes = b"",
                 timeout: float = 3.0) -> None:
        self.address = _parse_address(address)
        self.secret = secret
        self.timeout = timeout
        self._pool: list[socket.socket] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    # Public API ---------------------------------------------------------------------------

    def write(self, op: str, args: dict, *, request_id: str | None = None) -> WriteResult:
        rid = request_id or uuid.uuid4().hex
        body = self._call({"t": "cw", "rid": rid, "op": op, "a": args}, retry_refusal=False)
        reply = write_reply(body)
        _raise_for_reply(reply)
        return WriteResult(int(body.get("s", 0)), reply)

    def read(self, query: str, args: dict | None = None, *,
             min_seq: int | None = None) -> ReadResult:
        frame: dict[str, Any] = {"t": "cr", "q": query, "a": args or {}}
        if min_seq is None:
            frame["mode"] = "linearizable"
        else:
            frame["mode"] = "session"
            frame["min"] = int(min_seq)
        body = self._call(frame, retry_refusal=True)
        reply = body.get("r")
        _raise_for_reply(reply)
        return ReadResult(int(body.get("s", 0)), reply)

    def status(self) -> dict:
        return self._call({"t": "st"}, retry_refusal=True)["status"]

    def add_replica(self, address: str) -> str:
        """Add the replica at HOST:PORT to the membership; returns its id (from its handshake).
        It joins as `recovering` and is `up` after state transfer."""
        return str(self._call({"t": "madd", "addr": address}, retry_refusal=True)["replica"])

    def remove_replica(self, replica_id: str) -> str:
        return str(self._call({"t": "mrm", "replica": str(replica_id)},
                              retry_refusal=True)["replica"])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for sock in pool:
            sock.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Internals ----------------------------------------------------------------------------

    def _call(self, frame: dict, retry_refusal: bool) -> dict:
        """Send frame (same content on every attempt) until a reply or the deadline."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        last_error = "timed out"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"cluster unreachable at {self.address[0]}:{self.address[1]}:"
                                  f" {last_error}")
            try:
                body = self._attempt(frame, remaining)
            except _Retry as exc:
                last_error = str(exc)
                self._drop_idle()  # they lead to the same (restarted?) coordinator: all stale
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, RETRY_DELAY_MAX)
                continue
            if body.get("t") == "err":
                code = str(body.get("code", "error"))
                if code == "timeout" or (code == "unavailable" and (
                        body.get("retry") or "starting" in str(body.get("msg", "")))):
                    last_error = f"{code}: {body.get('msg', '')}"
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, RETRY_DELAY_MAX)
                    continue
                cls = BY_CODE.get(code, ClusterError)
                raise cls(str(body.get("msg", code)), code)
            return body

    def _attempt(self, frame: dict, remaining: float) -> dict:
        sock = self._borrow(remaining)
        cid = next(self._ids)
        ok = False
        try:
            sock.settimeout(remaining)
            sock.sendall(encode_frame(dict(frame, id=cid)))
            while True:
                body = recv_frame(sock)
                if body.get("id") == cid or (body.get("t") == "err" and body.get("id") is None):
                    ok = body.get("t") != "err" or body.get("id") is not None
                    return body
        except (OSError, ConnectionError, ProtocolError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        finally:
            if ok:
                self._give_back(sock)
            else:
                sock.close()

    def _borrow(self, remaining: float) -> socket.socket:
        with self._lock:
            if self._closed:
                raise Unavailable("client closed")
            if self._pool:
                return self._pool.pop()
        try:
            sock, _ready = connect(self.address, self.secret, "client",
                                   timeout=min(remaining, 2.0))
        except (OSError, ConnectionError, ProtocolError) as exc:
            raise _Retry(f"connect: {type(exc).__name__}: {exc}") from None
        return sock

    def _drop_idle(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for sock in pool:
            sock.close()

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._pool) < 64:
                self._pool.append(sock)
                return
        sock.close()


def client_from_env() -> ClusterClient:
    """A client configured by WEBFRONT_COORDINATOR and WEBFRONT_SECRET_FILE."""
    from webfront.protocol import read_secret

    secret_file = os.environ.get("WEBFRONT_SECRET_FILE")
    return ClusterClient(os.environ.get("WEBFRONT_COORDINATOR", "127.0.0.1:7000"),
                         read_secret(secret_file) if secret_file else b"")
