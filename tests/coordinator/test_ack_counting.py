"""The coordinator's ack counting (coordinator/acks.py: AckCounter.batch, credit_lost), driven
in-process: a real Coordinator object, its acks fed as a replica's `as` frames would bring them.

The process-level behaviour is covered by the cluster tests; these pin the rules one by one,
including the ones a healthy cluster never shows (a digest that differs, a stale ack)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from webfront.coordinator.broadcaster import UP, PendingWrite
from webfront.coordinator.config import CoordinatorConfig, ReplicaConfig
from webfront.coordinator.core import Coordinator


class Client:
    """Stands in for a client connection: records what the coordinator answers."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send_frame(self, body: dict) -> None:
        self.frames.append(body)

    def send_error(self, cid, code: str, msg: str, retry: bool = False) -> None:
        self.frames.append({"t": "err", "id": cid, "code": code, **({"retry": True} if retry
                                                                    else {})})


@contextmanager
def counting_coordinator(tmp_path, policy: str = "majority",
                         replicas: int = 3) -> Iterator[Coordinator]:
    """A sequencing Coordinator whose replicas are all up (no connections: acks are fed)."""
    loop = asyncio.new_event_loop()
    config = CoordinatorConfig(
        replicas=[ReplicaConfig(str(i), "127.0.0.1", 1 + i) for i in range(1, replicas + 1)],
        insecure=True, state_dir=str(tmp_path), policy=policy)
    c = Coordinator(config, loop)
    c.started = True
    for link in c.links:
        link.state, link.receives_writes = UP, True
    try:
        yield c
    finally:
        c.monitor.stop()
        tasks = asyncio.all_tasks(loop)  # the reconnect of a replica taken out
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks))
        loop.close()


@pytest.fixture
def coordinator(tmp_path, request):
    with counting_coordinator(tmp_path, getattr(request, "param", "majority")) as c:
        yield c


def pending(c: Coordinator, seq: int, client: Client) -> PendingWrite:
    """A write of seq as Coordinator.client_write makes it, under the coordinator's policy."""
    if c.config.policy == "first":
        p = PendingWrite(seq, f"r{seq}", [(client, seq)], 1, c.broadcaster.settle_count())
    else:
        p = PendingWrite(seq, f"r{seq}", [(client, seq)], needed=c.broadcaster.majority)
    c.broadcaster.pending[seq] = p
    return p


def take_down(c: Coordinator, link) -> None:
    link.receives_writes = False  # what Monitor.take_down does to it, then:
    c.on_link_down(link)


