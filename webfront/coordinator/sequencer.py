"""The sequencer: gives each write its place (epoch, seq) and its timestamp, and remembers
the results of recent request ids so that a retried id returns the first result.

Pure bookkeeping, no I/O, so it is unit-tested on its own. Not thread-safe: the coordinator
calls it from its one event loop thread.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


def skewed_clock() -> Callable[[], int]:
    """The wall clock in ns, shifted by WEBFRONT_CLOCK_SKEW_MS (fault injection: a host whose
    clock is behind or ahead; 0 by default)."""
    skew_ns = int(os.environ.get("WEBFRONT_CLOCK_SKEW_MS", "0")) * 1_000_000
    if not skew_ns:
        return time.time_ns
    return lambda: time.time_ns() + skew_ns


class Sequencer:
    """Gap-free sequence numbers of the current epoch and never-decreasing timestamps.

    `next()` hands out seq = last + 1 and a timestamp in microseconds that is strictly greater
    than the previous one, even when the wall clock steps back (then time runs on from the last
    timestamp one microsecond per write until the clock catches up).
    """

    def __init__(
        self,
        epoch: int = 1,
        last_seq: int = 0,
        last_ts: int = 0,
        max_results: int = 100_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.epoch = epoch
        self.last_seq = last_seq
        self.last_ts = last_ts
        self._clock = clock
        self._max_results = max_results
        self._results: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._inflight: dict[str, Any] = {}

    def next(self) -> tuple[int, int]:
        """Assign the next (seq, timestamp_us)."""
        ts = self._clock() // 1000
        if ts <= self.last_ts:
            ts = self.last_ts + 1
        self.last_ts = ts
        self.last_seq += 1
        return self.last_seq, ts

    def restart(self, epoch: int, last_seq: int) -> None:
        """Continue after what the replicas have applied, in a new epoch."""
        assert epoch >= self.epoch and last_seq >= 0
        self.epoch = epoch
        self.last_seq = last_seq

    # Request ids -------------------------------------------------------------------------

    def result_of(self, rid: str) -> tuple[int, Any] | None:
        """The (seq, reply) of an already answered request id, if still remembered."""
        return self._results.get(rid) if rid else None

    def inflight(self, rid: str) -> Any | None:
        """The pending entry of a request id that is sequenced but not answered yet."""
        return self._inflight.get(rid) if rid else None

    def begin(self, rid: str, pending: Any) -> None:
        if rid:
            self._inflight[rid] = pending

    def finish(self, rid: str, seq: int, reply: Any) -> None:
        """Remember the answer of rid (bounded: the oldest is forgotten first)."""
        if not rid:
            return
        self._inflight.pop(rid, None)
        self._results[rid] = (seq, reply)
        if len(self._results) > self._max_results:
            self._results.popitem(last=False)

    def abandon(self, rid: str) -> None:
        """The write failed before an answer (e.g. no majority): a retry sequences it again;
        the replicas' own rid table keeps it from being applied twice."""
        if rid:
            self._inflight.pop(rid, None)
