"""Busy-polling after output, so the replies it causes are read without waking from sleep.

On a virtual machine a vCPU that went idle takes tens of microseconds to wake up again, about
as long as a replica takes to apply a write and answer. So after each flush the coordinator
keeps its event loop spinning (a callback that reschedules itself, which makes the loop poll
with a zero timeout) for a short window. It costs CPU only right after traffic and never
delays other work: the loop still handles every ready socket on each pass.
"""

from __future__ import annotations

import asyncio
import time


class BusyPoll:
    def __init__(self, loop: asyncio.AbstractEventLoop, window_us: int) -> None:
        self._loop = loop
        self._window_ns = window_us * 1000
        self._until = 0
        self._spinning = False

    def arm(self) -> None:
        """Keep the loop from sleeping until `window_us` from now."""
        if not self._window_ns:
            return
        self._until = time.monotonic_ns() + self._window_ns
        if not self._spinning:
            self._spinning = True
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        if time.monotonic_ns() < self._until:
            self._loop.call_soon(self._spin)
        else:
            self._spinning = False
