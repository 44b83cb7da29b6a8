"""The broadcaster: one persistent connection per replica, each write encoded once and the
same bytes queued to every live replica, acks counted against the reply policy.

Hot path, so no coroutine or Future per write: replica connections are asyncio Protocols that
parse frames from what data_received hands them, a pending write is a small slotted object in a
dict keyed by seq, and output is coalesced per replica per loop iteration (see flush.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from webfront.coordinator.config import ReplicaConfig
from webfront.protocol import (
    BATCHED_ACKS_VERSION,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    FrameDecoder,
    ProtocolError,
    check_welcome,
    encode_frame,
    hello_body,
)

if TYPE_CHECKING:
    from webfront.coordinator.flush import Flusher

log = logging.getLogger("webfront.coordinator")

UP, SUSPECT, DOWN, RECOVERING = "up", "suspect", "down", "recovering"


class ReplicaLink:
    """Everything the coordinator knows about one replica, across its connections.

    Tracked, as in Redis, by monotonic offsets: `acked_seq` is the highest write it acked, so
    what it misses is simply every seq above that.
    """

    def __init__(self, config: ReplicaConfig, flusher: Flusher) -> None:
        self.config = config
        self.id = config.id
        self.flusher = flusher
        self.conn: ReplicaConnection | None = None
        self.state = DOWN
        self.receives_writes = False  # up, suspect or recovering by replay
        self.waiting_transfer = False  # gap older than the history: needs a state transfer
        self.diverged = False
        self.note = ""
        self.acked_seq = 0
        # The highest acked_seq it had when it stopped receiving writes: its acks up to here
        # were counted. A returning replica is credited above it (AckCounter.credit_lost) and its
        # acks at or below it are not counted again (AckCounter.batch).
        self.counted_seq = 0
        self.applied_seq = 0
        self.epoch = 0
        self.last_epoch = 0
        self.valid_seq = 0  # its writes up to here are the agreed ones (set when fenced)
        self.digest = bytes(16)
        self.recover_target = 0
        self.last_heartbeat = 0.0  # monotonic time of the last heartbeat reply
        self.rx = False  # anything received since the last heartbeat tick
        self.rx_bytes = 0  # everything received from it, on any connection (hedged reads)
        self.hb_outstanding = False
        self.hb_id = 0
        self.misses = 0
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.send_cap = 16 << 20
        self.on_overflow: Callable[[ReplicaLink], None] | None = None
        # Recovery and epochs (recovery.py, core.py); not used on the write hot path.
        self.rpcs: dict[int, asyncio.Future] = {}  # request id -> reply future
        self.transfer: dict[str, Any] | None = None  # catch-up progress for the status
        self.fenced_conn: ReplicaConnection | None = None  # connection that said epoch_ok
        self.fence_reply: dict | None = None
        self.legacy = False  # replica without the `epoch` frame (fenced by writes only)
        self.removed = False
        self.bit = 0  # this link's bit in PendingWrite.acked_by (set by the Coordinator)

    @property
    def is_open(self) -> bool:
        return self.conn is not None and self.conn.open

    @property
    def fenced_by_us(self) -> bool:
        """It stored our epoch on the connection it has now (`epoch_ok`)."""
        return self.fenced_conn is not None and self.fenced_conn is self.conn

    def queue(self, frame: bytes) -> None:
        if not self.out:
            self.flusher.mark(self)
        self.out.append(frame)
        self.out_bytes += len(frame)

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        self.out = []
        size = self.out_bytes
        self.out_bytes = 0
        conn = self.conn
        if conn is None or conn.transport is None or not conn.open:
            return
        transport = conn.transport
        transport.write(b"".join(out) if len(out) > 1 else out[0])
        if size and transport.get_write_buffer_size() > self.send_cap and self.on_overflow:
            self.on_overflow(self)

    def drop_output(self) -> None:
        self.out = []
        self.out_bytes = 0


class ReplicaConnection(asyncio.Protocol):
    """One TCP connection to a replica: the initiator's handshake, then frame dispatch."""

    def __init__(self, link: ReplicaLink, secret: bytes, handler: Any) -> None:
        self.link = link
        self.secret = secret
        self.handler = handler  # the Coordinator: on_ready, on_acks, on_lost, ...
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()
        self.phase = "connecting"
        self.open = False
        self.closed = False
        self.nonce = os.urandom(NONCE_BYTES)
        self.ready_waiter: asyncio.Future[dict] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            except OSError:
                pass
        if hasattr(transport, "max_size"):  # stock asyncio: see server.limit_receive_size
            transport.max_size = 1 << 16  # type: ignore[attr-defined]
        self.phase = "welcome"
        transport.write(encode_frame(hello_body(  # type: ignore[attr-defined]
            "coordinator", self.nonce, (PROTOCOL_VERSION, BATCHED_ACKS_VERSION))))

    def data_received(self, data: bytes) -> None:
        self.link.rx = True
        self.link.rx_bytes += len(data)
        try:
            bodies = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(f"malformed frame from replica: {exc}")
            return
        if not self.open:
            bodies = self._handshake(bodies)
            if not bodies or not self.open:
                return
        if self.link.conn is self:
            self.handler.on_frames(self.link, bodies)

    def _handshake(self, bodies: list[dict]) -> list[dict]:
        while bodies and not self.open:
            body = bodies.pop(0)
            try:
                if self.phase == "welcome":
                    self.transport.write(check_welcome(body, self.secret, self.nonce))
                    self.phase = "ready"
                elif self.phase == "ready":
                    if body.get("t") != "ready":
                        raise ProtocolError(f"expected ready, got {body.get('t')!r} {body}")
                    self.open = True
                    self.phase = "open"
                    if self.ready_waiter and not self.ready_waiter.done():
                        self.ready_waiter.set_result(body)
            except ProtocolError as exc:
                self.fail(f"handshake: {exc}")
                return []
        return bodies

    def fail(self, reason: str) -> None:
        log.warning("replica %s: %s", self.link.id, reason)
        if self.ready_waiter and not self.ready_waiter.done():
            self.ready_waiter.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.closed = True
        if self.ready_waiter and not self.ready_waiter.done():
            self.ready_waiter.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if self.link.conn is self:
            self.handler.on_lost(self.link, exc)


