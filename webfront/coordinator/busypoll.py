"""Busy-polling after output, so the replies it causes are read without waking from sleep.

On a virtual machine a vCPU that went idle takes tens of microseconds to wake up again, about
as long as a replica takes to apply a write and answer. So after each flush the coordinator
keeps its event loop spinning (a callback that reschedules itself, which makes the loop poll
with a zero timeout) for a short window. It costs CPU only right after traffic and never
delays other work: the loop still handles every ready socket on each pass.

Under light load (a few writes in flight) the window is longer, long enough to span a
replica's `fdatasync` and a closed-loop client's next request: the cores are idle then, so
spinning takes nothing from anyone and saves the wake-ups. Under load the short window keeps
the spin from taking a vCPU from the replicas (benchmarks.md, "Busy-polling under light load").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# At most this many writes in flight (answered or not, until every replica acked) is light load.
LIGHT_LOAD = 4


class BusyPoll:
    def __init__(self, loop: asyncio.AbstractEventLoop, window_us: int, light_window_us: int,
                 in_flight: Callable[[], int]) -> None:
        self._loop = loop
        self._window_ns = window_us * 1000
        # 0 turns busy-polling off altogether; a light window shorter than the normal one is moot
        self._light_ns = max(light_window_us, window_us) * 1000 if window_us else 0
        self._in_flight = in_flight
        self._until = 0
        self._spinning = False

    def arm(self) -> None:
        """Keep the loop from sleeping for the window from now."""
        if not self._window_ns:
            return
        light = self._in_flight() <= LIGHT_LOAD
        self._until = time.monotonic_ns() + (self._light_ns if light else self._window_ns)
        if not self._spinning:
            self._spinning = True
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        if time.monotonic_ns() < self._until:
            self._loop.call_soon(self._spin)
        else:
            self._spinning = False
