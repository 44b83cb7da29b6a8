"""Read routing: each read goes to ONE live replica, never to all.

The replica answers once it has applied `min` (the committed seq for linearizable reads, the
caller's own seq for session reads). Replicas that already acked `min` are preferred, in round
robin; on `behind`, a timeout or a lost replica the read is tried on another one, within the
read's deadline.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

from webfront.coordinator.broadcaster import SUSPECT, ReplicaLink
from webfront.protocol import encode_frame

if TYPE_CHECKING:
    from webfront.coordinator.core import Coordinator


class PendingRead:
    __slots__ = ("a", "cid", "conn", "deadline", "id", "link", "min", "q", "tried")

    def __init__(self, rid: int, conn: Any, cid: Any, q: str, a: dict, min_seq: int,
                 deadline: float) -> None:
        self.id = rid
        self.conn = conn
        self.cid = cid
        self.q = q
        self.a = a
        self.min = min_seq
        self.deadline = deadline
        self.link: ReplicaLink | None = None
        self.tried: list[str] = []


class ReadRouter:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        self.pending: dict[int, PendingRead] = {}
        self._ids = itertools.count(1)
        self._rr = 0

    def submit(self, conn: Any, cid: Any, q: str, a: dict, min_seq: int) -> None:
        timeout = self.c.config.read_timeout_ms / 1000.0
        read = PendingRead(next(self._ids), conn, cid, q, a, min_seq, time.monotonic() + timeout)
        self.pending[read.id] = read
        self._send(read)

    def _choose(self, read: PendingRead) -> ReplicaLink | None:
        live = [link for link in self.c.links if link.is_open and link.receives_writes]
        if not live:
            return None
        # A suspect replica (a heartbeat went unanswered: paused, cut off) gets no new reads
        # while another one can serve: a read sent there would wait for it to be declared down.
        healthy = [link for link in live if link.state != SUSPECT]
        if healthy:
            live = healthy
        fresh = [link for link in live if link.acked_seq >= read.min and link.id not in read.tried]
        if not fresh:
            fresh = [link for link in live if link.id not in read.tried]
            if not fresh:
                read.tried.clear()
                fresh = live
            # least lagging first
            best = max(link.acked_seq for link in fresh)
            fresh = [link for link in fresh if link.acked_seq == best]
        self._rr += 1
        return fresh[self._rr % len(fresh)]

    def _send(self, read: PendingRead) -> None:
        link = self._choose(read)
        if link is None:
            self.pending.pop(read.id, None)
            self.c.stats.read_errors += 1
            # A coordinator still claiming its epoch has no replica admitted yet: "starting"
            # makes the client retry (webfront/client.py) instead of failing the read.
            starting = not self.c.started and not self.c.fenced
            read.conn.send_error(read.cid, "unavailable",
                                 "coordinator is starting" if starting else "no live replica")
            return
        self._dispatch(read, link)

    def _dispatch(self, read: PendingRead, link: ReplicaLink) -> None:
        read.link = link
        read.tried.append(link.id)
        remaining_ms = int((read.deadline - time.monotonic()) * 1000)
        wait = max(1, min(self.c.config.read_wait_ms, remaining_ms, 5000))
        link.queue(encode_frame(
            {"t": "r", "id": read.id, "min": read.min, "q": read.q, "a": read.a, "wait": wait}
        ))

    def on_reply(self, link: ReplicaLink, body: dict) -> None:
        read = self.pending.get(body.get("id"))
        if read is None or read.link is not link:
            return
        reply = body.get("r")
        if isinstance(reply, dict) and reply.get("ok") is False and reply.get("code") == "behind":
            if time.monotonic() < read.deadline:
                self._send(read)
                return
            del self.pending[read.id]
            self.c.stats.read_errors += 1
            read.conn.send_error(read.cid, "timeout", "no replica reached the requested seq")
            return
        del self.pending[read.id]
        stats = self.c.stats
        stats.reads += 1
        # arrival = deadline - read timeout (no extra field per read)
        stats.read_latency.observe(time.monotonic() - read.deadline
                                   + self.c.config.read_timeout_ms / 1000.0)
        read.conn.send_frame({"t": "crr", "id": read.cid, "s": body.get("s", 0), "r": reply})

    def on_link_down(self, link: ReplicaLink) -> None:
        for read in [r for r in self.pending.values() if r.link is link]:
            self._send(read)

    def on_link_suspect(self, link: ReplicaLink) -> None:
        """The replica missed a heartbeat: send its unanswered reads to another replica now
        rather than when it is declared down (a late reply from it is ignored)."""
        for read in [r for r in self.pending.values() if r.link is link]:
            other = self._choose(read)
            if other is not None and other is not link:
                self._dispatch(read, other)

    def expire(self) -> None:
        now = time.monotonic()
        for read in [r for r in self.pending.values() if r.deadline < now]:
            del self.pending[read.id]
            self.c.stats.read_errors += 1
            read.conn.send_error(read.cid, "timeout", "read timed out")
