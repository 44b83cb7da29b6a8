"""The replica's frame limits, checked on a client's write before it gets a seq.

A replica refuses a write frame that breaks its limits (docs/protocol.md "Frames") as
malformed and closes the connection; the coordinator would then resend the same frame on every
reconnect and no replica could get past it. So the coordinator must never sequence such a write:
it refuses it to the client as `invalid` instead. The numbers mirror cpp_replica/codec/Limits.h.
"""

from __future__ import annotations

from typing import Any

MAX_STRING_BYTES = 4096  # per str or bin value, map keys included
MAX_MAP_ENTRIES = 32
MAX_LIST_ITEMS = 10_000
MAX_DEPTH = 4  # the write body map is level 1, its `a` map level 2
CLIENT_FRAME_HEADROOM = 4096  # bytes a write frame may add to the client frame it came from
INT_MIN, UINT_MAX = -(1 << 63), (1 << 64) - 1


def argument_problem(args: dict, op: str) -> str | None:
    """Why a write with this op and these arguments would break a replica's limits, or None."""
    if len(op.encode()) > MAX_STRING_BYTES:
        return "op name too long"
    return _value_problem(args, 2)


def _value_problem(value: Any, depth: int) -> str | None:
    if value is None or isinstance(value, (bool, float)):
        return None
    if isinstance(value, int):
        return None if INT_MIN <= value <= UINT_MAX else "integer out of range"
    if isinstance(value, str):
        # Fast path: a str of n characters has at most 4n UTF-8 bytes.
        if len(value) * 4 > MAX_STRING_BYTES and len(value.encode()) > MAX_STRING_BYTES:
            return f"a string is longer than {MAX_STRING_BYTES} bytes"
        return None
    if isinstance(value, bytes):
        return None if len(value) <= MAX_STRING_BYTES else \
            f"a binary value is longer than {MAX_STRING_BYTES} bytes"
    if depth > MAX_DEPTH:
        return f"arguments nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        if len(value) > MAX_MAP_ENTRIES:
            return f"a map has more than {MAX_MAP_ENTRIES} entries"
        for key, item in value.items():
            problem = _value_problem(key, depth + 1) or _value_problem(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST_ITEMS:
            return f"a list has more than {MAX_LIST_ITEMS} items"
        for item in value:
            problem = _value_problem(item, depth + 1)
            if problem:
                return problem
        return None
    return f"unsupported value of type {type(value).__name__}"