class PendingWrite:
    """A sequenced write waiting for acks. `waiters` are (client connection, frame id) pairs.

    `acks` replicas acked `digest` (the first ack's, unless a rival got the settling count
    first); `acked_by` is the set of them as a mask of ReplicaLink.bit (an int: no object per
    write for the garbage collector to walk). `rivals` maps any other digest acked for this seq
    to [reply, mask, count] (AckCounter._rival).

    Two counts: `needed` acks answer the client (`done`), `settle` acks on one digest settle
    it (`settled`): recorded for the seq, and every replica that acked another digest has
    diverged. They are the same count except under `first`, which answers on one ack but
    settles by a majority, so that one odd replica acking first cannot get the healthy ones
    taken out.
    """

    __slots__ = ("acked_by", "acks", "digest", "done", "needed", "reply", "rid", "rivals",
                 "seq", "settle", "settled", "waiters")

    def __init__(self, seq: int, rid: str, waiters: list, needed: int,
                 settle: int = 0) -> None:
        self.seq = seq
        self.rid = rid
        self.waiters = waiters
        self.needed = needed
        self.settle = settle or needed  # not max(): once per write
        self.settled = False
        self.acks = 0
        self.acked_by = 0
        self.reply: Any = None
        self.digest: bytes | None = None
        self.rivals: dict[bytes, list] | None = None
        self.done = False


class Broadcaster:
    """Sends writes to every replica that receives writes and decides when to answer.

    `needed(policy)`: first -> 1, majority -> N // 2 + 1 of all configured replicas,
    all -> every replica receiving writes at submit time (at least a majority).
    """

    def __init__(self, links: list[ReplicaLink], policy: str) -> None:
        self.links = links
        self.policy = policy
        self.majority = len(links) // 2 + 1
        self.pending: dict[int, PendingWrite] = {}
        self.gc_seq = 1  # every seq below this is gone from pending
        self.committed_seq = 0  # highest seq answered to a client

    def live_links(self) -> list[ReplicaLink]:
        return [link for link in self.links if link.receives_writes]

    def live_count(self) -> int:
        return sum(1 for link in self.links if link.receives_writes)

    def needed(self) -> int:
        """Acks needed for a new write, or 0 when it cannot be accepted now."""
        live = 0
        for link in self.links:  # live_count() written out: once per write
            if link.receives_writes:
                live += 1
        if self.policy == "first":
            return 1 if live else 0
        if live < self.majority:
            return 0
        return self.majority if self.policy == "majority" else live

    def settle_count(self) -> int:
        """Acks on one digest that settle a new write's digest under `first`: a majority of
        all configured replicas, or every replica receiving writes when fewer are up."""
        return min(self.majority, self.live_count())

    def reset(self, last_seq: int, committed_seq: int) -> None:
        """A new epoch continues after `last_seq`; `committed_seq` of it is on a majority."""
        self.pending.clear()
        self.gc_seq = last_seq + 1
        self.committed_seq = max(self.committed_seq, committed_seq)

    def majority_acked(self, last_seq: int) -> int:
        """The highest seq a majority of the members holds durably: a replica that receives
        writes up to its acked seq, one fenced with our epoch but still being caught up or
        rebuilt up to its agreed part (`valid_seq`: its acked seq may include a suffix of an
        older epoch that is not ours), neither beyond `last_seq`."""
        held = sorted((min(last_seq, link.acked_seq if link.receives_writes else
                           link.valid_seq if link.is_open and link.fenced_by_us else 0)
                       for link in self.links), reverse=True)
        return held[self.majority - 1] if len(held) >= self.majority else 0

    def broadcast(self, pending: PendingWrite, frame: bytes) -> None:
        self.pending[pending.seq] = pending
        for link in self.links:
            if link.receives_writes:
                link.queue(frame)

    def collect(self) -> None:
        """Forget pending writes that are answered and acked by every replica receiving writes."""
        low = None
        for link in self.links:
            if link.receives_writes and (low is None or link.acked_seq < low):
                low = link.acked_seq
        pending = self.pending
        if low is None:
            low = self.gc_seq + len(pending)
        seq = self.gc_seq
        while seq <= low:
            entry = pending.get(seq)
            if entry is not None:
                if not entry.done:
                    break
                del pending[seq]
            seq += 1
        self.gc_seq = seq

    def unanswered(self) -> list[PendingWrite]:
        return [p for p in self.pending.values() if not p.done]


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0
