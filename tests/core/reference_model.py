"""A small, obviously-correct Python model of the replica state machine (docs/protocol.md).

Used side by side with the C++ StateMachine in test_model.py. Replies are compared without
their `msg` text (which is informative only); everything else must be equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_USERNAME = re.compile(r"[A-Za-z0-9_]{3,20}")
# Unicode White_Space, the same fixed table as cpp_replica/core/Text.cc.
_WHITE = "".join(
    map(
        chr,
        [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
         0x202F, 0x205F, 0x3000],
    )
)


def _ascii_lower(s: str) -> str:
    """Lower case of ASCII letters only (usernames are ASCII; no Unicode case folding)."""
    return s.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


def err(code: str) -> dict[str, Any]:
    return {"ok": False, "code": code}


def _refuse_actor(u: Any, a: dict) -> dict[str, Any] | None:
    """The refusal for acting as `u` (None: no such user), if any. With `actor_since` (not nil)
    the request names the account its session or token was issued for: gone, or another one
    with the same name (deleted and signed up for again), it is `account_replaced`."""
    since = a.get("actor_since")
    if u is None:
        return err("not_found" if since is None else "account_replaced")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool)
                              or since != u.created_at):
        return err("account_replaced")
    return None


@dataclass
class User:
    name: str
    display: str
    password: Any
    created_at: int
    followers: dict[str, int] = field(default_factory=dict)  # lower name -> since
    following: dict[str, int] = field(default_factory=dict)


@dataclass
class Post:
    id: int
    author: str  # lower name
    text: str
    created_at: int


class Model:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.posts: dict[int, Post] = {}
        self.rids: dict[str, dict[str, Any]] = {}
        self.applied = 0

    # ------------------------------------------------------------ helpers
    def _user(self, name: Any) -> User | None:
        if not isinstance(name, str) or not _USERNAME.fullmatch(name):
            return None
        return self.users.get(name.lower())

    def _user_rec(self, u: User) -> dict[str, Any]:
        return {
            "username": u.name,
            "display_name": u.display,
            "created_at": u.created_at,
            "followers": len(u.followers),
            "following": len(u.following),
            "posts": sum(1 for p in self.posts.values() if p.author == u.name.lower()),
        }

    def _post_rec(self, p: Post) -> dict[str, Any]:
        return {
            "id": p.id,
            "author": self.users[p.author].name,
            "text": p.text,
            "created_at": p.created_at,
            "seq": p.id,
        }

    # ------------------------------------------------------------ writes
    def apply(self, op: Any, args: Any, ts: int, rid: str = "") -> dict[str, Any]:
        self.applied += 1
        seq = self.applied
        if rid and rid in self.rids:
            return self.rids[rid]
        reply = self._apply(op, args, seq, ts)
        if rid:
            self.rids[rid] = reply
        return reply

    def _apply(self, op: Any, a: Any, seq: int, ts: int) -> dict[str, Any]:
        if not isinstance(a, dict):
            return err("invalid")
        if op == "create_user":
            name = a.get("username")
            if not isinstance(name, str) or not _USERNAME.fullmatch(name):
                return err("invalid")
            pw = a.get("password_hash")
            if not isinstance(pw, (str, bytes)):
                return err("invalid")
            size = len(pw.encode()) if isinstance(pw, str) else len(pw)
            if not 1 <= size <= 256:
                return err("invalid")
            display = a.get("display_name")
            if display is None:
                display = name
            elif not isinstance(display, str) or len(display) > 50:
                return err("invalid")
            if name.lower() in self.users:
                return err("conflict")
            u = User(name, display, pw, ts)
            self.users[name.lower()] = u
            return {"ok": True, "user": self._user_rec(u)}
        if op == "delete_user":
            if not isinstance(a.get("actor"), str):
                return err("invalid")
            u = self._user(a["actor"])
            if (refusal := _refuse_actor(u, a)) is not None:
                return refusal
            key = u.name.lower()
            for f in list(u.followers):
                del self.users[f].following[key]
            for f in list(u.following):
                del self.users[f].followers[key]
            self.posts = {i: p for i, p in self.posts.items() if p.author != key}
            del self.users[key]
            return {"ok": True}
        if op == "create_post":
            if not isinstance(a.get("actor"), str):
                return err("invalid")
            text = a.get("text")
            if not isinstance(text, str):
                return err("invalid")
            text = text.strip(_WHITE)
            if not 1 <= len(text) <= 280:
                return err("invalid")
            u = self._user(a["actor"])
            if (refusal := _refuse_actor(u, a)) is not None:
                return refusal
            p = Post(seq, u.name.lower(), text, ts)
            self.posts[seq] = p
            return {"ok": True, "post": self._post_rec(p)}
        if op == "delete_post":
            if not isinstance(a.get("actor"), str):
                return err("invalid")
            pid = a.get("id")
            if not isinstance(pid, int) or isinstance(pid, bool):
                return err("invalid")
            u = self._user(a["actor"])
            if (refusal := _refuse_actor(u, a)) is not None:
                return refusal
            p = self.posts.get(pid)
            if p is None:
                return err("not_found")
            if p.author != u.name.lower():
                return err("forbidden")
            del self.posts[pid]
            return {"ok": True}
        if op in ("follow", "unfollow"):
            if not isinstance(a.get("actor"), str) or not isinstance(a.get("target"), str):
                return err("invalid")
            src = self._user(a["actor"])
            if (refusal := _refuse_actor(src, a)) is not None:
                return refusal
            dst = self._user(a["target"])
            if dst is None:
                return err("not_found")
            if src is dst:
                return err("forbidden")
            sk, dk = src.name.lower(), dst.name.lower()
            exists = dk in src.following
            if op == "follow" and not exists:
                src.following[dk] = seq
                dst.followers[sk] = seq
                return {"ok": True, "changed": True}
            if op == "unfollow" and exists:
                del src.following[dk]
                del dst.followers[sk]
                return {"ok": True, "changed": True}
            return {"ok": True, "changed": False}
        return err("invalid")

    # ------------------------------------------------------------ reads
    @staticmethod
    def _page(a: dict[str, Any]) -> tuple[int, int] | None:
        before = a.get("before")
        limit = a.get("limit")
        if before is None:
            before = 2**63 - 1
        elif not isinstance(before, int) or isinstance(before, bool):
            return None
        if limit is None:
            limit = 50
        elif not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 200:
            return None
        return before, limit

    def _posts_page(self, ids: list[int], before: int, limit: int) -> dict[str, Any]:
        ids = sorted((i for i in ids if i < before), reverse=True)
        page = ids[:limit]
        nxt = page[-1] if len(ids) > limit else None
        return {"ok": True, "posts": [self._post_rec(self.posts[i]) for i in page], "next": nxt}

    def query(self, q: str, a: Any) -> dict[str, Any]:
        if a is None:
            a = {}
        if not isinstance(a, dict):
            return err("invalid")
        if q == "state":
            follows = sum(len(u.following) for u in self.users.values())
            return {"ok": True, "users": len(self.users), "posts": len(self.posts),
                    "follows": follows, "applied": self.applied}
        if q == "search":
            page = self._page(a)
            if page is None:
                return err("invalid")
            prefix = a.get("prefix", "")
            if not isinstance(prefix, str) or len(prefix) > 20:
                return err("invalid")
            names = sorted(k for k in self.users if k.startswith(_ascii_lower(prefix)))[: page[1]]
            return {"ok": True, "users": [
                {"username": self.users[k].name, "display_name": self.users[k].display}
                for k in names]}
        if q == "relation":
            actor, target = a.get("actor"), a.get("target")
            if not isinstance(actor, str) or not isinstance(target, str):
                return err("invalid")
            src, dst = self._user(actor), self._user(target)
            if (refusal := _refuse_actor(src, a)) is not None:
                return refusal
            if dst is None:
                return err("not_found")
            return {"ok": True, "following": dst.name.lower() in src.following,
                    "followed_by": dst.name.lower() in src.followers}
        if q == "public":
            page = self._page(a)
            if page is None:
                return err("invalid")
            return self._posts_page(list(self.posts), *page)
        if q not in ("user", "user_posts", "home", "followers", "following"):
            return err("invalid")
        page = self._page(a) if q != "user" else (0, 0)
        if page is None:
            return err("invalid")
        if not isinstance(a.get("username"), str):
            return err("invalid")
        u = self._user(a["username"])
        if q == "home" and (refusal := _refuse_actor(u, a)) is not None:
            return refusal
        if u is None:
            return err("not_found")
        key = u.name.lower()
        if q == "user":
            return {"ok": True, "user": {**self._user_rec(u), "password_hash": u.password}}
        if q == "user_posts":
            return self._posts_page([i for i, p in self.posts.items() if p.author == key], *page)
        if q == "home":
            authors = {key, *u.following}
            return self._posts_page([i for i, p in self.posts.items() if p.author in authors],
                                    *page)
        edges = u.followers if q == "followers" else u.following
        before, limit = page
        items = sorted(((s, k) for k, s in edges.items() if s < before), reverse=True)
        chosen = items[:limit]
        return {
            "ok": True,
            "users": [{"username": self.users[k].name, "display_name": self.users[k].display,
                       "since": s} for s, k in chosen],
            "total": len(edges),
            "next": chosen[-1][0] if len(items) > limit else None,
        }


def strip_msg(reply: Any) -> Any:
    """The reply without the informative `msg` of an error."""
    if isinstance(reply, dict) and reply.get("ok") is False:
        return {k: v for k, v in reply.items() if k != "msg"}
    return reply
