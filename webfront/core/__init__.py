"""The replica's C++ core (state machine, codec, log) as used by pytest and tools.

The compiled module `webfront.core._core` takes and returns MessagePack bytes; the helpers here
pack and unpack with the `msgpack` package so there is one C++ code path for both.
"""

from __future__ import annotations

from typing import Any

import msgpack

from webfront.core._core import (
    FileLog,
    FrameError,
    FrameReader,
    Log,
    MemoryLog,
    StateMachine,
    StorageError,
    decode_body,
    xxh3_64,
)

__all__ = [
    "FileLog",
    "FrameError",
    "FrameReader",
    "Log",
    "MemoryLog",
    "Replica",
    "StateMachine",
    "StorageError",
    "decode_body",
    "pack",
    "unpack",
    "write_body",
    "xxh3_64",
]


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def write_body(seq: int, op: str, args: Any, *, epoch: int = 1, ts: int = 0, rid: str = "") -> bytes:
    """The MessagePack bytes of a write frame body, as the coordinator would send them."""
    return pack({"t": "w", "e": epoch, "s": seq, "ts": ts, "rid": rid, "op": op, "a": args})


class Replica:
    """A StateMachine with a dict-in, dict-out interface that assigns seqs itself."""

    def __init__(self) -> None:
        self.sm = StateMachine()

    def apply(self, op: str, args: Any, *, ts: int = 0, rid: str = "", epoch: int = 1) -> Any:
        body = write_body(self.sm.applied + 1, op, args, epoch=epoch, ts=ts, rid=rid)
        return unpack(self.sm.apply(body))

    def apply_body(self, body: bytes) -> Any:
        return unpack(self.sm.apply(body))

    def query(self, q: str, args: Any = None) -> Any:
        body: dict[str, Any] = {"t": "r", "id": 0, "q": q}
        if args is not None:
            body["a"] = args
        return unpack(self.sm.query(pack(body)))

    @property
    def digest(self) -> bytes:
        return self.sm.digest

    @property
    def applied(self) -> int:
        return self.sm.applied

    def fingerprint(self) -> bytes:
        return self.sm.fingerprint()
