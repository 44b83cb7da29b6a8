"""Recovery: bring a returning, lagging, brand-new or diverged replica (the target) up to date
from a healthy one (the source), then hand it to the normal replay of the recent-write buffer.

Everything goes through the connections the coordinator already holds (docs/protocol.md,
"Epochs, state transfer and membership"). Phases, shown in the status object as `transfer`:

1. `log`: forward the source's logged write bodies (`log_read` -> `cu` frames carrying our
   epoch, so a target already fenced with it accepts records of older epochs) from the target's
   next needed seq until that seq is inside the recent-write buffer (History). If the source
   answers `compacted`, go to 2. The target was fenced with our epoch before recovery began
   (Coordinator._after_ready): an older coordinator cannot write to it meanwhile.
2. `snapshot`: `snap_open` on the source (an up one if there is; else one being rebuilt whose
   agreed part reaches furthest, asked for a snapshot it stored at or below that part:
   `at_most`), `inst_begin` on the target, then `snap_read` ->
   `inst_data` with several chunks in flight (chunk hashes checked by the target), `inst_end`,
   and the target's digest must equal the source's at S. Then back to 1 from S+1. A transfer
   that fails after `inst_begin` drops the target's unfinished install (`inst_abort`): left
   open, it would refuse to serve as a source to anyone.
3. `replay`: the buffered writes after the target's seq are queued to it with new writes behind
   them (Monitor.hand_over); it is `up` once it acked the last of them.

Convergence while writes keep arriving: during a transfer the History is pinned at the seq
where the transfer began, so writes that arrive meanwhile are never evicted (up to 4x its
normal caps), and the log phase fetches whatever is still missing. A snapshot is never started
over because the buffer moved on; it is retried only if the transfer itself failed.

Not hot path: one asyncio task per target, request/reply over `ReplicaLink.rpcs`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgpack

from webfront.coordinator.broadcaster import RECOVERING, UP, ReplicaLink
from webfront.coordinator.events import event, transition
from webfront.protocol import encode_frame, frame_bytes

if TYPE_CHECKING:
    from webfront.coordinator.core import Coordinator

log = logging.getLogger("webfront.coordinator")

CHUNK = 256 << 10  # snapshot bytes per snap_read / inst_data
SNAP_WINDOW = 4  # snap_read requests in flight
INST_WINDOW = 8  # inst_data frames not yet acknowledged
LOG_MAX = 512 << 10  # bytes per log_read
TARGET_BUFFER_CAP = 4 << 20  # pause forwarding while the target's send buffer holds more
RPC_TIMEOUT = 10.0
MAX_ATTEMPTS = 5

_ids = itertools.count(1 << 40)  # far from read and heartbeat ids


class RecoveryError(Exception):
    def __init__(self, code: str, msg: str = "") -> None:
        super().__init__(f"{code}: {msg}" if msg else code)
        self.code = code


async def rpc(link: ReplicaLink, body: dict[str, Any], timeout: float = RPC_TIMEOUT) -> dict:
    """Send one request frame to link and wait for the reply with the same id."""
    if not link.is_open:
        raise RecoveryError("closed", f"replica {link.id} not connected")
    rid = next(_ids)
    body["id"] = rid
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    link.rpcs[rid] = fut
    link.queue(encode_frame(body))
    try:
        reply = await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        raise RecoveryError("timeout", f"{body['t']} to replica {link.id}") from None
    finally:
        link.rpcs.pop(rid, None)
    if reply.get("t") == "err":
        raise RecoveryError(str(reply.get("code")), str(reply.get("msg", "")))
    return reply


def fail_rpcs(link: ReplicaLink, reason: str) -> None:
    """The link's connection is gone: every request waiting on it fails."""
    for fut in link.rpcs.values():
        if not fut.done():
            fut.set_exception(RecoveryError("closed", reason))
    link.rpcs.clear()


def record_seq(record: bytes) -> int:
    return int(msgpack.unpackb(record, raw=False)["s"])


