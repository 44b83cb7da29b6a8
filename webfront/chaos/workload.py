"""Concurrent clients driving the real HTTP API (/api/v1) and recording every operation.

Each process (a thread) plays one user at a time: it registers, logs in for a bearer token,
then posts, deletes its own posts, follows and unfollows others, deletes its account now and
then (and registers a new one), and reads timelines, profiles and follower lists. Every call is
one history record. The API's reads are linearizable (docs in webfront/web/api.py); a process
also makes session reads straight to the coordinator with its own last acknowledged seq as
`min_seq` (read-your-writes), when a session reader is given.

How an HTTP outcome becomes a result:
- 2xx: `ok`.
- 400, 401, 403, 404, 409, 413, 429: `fail`, a definite error (the write was not applied).
- 503, other 5xx, timeouts, refused or reset connections: `info` for writes (the command may
  have been sequenced before the error), `fail` for reads (a read changes nothing).

Every loop is bounded by a deadline and an operation budget, and every request by a timeout.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from webfront.chaos.history import FAIL, INFO, OK, HistoryWriter

DEFINITE_HTTP = {400, 401, 403, 404, 409, 413, 429}
PASSWORD = "chaos-password-1"

# A session reader: (query, args, min_seq) -> (ok, reply dict or error string).
SessionReader = Callable[[str, dict[str, Any], int], tuple[bool, Any]]


@dataclass
class _Session:
    username: str | None = None
    token: str | None = None
    last_seq: int = 0
    posts: list[int] = field(default_factory=list)
    following: set[str] = field(default_factory=set)
    ident: str = ""


class Http:
    """A tiny keep-alive JSON client (stdlib only) with one connection per process."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or None). Raises OSError / HTTPException on transport errors."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, self.prefix + path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return response.status, decoded

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Workload:
    """`processes` client threads against `base_url` until `stop()` or the deadline."""

    WEIGHTS: ClassVar[list[tuple[str, float]]] = [("post", 30), ("read_public", 10), ("read_user_posts", 10), ("read_timeline", 6),
               ("follow", 8), ("unfollow", 5), ("delete_post", 6), ("read_profile", 4),
               ("read_followers", 3), ("session_read", 8), ("delete_user", 0.25)]

    def __init__(self, base_url: str, history: HistoryWriter, seed: int, processes: int = 6,
                 timeout: float = 5.0, max_ops: int = 1_000_000,
                 session_reader: SessionReader | None = None, think: float = 0.0) -> None:
        self.base_url = base_url
        self.history = history
        self.seed = seed
        self.processes = processes
        self.timeout = timeout
        self.max_ops = max_ops
        self.session_reader = session_reader
        self.think = think
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._ops = 0
        self.usernames: set[str] = set()   # every name a registration was attempted for
        self._live_users: list[str] = []   # names registered and not (being) deleted
        self.errors: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, deadline: float) -> None:
        for p in range(self.processes):
            t = threading.Thread(target=self._run, args=(p, deadline), name=f"chaos-client-{p}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    @property
    def op_count(self) -> int:
        return self._ops

    def _budget(self) -> bool:
        with self._lock:
            if self._ops >= self.max_ops:
                return False
            self._ops += 1
            return True

    # ------------------------------------------------------------------ one process

    def _run(self, process: int, deadline: float) -> None:
        rng = random.Random(self.seed * 7919 + process)
        http_client = Http(self.base_url, self.timeout)
        s = _Session()
        generation = 0
        kinds = [k for k, _ in self.WEIGHTS]
        weights = [w for _, w in self.WEIGHTS]
        try:
            while not self._stop.is_set() and time.monotonic() < deadline and self._budget():
                try:
                    if s.username is None:
                        generation += 1
                        self._register(process, http_client, s, rng, generation)
                    elif s.token is None:
                        self._login(process, http_client, s)
                    else:
                        kind = rng.choices(kinds, weights)[0]
                        getattr(self, "_" + kind)(process, http_client, s, rng)
                except Exception as exc:  # noqa: BLE001 - a bug in the harness, not the system: keep going
                    with self._lock:
                        self.errors.append(f"process {process}: {type(exc).__name__}: {exc}")
                    time.sleep(0.05)
                if self.think:
                    time.sleep(rng.uniform(0, self.think))
        finally:
            http_client.close()

    def _call(self, process: int, http_client: Http, kind: str, method: str, path: str,
              body: Any, token: str | None, payload: dict[str, Any],
              value_of: Callable[[Any], Any] | None = None) -> tuple[str, int, Any]:
        """One HTTP call recorded as one history op; returns (result, status, body)."""
        is_write = not kind.startswith("read_") and kind != "login"
        start = self.history.now()
        status, data, error = 0, None, None
        try:
            status, data = http_client.call(method, path, body, token)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None and 200 <= status < 300:
            result = OK
        elif error is None and status in DEFINITE_HTTP:
            result = FAIL
            error = _error_code(status, data)
        else:
            result = INFO if is_write else FAIL
            error = error or _error_code(status, data)
        seq = data.get("seq") if result == OK and isinstance(data, dict) else None
        value = value_of(data) if (result == OK and value_of) else None
        self.history.op(process, kind, start, result, seq=seq, payload=payload, value=value,
                        error=error)
        return result, status, data

    # ------------------------------------------------------------------ writes

    def _register(self, process, http_client, s: _Session, rng, generation) -> None:
        name = f"s{self.seed % 1000}p{process}g{generation}"
        with self._lock:
            self.usernames.add(name.lower())
        result, status, data = self._call(
            process, http_client, "register", "POST", "/users",
            {"username": name, "password": PASSWORD}, None,
            {"username": name, "session": f"{name}"})
        if result == FAIL and status != 409:
            time.sleep(0.05)
            return  # try a fresh name next time
        if result == INFO:
            time.sleep(0.1)
        s.__init__(username=name, ident=name)
        if result == OK and isinstance(data, dict) and data.get("seq"):
            s.last_seq = int(data["seq"])

    def _login(self, process, http_client, s: _Session) -> None:
        result, status, data = self._call(
            process, http_client, "login", "POST", "/tokens",
            {"username": s.username, "password": PASSWORD}, None,
            {"username": s.username, "session": s.ident})
        if result == OK and isinstance(data, dict):
            s.token = data.get("token")
            with self._lock:
                self._live_users.append(s.username)
        elif status == 401:
            s.username = None  # the registration did not happen after all: start again
        else:
            time.sleep(0.2 if status == 429 else 0.05)

    def _post(self, process, http_client, s: _Session, rng) -> None:
        text = f"{s.username} {self.history.now():.6f} {rng.getrandbits(40):x}"
        result, status, data = self._call(
            process, http_client, "post", "POST", "/posts", {"text": text}, s.token,
            {"actor": s.username, "text": text, "session": s.ident},
            lambda d: {"id": d.get("id"), "seq": d.get("seq")})
        if result == OK and isinstance(data, dict):
            s.posts.append(int(data["id"]))
            s.last_seq = max(s.last_seq, int(data.get("seq") or 0))
        self._after(s, status)

    def _delete_post(self, process, http_client, s: _Session, rng) -> None:
        if not s.posts:
            return self._post(process, http_client, s, rng)
        post_id = s.posts.pop(rng.randrange(len(s.posts)))
        result, status, _ = self._call(
            process, http_client, "delete_post", "DELETE", f"/posts/{post_id}", None, s.token,
            {"actor": s.username, "id": post_id, "session": s.ident})
        if result == INFO:
            pass  # may or may not be gone: never touch it again
        self._after(s, status)

    def _follow(self, process, http_client, s: _Session, rng) -> None:
        with self._lock:
            others = [u for u in self._live_users if u != s.username]
        if not others:
            return
        target = rng.choice(others)
        result, status, _ = self._call(
            process, http_client, "follow", "POST", "/follows", {"username": target}, s.token,
            {"actor": s.username, "target": target, "session": s.ident})
        if result == OK:
            s.following.add(target)
        self._after(s, status)

    def _unfollow(self, process, http_client, s: _Session, rng) -> None:
        if not s.following:
            return self._follow(process, http_client, s, rng)
        target = rng.choice(sorted(s.following))
        result, status, _ = self._call(
            process, http_client, "unfollow", "DELETE", f"/follows/{target}", None, s.token,
            {"actor": s.username, "target": target, "session": s.ident})
        if result == OK or status == 404:
            s.following.discard(target)  # unfollowed, or the target's account is gone
        self._after(s, status)

    def _delete_user(self, process, http_client, s: _Session, rng) -> None:
        with self._lock:
            if s.username in self._live_users:
                self._live_users.remove(s.username)
        result, status, _ = self._call(
            process, http_client, "delete_user", "DELETE", f"/users/{s.username}", None, s.token,
            {"username": s.username, "actor": s.username, "session": s.ident})
        if result == FAIL and status != 404:
            with self._lock:
                self._live_users.append(s.username)  # still there: keep playing it
            return
        s.username = None  # gone (or maybe gone): become someone new

    def _after(self, s: _Session, status: int) -> None:
        if status == 401:
            s.token = None  # token expired or user gone: log in again
        elif status == 404 and s.username:
            pass

    # ------------------------------------------------------------------ reads

    def _page(self, data: Any) -> dict[str, Any]:
        posts = data.get("posts", []) if isinstance(data, dict) else []
        return {"ids": [p["id"] for p in posts], "more": data.get("next") is not None}

    def _read_public(self, process, http_client, s: _Session, rng) -> None:
        self._call(process, http_client, "read_public", "GET", "/public?limit=50", None, None,
                   {"scope": "public", "mode": "linearizable", "session": s.ident, "limit": 50}, self._page)

    def _read_user_posts(self, process, http_client, s: _Session, rng) -> None:
        who = s.username
        with self._lock:
            if self._live_users and rng.random() < 0.5:
                who = rng.choice(self._live_users)
        self._call(process, http_client, "read_user_posts", "GET", f"/users/{who}/posts?limit=50",
                   None, None, {"scope": f"user:{who.lower()}", "mode": "linearizable",
                                "session": s.ident, "limit": 50}, self._page)

    def _read_timeline(self, process, http_client, s: _Session, rng) -> None:
        _, status, _ = self._call(
            process, http_client, "read_timeline", "GET", "/timeline?limit=50", None, s.token,
            {"scope": f"home:{s.username.lower()}", "mode": "linearizable", "session": s.ident,
             "limit": 50},
            self._page)
        self._after(s, status)

    def _read_profile(self, process, http_client, s: _Session, rng) -> None:
        self._call(process, http_client, "read_profile", "GET", f"/users/{s.username}", None, None,
                   {"username": s.username, "mode": "linearizable", "session": s.ident},
                   lambda d: {"posts": d.get("posts"), "followers": d.get("followers"),
                              "following": d.get("following")})

    def _read_followers(self, process, http_client, s: _Session, rng) -> None:
        self._call(process, http_client, "read_followers", "GET",
                   f"/users/{s.username}/following?limit=200", None, None,
                   {"username": s.username, "mode": "linearizable", "session": s.ident},
                   lambda d: {"users": [u.get("username") for u in d.get("users", [])]})

    def _session_read(self, process, http_client, s: _Session, rng) -> None:
        """Read-your-writes through the coordinator: min_seq = this session's last write."""
        if self.session_reader is None:
            return self._read_user_posts(process, http_client, s, rng)
        start = self.history.now()
        try:
            ok, reply = self.session_reader("user_posts", {"username": s.username, "limit": 50},
                                            s.last_seq)
        except Exception as exc:  # noqa: BLE001 - transport trouble: a failed read, changes nothing
            ok, reply = False, f"{type(exc).__name__}: {exc}"
        if ok and isinstance(reply, dict) and reply.get("ok", True):
            self.history.op(process, "read_user_posts", start, OK,
                            payload={"scope": f"user:{s.username.lower()}", "mode": "session",
                                     "session": s.ident, "min_seq": s.last_seq, "limit": 50,
                                     "via": "coordinator"},
                            value=self._page(reply))
        else:
            self.history.op(process, "read_user_posts", start, FAIL,
                            payload={"scope": f"user:{s.username.lower()}", "mode": "session",
                                     "session": s.ident, "via": "coordinator"},
                            error=str(reply)[:200])


def _error_code(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return f"{status} {data['error'].get('code')}"
    return f"http {status}"
