"""Hedged reads (coordinator/reads.py), driven in-process: a real Coordinator whose replica
connections record what is sent to them, replies fed as a replica would send them.

The process-level effect (a paused replica no longer holds reads, and the writes of the clients
behind them, until the heartbeats notice) is tested in test_cluster.py; these pin the rules:
who gets hedged, who does not, and which answer the client gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.coordinator.test_ack_counting import Client
from webfront.coordinator.broadcaster import RECOVERING, UP
from webfront.coordinator.config import CoordinatorConfig, ReplicaConfig
from webfront.coordinator.core import Coordinator
from webfront.protocol import FrameDecoder

HEDGE_MS = 20


class Transport:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self._decoder = FrameDecoder()

    def write(self, data: bytes) -> None:
        self.frames += self._decoder.feed(data)

    def get_write_buffer_size(self) -> int:
        return 0


class Connection:
    """Stands in for a replica connection: open, and keeps the frames sent to it."""

    def __init__(self) -> None:
        self.open = True
        self.transport = Transport()


@contextmanager
def started_coordinator(tmp_path, **config: Any) -> Iterator[Coordinator]:
    """A sequencing Coordinator of three replicas, all up, behind recording connections."""
    loop = asyncio.new_event_loop()
    c = Coordinator(CoordinatorConfig(
        replicas=[ReplicaConfig(str(i), "127.0.0.1", 1 + i) for i in range(1, 4)],
        insecure=True, state_dir=str(tmp_path), **config), loop)
    c.started = True
    for link in c.links:
        link.state, link.receives_writes, link.conn = UP, True, Connection()
    try:
        yield c
    finally:
        c.reads.stop()
        c.monitor.stop()
        loop.close()


@pytest.fixture
def coordinator(tmp_path):
    with started_coordinator(tmp_path, read_hedge_ms=HEDGE_MS) as c:
        c.broadcaster.committed_seq = 9  # the replies below saw acknowledged writes only
        yield c


def run(c: Coordinator, seconds: float, talking=()) -> None:
    """Runs the loop for `seconds`; the replicas in `talking` send something every 2 ms (as a
    busy replica's acks would)."""

    async def chatter() -> None:
        while True:
            for link in talking:
                link.rx_bytes += 100
            await asyncio.sleep(0.002)

    async def main() -> None:
        task = asyncio.ensure_future(chatter())
        await asyncio.sleep(seconds)
        task.cancel()

    c.loop.run_until_complete(main())


def reads_sent(c: Coordinator) -> dict[str, list[int]]:
    """Replica id -> the ids of the read frames it was sent."""
    return {link.id: [f["id"] for f in link.conn.transport.frames if f["t"] == "r"]
            for link in c.links}


def read(c: Coordinator, client: Client, cid: int) -> str:
    """Submits a read; returns the id of the replica it went to."""
    c.reads.submit(client, cid, "user", {"username": "ann"}, 0)
    run(c, 0.001)
    return next(rid for rid, ids in reads_sent(c).items() if ids and ids[-1] == max(c.reads.pending))


def link(c: Coordinator, rid: str):
    return next(x for x in c.links if x.id == rid)


def test_a_read_on_a_quiet_replica_goes_to_a_second_one_and_the_first_answer_wins(coordinator):
    c, client = coordinator, Client()
    first = read(c, client, 7)
    (rid,) = c.reads.pending
    run(c, 3 * HEDGE_MS / 1000)
    sent = reads_sent(c)
    second = [r for r, ids in sent.items() if rid in ids and r != first]
    assert len(second) == 1, sent  # hedged once, to one other replica
    assert c.stats.read_hedges == 1
    c.reads.on_reply(link(c, second[0]), {"t": "rr", "id": rid, "s": 5, "r": {"ok": True, "n": 2}})
    c.reads.on_reply(link(c, first), {"t": "rr", "id": rid, "s": 5, "r": {"ok": True, "n": 1}})
    assert client.frames == [{"t": "crr", "id": 7, "s": 5, "r": {"ok": True, "n": 2}}]


def test_a_replica_that_keeps_sending_is_busy_not_hung_and_is_not_hedged(coordinator):
    c, client = coordinator, Client()
    first = read(c, client, 1)
    run(c, 5 * HEDGE_MS / 1000, talking=[link(c, first)])
    assert c.stats.read_hedges == 0
    assert sum(len(ids) for ids in reads_sent(c).values()) == 1


def test_a_replica_hedged_away_from_gets_no_new_reads_until_it_sends_again(coordinator):
    c, client = coordinator, Client()
    quiet = read(c, client, 1)
    run(c, 3 * HEDGE_MS / 1000)
    assert c.stats.read_hedges == 1
    before = len(reads_sent(c)[quiet])
    for cid in range(2, 8):
        assert read(c, client, cid) != quiet
    assert len(reads_sent(c)[quiet]) == before
    run(c, 2 * HEDGE_MS / 1000, talking=[link(c, quiet)])  # it answers again
    assert quiet in {read(c, client, cid) for cid in range(10, 16)}


def test_behind_from_one_of_two_replicas_waits_for_the_other(coordinator):
    c, client = coordinator, Client()
    first = read(c, client, 3)
    (rid,) = c.reads.pending
    run(c, 3 * HEDGE_MS / 1000)
    second = next(r for r, ids in reads_sent(c).items() if rid in ids and r != first)
    c.reads.on_reply(link(c, first), {"t": "rr", "id": rid, "r": {"ok": False, "code": "behind"}})
    assert client.frames == [] and rid in c.reads.pending
    c.reads.on_reply(link(c, second), {"t": "rr", "id": rid, "s": 9, "r": {"ok": True}})
    assert client.frames == [{"t": "crr", "id": 3, "s": 9, "r": {"ok": True}}]


def test_hedging_off(coordinator):
    c, client = coordinator, Client()
    c.config.read_hedge_ms = 0
    read(c, client, 1)
    run(c, 5 * HEDGE_MS / 1000)
    assert c.stats.read_hedges == 0
    assert sum(len(ids) for ids in reads_sent(c).values()) == 1


def test_an_answer_that_saw_unacknowledged_writes_waits_for_their_acknowledgement(coordinator):
    c, client = coordinator, Client()
    first = read(c, client, 4)
    (rid,) = c.reads.pending
    c.reads.on_reply(link(c, first), {"t": "rr", "id": rid, "s": 12, "r": {"ok": True}})
    c.reads.on_committed(11)
    assert client.frames == []
    c.reads.on_committed(12)
    assert client.frames == [{"t": "crr", "id": 4, "s": 12, "r": {"ok": True}}]


def answer_seeing_12(c: Coordinator, client: Client, cid: int, others=lambda links: None):
    """Sends a read, lets `others` set up the replicas it did not go to, then feeds the answer
    of the one it went to, which saw writes up to seq 12. Returns the answer as sent on."""
    first = read(c, client, cid)
    (rid,) = c.reads.pending
    others([x for x in c.links if x.id != first])
    c.reads.on_reply(link(c, first), {"t": "rr", "id": rid, "s": 12, "r": {"ok": True}})
    return {"t": "crr", "id": cid, "s": 12, "r": {"ok": True}}


def not_receiving(links, state: str = UP) -> None:
    for x in links:
        x.receives_writes, x.state = False, state


def test_without_a_majority_answers_are_passed_on_as_they_are(coordinator):
    """Reads stay served from the live replicas when writes cannot be acknowledged at all."""
    c, client = coordinator, Client()
    assert client.frames == [answer_seeing_12(c, client, 5, not_receiving)]


def test_while_replicas_catch_up_an_answer_beyond_what_a_majority_holds_waits(coordinator):
    """Just after a takeover: the replica that receives writes may hold a suffix the others
    lack (the old coordinator never got it acknowledged). Not an outage: the answer waits."""
    c, client = coordinator, Client()
    c.sequencer.last_seq = 12
    answer = answer_seeing_12(c, client, 6, lambda links: not_receiving(links, RECOVERING))
    assert client.frames == []
    for other in c.links:  # caught up: they receive writes and have acked 12
        other.receives_writes, other.state, other.acked_seq = True, UP, 12
    c.reads.expire()
    assert client.frames == [answer]


def test_a_replica_being_rebuilt_counts_for_its_agreed_part(coordinator):
    """After a takeover: one replica receives writes at H, the other fenced one is rebuilt
    (its own log holds the agreed writes up to H): H is on a majority, reads go on."""
    c, client = coordinator, Client()
    c.sequencer.last_seq = 12
    for x in c.links:
        x.acked_seq = 12  # only those receiving writes count by it

    def one_rebuilt_one_down(links):
        not_receiving(links, RECOVERING)
        links[0].valid_seq, links[0].fenced_conn = 12, links[0].conn

    assert client.frames == [answer_seeing_12(c, client, 7, one_rebuilt_one_down)]


def test_a_fenced_coordinator_never_passes_an_answer_beyond_the_acknowledged(coordinator):
    """A newer coordinator may drop what it saw: no outage pass-through once fenced."""
    c, client = coordinator, Client()
    c.fenced = True
    answer_seeing_12(c, client, 8, not_receiving)
    c.reads.expire()
    assert client.frames == []