class Recovery:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        self._tasks: dict[str, asyncio.Task] = {}

    # Control ----------------------------------------------------------------------------

    def start(self, link: ReplicaLink, transfer: bool, reason: str) -> None:
        """Recover link (already connected, not receiving writes): from the log first unless
        `transfer`, by state transfer when needed."""
        self.cancel(link)
        transition(link, RECOVERING, reason)
        link.receives_writes = False
        link.waiting_transfer = transfer
        link.note = reason
        mode = "state transfer" if transfer else "log catch-up"
        event("recovery_start", replica=link.id, mode=mode, reason=reason,
              msg=f"replica {link.id} recovering ({mode}): {reason}")
        self._tasks[link.id] = self.c.loop.create_task(self._run(link, link.conn, transfer))

    def cancel(self, link: ReplicaLink) -> None:
        task = self._tasks.pop(link.id, None)
        if task is not None and not task.done():
            task.cancel()
        self.c.history.unpin(link.id)

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    def active(self, link: ReplicaLink) -> bool:
        task = self._tasks.get(link.id)
        return task is not None and not task.done()

    # The job ----------------------------------------------------------------------------

    async def _run(self, target: ReplicaLink, conn: Any, transfer: bool) -> None:
        c = self.c
        started = time.monotonic()
        target.transfer = {"phase": "starting", "source": None, "bytes": 0, "bytes_total": 0,
                           "seqs": 0, "snapshot_seq": None, "attempt": 0,
                           "mode": "state transfer" if transfer else "log catch-up"}
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                target.transfer["attempt"] = attempt
                if target.conn is not conn:
                    return
                try:
                    if transfer:
                        await self._state_transfer(target)
                    info = target.transfer
                    if await self._catch_up_from_log(target):
                        event("recovery_end", replica=target.id, mode=info["mode"], ok=1,
                              ms=round((time.monotonic() - started) * 1000), seqs=info["seqs"],
                              bytes=info["bytes"], msg="caught up from a peer; replaying "
                              "the recent-write buffer")
                        return
                    transfer = True  # the log no longer reaches back far enough
                    target.transfer["mode"] = "state transfer"
                    target.waiting_transfer = True
                except RecoveryError as exc:
                    if target.conn is not conn or exc.code == "closed" and not target.is_open:
                        event("recovery_end", "warning", replica=target.id, ok=0,
                              reason=f"stopped: {exc}")
                        return
                    if exc.code == "stale_epoch":  # the target stored a newer epoch than ours
                        c.fence(f"replica {target.id} refused recovery as stale_epoch")
                        return
                    event("recovery_attempt_failed", "warning", replica=target.id,
                          attempt=attempt, error=str(exc))
                    if exc.code in ("bad_snapshot", "bad_chunk", "compacted"):
                        transfer = True
                        target.transfer["mode"] = "state transfer"
                    await asyncio.sleep(0.1 * attempt)
            event("recovery_end", "error", replica=target.id, ok=0,
                  reason=f"failed {MAX_ATTEMPTS} times")
            c.monitor.take_down(target, f"recovery failed {MAX_ATTEMPTS} times")
        finally:
            c.history.unpin(target.id)
            if self._tasks.get(target.id) is asyncio.current_task():
                del self._tasks[target.id]

    def _source(self, target: ReplicaLink, need: int = 0, log: bool = False,
                up_first: bool = False) -> ReplicaLink | None:
        """The healthiest source: an up replica (other than target), most advanced first.
        With `log` also one fenced with our epoch whose writes up to `need` are agreed
        (`valid_seq`) though it is itself being rebuilt: after a takeover the only copy of
        acknowledged writes may be on a replica that also holds a stale suffix. Such a source
        serves its log up to there, or a stored snapshot at or below it (`_state_transfer`).
        An up one is preferred at a tie, or always with `up_first`."""
        best, rank, best_has = None, (False, 0), 0
        for link in self.c.links:
            if link is target or not link.is_open or link.diverged:
                continue
            if link.state == UP:
                has = link.acked_seq
            elif log and link.fenced_by_us and link.valid_seq > 0:
                has = link.valid_seq
            else:
                continue
            key = (link.state == UP, has) if up_first else (has, link.state == UP)
            if best is None or key > rank:
                best, rank, best_has = link, key, has
        return best if best is not None and best_has >= need else None

    def _only_copy_compacted(self, target: ReplicaLink, source: ReplicaLink, seq: int) -> None:
        """The writes target lacks are only in the agreed part of a replica being rebuilt, and
        that replica has neither the log nor a stored snapshot reaching back to them (its
        compaction was forced, or it keeps no snapshots: docs/failures.md). Said once, loudly."""
        alarm = (f"replica {target.id} needs seq {seq} on, which only replica {source.id} "
                 f"holds, and {source.id} has neither the log nor a stored snapshot reaching "
                 "back to it: it cannot be caught up until another replica holding those "
                 "writes returns (docs/failures.md)")
        if alarm not in self.c.alarms:
            self.c.alarms.append(alarm)
            event("only_copy_compacted", "error", replica=target.id, source=source.id,
                  seq=seq, msg=alarm)

    def _reach(self, source: ReplicaLink) -> int:
        """Up to which seq a source's log may be forwarded."""
        last = self.c.sequencer.last_seq
        return last if source.state == UP else min(last, source.valid_seq)

    async def _wait_source(self, target: ReplicaLink, need: int = 0,
                           log: bool = False) -> ReplicaLink:
        """The source to use, once there is one; `no_source` after 10 s."""
        deadline = time.monotonic() + 10.0
        while True:
            source = self._source(target, need, log)
            if source is not None:
                target.transfer["source"] = source.id
                return source
            if time.monotonic() > deadline:
                raise RecoveryError("no_source", f"no up replica at seq >= {need}")
            await asyncio.sleep(0.02)

    async def _wait_as_top(self, target: ReplicaLink, mine: int) -> ReplicaLink | None:
        """For a target whose agreed part (up to `mine`) no other replica reaches: wait, as
        long as it takes, for an up replica (returned), or for one that reaches further
        (None: decide again), e.g. a holder that was away and is back."""
        target.transfer["source"] = None
        while True:
            if not target.is_open:
                raise RecoveryError("closed", f"replica {target.id} not connected")
            source = self._source(target)
            if source is not None:
                target.transfer["source"] = source.id
                return source
            if self._source(target, mine + 1, log=True) is not None:
                return None
            await asyncio.sleep(0.02)

    async def _drain(self, target: ReplicaLink) -> None:
        """Flow control: never let the target's send buffer grow past a few MiB."""
        while True:
            conn = target.conn
            if conn is None or conn.transport is None or not conn.open:
                raise RecoveryError("closed", f"replica {target.id} connection lost")
            if conn.transport.get_write_buffer_size() + target.out_bytes < TARGET_BUFFER_CAP:
                return
            await asyncio.sleep(0.002)

    async def _catch_up_from_log(self, target: ReplicaLink) -> bool:
        """Forward the source's log to target until the History covers the rest; then hand
        over. False when the source's log no longer holds the next needed seq."""
        c = self.c
        info = target.transfer
        info["phase"] = "log"
        nxt = target.acked_seq + 1
        progress = time.monotonic()
        while True:
            if c.history.covers_after(nxt - 1) or nxt > c.sequencer.last_seq:
                info["phase"] = "replay"
                c.monitor.hand_over(target, nxt - 1)
                return True
            source = await self._wait_source(target, nxt, log=True)
            await self._drain(target)
            try:
                reply = await rpc(source, {"t": "log_read", "from": nxt, "max": LOG_MAX})
            except RecoveryError as exc:
                if exc.code == "compacted":
                    log.info("replica %s: source %s log compacted before seq %d", target.id,
                             source.id, nxt)
                    return False
                raise
            reach = self._reach(source)  # never a stale suffix's records
            recs = [rec for rec in reply.get("recs") or [] if record_seq(rec) <= reach]
            if not recs:  # the source has not applied nxt yet; it should, soon
                if time.monotonic() - progress > RPC_TIMEOUT:
                    raise RecoveryError("no_progress", f"replica {source.id} holds nothing "
                                        f"from seq {nxt} (up to {reach} expected)")
                await asyncio.sleep(0.005)
                continue
            progress = time.monotonic()
            first, last = record_seq(recs[0]), record_seq(recs[-1])
            if first != nxt or last != nxt + len(recs) - 1:
                raise RecoveryError("bad_log", f"log_read from {nxt} gave {first}..{last}")
            epoch = c.sequencer.epoch
            for rec in recs:
                # A replica without the epoch frame knows no `cu` either: plain writes.
                target.queue(frame_bytes(rec) if target.legacy else
                             encode_frame({"t": "cu", "e": epoch, "rec": rec}))
            nxt = last + 1
            info["seqs"] += len(recs)
            info["forwarded_to"] = last

    async def _open_snapshot(self, target: ReplicaLink) -> tuple[ReplicaLink, dict]:
        """`snap_open` on the best source: an up replica. With none up, one being rebuilt
        whose agreed part reaches further than the target's gives a snapshot it stored within
        that part, if it kept one (after a takeover it may hold the only copy of acknowledged
        writes). A target whose own agreed part no other replica reaches is never installed
        from one: the others may need it as their source, so it waits for an up replica."""
        mine = target.valid_seq if target.fenced_by_us and not target.diverged else 0
        while True:
            held = self._source(target, mine + 1, log=True, up_first=True)
            if held is not None and held.state != UP:
                try:
                    return held, await rpc(held, {"t": "snap_open", "at_most": held.valid_seq})
                except RecoveryError as exc:
                    if exc.code != "compacted":
                        raise
            if mine > 0 and held is None:
                source = await self._wait_as_top(target, mine)
                if source is None:  # one holding more is back: decide again
                    continue
            else:
                try:
                    source = await self._wait_source(target)
                except RecoveryError:
                    if held is not None and held.state != UP:
                        self._only_copy_compacted(target, held, mine + 1)
                    raise
            return source, await rpc(source, {"t": "snap_open"})

    async def _state_transfer(self, target: ReplicaLink) -> None:
        c = self.c
        info = target.transfer
        info["phase"] = "snapshot"
        c.history.pin(target.id, c.history.next_seq)
        source, snap = await self._open_snapshot(target)
        xid, size = snap["x"], int(snap["size"])
        info.update(snapshot_seq=snap["s"], bytes=0, bytes_total=size)
        event("state_transfer_start", replica=target.id, source=source.id, seq=snap["s"],
              bytes=size, msg=f"replica {target.id}: state transfer from {source.id}")
        began = False
        try:
            await rpc(target, {"t": "inst_begin", "s": snap["s"], "e": snap["e"],
                               "d": snap["d"], "size": size, "h": snap["h"]})
            began = True
            reads: deque[tuple[int, asyncio.Task]] = deque()
            installs: deque[asyncio.Task] = deque()
            offsets = iter(range(0, size, CHUNK))
            loop = c.loop

            def more_reads() -> None:
                while len(reads) < SNAP_WINDOW:
                    off = next(offsets, None)
                    if off is None:
                        return
                    length = min(CHUNK, size - off)
                    reads.append((off, loop.create_task(rpc(source, {
                        "t": "snap_read", "x": xid, "off": off, "len": length}))))

            more_reads()
            try:
                while reads:
                    off, task = reads.popleft()
                    data = await task
                    more_reads()
                    if data.get("off") != off:
                        raise RecoveryError("bad_chunk", f"snap_data at {data.get('off')}")
                    chunk = data["data"]
                    await self._drain(target)
                    installs.append(loop.create_task(rpc(target, {
                        "t": "inst_data", "off": off, "data": chunk, "h": data["h"]})))
                    info["bytes"] = off + len(chunk)
                    while len(installs) > INST_WINDOW:
                        await installs.popleft()
                while installs:
                    await installs.popleft()
            finally:
                for _, task in reads:
                    task.cancel()
                for task in installs:
                    task.cancel()
            done = await rpc(target, {"t": "inst_end"}, timeout=60.0)
            began = False
        finally:
            source.queue(encode_frame({"t": "snap_close", "x": xid}))
            if began and target.is_open:  # unfinished: it would refuse to serve as a source
                target.queue(encode_frame({"t": "inst_abort"}))
        if done.get("s") != snap["s"] or done.get("d") != snap["d"]:
            raise RecoveryError("bad_snapshot", f"installed {done.get('s')} differs")
        target.applied_seq = target.acked_seq = snap["s"]
        target.valid_seq = snap["s"]  # what it agreed beyond that is gone: never served again
        target.digest = snap["d"]
        target.diverged = False
        event("state_transfer_end", replica=target.id, seq=snap["s"],
              msg=f"replica {target.id}: snapshot at seq {snap['s']} installed, digest "
              "matches the source's")
