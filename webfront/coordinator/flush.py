"""Write coalescing: frames queued during one event-loop iteration leave in one write per peer.

Each connection appends frames to its own list; the first append of an iteration schedules one
flush callback (call_soon), which runs after every data_received of this iteration has been
handled. One write system call per peer per iteration, whatever the number of frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Sink(Protocol):
    def flush(self) -> None: ...


class Flusher:
    def __init__(self, loop: asyncio.AbstractEventLoop,
                 after_flush: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._after_flush = after_flush  # e.g. BusyPoll.arm: replies to these bytes come soon
        self._dirty: list[Sink] = []
        self._scheduled = False

    def mark(self, sink: Sink) -> None:
        """Register a sink with queued bytes (callers mark a sink once per iteration)."""
        self._dirty.append(sink)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_all)

    def _flush_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        for sink in dirty:
            sink.flush()
        if self._after_flush is not None:
            self._after_flush()
