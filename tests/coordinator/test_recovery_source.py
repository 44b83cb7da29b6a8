"""Where a replica being caught up gets its missing writes (coordinator/recovery.py `_source`,
`_reach`), in-process: an up replica's log, or after a takeover the agreed part of the log of
a replica that is itself being rebuilt."""

from __future__ import annotations

import asyncio

import pytest

from tests.coordinator.test_read_hedging import started_coordinator
from webfront.coordinator import recovery
from webfront.coordinator.broadcaster import RECOVERING, UP


def test_an_up_replica_is_preferred_to_one_being_rebuilt_that_reaches_as_far(tmp_path):
    with started_coordinator(tmp_path) as c:
        rebuilt, up, target = c.links
        c.sequencer.last_seq = 10
        rebuilt.state, rebuilt.receives_writes, rebuilt.valid_seq = RECOVERING, False, 10
        rebuilt.fenced_conn = rebuilt.conn
        up.acked_seq = 10
        target.state, target.receives_writes = RECOVERING, False
        assert c.recovery._source(target, 5, log=True) is up
        up.acked_seq = 8  # now only the one being rebuilt holds 9 and 10
        assert c.recovery._source(target, 9, log=True) is rebuilt
        assert c.recovery._source(target, 9) is None  # a snapshot comes from an up one only


def test_a_log_is_never_forwarded_beyond_the_agreed_part_nor_the_last_seq(tmp_path):
    with started_coordinator(tmp_path) as c:
        rebuilt = c.links[0]
        rebuilt.state, rebuilt.receives_writes = RECOVERING, False
        c.sequencer.last_seq = 10
        rebuilt.valid_seq = 7
        assert c.recovery._reach(rebuilt) == 7
        rebuilt.valid_seq = 12  # a replica without `le` that is ahead of the cluster
        assert c.recovery._reach(rebuilt) == 10


def rebuilt_holding(link, valid_seq: int) -> None:
    """link: fenced with our epoch, being rebuilt, its writes agreed up to valid_seq."""
    link.state, link.receives_writes, link.valid_seq = RECOVERING, False, valid_seq
    link.fenced_conn = link.conn


def test_the_replica_holding_most_waits_for_one_that_holds_more_or_is_up(tmp_path):
    """A state transfer never installs, on the replica whose agreed part reaches furthest, a
    snapshot of one holding less: the others may still need to copy from it. Its wait ends
    when one that holds more comes back (a holder that was away), or when one is up."""
    with started_coordinator(tmp_path) as c:
        top, other, third = c.links
        rebuilt_holding(top, 12)
        rebuilt_holding(other, 8)
        third.state, third.receives_writes = RECOVERING, False  # down: not a source
        third.conn.open = False
        top.transfer = {}
        waiting = c.loop.create_task(c.recovery._wait_as_top(top, 12))
        c.loop.run_until_complete(asyncio.sleep(0.1))
        assert not waiting.done()  # 8 < 12: never a source for it
        other.valid_seq = 14  # back, holding more (as re-admitted): decide again
        assert c.loop.run_until_complete(asyncio.wait_for(waiting, 1)) is None
        other.valid_seq = 8
        waiting = c.loop.create_task(c.recovery._wait_as_top(top, 12))
        c.loop.run_until_complete(asyncio.sleep(0.1))
        assert not waiting.done()
        other.state, other.receives_writes, other.acked_seq = UP, True, 12  # caught up from top
        assert c.loop.run_until_complete(asyncio.wait_for(waiting, 1)) is other


def test_a_heartbeat_at_an_overwritten_seq_is_not_a_divergence(tmp_path):
    """A replica whose last write a newer epoch overwrote reports a digest other than the
    agreed one at that seq while it waits to be rebuilt: expected, not an alarm. The same
    digest from a replica written by the epoch that owns the seq is a divergence."""
    with started_coordinator(tmp_path) as c:
        c.epochs.begin(1, 1)
        c.epochs.begin(2, 6)  # epoch 2 (ours) overwrote seq 6 on
        c.sequencer.epoch = 2
        c.history.digests[6] = b"A" * 16
        stale, written = c.links[0], c.links[1]
        stale.state, stale.receives_writes = RECOVERING, False
        c.monitor.on_heartbeat_reply(stale, {"id": 1, "s": 6, "e": 2, "d": b"B" * 16, "le": 1})
        assert not stale.diverged and not c.alarms
        written.conn.transport.abort = lambda: None  # taken down: the stand-in just closes
        c.monitor.ensure_connecting = lambda link: None  # and nothing dials it again
        c.monitor.on_heartbeat_reply(written, {"id": 1, "s": 6, "e": 2, "d": b"B" * 16, "le": 2})
        assert written.diverged and "replica 2 diverged at seq 6" in c.alarms[0]


def test_a_transfer_that_loses_its_source_drops_the_targets_install(tmp_path, monkeypatch):
    """The target of a failed transfer is told to drop its unfinished install (`inst_abort`):
    left open, it answered `installing` to everyone who wanted to copy from it."""
    with started_coordinator(tmp_path) as c:
        source, target, _ = c.links
        target.state, target.receives_writes, target.transfer = RECOVERING, False, {}

        async def fake_rpc(link, body, timeout=10.0):
            if body["t"] == "snap_open":
                return {"x": 1, "s": 5, "e": 1, "d": bytes(16), "size": 600_000, "h": 7}
            if body["t"] == "inst_begin":
                return {"t": "inst_ok"}
            raise recovery.RecoveryError("closed", f"replica {link.id} connection lost")

        monkeypatch.setattr(recovery, "rpc", fake_rpc)
        with pytest.raises(recovery.RecoveryError):
            c.loop.run_until_complete(c.recovery._state_transfer(target))
        for link in (source, target):
            link.flush()

        def sent(link):
            return [f["t"] for f in link.conn.transport.frames]

        assert sent(target)[-1] == "inst_abort" and sent(source)[-1] == "snap_close"
