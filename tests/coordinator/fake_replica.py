"""A stand-in replica in Python for coordinator tests: speaks docs/protocol.md's replica side.

Used only when the real `replica_server` is not built (tests prefer the real one), or with
WEBFRONT_FAKE_REPLICA=1. It keeps its state in memory (with --data-dir also a plain log, a
snapshot and the epoch on disk), speaks the epoch, snapshot, log_read and install frames,
applies a few commands (create_user, create_post, follow, unfollow) in seq
order with the protocol's exactly-once and epoch rules, and answers `user`, `public` and
`state`. The digest uses BLAKE2b-128 instead of XXH3-128 (only equality matters here).

    python -m tests.coordinator.fake_replica --id 1 --listen 127.0.0.1:7001 --insecure-no-auth
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict
from pathlib import Path

import msgpack

from webfront.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    acceptor_mac,
    encode_body,
    encode_frame,
    initiator_mac,
    read_secret,
)


class State:
    def __init__(self) -> None:
        self.applied = 0
        self.epoch = 0
        self.last_epoch = 0
        self.digest = bytes(16)
        self.users: dict[str, dict] = {}
        self.posts: list[dict] = []
        self.rids: OrderedDict[str, dict] = OrderedDict()
        self.buffered: dict[int, tuple[dict, bytes]] = {}
        self.waiters: list[tuple[int, asyncio.Future]] = []
        self.log: list[bytes] = []  # raw write bodies after log_base
        self.log_base = 0  # seq covered by the newest snapshot
        self.snapshot_every = 0
        self.dir: Path | None = None
        self.installing = False

    # Durability (simple: fsync nothing, the tests kill -9 processes, not machines) --------

    def open_dir(self, path: str, snapshot_every: int) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        if (self.dir / "epoch").exists():
            self.epoch = int((self.dir / "epoch").read_text() or 0)
        if (self.dir / "snap.bin").exists():
            self.restore(msgpack.unpackb((self.dir / "snap.bin").read_bytes(), raw=False,
                                        strict_map_key=False))
        if (self.dir / "log.bin").exists():
            data = (self.dir / "log.bin").read_bytes()
            off = 0
            while off + 4 <= len(data):
                length = int.from_bytes(data[off:off + 4], "big")
                raw = data[off + 4:off + 4 + length]
                if len(raw) < length:
                    break  # torn tail
                off += 4 + length
                body = msgpack.unpackb(raw, raw=False)
                if body["s"] == self.applied + 1:
                    self.apply(body, raw, replay=True)
        self._log_file = open(self.dir / "log.bin", "ab")

    def store_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.dir is not None:
            (self.dir / "epoch.tmp").write_text(str(epoch))
            os.replace(self.dir / "epoch.tmp", self.dir / "epoch")

    def serialize(self) -> bytes:
        return msgpack.packb({"applied": self.applied, "le": self.last_epoch,
                              "d": self.digest, "users": self.users, "posts": self.posts,
                              "rids": list(self.rids.items())}, use_bin_type=True)

    def restore(self, snap: dict) -> None:
        self.applied = snap["applied"]
        self.last_epoch = snap["le"]
        self.digest = snap["d"]
        self.users = snap["users"]
        self.posts = snap["posts"]
        self.rids = OrderedDict((k, v) for k, v in snap["rids"])
        self.log = []
        self.log_base = self.applied
        self.buffered.clear()

    def snapshot(self) -> None:
        self.log = []
        self.log_base = self.applied
        if self.dir is not None:
            (self.dir / "snap.tmp").write_bytes(self.serialize())
            os.replace(self.dir / "snap.tmp", self.dir / "snap.bin")
            self._log_file.close()
            self._log_file = open(self.dir / "log.bin", "wb")

    def apply(self, body: dict, raw: bytes, replay: bool = False) -> dict:
        rid = body.get("rid", "")
        if rid and rid in self.rids:
            reply = self.rids[rid]
        else:
            reply = self._execute(body["op"], body.get("a", {}), body["s"], body["ts"])
            if rid:
                self.rids[rid] = reply
                if len(self.rids) > 100_000:
                    self.rids.popitem(last=False)
        self.applied = body["s"]
        self.last_epoch = body["e"]
        self.digest = hashlib.blake2b(self.digest + raw + encode_body(reply),
                                      digest_size=16).digest()
        self.log.append(raw)
        if self.dir is not None and not replay:
            self._log_file.write(len(raw).to_bytes(4, "big") + raw)
            self._log_file.flush()
        if self.snapshot_every and self.applied - self.log_base >= self.snapshot_every:
            self.snapshot()
        return reply

    def _execute(self, op: str, a: dict, seq: int, ts: int) -> dict:
        if op == "create_user":
            name = a.get("username", "")
            if not isinstance(name, str) or not 3 <= len(name) <= 20:
                return {"ok": False, "code": "invalid", "msg": "bad username"}
            if name.lower() in self.users:
                return {"ok": False, "code": "conflict", "msg": "username taken"}
            user = {"username": name, "display_name": a.get("display_name") or name,
                    "created_at": ts, "followers": 0, "following": 0, "posts": 0}
            self.users[name.lower()] = dict(user, password_hash=a.get("password_hash", b""))
            return {"ok": True, "user": user}
        if op == "create_post":
            user = self.users.get(str(a.get("actor", "")).lower())
            if user is None:
                return {"ok": False, "code": "not_found", "msg": "no such user"}
            post = {"id": seq, "author": user["username"], "text": a.get("text", ""),
                    "created_at": ts, "seq": seq}
            self.posts.append(post)
            user["posts"] += 1
            return {"ok": True, "post": post}
        if op in ("follow", "unfollow"):
            if a.get("actor") == a.get("target"):
                return {"ok": False, "code": "forbidden", "msg": "self-follow"}
            return {"ok": True, "changed": True}
        return {"ok": False, "code": "invalid", "msg": f"unknown op {op}"}

    def query(self, q: str, a: dict) -> dict:
        if q == "user":
            user = self.users.get(str(a.get("username", "")).lower())
            if user is None:
                return {"ok": False, "code": "not_found", "msg": "no such user"}
            return {"ok": True, "user": user}
        if q == "public":
            limit = a.get("limit", 50)
            return {"ok": True, "posts": self.posts[::-1][:limit], "next": None}
        if q == "state":
            return {"ok": True, "users": len(self.users), "posts": len(self.posts),
                    "follows": 0, "applied": self.applied}
        return {"ok": False, "code": "invalid", "msg": f"unknown query {q}"}


def _h(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 1


class ReplicaConnection(asyncio.Protocol):
    def __init__(self, replica_id: str, secret: bytes, state: State) -> None:
        self.id = replica_id
        self.secret = secret
        self.state = state
        self.decoder = FrameDecoder()
        self.phase = "hello"
        self.nonce = os.urandom(16)
        self.peer_nonce = b""
        self.transport = None
        self.out: list[bytes] = []
        self.snaps: dict[int, bytes] = {}
        self.install: dict | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, body: dict) -> None:
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(encode_frame(body))

    def flush(self) -> None:
        if self.out and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out = []

    def data_received(self, data: bytes) -> None:
        buffer_before = bytes(self.decoder._buffer) + data
        try:
            bodies = self.decoder.feed(data)
        except ProtocolError as exc:
            self.transport.write(encode_frame({"t": "err", "code": "malformed", "msg": str(exc)}))
            self.transport.close()
            return
        # recover raw bodies for the digest (the coordinator sends each write encoded once)
        raws, offset = [], 0
        for _ in bodies:
            length = int.from_bytes(buffer_before[offset:offset + 4], "big")
            raws.append(buffer_before[offset + 4:offset + 4 + length])
            offset += 4 + length
        for body, raw in zip(bodies, raws):
            self.handle(body, raw)

    def handle(self, body: dict, raw: bytes) -> None:
        t = body["t"]
        st = self.state
        if self.phase == "hello":
            self.peer_nonce = body["n"]
            self.send({"t": "welcome", "v": PROTOCOL_VERSION, "id": self.id, "n": self.nonce,
                       "mac": acceptor_mac(self.secret, self.peer_nonce, self.nonce)})
            self.phase = "auth"
        elif self.phase == "auth":
            if not hmac.compare_digest(body.get("mac", b""),
                                       initiator_mac(self.secret, self.peer_nonce, self.nonce)):
                self.send({"t": "err", "code": "auth_failed", "msg": "bad mac"})
                self.flush()
                self.transport.close()
                return
            self.phase = "open"
            self.send({"t": "ready", "s": st.applied, "e": st.epoch, "d": st.digest,
                       "le": st.last_epoch})
        elif t in ("w", "r") and st.installing:
            self.send({"t": "err", "id": body.get("id"), "s": body.get("s"),
                       "code": "installing", "msg": "installing a snapshot"})
        elif t == "epoch":
            if body["e"] < st.epoch:
                self.send({"t": "err", "id": body["id"], "code": "stale_epoch", "msg": "stale"})
            else:
                st.store_epoch(body["e"])
                self.send({"t": "epoch_ok", "id": body["id"], "e": st.epoch, "s": st.applied,
                           "d": st.digest, "le": st.last_epoch})
        elif t == "snap_open":
            data = st.serialize()
            x = len(self.snaps) + 1
            self.snaps[x] = data
            self.send({"t": "snap_info", "id": body["id"], "x": x, "s": st.applied,
                       "e": st.last_epoch, "d": st.digest, "size": len(data), "h": _h(data)})
        elif t == "snap_read":
            data = self.snaps[body["x"]][body["off"]:body["off"] + body["len"]]
            self.send({"t": "snap_data", "id": body["id"], "off": body["off"], "data": data,
                       "h": _h(data)})
        elif t == "snap_close":
            self.snaps.pop(body["x"], None)
        elif t == "log_read":
            start = body["from"]
            if start <= st.log_base:
                self.send({"t": "err", "id": body["id"], "code": "compacted", "msg": ""})
                return
            recs, size = [], 0
            for raw in st.log[start - st.log_base - 1:]:
                if size + len(raw) > body["max"] and recs:
                    break
                recs.append(raw)
                size += len(raw)
            self.send({"t": "log_data", "id": body["id"], "recs": recs, "last": st.applied})
        elif t == "inst_begin":
            st.installing = True
            self.install = dict(body, buf=bytearray())
            self.send({"t": "inst_ok", "id": body["id"], "off": 0})
        elif t == "inst_data":
            inst = self.install
            if inst is None or body["off"] != len(inst["buf"]) or _h(body["data"]) != body["h"]:
                st.installing = False
                self.install = None
                self.send({"t": "err", "id": body["id"], "code": "bad_chunk", "msg": ""})
                return
            inst["buf"] += body["data"]
            self.send({"t": "inst_ok", "id": body["id"], "off": len(inst["buf"])})
        elif t == "inst_end":
            inst, self.install = self.install, None
            st.installing = False
            data = bytes(inst["buf"]) if inst else b""
            snap = msgpack.unpackb(data, raw=False, strict_map_key=False) if inst and \
                _h(data) == inst["h"] else None
            if snap is None or snap["applied"] != inst["s"] or snap["d"] != inst["d"]:
                self.send({"t": "err", "id": body["id"], "code": "bad_snapshot", "msg": ""})
                return
            st.restore(snap)
            st.snapshot()
            self.send({"t": "inst_done", "id": body["id"], "s": st.applied, "d": st.digest})
        elif t == "w":
            seq, epoch = body["s"], body["e"]
            if epoch < st.epoch:
                self.send({"t": "err", "s": seq, "code": "stale_epoch", "msg": "stale"})
                return
            if epoch > st.epoch:
                st.store_epoch(epoch)
            if seq <= st.applied:
                self.send({"t": "a", "s": seq, "e": epoch, "d": st.digest, "dup": True})
                return
            st.buffered[seq] = (body, raw)
            while st.applied + 1 in st.buffered:
                b, r = st.buffered.pop(st.applied + 1)
                reply = st.apply(b, r)
                self.send({"t": "a", "s": b["s"], "e": b["e"], "d": st.digest, "r": reply})
            self.wake()
        elif t == "r":
            if st.applied >= body["min"]:
                self.send({"t": "rr", "id": body["id"], "s": st.applied,
                           "r": st.query(body["q"], body.get("a") or {})})
            else:
                asyncio.get_running_loop().create_task(self.wait_read(body))
        elif t == "hb":
            self.send({"t": "hba", "id": body["id"], "s": st.applied, "e": st.epoch,
                       "d": st.digest, "le": st.last_epoch})

    def wake(self) -> None:
        st = self.state
        for item in [w for w in st.waiters if w[0] <= st.applied]:
            st.waiters.remove(item)
            if not item[1].done():
                item[1].set_result(None)

    async def wait_read(self, body: dict) -> None:
        st = self.state
        fut = asyncio.get_running_loop().create_future()
        st.waiters.append((body["min"], fut))
        try:
            await asyncio.wait_for(fut, body.get("wait", 1000) / 1000.0)
            reply = st.query(body["q"], body.get("a") or {})
        except asyncio.TimeoutError:
            reply = {"ok": False, "code": "behind"}
        self.send({"t": "rr", "id": body["id"], "s": st.applied, "r": reply})


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    secret = b"" if args.insecure_no_auth else read_secret(args.secret_file)
    state = State()
    if args.data_dir:
        state.open_dir(args.data_dir, args.snapshot_every)
    server = await asyncio.get_running_loop().create_server(
        lambda: ReplicaConnection(args.id, secret, state), host, int(port))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--secret-file")
    parser.add_argument("--insecure-no-auth", action="store_true")
    parser.add_argument("--fsync")
    parser.add_argument("--snapshot-every", type=int, default=10000)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
