"""Writes hand-made seed inputs into fuzz/corpus/ (run once; the fuzzer grows the corpus).

Usage: .venv/bin/python fuzz/make_seeds.py
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parent / "corpus"


def frame(body: dict) -> bytes:
    raw = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(raw)) + raw


def write(target: str, name: str, data: bytes) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def main() -> None:
    hello = frame({"t": "hello", "v": [1], "role": "coordinator", "n": os.urandom(16)})
    auth = frame({"t": "auth", "mac": b"\0" * 32})
    w = frame({"t": "w", "e": 1, "s": 1, "ts": 1700000000000000, "rid": "r1",
               "op": "create_user", "a": {"username": "alice", "password_hash": "h"}})
    w2 = frame({"t": "w", "e": 1, "s": 2, "ts": 1700000000000001, "rid": "r2",
                "op": "create_post", "a": {"actor": "alice", "text": " hi "}})
    gap = frame({"t": "w", "e": 1, "s": 9, "ts": 1, "rid": "", "op": "follow",
                 "a": {"actor": "alice", "target": "bob_1"}})
    r = frame({"t": "r", "id": 1, "min": 0, "q": "public", "a": {"limit": 5}})
    parked = frame({"t": "r", "id": 2, "min": 5, "wait": 10, "q": "home",
                    "a": {"username": "alice"}})
    hb = frame({"t": "hb", "id": 3})
    big = struct.pack(">I", 1 << 30)
    for name, data in {"hello": hello, "hello-auth": hello + auth, "write": w,
                       "stream": w + w2 + r + hb, "too-large": w + big}.items():
        write("frame_reader", name, b"\x05" + data)
    # dispatch: first byte odd = the harness authenticates first.
    write("dispatch", "raw-hello-auth", b"\x00" + hello + auth)
    write("dispatch", "raw-write-first", b"\x00" + w)
    write("dispatch", "authed-stream", b"\x01" + w + w2 + gap + r + parked + hb)
    write("dispatch", "authed-stale", b"\x01" + w + frame({"t": "w", "e": 0, "s": 3, "ts": 1,
                                                           "rid": "", "op": "x", "a": {}}))
    write("dispatch", "authed-garbage", b"\x01" + b"\0\0\0\3abc")
    # snapshot: a real snapshot is made by the apply target; a minimal valid one here.
    snap = msgpack.packb(["replica-snapshot", 1, 2, 1, b"\0" * 16,
                          [["alice", "Alice", "h", False, 1], ["bob_1", "bob_1", b"h", True, 2]],
                          [[2, "alice", "hi", 3]], [["alice", "bob_1", 2]], [["r1", b"\x81"]]],
                         use_bin_type=True)
    write("snapshot", "minimal", snap)
    # client_frame: one body as the coordinator's client port reads it (no length prefix).
    client = {
        "write": {"t": "cw", "id": 1, "rid": "r1", "op": "create_post",
                  "a": {"actor": "alice", "text": "hi", "n": [1, -2, 3.5, None, True]}},
        "write-no-args": {"t": "cw", "id": "x", "op": "state"},
        "write-too-deep": {"t": "cw", "id": 2, "rid": "", "op": "o", "a": {"d": {"e": {"f": 1}}}},
        "read": {"t": "cr", "id": 3, "q": "home", "a": {"username": "alice"}, "mode": "session",
                 "min": 4},
        "status": {"t": "st", "id": 4},
    }
    for name, body in client.items():
        write("client_frame", name, msgpack.packb(body, use_bin_type=True))


if __name__ == "__main__":
    main()
