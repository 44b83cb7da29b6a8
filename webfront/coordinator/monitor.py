"""The monitor: heartbeats, suspicion, declaring replicas down, reconnecting, re-admitting.

Every `heartbeat_ms` each open replica gets `hb`. A tick that finds the previous heartbeat
unanswered and nothing at all received since the last tick counts a miss (a replica busy acking
writes is alive): one miss makes it `suspect`, `miss_threshold` misses make it `down`, and a
connection error makes it `down` at once. A down replica is reconnected with capped exponential
backoff. When it answers the handshake it is `recovering`: the coordinator replays every write
it missed from the recent-write buffer with new writes queued behind them, and marks it `up`
once it has acked the last of them. If its gap is older than the buffer, or it holds a suffix
of an older epoch, or it diverged, recovery.py catches it up from a healthy replica's log or by
state transfer first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from webfront.coordinator.broadcaster import (
    DOWN,
    RECOVERING,
    SUSPECT,
    UP,
    ReplicaConnection,
    ReplicaLink,
)
from webfront.coordinator.events import event, transition
from webfront.coordinator.recovery import fail_rpcs
from webfront.protocol import encode_frame

if TYPE_CHECKING:
    from webfront.coordinator.core import Coordinator

log = logging.getLogger("webfront.coordinator")


def agreed_committed(link: ReplicaLink, committed: int) -> int:
    """The committed seq a replica may compact its log up to (`c` of `hb`, docs/protocol.md):
    only as far as its own writes are the agreed ones. 0 for a replica not yet known to agree
    (a diverged one, or one not fenced with our epoch)."""
    if link.diverged:
        return 0
    if link.receives_writes:
        return committed
    if link.is_open and link.fenced_by_us:
        return min(committed, link.valid_seq)
    return 0


class Monitor:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        self.config = coordinator.config
        self._tasks: dict[str, asyncio.Task] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self.stopped = False

    def start(self) -> None:
        for link in self.c.links:
            self.ensure_connecting(link)
        self._schedule_tick()

    def stop(self) -> None:
        self.stopped = True
        if self._ticker:
            self._ticker.cancel()
        for task in self._tasks.values():
            task.cancel()

    # Heartbeats ---------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        if not self.stopped:
            self._ticker = self.c.loop.call_later(self.config.heartbeat_ms / 1000.0, self.tick)

    def tick(self) -> None:
        self._schedule_tick()
        c = self.c
        writing = c.started and not c.fenced
        committed = c.broadcaster.majority_acked(c.sequencer.last_seq) if writing else 0
        for link in c.links:
            if not link.is_open:
                continue
            if link.hb_outstanding and not link.rx and link.transfer is None:
                link.misses += 1
                if link.misses >= self.config.miss_threshold:
                    self.take_down(link, f"{link.misses} heartbeats missed")
                    continue
                if link.state == UP:
                    transition(link, SUSPECT, f"{link.misses} heartbeat missed",
                               msg=f"replica {link.id} suspect")
                    self.c.reads.on_link_suspect(link)
            else:
                link.misses = 0
                if link.state == SUSPECT:
                    transition(link, UP, "traffic received again")
            link.rx = False
            link.hb_id += 1
            link.hb_outstanding = True
            link.hb_sent = time.monotonic()
            hb = {"t": "hb", "id": link.hb_id}
            agreed = agreed_committed(link, committed)
            if agreed > 0:
                hb.update(c=agreed, e=c.sequencer.epoch)
            link.queue(encode_frame(hb))
        self.c.reads.expire()
        self.c.expire_writes()

    def on_heartbeat_reply(self, link: ReplicaLink, body: dict) -> None:
        link.hb_outstanding = False
        link.misses = 0
        link.last_heartbeat = time.monotonic()
        if body.get("id") == link.hb_id and getattr(link, "hb_sent", 0.0):
            link.hb_rtt = link.last_heartbeat - link.hb_sent  # seconds, for the metrics
        link.applied_seq = body.get("s", link.applied_seq)
        link.epoch = body.get("e", link.epoch)
        link.last_epoch = body.get("le", link.last_epoch)
        if link.epoch > self.c.sequencer.epoch and self.c.started:
            self.c.fence(f"replica {link.id} reports epoch {link.epoch}")
            return
        digest = body.get("d")
        if isinstance(digest, bytes):
            if link.applied_seq >= link.acked_seq:  # else the acks carried a newer one
                link.digest = digest
            known = self.c.history.digests.get(link.applied_seq)
            # A replica already found diverged keeps its digest until the state transfer
            # installs the snapshot: the same divergence, not a second one. One whose last
            # writes a newer epoch overwrote differs there by design: it is being rebuilt.
            if known is not None and known != digest and not link.diverged and \
                    not self.c.epochs.stale_suffix(link.applied_seq, link.last_epoch):
                self.c.divergence(link, link.applied_seq, "heartbeat digest differs")
                return
        if link.state == SUSPECT:
            transition(link, UP, "heartbeat answered")

    # Down and back -------------------------------------------------------------------------

    def take_down(self, link: ReplicaLink, reason: str) -> None:
        """Stop sending to the replica and close its connection; reconnect later."""
        was = link.state
        conn = link.conn
        link.conn = None
        transition(link, DOWN, reason, level="warning", msg=f"replica {link.id} down: {reason}")
        if link.receives_writes:
            link.counted_seq = max(link.counted_seq, link.acked_seq)
        link.receives_writes = False
        link.hb_outstanding = False
        link.misses = 0
        link.drop_output()
        link.transfer = None
        fail_rpcs(link, f"replica {link.id} down: {reason}")
        self.c.recovery.cancel(link)
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        if was != DOWN:
            link.note = reason
        self.c.on_link_down(link)
        self.ensure_connecting(link)

    def forget(self, link: ReplicaLink) -> None:
        """A removed member: close its connection and stop reconnecting."""
        task = self._tasks.pop(link.id, None)
        if task is not None:
            task.cancel()
        self.take_down(link, "removed from the membership")

    def ensure_connecting(self, link: ReplicaLink) -> None:
        if self.stopped or link.removed:
            return
        task = self._tasks.get(link.id)
        if task is None or task.done():
            self._tasks[link.id] = self.c.loop.create_task(self._connect_loop(link))

    async def _connect_loop(self, link: ReplicaLink) -> None:
        delay = 0.02
        cap = self.config.backoff_max_ms / 1000.0
        timeout = self.config.handshake_timeout_ms / 1000.0
        while not self.stopped and link.conn is None:
            conn = ReplicaConnection(link, self.c.secret, self.c)
            conn.ready_waiter = self.c.loop.create_future()
            try:
                await asyncio.wait_for(
                    self.c.loop.create_connection(lambda c=conn: c, *link.config.address), timeout
                )
                ready = await asyncio.wait_for(conn.ready_waiter, timeout)
            except (TimeoutError, OSError, ConnectionError) as exc:
                if conn.transport is not None:
                    conn.transport.abort()
                if not link.note.startswith("unreachable"):
                    event("replica_unreachable", replica=link.id,
                          error=str(exc or type(exc).__name__))
                link.note = f"unreachable: {exc or type(exc).__name__}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, cap)
                continue
            link.conn = conn
            link.rx = True
            link.note = ""
            self.c.on_ready(link, ready)
            return

    def admit(self, link: ReplicaLink, info: dict) -> None:
        """A fenced replica (its `epoch_ok`, or `ready` for a replica without epoch frames):
        decide how it gets what it misses, then let it receive writes."""
        c = self.c
        applied = info.get("s", 0)
        link.applied_seq = link.acked_seq = applied
        link.epoch = info.get("e", link.epoch)
        link.last_epoch = info.get("le", 0)
        # Its log up to here may serve a log catch-up even while it is rebuilt (Recovery).
        link.valid_seq = c.epochs.valid_through(applied, link.last_epoch)
        if isinstance(info.get("d"), bytes):
            link.digest = info["d"]
        link.last_heartbeat = time.monotonic()
        last = c.sequencer.last_seq
        known = c.history.digests.get(applied)
        if link.diverged:
            c.recovery.start(link, True, "diverged earlier: rebuilding by state transfer")
        elif c.epochs.stale_suffix(applied, link.last_epoch):
            # Before the digest check: another digest at this seq is expected, not an alarm.
            c.recovery.start(link, True, f"its writes up to {applied} are of epoch "
                             f"{link.last_epoch}, overwritten by epoch "
                             f"{c.epochs.owner(applied)}; state transfer")
        elif known is not None and known != link.digest:
            c.divergence(link, applied, "digest at its applied seq differs")
        elif applied > last:
            c.recovery.start(link, True, f"applied {applied} is ahead of the cluster ({last}): "
                             "an unacknowledged suffix of an old epoch; state transfer")
        elif applied == last or c.history.covers_after(applied):
            c.acks.credit_lost(link, applied, link.digest)
            self.hand_over(link, applied)
        else:
            c.recovery.start(link, False, f"applied {applied}, cluster at {last}: gap older "
                             f"than the recent-write buffer (from {c.history.first_seq})")

    def hand_over(self, link: ReplicaLink, applied: int) -> None:
        """Queue every buffered write after `applied`, then let new writes follow them."""
        c = self.c
        last = c.sequencer.last_seq
        link.waiting_transfer = False
        link.receives_writes = True
        link.note = ""
        if applied >= last and link.acked_seq >= last:
            link.transfer = None
            transition(link, UP, f"nothing missed at seq {applied}", seq=applied,
                       msg=f"replica {link.id} up at seq {applied}")
        elif applied >= last:
            # Everything it missed was forwarded (log catch-up) but not yet acknowledged: it is
            # `up` only once it has applied the last of it (on_acked).
            link.recover_target = last
            transition(link, RECOVERING, "waiting for the acks of its catch-up")
        else:
            for frame in c.history.frames_after(applied):
                link.queue(frame)
            link.recover_target = last
            transition(link, RECOVERING, "replaying the recent-write buffer")
            event("recovery_start", replica=link.id, mode="replay", first=applied + 1,
                  last=last, msg=f"replica {link.id} recovering: replaying seq "
                  f"{applied + 1}..{last}")

    def on_acked(self, link: ReplicaLink) -> None:
        if link.state == RECOVERING and link.receives_writes and \
                link.acked_seq >= link.recover_target:
            link.transfer = None
            event("recovery_end", replica=link.id, mode="replay", ok=1, seq=link.acked_seq)
            transition(link, UP, f"caught up at seq {link.acked_seq}", seq=link.acked_seq,
                       msg=f"replica {link.id} caught up at seq {link.acked_seq}: up")
