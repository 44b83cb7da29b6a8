"""The coordinator process: wires sequencer, broadcaster, monitor, reads and the client port.

Everything runs on one asyncio event loop thread; no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from webfront.coordinator.broadcaster import (
    DOWN,
    Broadcaster,
    PendingWrite,
    ReplicaLink,
)
from webfront.coordinator.config import CoordinatorConfig
from webfront.coordinator.flush import Flusher
from webfront.coordinator.history import History
from webfront.coordinator.monitor import Monitor
from webfront.coordinator.reads import ReadRouter
from webfront.coordinator.sequencer import Sequencer
from webfront.coordinator.server import ClientConnection
from webfront.coordinator.status import build_status
from webfront.protocol import encode_body, frame_bytes, read_secret

log = logging.getLogger("webfront.coordinator")


class Coordinator:
    def __init__(self, config: CoordinatorConfig, loop: asyncio.AbstractEventLoop) -> None:
        config.validate()
        self.config = config
        self.loop = loop
        self.secret = b"" if config.insecure else read_secret(config.secret_file)
        self.flusher = Flusher(loop)
        self.links = [ReplicaLink(r, self.flusher) for r in config.replicas]
        for link in self.links:
            link.send_cap = config.send_queue_bytes
            link.on_overflow = self._on_overflow
        self.sequencer = Sequencer()
        self.history = History(config.history_writes, config.history_bytes)
        self.broadcaster = Broadcaster(self.links, config.policy)
        self.monitor = Monitor(self)
        self.reads = ReadRouter(self)
        self.alarms: deque[str] = deque(maxlen=50)
        self.started = False  # epoch and seq chosen: writes accepted
        self._readies: dict[str, dict] = {}
        self.server: asyncio.AbstractServer | None = None

    # Start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await self.loop.create_server(
            lambda: ClientConnection(self), *self.config.listen, backlog=1024
        )
        self.monitor.start()
        self.loop.call_later(self.config.startup_wait_ms / 1000.0, self._maybe_begin, True)
        log.info("coordinator listening on %s:%d, policy %s, %d replicas",
                 *self.config.listen, self.config.policy, len(self.links))

    def stop(self) -> None:
        self.monitor.stop()
        if self.server:
            self.server.close()
        for link in self.links:
            if link.conn is not None and link.conn.transport is not None:
                link.conn.transport.close()

    def _stored_epoch(self) -> int:
        if not self.config.state_dir:
            return 0
        try:
            return int(json.loads((Path(self.config.state_dir) / "epoch.json").read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

    def _store_epoch(self, epoch: int) -> None:
        if not self.config.state_dir:
            return
        state = Path(self.config.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        tmp = state / "epoch.json.tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": epoch}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state / "epoch.json")

    def _maybe_begin(self, deadline_passed: bool = False) -> None:
        """Start once every replica answered, or at the start deadline with a majority."""
        if self.started:
            return
        count = len(self._readies)
        if count < len(self.links) and not (deadline_passed and count >= self.broadcaster.majority):
            if deadline_passed:
                self.loop.call_later(0.1, self._maybe_begin, True)
            return
        epoch = max([self._stored_epoch()] + [r.get("e", 0) for r in self._readies.values()]) + 1
        last_seq = max(r.get("s", 0) for r in self._readies.values())
        self._store_epoch(epoch)
        self.sequencer.restart(epoch, last_seq)
        self.history.reset(last_seq)
        self.broadcaster.reset(last_seq)
        self.started = True
        log.info("coordinator epoch %d, continuing after seq %d", epoch, last_seq)
        for link in self.links:
            ready = self._readies.get(link.id)
            if ready is not None and link.is_open:
                self.monitor.admit(link, ready)
        self._readies.clear()

    # Replica events ------------------------------------------------------------------------

    def on_ready(self, link: ReplicaLink, ready: dict) -> None:
        if not self.started:
            self._readies[link.id] = ready
            link.state = "recovering"
            link.applied_seq = link.acked_seq = ready.get("s", 0)
            link.epoch = ready.get("e", 0)
            if isinstance(ready.get("d"), bytes):
                link.digest = ready["d"]
            link.last_heartbeat = time.monotonic()
            self._maybe_begin()
        else:
            self.monitor.admit(link, ready)

    def on_lost(self, link: ReplicaLink, exc: Exception | None) -> None:
        self._readies.pop(link.id, None)
        self.monitor.take_down(link, f"connection lost ({exc or 'closed'})")

    def _on_overflow(self, link: ReplicaLink) -> None:
        self.loop.call_soon(self.monitor.take_down, link, "send queue over its byte cap")

    def on_link_down(self, link: ReplicaLink) -> None:
        self.reads.on_link_down(link)
        b = self.broadcaster
        need_now = b.needed()
        for p in b.unanswered():
            if need_now == 0:
                self._fail(p, "unavailable", "no majority of replicas")
            elif self.config.policy == "all":
                p.needed = min(p.needed, sum(1 for x in self.links if x.receives_writes))
                self._maybe_answer(p)
        b.collect()

    def divergence(self, link: ReplicaLink, seq: int, what: str) -> None:
        message = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} replica {link.id} diverged at seq "
                   f"{seq}: {what}; taken out, needs state transfer")
        log.error("DIVERGENCE: %s", message)
        self.alarms.append(message)
        link.diverged = True
        self.monitor.take_down(link, "diverged")

    def on_frames(self, link: ReplicaLink, bodies: list[dict]) -> None:
        """Everything one data_received brought from a replica (acks handled as a batch)."""
        acked = False
        pending = self.broadcaster.pending
        history = self.history
        for body in bodies:
            t = body["t"]
            if t == "a":
                seq = body["s"]
                if seq <= link.acked_seq and link.acked_seq:
                    continue
                link.acked_seq = seq
                acked = True
                p = pending.get(seq)
                digest = body.get("d")
                if body.get("dup"):
                    if p is not None:
                        p.acks += 1
                        if p.reply is not None and p.acks >= p.needed and not p.done:
                            self._answer(p)
                    continue
                reply = body.get("r")
                if p is None:
                    known = history.note_digest(seq, digest)
                    if known is not None and known != digest:
                        self.divergence(link, seq, "ack digest differs")
                        return
                    continue
                if p.reply is None:
                    p.reply = reply
                    p.digest = digest
                    history.note_digest(seq, digest)
                elif reply != p.reply or digest != p.digest:
                    self.divergence(link, seq, f"reply/digest differs: {reply!r} vs {p.reply!r}")
                    return
                p.acks += 1
                if not p.done and p.acks >= p.needed:
                    self._answer(p)
            elif t == "hba":
                self.monitor.on_heartbeat_reply(link, body)
            elif t == "rr":
                self.reads.on_reply(link, body)
            elif t == "err":
                code = body.get("code")
                msg = f"replica {link.id} error {code}: {body.get('msg', '')}"
                log.error(msg)
                if code == "stale_epoch":
                    self.alarms.append(msg + " (another coordinator has a higher epoch?)")
                self.monitor.take_down(link, f"error {code}")
                return
        if acked:
            self.monitor.on_acked(link)
            self.broadcaster.collect()

    # Client requests -------------------------------------------------------------------------

    def client_write(self, conn: ClientConnection, cid: Any, rid: str, op: str, args: dict) -> None:
        seq_ = self.sequencer
        if rid:
            done = seq_.result_of(rid)
            if done is not None:
                conn.send_frame({"t": "cwr", "id": cid, "s": done[0], "r": done[1]})
                return
            p = seq_.inflight(rid)
            if p is not None:
                p.waiters.append((conn, cid))
                return
        needed = self.broadcaster.needed() if self.started else 0
        if not needed:
            conn.send_error(cid, "unavailable", "no majority of replicas is up" if self.started
                            else "coordinator is starting")
            return
        seq, ts = seq_.next()
        body = encode_body({"t": "w", "e": seq_.epoch, "s": seq, "ts": ts, "rid": rid,
                            "op": op, "a": args})
        frame = frame_bytes(body)
        self.history.append(seq, frame)
        p = PendingWrite(seq, rid, [(conn, cid)], needed)
        seq_.begin(rid, p)
        self.broadcaster.broadcast(p, frame)

    def _answer(self, p: PendingWrite) -> None:
        p.done = True
        if p.seq > self.broadcaster.committed_seq:
            self.broadcaster.committed_seq = p.seq
        self.sequencer.finish(p.rid, p.seq, p.reply)
        for conn, cid in p.waiters:
            conn.send_frame({"t": "cwr", "id": cid, "s": p.seq, "r": p.reply})

    def _maybe_answer(self, p: PendingWrite) -> None:
        if not p.done and p.reply is not None and p.acks >= p.needed:
            self._answer(p)

    def _fail(self, p: PendingWrite, code: str, msg: str) -> None:
        p.done = True
        self.sequencer.abandon(p.rid)
        for conn, cid in p.waiters:
            conn.send_error(cid, code, msg)

    def status(self) -> dict[str, Any]:
        return build_status(self)


def links_down(coordinator: Coordinator) -> list[str]:
    return [link.id for link in coordinator.links if link.state == DOWN]