def digest(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_a_write_is_answered_by_the_majority_ack_with_the_first_reply(coordinator):
    c, client = coordinator, Client()
    p = pending(c, 1, client)
    a, b, third = c.links
    assert c.acks.batch(a, [1], [digest(1)], [b"first"]) is True
    assert client.frames == [] and p.acks == 1
    assert c.acks.batch(b, [1], [digest(1)], [b"second"]) is True
    assert client.frames == [{"t": "cwr", "id": 1, "s": 1, "rb": b"first"}]
    assert c.acks.batch(third, [1], [digest(1)], [b"third"]) is True
    assert len(client.frames) == 1 and p.acks == 3  # answered once
    assert (a.acked_seq, a.digest) == (1, digest(1))


def test_stale_acks_are_not_counted_again(coordinator):
    c, client = coordinator, Client()
    p = pending(c, 2, client)
    a = c.links[0]
    assert c.acks.batch(a, [1, 2], [digest(1), digest(2)], [b"x", b"y"]) is True
    assert c.acks.batch(a, [2], [digest(2)], [b"y"]) is False
    assert p.acks == 1 and client.frames == []


def test_a_dup_ack_is_not_counted(coordinator):
    """A dup says the replica applied seq before, with its current digest, not seq's: nothing
    says it applied this write, so it cannot make a majority."""
    c, client = coordinator, Client()
    p = pending(c, 3, client)
    a, b, third = c.links
    assert c.acks.batch(a, [3], [digest(7)], [None]) is True  # it got further all the same
    c.acks.batch(b, [3], [digest(3)], [b"reply"])
    assert client.frames == [] and p.acks == 1 and a.acked_seq == 3
    c.acks.batch(third, [3], [digest(3)], [b"reply"])
    assert client.frames == [{"t": "cwr", "id": 3, "s": 3, "rb": b"reply"}]


def test_an_odd_replica_that_acks_first_loses_to_the_majority(coordinator):
    """The first ack is not the reference: the digest that gets the policy's count is. The
    client gets the majority's reply and only the odd replica is taken out."""
    c, client = coordinator, Client()
    pending(c, 5, client)
    odd, a, b = c.links
    assert c.acks.batch(odd, [5], [digest(99)], [b"odd reply"]) is True
    assert c.acks.batch(a, [5], [digest(5)], [b"reply"]) is True
    assert client.frames == []
    assert c.acks.batch(b, [5], [digest(5)], [b"reply"]) is True
    assert client.frames == [{"t": "cwr", "id": 5, "s": 5, "rb": b"reply"}]
    assert c.history.digests[5] == digest(5)
    run_soon(c)
    assert odd.diverged and not a.diverged and not b.diverged
    assert any("replica 1 diverged at seq 5" in alarm for alarm in c.alarms)


def test_a_rival_after_the_answer_is_the_odd_one(coordinator):
    c, client = coordinator, Client()
    pending(c, 6, client)
    a, rival, b = c.links
    c.acks.batch(a, [6], [digest(6)], [b"reply"])
    assert c.acks.batch(rival, [6], [digest(66)], [b"other"]) is True  # undecided: 1 against 1
    assert not rival.diverged
    c.acks.batch(b, [6], [digest(6)], [b"reply"])
    assert client.frames == [{"t": "cwr", "id": 6, "s": 6, "rb": b"reply"}]
    run_soon(c)
    assert rival.diverged and not a.diverged and not b.diverged


@pytest.mark.parametrize("answered_before", [False, True])
def test_a_different_digest_takes_the_replica_out(coordinator, answered_before):
    c, client = coordinator, Client()
    pending(c, 4, client)
    a, b, odd = c.links
    c.acks.batch(a, [4], [digest(4)], [b"r"])
    c.acks.batch(b, [4], [digest(4)], [b"r"])
    if answered_before:  # answered and collected: checked against the agreed digest
        del c.broadcaster.pending[4]
    assert c.acks.batch(odd, [4], [digest(99)], [b"r"]) is None
    assert odd.diverged and not odd.receives_writes and odd.state == "down"
    assert any("diverged at seq 4" in alarm for alarm in c.alarms)
    assert not a.diverged and a.receives_writes


def test_a_returning_replica_is_credited_for_acks_lost_with_its_connection(coordinator):
    """It applied seqs 6 and 7 but its acks never came; it was counted up to 5. Its digest
    at 7 matched (Monitor.admit checks that first), so both now count, once."""
    c, client = coordinator, Client()
    for seq in (6, 7):
        pending(c, seq, client)
        c.acks.batch(c.links[0], [seq], [digest(seq)], [b"r%d" % seq])
    back = c.links[1]
    back.counted_seq = 5
    c.acks.credit_lost(back, 7, digest(7))
    assert [f["s"] for f in client.frames] == [6, 7]
    assert back.counted_seq == 7
    c.acks.credit_lost(back, 7, digest(7))
    assert c.broadcaster.pending[6].acks == 2  # not twice


def test_a_replica_that_lost_its_log_tail_is_not_counted_twice(coordinator):
    """Counted up to 10, it came back at 8 (fsync never: its last writes were in the page
    cache of a crashed host) and acks 9 and 10 again after the replay: they are checked but a
    write it had acked before does not get its ack twice."""
    c, client = coordinator, Client()
    p = pending(c, 10, client)
    link, other, _ = c.links
    c.acks.batch(link, [9, 10], [digest(9), digest(10)], [b"r9", b"r10"])
    assert p.acks == 1
    link.counted_seq, link.acked_seq = 10, 8  # Monitor.take_down, then Monitor.admit at 8
    c.acks.credit_lost(link, 8, digest(8))
    assert c.acks.batch(link, [9, 10], [digest(9), digest(10)], [b"r9", b"r10"]) is True
    assert p.acks == 1 and client.frames == [] and link.acked_seq == 10
    assert c.acks.batch(link, [11], [digest(11)], [b"r11"]) is True  # beyond: counted as usual
    c.acks.batch(other, [10], [digest(10)], [b"r10"])
    assert p.acks == 2 and [f["s"] for f in client.frames] == [10]


def test_a_replica_back_ahead_of_every_ack_is_credited_when_the_first_ack_agrees(coordinator):
    """It came back at 12 before any other replica acked 12: nothing to compare its digest
    with yet. The first ack of 12 brings the same digest, so its lost acks count then."""
    c, client = coordinator, Client()
    for seq in (11, 12):
        pending(c, seq, client)
    back, first, _ = c.links
    back.counted_seq = 10
    c.acks.credit_lost(back, 12, digest(12))
    assert client.frames == [] and back.counted_seq == 10
    c.acks.batch(first, [11, 12], [digest(11), digest(12)], [b"r11", b"r12"])
    run_soon(c)
    assert [f["s"] for f in client.frames] == [11, 12] and back.counted_seq == 12


def test_a_replica_back_ahead_of_every_ack_with_another_digest_is_not_credited(coordinator):
    """One digest against one decides nothing: no credit, and no one is taken out by it (the
    heartbeats compare each replica with the digest the acks agree on)."""
    c, client = coordinator, Client()
    p = pending(c, 12, client)
    back, first, _ = c.links
    c.acks.credit_lost(back, 12, digest(99))
    c.acks.batch(first, [12], [digest(12)], [b"r12"])
    run_soon(c)
    assert p.acks == 1 and client.frames == [] and not back.diverged


# Policy `first`: answered on one ack, settled by a majority ---------------------------------

first_policy = pytest.mark.parametrize("coordinator", ["first"], indirect=True)


@first_policy
def test_under_first_an_odd_replica_acking_first_answers_but_loses_to_the_majority(coordinator):
    """The client gets the first ack's reply (the policy), but the digest recorded for the seq
    is the one two replicas agree on: the odd replica is taken out, not the healthy ones, and
    a retry of the request gets the healthy reply."""
    c, client = coordinator, Client()
    pending(c, 5, client)
    c.sequencer.begin("r5", c.broadcaster.pending[5])
    odd, a, b = c.links
    assert c.acks.batch(odd, [5], [digest(99)], [b"odd reply"]) is True
    assert client.frames == [{"t": "cwr", "id": 5, "s": 5, "rb": b"odd reply"}]
    assert 5 not in c.history.digests  # answered, not settled
    assert c.acks.batch(a, [5], [digest(5)], [b"reply"]) is True  # one against one
    run_soon(c)
    assert not (odd.diverged or a.diverged) and 5 not in c.history.digests
    assert c.acks.batch(b, [5], [digest(5)], [b"reply"]) is True
    assert c.history.digests[5] == digest(5)
    assert c.sequencer.result_of("r5") == (5, b"reply")
    run_soon(c)
    assert odd.diverged and not a.diverged and not b.diverged
    assert len(client.frames) == 1  # answered once


@first_policy
def test_under_first_the_second_agreeing_ack_settles_and_a_later_rival_is_taken_out(
        coordinator):
    c, client = coordinator, Client()
    p = pending(c, 6, client)
    a, b, odd = c.links
    c.acks.batch(a, [6], [digest(6)], [b"reply"])
    assert p.done and not p.settled
    c.acks.batch(b, [6], [digest(6)], [b"reply"])
    assert p.settled and c.history.digests[6] == digest(6)
    assert c.acks.batch(odd, [6], [digest(66)], [b"other"]) is None
    assert odd.diverged and not a.diverged and not b.diverged


@first_policy
def test_under_first_a_split_of_every_live_replica_settles_on_the_answered_digest(coordinator):
    """With one replica down, two acks that disagree are all there will be: nothing outvotes
    the other, so the reply the client got stands and the other replica is taken out (left
    open, the two would go on diverging unseen)."""
    c, client = coordinator, Client()
    a, rival, gone = c.links
    take_down(c, gone)
    p = pending(c, 7, client)
    assert p.settle == 2
    c.acks.batch(a, [7], [digest(7)], [b"reply"])
    c.acks.batch(rival, [7], [digest(77)], [b"other"])
    assert p.settled and c.history.digests[7] == digest(7)
    run_soon(c)
    assert rival.diverged and not a.diverged


@first_policy
def test_under_first_a_replica_down_before_acking_lowers_what_settles(coordinator):
    c, client = coordinator, Client()
    a, b, gone = c.links
    p = pending(c, 8, client)
    c.acks.batch(a, [8], [digest(8)], [b"reply"])
    take_down(c, b)
    assert not p.settled  # 2 of the 2 left: the other ack may still come
    take_down(c, gone)
    assert p.settled and c.history.digests[8] == digest(8)
    assert client.frames == [{"t": "cwr", "id": 8, "s": 8, "rb": b"reply"}]


def run_soon(c: Coordinator) -> None:
    """Run the callbacks the coordinator scheduled with call_soon."""
    c.loop.run_until_complete(asyncio.sleep(0))


# A member removed with writes in flight: its acks no longer count -----------------------------

@pytest.mark.parametrize("members", [4, 2])
def test_a_removed_replicas_ack_does_not_answer_a_write(tmp_path, members):
    """4 -> 3: a write acked by the removed replica and one other has one holder among the
    three left, whose majority is two. 2 -> 1: acked by the removed one only. Either would be
    answered if the removed replica's ack still counted, and a takeover could then drop it."""
    with counting_coordinator(tmp_path, replicas=members) as c:
        client = Client()
        p = pending(c, 1, client)
        c.sequencer.last_seq = 1
        removed, *others = c.links
        c.acks.batch(removed, [1], [digest(1)], [b"ok"])
        if members == 4:
            c.acks.batch(others[0], [1], [digest(1)], [b"ok"])
        c.loop.run_until_complete(c.remove_member_safely(removed.id))
        assert client.frames == [] and p.acks == members // 2 - 1
        c.acks.batch(others[-1], [1], [digest(1)], [b"ok"])  # one more member holds it
        assert [f["t"] for f in client.frames] == ["cwr"]


def test_a_fenced_coordinator_changes_no_membership(tmp_path):
    """In the moment between being fenced and exiting, it must not store a change."""
    from webfront.coordinator.membership import MembershipUnsafe

    with counting_coordinator(tmp_path) as c:
        c.fenced = True
        with pytest.raises(MembershipUnsafe, match="not sequencing"):
            c.loop.run_until_complete(c.remove_member_safely("3"))
        assert [x.id for x in c.links] == ["1", "2", "3"]
