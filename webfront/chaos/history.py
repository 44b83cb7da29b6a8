"""The history of a chaos run: one JSON object per line, appended as operations complete.

Two record types share the file, told apart by `type`:

- `op`: one client operation, written when it completes (or gives up)::

    {"type": "op", "index": 17, "process": 3, "kind": "post", "start": 12.031, "end": 12.044,
     "result": "ok", "seq": 412, "payload": {"text": "..."}, "value": {...}, "error": null}

  `result` is `ok` (acknowledged), `fail` (a definite error: the write was certainly not applied,
  or a read that returned nothing usable) or `info` (indeterminate: timeout, connection reset,
  503 after the request may have been sequenced). Times are seconds since the run started
  (monotonic clock). `seq` is the write's sequence number when the API returned one.

- `fault`: one nemesis action, written when it starts and again when it ends::

    {"type": "fault", "index": 18, "kind": "kill", "target": "r2", "phase": "start", "time": 13.5}

Only the checker interprets records; writers just append. The file stays valid JSON lines even
if the run is killed, so a partial history can still be checked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

OK = "ok"
FAIL = "fail"
INFO = "info"
RESULTS = (OK, FAIL, INFO)

# Operation kinds. Writes change replicated state; reads only observe it.
WRITE_KINDS = frozenset(
    {"register", "post", "delete_post", "follow", "unfollow", "delete_user"}
)
READ_KINDS = frozenset({"read_public", "read_user_posts", "read_timeline", "read_profile",
                        "read_followers", "login"})


@dataclass
class Op:
    """One completed (or abandoned) client operation."""

    index: int
    process: int
    kind: str
    start: float
    end: float
    result: str
    seq: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    error: str | None = None
    type: str = "op"

    @property
    def is_write(self) -> bool:
        return self.kind in WRITE_KINDS

    def describe(self) -> str:
        """A short human name for reports: `op #17 (process 3, post, ok, t=12.031-12.044)`."""
        return (f"op #{self.index} (process {self.process}, {self.kind}, {self.result}, "
                f"t={self.start:.3f}-{self.end:.3f})")


@dataclass
class Fault:
    """One nemesis action; `phase` is `start` or `end` (a fault's end heals it)."""

    index: int
    kind: str
    target: str
    phase: str
    time: float
    detail: str = ""
    type: str = "fault"


class HistoryWriter:
    """Thread-safe appender. Indexes are assigned here so they follow completion order."""

    def __init__(self, path: str | Path, clock_origin: float | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._next = 0
        self.origin = time.monotonic() if clock_origin is None else clock_origin

    def now(self) -> float:
        """Seconds since the run started, the time base of every record."""
        return time.monotonic() - self.origin

    def op(self, process: int, kind: str, start: float, result: str, *, end: float | None = None,
           seq: int | None = None, payload: dict[str, Any] | None = None, value: Any = None,
           error: str | None = None) -> Op:
        assert result in RESULTS, result
        with self._lock:
            record = Op(index=self._next, process=process, kind=kind, start=start,
                        end=self.now() if end is None else end, result=result, seq=seq,
                        payload=payload or {}, value=value, error=error)
            self._append(asdict(record))
            return record

    def fault(self, kind: str, target: str, phase: str, detail: str = "") -> Fault:
        with self._lock:
            record = Fault(index=self._next, kind=kind, target=target, phase=phase,
                           time=self.now(), detail=detail)
            self._append(asdict(record))
            return record

    def _append(self, record: dict[str, Any]) -> None:
        self._next += 1
        self._file.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_history(path: str | Path) -> tuple[list[Op], list[Fault]]:
    """Parse a history file; a torn last line (run killed mid-write) is ignored."""
    ops: list[Op] = []
    faults: list[Fault] = []
    for record in _records(Path(path)):
        kind = record.pop("type", "op")
        if kind == "fault":
            faults.append(Fault(**record))
        else:
            ops.append(Op(**record))
    return ops, faults


def _records(path: Path) -> Iterator[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                return  # torn tail
            raise
