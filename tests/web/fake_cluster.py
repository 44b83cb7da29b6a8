"""An in-memory stand-in for the cluster, with the semantics of docs/protocol.md.

Used only by the quick tests (WEBTEST_FAKE=1) and while webfront/client.py is missing; the
real tests run against a real local cluster (the `cluster` fixture).
"""

from __future__ import annotations

import threading
import time
import types
from dataclasses import dataclass


class ClusterError(Exception):
    def __init__(self, message: str = "", code: str = "error") -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Unavailable(ClusterError):
    pass


class Invalid(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class NotFound(ClusterError):
    pass


class Forbidden(ClusterError):
    pass


@dataclass(frozen=True)
class WriteResult:
    seq: int
    reply: dict


@dataclass(frozen=True)
class ReadResult:
    seq: int
    reply: dict


ERRORS = {"invalid": Invalid, "conflict": Conflict, "not_found": NotFound,
          "forbidden": Forbidden}


class FakeState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self.users: dict[str, dict] = {}  # lower name -> record
        self.posts: dict[int, dict] = {}
        self.follows: dict[tuple[str, str], int] = {}  # (follower, followee) lower -> seq
        self.writable = True
        self.replicas = [{"id": f"r{i}", "address": f"127.0.0.1:{9100 + i}", "pid": 1000 + i,
                          "state": "up", "applied_seq": 0, "epoch": 1, "digest": b"\0" * 16,
                          "lag": 0, "last_heartbeat_ms": 12} for i in range(3)]

    # -- writes
    def apply(self, op: str, a: dict) -> dict:
        self.seq += 1
        for r in self.replicas:
            if r["state"] == "up":
                r["applied_seq"] = self.seq
        return self.execute(op, a, self.seq, int(time.time() * 1_000_000))

    def execute(self, op: str, a: dict, s: int, now: int) -> dict:
        """Apply one command as the state machine would: deterministic in (op, a, s, now)."""

        def err(code, msg=""):
            return {"ok": False, "code": code, "msg": msg}

        def user(name):
            return self.users.get(str(name).lower())

        if op == "create_user":
            name = a.get("username", "")
            if not (3 <= len(name) <= 20) or not name.replace("_", "").isalnum():
                return err("invalid", "bad username")
            if user(name):
                return err("conflict", "username taken")
            rec = {"username": name, "display_name": a.get("display_name") or name,
                   "created_at": now, "password_hash": a["password_hash"]}
            self.users[name.lower()] = rec
            return {"ok": True, "user": self.public_user(rec)}
        actor = user(a.get("actor", ""))
        if actor is None:
            return err("not_found", "no such user")
        me = actor["username"].lower()
        if op == "delete_user":
            del self.users[me]
            self.posts = {k: p for k, p in self.posts.items() if p["author"].lower() != me}
            self.follows = {k: v for k, v in self.follows.items() if me not in k}
            return {"ok": True}
        if op == "create_post":
            text = str(a.get("text", "")).strip()
            if not 1 <= len(text) <= 280:
                return err("invalid", "text length")
            post = {"id": s, "author": actor["username"], "text": text, "created_at": now,
                    "seq": s}
            self.posts[s] = post
            return {"ok": True, "post": post}
        if op == "delete_post":
            post = self.posts.get(a.get("id"))
            if post is None:
                return err("not_found", "no such post")
            if post["author"].lower() != me:
                return err("forbidden", "not the author")
            del self.posts[a["id"]]
            return {"ok": True}
        if op in ("follow", "unfollow"):
            target = user(a.get("target", ""))
            if target is None:
                return err("not_found", "no such user")
            key = (me, target["username"].lower())
            if key[0] == key[1]:
                return err("forbidden", "self-follow")
            if op == "follow":
                changed = key not in self.follows
                self.follows.setdefault(key, s)
            else:
                changed = self.follows.pop(key, None) is not None
            return {"ok": True, "changed": changed}
        return err("invalid", "unknown op")

    def public_user(self, rec: dict) -> dict:
        name = rec["username"].lower()
        return {"username": rec["username"], "display_name": rec["display_name"],
                "created_at": rec["created_at"],
                "followers": sum(1 for (_, b) in self.follows if b == name),
                "following": sum(1 for (f, _) in self.follows if f == name),
                "posts": sum(1 for p in self.posts.values() if p["author"].lower() == name)}

    # -- reads
    def query(self, q: str, a: dict) -> dict:
        limit, before = a.get("limit", 50), a.get("before")

        def page(items, key):
            items = sorted(items, key=key, reverse=True)
            if before is not None:
                items = [i for i in items if key(i) < before]
            out = items[:limit]
            nxt = key(out[-1]) if len(items) > limit else None
            return out, nxt

        if q == "public":
            posts, nxt = page(self.posts.values(), lambda p: p["id"])
            return {"ok": True, "posts": posts, "next": nxt}
        if q == "state":
            return {"ok": True, "users": len(self.users), "posts": len(self.posts),
                    "follows": len(self.follows), "applied": self.seq}
        rec = self.users.get(str(a.get("username", "")).lower())
        if rec is None:
            return {"ok": False, "code": "not_found", "msg": "no such user"}
        name = rec["username"].lower()
        if q == "user":
            return {"ok": True, "user": {**self.public_user(rec),
                                         "password_hash": rec["password_hash"]}}
        if q in ("user_posts", "home"):
            authors = {name}
            if q == "home":
                authors |= {b for (f, b) in self.follows if f == name}
            posts, nxt = page([p for p in self.posts.values()
                               if p["author"].lower() in authors], lambda p: p["id"])
            return {"ok": True, "posts": posts, "next": nxt}
        if q in ("followers", "following"):
            edges = [(b if q == "following" else f, s) for (f, b), s in self.follows.items()
                     if (f if q == "following" else b) == name]
            users = [{"username": self.users[n]["username"],
                      "display_name": self.users[n]["display_name"], "since": s}
                     for n, s in edges]
            out, nxt = page(users, lambda u: u["since"])
            return {"ok": True, "users": out, "total": len(users), "next": nxt}
        return {"ok": False, "code": "invalid", "msg": "unknown query"}


class ClusterClient:
    state = FakeState()  # shared by every client, like one cluster

    def __init__(self, address=None, secret: bytes = b"", timeout: float = 3.0) -> None:
        self.closed = False

    def write(self, op, args, *, request_id=None) -> WriteResult:
        with self.state.lock:
            if not self.state.writable:
                raise Unavailable("no majority", "unavailable")
            reply = self.state.apply(op, dict(args))
            seq = self.state.seq
        if reply.get("ok") is False:
            raise ERRORS[reply["code"]](reply.get("msg", ""), reply["code"])
        return WriteResult(seq, reply)

    def read(self, query, args=None, *, min_seq=None) -> ReadResult:
        with self.state.lock:
            reply = self.state.query(query, dict(args or {}))
            seq = self.state.seq
        if reply.get("ok") is False:
            raise ERRORS[reply["code"]](reply.get("msg", ""), reply["code"])
        return ReadResult(seq, reply)

    def status(self) -> dict:
        with self.state.lock:
            return {"epoch": 1, "committed_seq": self.state.seq, "policy": "majority",
                    "alarms": [], "replicas": [dict(r) for r in self.state.replicas]}

    def close(self) -> None:
        self.closed = True


def as_module() -> types.ModuleType:
    mod = types.ModuleType("webfront.client")
    for name in ("ClusterError", "Unavailable", "Invalid", "Conflict", "NotFound", "Forbidden",
                 "WriteResult", "ReadResult", "ClusterClient"):
        setattr(mod, name, globals()[name])
    mod.__fake__ = True
    return mod
