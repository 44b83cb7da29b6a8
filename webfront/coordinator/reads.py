"""Read routing: each read goes to ONE live replica, never to all.

The replica answers once it has applied `min` (the committed seq for linearizable reads, the
caller's own seq for session reads). Replicas that already acked `min` are preferred, in round
robin; on `behind`, a timeout or a lost replica the read is tried on another one, within the
read's deadline.

A replica applies writes as they come, before a majority has acknowledged them, so its answer
may show a write that a takeover later drops (it reached a minority only), and whose seq (a
post's id) then goes to another write. So an answer that saw more than is acknowledged (its `s`
above the committed seq and the seq a majority has acked) is held until it is, and times out if
it never is. Only in an outage (too few replicas connected to acknowledge anything) are answers
passed on as they are: the design keeps reads served from the live replicas then
(docs/replication.md, "Reads").

A read unanswered after `read_hedge_ms` by a replica that has gone quiet (sent nothing for half
that long) is also sent to another replica, and the first answer wins (a hedged read). A replica
that hangs (a pause, a stalled disk) is noticed by the heartbeats only after one to two
intervals; until then its reads would wait, and with them the web workers that asked, and the
writes queued behind those workers. A replica that is merely busy keeps sending acks, so an
overloaded cluster does not get every slow read twice.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Any

from webfront.coordinator.broadcaster import SUSPECT, ReplicaLink
from webfront.protocol import encode_frame

if TYPE_CHECKING:
    from webfront.coordinator.core import Coordinator


class PendingRead:
    __slots__ = ("a", "cid", "conn", "deadline", "id", "links", "min", "q", "sent", "tried")

    def __init__(self, rid: int, conn: Any, cid: Any, q: str, a: dict, min_seq: int,
                 deadline: float) -> None:
        self.id = rid
        self.conn = conn
        self.cid = cid
        self.q = q
        self.a = a
        self.min = min_seq
        self.deadline = deadline
        self.links: list[ReplicaLink] = []  # sent there, not answered yet (two once hedged)
        self.sent = 0.0  # monotonic time of the last dispatch
        self.tried: list[str] = []


class ReadRouter:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        self.pending: dict[int, PendingRead] = {}
        self._ids = itertools.count(1)
        self._rr = 0
        self._hedge_timer: Any = None
        self._rx_seen: dict[str, int] = {}  # replica id -> its rx_bytes at the last hedge tick
        # Replicas a read was hedged away from, until they send something again: like a suspect
        # one, they get no new reads while another replica can serve them.
        self._quiet: set[str] = set()
        # Answers that saw writes not yet acknowledged: (their seq, order, read, frame body).
        self.held: list[tuple[int, int, PendingRead, dict]] = []

    def submit(self, conn: Any, cid: Any, q: str, a: dict, min_seq: int) -> None:
        timeout = self.c.config.read_timeout_ms / 1000.0
        read = PendingRead(next(self._ids), conn, cid, q, a, min_seq, time.monotonic() + timeout)
        self.pending[read.id] = read
        self._send(read)

    def _choose(self, read: PendingRead) -> ReplicaLink | None:
        """Where to send `read` next: never a replica it is already waiting on."""
        live = [link for link in self.c.links
                if link.is_open and link.receives_writes and link not in read.links]
        if not live:
            return None
        # A suspect replica (a heartbeat went unanswered: paused, cut off) gets no new reads
        # while another one can serve: a read sent there would wait for it to be declared down.
        healthy = [link for link in live if link.state != SUSPECT and link.id not in self._quiet]
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
            # A coordinator still claiming its epoch, or replicas still catching up: `retry`
            # makes the client ask again (webfront/client.py) instead of failing the read.
            read.conn.send_error(read.cid, "unavailable", *self.c.refusal(1))
            return
        self._dispatch(read, link)

    def _dispatch(self, read: PendingRead, link: ReplicaLink) -> None:
        read.links.append(link)
        read.tried.append(link.id)
        read.sent = time.monotonic()
        if self._hedge_timer is None and self.c.config.read_hedge_ms > 0:
            self._hedge_timer = self.c.loop.call_later(self.c.config.read_hedge_ms / 1000.0,
                                                       self._hedge)
        remaining_ms = int((read.deadline - read.sent) * 1000)
        wait = max(1, min(self.c.config.read_wait_ms, remaining_ms, 5000))
        link.queue(encode_frame(
            {"t": "r", "id": read.id, "min": read.min, "q": read.q, "a": read.a, "wait": wait}
        ))

    def on_reply(self, link: ReplicaLink, body: dict) -> None:
        read = self.pending.get(body.get("id"))
        if read is None or link not in read.links:
            return
        reply = body.get("r")
        if isinstance(reply, dict) and reply.get("ok") is False and reply.get("code") == "behind":
            read.links.remove(link)
            if read.links:  # hedged: the other replica may still answer
                return
            if time.monotonic() < read.deadline:
                self._send(read)
                return
            del self.pending[read.id]
            self.c.stats.read_errors += 1
            read.conn.send_error(read.cid, "timeout", "no replica reached the requested seq")
            return
        del self.pending[read.id]
        seen = body.get("s", 0)
        if seen > self.c.broadcaster.committed_seq and not self._settled(seen):
            heapq.heappush(self.held, (seen, read.id, read, body))
            return
        self._answer(read, body)

    def _settled(self, seen: int) -> bool:
        """Whether an answer that saw writes up to `seen` may be passed on."""
        b = self.c.broadcaster
        if seen <= max(b.committed_seq, b.majority_acked(self.c.sequencer.last_seq)):
            return True
        if b.needed() or self.c.fenced or not self.c.started:  # what it saw may yet be lost
            return False
        return not self.c.refusal(b.majority)[1]  # an outage, not a moment of catching up

    def _answer(self, read: PendingRead, body: dict) -> None:
        stats = self.c.stats
        stats.reads += 1
        # arrival = deadline - read timeout (no extra field per read)
        stats.read_latency.observe(time.monotonic() - read.deadline
                                   + self.c.config.read_timeout_ms / 1000.0)
        read.conn.send_frame({"t": "crr", "id": read.cid, "s": body.get("s", 0),
                              "r": body.get("r")})

    def on_committed(self, seq: int) -> None:
        """Writes up to `seq` are acknowledged: pass on the answers that saw no more."""
        held = self.held
        while held and held[0][0] <= seq:
            _, _, read, body = heapq.heappop(held)
            self._answer(read, body)

    def on_link_down(self, link: ReplicaLink) -> None:
        for read in [r for r in self.pending.values() if link in r.links]:
            read.links.remove(link)
            if not read.links:
                self._send(read)

    def on_link_suspect(self, link: ReplicaLink) -> None:
        """The replica missed a heartbeat: send its unanswered reads to another replica now
        rather than when it is declared down (a late reply from it is ignored)."""
        for read in [r for r in self.pending.values() if link in r.links and len(r.links) == 1]:
            other = self._choose(read)
            if other is not None:
                self._dispatch(read, other)

    def _hedge(self) -> None:
        """Every read waiting for `read_hedge_ms` on one replica that has sent nothing since the
        last tick is sent to another as well. Runs every half hedge interval while reads are
        pending."""
        self._hedge_timer = None
        seen, now = self._rx_seen, {link.id: link.rx_bytes for link in self.c.links}
        self._rx_seen = now
        self._quiet = {rid for rid in self._quiet if rid in now and seen.get(rid) == now[rid]}
        delay = self.c.config.read_hedge_ms / 1000.0
        due = time.monotonic() - delay
        for read in [r for r in self.pending.values() if len(r.links) == 1 and r.sent <= due]:
            link = read.links[0]
            if seen.get(link.id) != link.rx_bytes:  # still talking: busy, not hung
                continue
            other = self._choose(read)
            if other is not None:
                self.c.stats.read_hedges += 1
                self._quiet.add(link.id)
                self._dispatch(read, other)
        if (self.pending or self._quiet) and self._hedge_timer is None:
            self._hedge_timer = self.c.loop.call_later(delay / 2, self._hedge)

    def stop(self) -> None:
        if self._hedge_timer is not None:
            self._hedge_timer.cancel()
            self._hedge_timer = None

    def expire(self) -> None:
        now = time.monotonic()
        for read in [r for r in self.pending.values() if r.deadline < now]:
            del self.pending[read.id]
            self.c.stats.read_errors += 1
            read.conn.send_error(read.cid, "timeout", "read timed out")
        if self.held:  # acked by a majority though never answered (a failed write), or an outage
            self.on_committed(max((seen for seen, *_ in self.held if self._settled(seen)),
                                  default=0))
        kept = []
        for item in self.held:
            if item[2].deadline < now:
                self.c.stats.read_errors += 1
                item[2].conn.send_error(item[2].cid, "timeout", "read timed out: the writes "
                                        "it saw were not acknowledged")
            else:
                kept.append(item)
        if len(kept) < len(self.held):
            heapq.heapify(kept)
            self.held = kept
