"""The coordinator process: wires sequencer, broadcaster, monitor, reads and the client port.

Everything runs on one asyncio event loop thread; no locks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from webfront.coordinator.acks import AckCounter
from webfront.coordinator.broadcaster import (
    DOWN,
    RECOVERING,
    UP,
    Broadcaster,
    PendingWrite,
    ReplicaLink,
)
from webfront.coordinator.busypoll import BusyPoll
from webfront.coordinator.config import CoordinatorConfig, ReplicaConfig
from webfront.coordinator.epochs import EpochStore
from webfront.coordinator.events import event, transition
from webfront.coordinator.flush import Flusher
from webfront.coordinator.history import History
from webfront.coordinator.membership import MembershipStore, MembershipUnsafe
from webfront.coordinator.metrics import Stats
from webfront.coordinator.monitor import Monitor
from webfront.coordinator.reads import ReadRouter
from webfront.coordinator.recovery import Recovery, RecoveryError, rpc
from webfront.coordinator.sequencer import Sequencer, skewed_clock
from webfront.coordinator.server import ClientConnection
from webfront.coordinator.state_files import StateDirError
from webfront.coordinator.status import build_status
from webfront.core._core import write_frame
from webfront.protocol import (
    UNDECODABLE,
    ack_reply_bytes,
    read_secret,
)

log = logging.getLogger("webfront.coordinator")


class Coordinator:
    def __init__(self, config: CoordinatorConfig, loop: asyncio.AbstractEventLoop) -> None:
        config.validate()
        self.config = config
        self.loop = loop
        self.secret = b"" if config.insecure else read_secret(config.secret_file)
        self.busy_poll = BusyPoll(loop, config.busy_poll_us, config.busy_poll_light_us,
                                  in_flight=lambda: len(self.broadcaster.pending))
        self.flusher = Flusher(loop, after_flush=self.busy_poll.arm)
        self.epochs = EpochStore(config.state_dir)
        self.membership = MembershipStore(config.state_dir)
        self._links_made = 0
        self.links = [self._new_link(r) for r in self.membership.load(config.replicas)]
        self.sequencer = Sequencer(clock=skewed_clock())
        self._time_floor_known = False
        self.history = History(config.history_writes, config.history_bytes)
        self.broadcaster = Broadcaster(self.links, config.policy)
        self._answers_first = config.policy == "first"  # answers before the digest is settled
        self.monitor = Monitor(self)
        self.reads = ReadRouter(self)
        self.acks = AckCounter(self)
        self.recovery = Recovery(self)
        self.alarms: deque[str] = deque(maxlen=50)
        self.stats = Stats()  # hot-path counters and latency buckets (metrics.py)
        self._write_t0: dict[int, float] = {}  # seq -> arrival time, until answered or failed
        self.started = False  # epoch and seq chosen: writes accepted
        self.phase = "handshake"  # -> fencing (epoch sent) -> started, or fenced
        self.new_epoch = 0  # the epoch being claimed / in use
        # Sent with our `epoch` frames: a replica refuses the same epoch for another claim, so
        # two coordinators that picked the same epoch cannot both fence a majority.
        self.claim = os.urandom(8)
        self.fenced = False
        self.on_fatal: Any = None  # called when this coordinator must exit (fenced)
        self.exit_code = 0
        self._readies: dict[str, dict] = {}
        self._first: list[ReplicaLink] = []  # the most advanced replicas, awaited before _begin
        self._membership_lock = asyncio.Lock()  # one membership change at a time
        self.epoch_start = 1  # first seq of the current epoch
        self._grace: asyncio.TimerHandle | None = None
        self.server: asyncio.AbstractServer | None = None

    def _new_link(self, replica: ReplicaConfig) -> ReplicaLink:
        link = ReplicaLink(replica, self.flusher)
        link.bit = 1 << self._links_made  # never reused, so a removed member's acks stay apart
        self._links_made += 1
        link.send_cap = self.config.send_queue_bytes
        link.on_overflow = self._on_overflow
        return link

    # Start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await self.loop.create_server(
            lambda: ClientConnection(self), *self.config.listen, backlog=1024
        )
        self.monitor.start()
        log.info("coordinator listening on %s:%d, policy %s, %d replicas",
                 *self.config.listen, self.config.policy, len(self.links))

    def stop(self) -> None:
        self.monitor.stop()
        self.reads.stop()
        self.recovery.stop()
        if self.server:
            self.server.close()
        for link in self.links:
            if link.conn is not None and link.conn.transport is not None:
                link.conn.transport.close()

    # Epochs: fence a majority, then sequence ----------------------------------------------

    def _maybe_fence(self, grace_over: bool = False) -> None:
        """Once every member answered the handshake, or a majority did and a short grace
        period passed, claim a new epoch and send it to every replica connected, at once
        (laggards too: their catch-up comes as `cu` frames, which the new epoch accepts)."""
        if self.phase != "handshake":
            return
        count = len(self._readies)
        if count < self.broadcaster.majority:
            return
        if count < len(self.links) and not grace_over:
            if self._grace is None:
                self._grace = self.loop.call_later(self.config.startup_wait_ms / 1000.0,
                                                   self._maybe_fence, True)
            return
        seen = [r.get("e", 0) for r in self._readies.values()] + [x.epoch for x in self.links]
        self.new_epoch = max([self.epochs.epoch] + seen) + 1
        try:
            self.epochs.claim(self.new_epoch)
        except StateDirError as exc:
            self.halt(f"cannot claim epoch {self.new_epoch}: {exc}")
            return
        self.phase = "fencing"
        event("epoch_claim", epoch=self.new_epoch, answered=count, members=len(self.links),
              msg=f"claiming epoch {self.new_epoch}")
        self._first = self._most_advanced()
        for link in self.links:
            if link.is_open and link.id in self._readies:
                self._send_epoch(link, self._readies[link.id])

    def _rank(self, info: dict) -> tuple[int, int, int]:
        """How much of the agreed history a replica holds, from its `ready` or `epoch_ok`:
        (epoch of its last agreed write, seq of it, 1 if that is all it applied). Raft's rule:
        a replica written by a newer epoch holds everything an older one got acknowledged.
        A replica whose last writes a newer epoch overwrote (`stale_suffix`: a suffix no
        majority acknowledged) counts up to the seq before that epoch began, whose writes may
        be acknowledged ones no other replica here holds; taking its whole seq as H would wedge
        the cluster on a state no one else can match. At an equal rank one without a stale
        suffix is preferred: its digest at H is the agreed one."""
        seq, last_epoch = info.get("s", 0), info.get("le", 0)
        valid = self.epochs.valid_through(seq, last_epoch)
        if valid == seq:
            return (last_epoch, seq, 1)
        return (self.epochs.owner(valid) or 0, valid, 0)

    def _most_advanced(self) -> list[ReplicaLink]:
        """Every replica of the highest rank, then the most advanced others until a majority.
        Sequencing waits for their `epoch_ok` (while they stay connected), so H, the seq this
        epoch continues after, is as high as the handshakes showed (a write acknowledged under
        policy `first` may be on one replica only)."""
        open_ = [x for x in self.links if x.is_open and x.id in self._readies]
        open_.sort(key=lambda x: self._rank(self._readies[x.id]), reverse=True)
        top = self._rank(self._readies[open_[0].id]) if open_ else None
        chosen = [x for x in open_ if self._rank(self._readies[x.id]) == top]
        for x in open_:
            if len(chosen) >= self.broadcaster.majority:
                break
            if x not in chosen:
                chosen.append(x)
        return chosen

    def _send_epoch(self, link: ReplicaLink, ready: dict) -> None:
        if link.legacy:
            self._on_epoch_ok(link, link.conn, ready)
            return
        self.loop.create_task(self._epoch_call(link, link.conn))

    async def _epoch_call(self, link: ReplicaLink, conn: Any) -> None:
        try:
            reply = await rpc(link, {"t": "epoch", "e": self.new_epoch, "c": self.claim},
                              timeout=5.0)
        except RecoveryError as exc:
            if link.conn is not conn:
                return
            if exc.code == "stale_epoch":  # a newer coordinator, or one that took this epoch
                self.fence(f"replica {link.id} refused epoch {self.new_epoch}: {exc}")
            elif exc.code == "malformed" and "epoch" in str(exc):
                log.warning("replica %s does not know the epoch frame: fenced by writes only",
                            link.id)
                link.legacy = True
            else:
                self.monitor.take_down(link, f"epoch: {exc}")
            return
        if link.conn is conn:
            self._on_epoch_ok(link, conn, reply)

    def _on_epoch_ok(self, link: ReplicaLink, conn: Any, reply: dict) -> None:
        link.fenced_conn = conn
        link.fence_reply = reply
        link.epoch = reply.get("e", link.epoch)
        event("replica_fenced", replica=link.id, epoch=link.epoch, seq=reply.get("s"),
              last_epoch=reply.get("le"))
        if self.phase == "fencing":
            self._maybe_begin()
        elif self.phase == "started":
            self.monitor.admit(link, reply)

    def _maybe_begin(self) -> None:
        """Fencing: sequence once a majority stored our epoch and every one of the most
        advanced replicas still connected did."""
        if self.phase != "fencing":
            return
        fenced = [x for x in self.links if x.fenced_by_us]
        if len(fenced) < self.broadcaster.majority:
            return
        if any(x.is_open and x.fenced_conn is not x.conn for x in self._first):
            return
        self._begin(fenced)

    def _begin(self, fenced: list[ReplicaLink]) -> None:
        """A majority stored our epoch: no older coordinator can complete a write now. The
        highest ranked among them holds every acknowledged write; sequence after its seq."""
        best = max(fenced, key=lambda x: self._rank(x.fence_reply))
        _, last_seq, whole = self._rank(best.fence_reply)
        if last_seq and not self._time_floor_known:
            self.phase = "timing"
            self.loop.create_task(self._learn_time_floor(best, last_seq))
            return
        epoch = self.new_epoch
        try:
            self.epochs.begin(epoch, last_seq + 1)
        except StateDirError as exc:
            self.halt(f"cannot record where epoch {epoch} begins: {exc}")
            return
        self.epoch_start = last_seq + 1
        self.sequencer.restart(epoch, last_seq)
        self.history.reset(last_seq)
        if whole and isinstance(best.fence_reply.get("d"), bytes) and last_seq:
            self.history.digests[last_seq] = best.fence_reply["d"]
        # Acknowledged as far as a majority of the fenced replicas holds it: H itself may be on
        # the most advanced replica only (a suffix the old coordinator never got acknowledged).
        held = sorted((min(last_seq, self._rank(x.fence_reply)[1]) for x in fenced),
                      reverse=True)
        self.broadcaster.reset(last_seq, held[self.broadcaster.majority - 1])
        self._write_t0.clear()
        self.phase = "started"
        self.started = True
        self._readies = {}
        self._first = []
        event("epoch_begin", epoch=epoch, after_seq=last_seq, fenced=len(fenced),
              members=len(self.links),
              msg=f"coordinator epoch {epoch}, continuing after seq {last_seq}")
        # Replicas whose epoch_ok comes later are admitted as it arrives (_on_epoch_ok).
        for link in sorted(fenced, key=lambda x: -x.fence_reply.get("s", 0)):
            self.monitor.admit(link, link.fence_reply)

    async def _learn_time_floor(self, best: ReplicaLink, last_seq: int) -> None:
        """Our timestamps must not go below the last write's, even if this host's clock is
        behind the previous coordinator's: read that write's stamp from the most advanced
        replica's log, then start. Best effort: if its log no longer holds it (a snapshot at
        exactly that seq), start from our own clock and say so."""
        try:
            reply = await rpc(best, {"t": "log_read", "from": last_seq, "max": 1 << 16},
                              timeout=1.0)
            stamps = [msgpack.unpackb(rec).get("ts", 0) for rec in reply.get("recs") or []]
            floor = max([ts for ts in stamps if isinstance(ts, int)], default=0)
            self.sequencer.last_ts = max(self.sequencer.last_ts, floor)
        except (RecoveryError, *UNDECODABLE, AttributeError) as exc:
            event("time_floor_unknown", "warning", seq=last_seq, error=str(exc),
                  msg="could not read the last write's timestamp; using this host's clock")
        self._time_floor_known = True
        if self.phase == "timing":  # not fenced meanwhile
            self.phase = "fencing"
            self._maybe_begin()

    def fence(self, reason: str) -> None:
        """Another coordinator has a newer epoch: fail every unanswered write (never
        acknowledge it), stop sequencing and exit (3)."""
        self._stop_sequencing("fenced", reason, 3, "coordinator fenced by a newer epoch",
                              "FENCED: superseded by a newer coordinator; failing unanswered "
                              "writes, no longer sequencing, exiting")

    def halt(self, reason: str) -> None:
        """Its state dir cannot record an epoch (a full or failing disk): sequencing on would
        leave no record of it for the next coordinator. Fail every unanswered write and exit
        (4); the supervisor starts it again, and it sequences once the dir takes writes."""
        self._stop_sequencing("fatal", reason, 4, "coordinator cannot store its state",
                              f"cannot store the coordinator's state, exiting: {reason}")

    def _stop_sequencing(self, kind: str, reason: str, code: int, refusal: str,
                         msg: str) -> None:
        if self.fenced:
            return
        self.fenced = True
        self.started = False
        self.phase = "fenced"
        event(kind, "error", epoch=self.sequencer.epoch, reason=reason,
              unanswered=len(self.broadcaster.unanswered()), msg=msg)
        self.alarms.append(f"{kind}: {reason}")
        for p in self.broadcaster.unanswered():
            self._fail(p, "unavailable", refusal)
        self.exit_code = code
        if self.on_fatal is not None:
            self.loop.call_later(0.05, self.on_fatal)

    # Replica events ------------------------------------------------------------------------

    def on_ready(self, link: ReplicaLink, ready: dict) -> None:
        link.applied_seq = link.acked_seq = ready.get("s", 0)
        link.epoch = ready.get("e", 0)
        link.last_epoch = ready.get("le", 0)
        if isinstance(ready.get("d"), bytes):
            link.digest = ready["d"]
        link.last_heartbeat = time.monotonic()
        transition(link, "recovering", f"connected at seq {link.applied_seq}",
                   seq=link.applied_seq)
        link.fenced_conn = None
        if self.phase == "fenced":
            return
        if self.phase == "handshake":
            self._readies[link.id] = ready
            self._maybe_fence()
        elif self.phase in ("fencing", "timing"):
            self._readies[link.id] = ready
            self._send_epoch(link, ready)
        else:
            self._after_ready(link, ready)

    def _after_ready(self, link: ReplicaLink, ready: dict) -> None:
        """Sequencing: fence a connecting replica at once, whatever it lacks; its epoch_ok
        admits it (log catch-up by `cu` frames, state transfer or replay, Monitor.admit)."""
        if link.epoch > self.sequencer.epoch:
            self.fence(f"replica {link.id} has epoch {link.epoch}")
            return
        self._send_epoch(link, ready)

    # Membership -----------------------------------------------------------------------------

    async def _change_safely(self, after: Callable[[], tuple[list[ReplicaLink], int]],
                             change: Callable[[], Any], timeout: float = 2.0) -> Any:
        """Makes a membership change (`change()`) once it is safe: every majority of the
        membership after it (`after()`: those of its replicas there now, and its size) must
        include a replica that holds every acknowledged write, or a coordinator taking over
        could fence a majority that lacks one (two removals while a replica was down lost an
        acknowledged write). That takes more holders than the new membership has replicas
        outside a majority: a majority of it for an odd size, half for an even one. Waits for the acks of writes in
        flight, then refuses (MembershipUnsafe). One change at a time, each checked against the
        membership as it is, with no await between the last check and the change."""
        async with self._membership_lock:
            deadline = self.loop.time() + timeout
            while True:
                if not self.started or self.fenced:
                    raise MembershipUnsafe("membership unchanged: the coordinator is not "
                                           "sequencing (starting, or fenced by a newer one)")
                seq = self.broadcaster.committed_seq
                members, size = after()
                need = size - (size // 2 + 1) + 1
                holders = [x.id for x in members if x.state == UP and x.acked_seq >= seq]
                if len(holders) >= need:
                    return change()
                if self.loop.time() >= deadline:
                    raise MembershipUnsafe(
                        f"membership unchanged: every majority of the {size} replicas after "
                        f"the change must include one that holds every acknowledged write (up "
                        f"to seq {seq}), so {need} must hold them, and {len(holders)} do "
                        f"({', '.join(holders) or 'none'}); bring the others up (webfront "
                        "status) and try again")
                await asyncio.sleep(0.02)

    async def add_member_safely(self, replica: ReplicaConfig) -> ReplicaLink:
        return await self._change_safely(lambda: (self.links, len(self.links) + 1),
                                         lambda: self.add_member(replica))

    async def remove_member_safely(self, replica_id: str) -> None:
        if not any(x.id == replica_id for x in self.links) or len(self.links) == 1:
            self.remove_member(replica_id)  # raises, saying why
        def after() -> tuple[list[ReplicaLink], int]:
            remaining = [x for x in self.links if x.id != replica_id]
            return remaining, len(remaining)

        await self._change_safely(after, lambda: self.remove_member(replica_id))

    def add_member(self, replica: ReplicaConfig) -> ReplicaLink:
        if any(x.id == replica.id for x in self.links):
            raise ValueError(f"replica id {replica.id} is already a member")
        if any(x.config.address == replica.address for x in self.links):
            raise ValueError(f"{replica.host}:{replica.port} is already a member")
        self.membership.save([x.config for x in self.links] + [replica])  # first: may fail
        link = self._new_link(replica)
        self.links.append(link)
        self._members_changed()
        event("member_added", replica=replica.id, address=f"{replica.host}:{replica.port}",
              members=len(self.links), majority=self.broadcaster.majority)
        self.monitor.ensure_connecting(link)
        return link

    def remove_member(self, replica_id: str) -> None:
        link = next((x for x in self.links if x.id == replica_id), None)
        if link is None:
            raise ValueError(f"no replica {replica_id}")
        if len(self.links) == 1:
            raise ValueError("cannot remove the last replica")
        self.membership.save([x.config for x in self.links if x is not link])  # first: may fail
        link.removed = True
        self.links.remove(link)
        self._members_changed()
        event("member_removed", replica=replica_id, members=len(self.links),
              majority=self.broadcaster.majority)
        for p in self.broadcaster.unanswered():
            # Its acks no longer count: with them a write held by one of the members left
            # could reach the new, smaller majority and be answered.
            self.acks.forget_acks_of(p, link)
            if p.needed > self.broadcaster.majority and self.config.policy == "majority":
                p.needed = p.settle = self.broadcaster.majority
            self._maybe_answer(p)
        if self._answers_first:
            self.acks.settle_with(self.broadcaster.settle_count())
        self.monitor.forget(link)

    def _members_changed(self) -> None:
        self.broadcaster.majority = len(self.links) // 2 + 1

    def on_lost(self, link: ReplicaLink, exc: Exception | None) -> None:
        self._readies.pop(link.id, None)
        self.monitor.take_down(link, f"connection lost ({exc or 'closed'})")

    def _on_overflow(self, link: ReplicaLink) -> None:
        self.loop.call_soon(self.monitor.take_down, link, "send queue over its byte cap")

    def on_link_down(self, link: ReplicaLink) -> None:
        if self.phase == "fencing":  # it may have been the one sequencing waited for
            self.loop.call_soon(self._maybe_begin)
        self.reads.on_link_down(link)
        b = self.broadcaster
        need_now = b.needed()
        for p in b.unanswered():
            if need_now == 0:
                self._fail(p, "unavailable", "no majority of replicas")
            elif self.config.policy == "all":
                p.needed = p.settle = min(p.needed, b.live_count())
                self._maybe_answer(p)
        if self._answers_first:
            self.acks.settle_with(b.live_count())
        b.collect()

    def divergence(self, link: ReplicaLink, seq: int, what: str) -> None:
        message = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} replica {link.id} diverged at seq "
                   f"{seq}: {what}; taken out, needs state transfer")
        event("divergence", "error", replica=link.id, seq=seq, what=what,
              msg=f"DIVERGENCE: {message}")
        self.alarms.append(message)
        link.diverged = True
        self.monitor.take_down(link, "diverged; will be rebuilt by state transfer")

    def on_frames(self, link: ReplicaLink, bodies: list[dict]) -> None:
        """Everything one data_received brought from a replica (acks handled as a batch)."""
        acked = False
        for body in bodies:
            t = body["t"]
            if t == "as":  # protocol 2: one turn's acks, as parallel arrays
                seqs, digests, replies = body.get("s"), body.get("d"), body.get("rb")
                if not (type(seqs) is list and type(digests) is list and type(replies) is list
                        and len(seqs) == len(digests) == len(replies)):
                    self.monitor.take_down(link, "malformed batch of acks")
                    return
                outcome = self.acks.batch(link, seqs, digests, replies)
                if outcome is None:
                    return
                acked |= outcome
            elif t == "a":
                if body.get("dup"):
                    reply = None  # what batch() reads as a dup
                else:
                    reply = body.get("rb")
                    if reply is None:  # a replica_server from before `rb`
                        reply = ack_reply_bytes(body)
                outcome = self.acks.batch(link, [body["s"]], [body.get("d")], [reply])
                if outcome is None:
                    return
                acked |= outcome
            elif t == "hba":
                self.monitor.on_heartbeat_reply(link, body)
            elif t == "rr":
                self.reads.on_reply(link, body)
            elif body.get("id") in link.rpcs:
                fut = link.rpcs.pop(body["id"])
                if not fut.done():
                    fut.set_result(body)
            elif t == "err" and body.get("code") == "malformed" and \
                    "'epoch'" in str(body.get("msg", "")):
                log.warning("replica %s does not know the epoch frame (older replica_server): "
                            "fenced by the epoch of our writes only", link.id)
                link.legacy = True
                self.monitor.take_down(link, "no epoch frame; reconnecting")
                return
            elif t == "err" and body.get("code") == "installing":
                continue  # a read or heartbeat while a snapshot is being installed
            elif t == "err":
                code = body.get("code")
                msg = f"replica {link.id} error {code}: {body.get('msg', '')}"
                log.error(msg)
                if code == "stale_epoch":
                    self.fence(f"replica {link.id} refused our write as stale_epoch")
                    return
                self.monitor.take_down(link, f"error {code}")
                return
        if acked:
            self.monitor.on_acked(link)
            self.broadcaster.collect()

    # Client requests -------------------------------------------------------------------------

    def client_write(self, conn: ClientConnection, cid: Any, rid: str, write_tail: bytes) -> None:
        """A client's write, checked by the C++ intake: `write_tail` is the rid, op and a of
        its write frame, encoded."""
        seq_ = self.sequencer
        if rid:
            done = seq_.result_of(rid)
            if done is not None:
                conn.send_frame({"t": "cwr", "id": cid, "s": done[0], "rb": done[1]})
                return
            p = seq_.inflight(rid)
            if p is not None:
                p.waiters.append((conn, cid))
                return
        needed = self.broadcaster.needed() if self.started else 0
        if not needed:
            self.stats.write_errors += 1
            wanted = 1 if self._answers_first else self.broadcaster.majority
            conn.send_error(cid, "unavailable", *self.refusal(wanted))
            return
        seq, ts = seq_.next()
        self._write_t0[seq] = time.perf_counter()
        frame = write_frame(seq_.epoch, seq, ts, write_tail)
        self.history.append(seq, frame)
        p = PendingWrite(seq, rid, [(conn, cid)], needed,
                         self.broadcaster.settle_count() if self._answers_first else 0)
        seq_.begin(rid, p)
        self.broadcaster.broadcast(p, frame)

    def refusal(self, wanted: int) -> tuple[str, bool]:
        """Why a request needing `wanted` replicas that receive writes cannot be served now,
        and whether that is a moment the client should wait out (retry): a coordinator still
        choosing its epoch, or enough replicas connected but some still being caught up (just
        after a takeover, those that missed the last writes of the old coordinator get them
        first). Fewer replicas connected than wanted is an outage, answered as such."""
        if self.fenced:
            return "coordinator fenced by a newer epoch", False
        if not self.started:
            return "coordinator is starting", True
        connected = sum(1 for x in self.links if x.receives_writes
                        or (x.state == RECOVERING and x.is_open))
        if connected >= wanted:
            return "replicas are catching up", True
        return ("no majority of replicas is up" if wanted > 1 else "no live replica"), False

    def _answer(self, p: PendingWrite) -> None:
        p.done = True
        if p.acks >= p.settle:
            self.acks.agreed(p)
        t0 = self._write_t0.pop(p.seq, None)
        if t0 is not None:
            stats = self.stats
            stats.writes += 1
            stats.write_latency.observe(time.perf_counter() - t0)
        self.broadcaster.committed_seq = max(self.broadcaster.committed_seq, p.seq)
        if self.reads.held:
            self.reads.on_committed(self.broadcaster.committed_seq)
        self.sequencer.finish(p.rid, p.seq, p.reply)
        for conn, cid in p.waiters:
            conn.send_frame({"t": "cwr", "id": cid, "s": p.seq, "rb": p.reply})

    def _maybe_answer(self, p: PendingWrite) -> None:
        if not p.settled and p.reply is not None and p.acks >= p.needed:
            self.acks.reached(p)

    def expire_writes(self) -> None:
        """Fail writes unanswered for longer than the write timeout (heartbeat tick).

        A backstop for acks that can never come, e.g. every replica that applied a write lost
        its connection before acking and came back past it. Without it that write's clients
        (and every retry of its request id, which joins it) would wait forever, and the pending
        table could not be trimmed past it. `timeout` leaves the outcome open: the client
        retries with the same request id, and the replicas' request-id table answers that
        retry with the first result if the write was applied.
        """
        self.acks.forget_before(self.broadcaster.gc_seq)
        if not self._write_t0:
            return
        limit = time.perf_counter() - self.config.write_timeout_ms / 1000.0
        pending = self.broadcaster.pending
        expired: list[PendingWrite] = []
        for seq, t0 in self._write_t0.items():  # insertion order: oldest first
            if t0 > limit:
                break
            p = pending.get(seq)
            if p is not None and not p.done:
                expired.append(p)
        for p in expired:
            event("write_timed_out", "warning", seq=p.seq, acks=p.acks, needed=p.needed)
            self._fail(p, "timeout", f"write {p.seq} got {p.acks} of {p.needed} acks within "
                       f"{self.config.write_timeout_ms} ms; its outcome is unknown: retry with "
                       "the same request id")
        if expired:
            self.broadcaster.collect()

    def _fail(self, p: PendingWrite, code: str, msg: str) -> None:
        p.done = True
        self._write_t0.pop(p.seq, None)
        self.stats.write_errors += 1
        self.sequencer.abandon(p.rid)
        for conn, cid in p.waiters:
            conn.send_error(cid, code, msg)

    def status(self) -> dict[str, Any]:
        return build_status(self)


def links_down(coordinator: Coordinator) -> list[str]:
    return [link.id for link in coordinator.links if link.state == DOWN]
