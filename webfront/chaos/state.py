"""Read the final state of each replica directly (role `client`), for the checker.

Each replica is asked on its own connection, with `min` 0, so a lagging replica shows what it
really holds. The applied seq and digest come from the handshake's `ready` frame; they are read
again after the content and must not have moved (the cluster is quiet by then), otherwise the
replica is read again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from webfront import protocol

_ids = itertools.count(1)


class ReplicaReader:
    """One blocking client connection to one replica, for queries."""

    def __init__(self, address: tuple[str, int], secret: bytes, timeout: float = 5.0) -> None:
        self.sock, self.ready = protocol.connect(address, secret, role="client", timeout=timeout)

    def query(self, q: str, args: dict[str, Any] | None = None, wait_ms: int = 1000) -> dict[str, Any]:
        ident = next(_ids)
        self.sock.sendall(protocol.encode_frame(
            {"t": "r", "id": ident, "min": 0, "q": q, "a": args or {}, "wait": wait_ms}))
        while True:
            frame = protocol.recv_frame(self.sock)
            if frame.get("t") == "err":
                raise protocol.ProtocolError(f"{frame.get('code')}: {frame.get('msg')}")
            if frame.get("t") == "rr" and frame.get("id") == ident:
                reply = frame.get("r") or {}
                if not reply.get("ok"):
                    raise LookupError(f"{q} {args}: {reply.get('code')}: {reply.get('msg')}")
                return reply

    def pages(self, q: str, key: str, args: dict[str, Any], limit: int = 200,
              max_pages: int = 10_000) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        before = None
        for _ in range(max_pages):
            page_args = dict(args, limit=limit)
            if before is not None:
                page_args["before"] = before
            reply = self.query(q, page_args)
            items += reply.get(key, [])
            before = reply.get("next")
            if before is None:
                return items
        raise RuntimeError(f"{q} did not end after {max_pages} pages")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def read_replica(address: tuple[str, int], secret: bytes, usernames: Iterable[str],
                 attempts: int = 3) -> dict[str, Any]:
    """Everything the checker needs from one replica; raises if it cannot be read."""
    last: dict[str, Any] = {}
    for _ in range(attempts):
        reader = ReplicaReader(address, secret)
        try:
            last = _read_once(reader, usernames)
        finally:
            reader.close()
        check = ReplicaReader(address, secret)
        try:
            stable = check.ready.get("s") == last["applied"]
        finally:
            check.close()
        if stable:
            return last
    last["unstable"] = True
    return last


def _read_once(reader: ReplicaReader, usernames: Iterable[str]) -> dict[str, Any]:
    ready = reader.ready
    state = reader.query("state")
    names = {u.lower() for u in usernames}
    try:
        names |= {u["username"].lower() for u in reader.query(
            "search", {"prefix": "", "limit": 200}).get("users", [])}
    except LookupError:
        pass
    users = []
    follows = []
    for name in sorted(names):
        try:
            reader.query("user", {"username": name})
        except LookupError:
            continue
        users.append(name)
        for f in reader.pages("following", "users", {"username": name}):
            follows.append([name, f["username"].lower(), f.get("since")])
    posts = [{"id": p["id"], "author": p["author"], "text": p["text"], "seq": p.get("seq")}
             for p in reader.pages("public", "posts", {})]
    digest = ready.get("d")
    return {
        "up": True,
        "applied": ready.get("s"),
        "epoch": ready.get("e"),
        "digest": digest.hex() if isinstance(digest, (bytes, bytearray)) else digest,
        "counts": {"users": state.get("users"), "posts": state.get("posts"),
                   "follows": state.get("follows"), "applied": state.get("applied")},
        "users": users,
        "posts": posts,
        "follows": follows,
    }


def collect_final_state(replicas: dict[str, tuple[str, int]], secret: bytes,
                        usernames: Iterable[str],
                        states: dict[str, str] | None = None) -> dict[str, Any]:
    """{"replicas": {name: ...}} for every replica; one that cannot be read is `up: false`.

    `states` is the coordinator's view (name -> up/down/...), kept alongside for the report.
    """
    names = list(usernames)
    out: dict[str, Any] = {}
    for name, address in sorted(replicas.items()):
        try:
            r = read_replica(address, secret, names)
        except (TimeoutError, OSError, protocol.ProtocolError, LookupError, RuntimeError) as exc:
            r = {"up": False, "error": f"{type(exc).__name__}: {exc}"}
        if states is not None:
            r["state"] = states.get(name)
        out[name] = r
    return {"replicas": out}
