"""Divergence with real processes (docs/failures.md, "Divergence"): a replica whose state
differs from the others' at the same seq is found by a digest check, raises the DIVERGENCE
alarm, is taken out and rebuilt by state transfer, and then holds the cluster's data.

Two ways to make a real replica_server diverge, without touching the product:

- a returning replica whose data dir holds another cluster's history, as long as this one's
  (the returning-replica check, `Monitor.admit`);
- a running replica that applies a write only it got: the test speaks to it as a second
  coordinator would, before the real coordinator's write of that seq, which then arrives as a
  duplicate (the heartbeat check, `Monitor.on_heartbeat_reply`).

Each test builds its own clusters (tests/conftest.py), bounds every wait, and stops every
process by pid.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import msgpack
import pytest

from tests.conftest import post_texts, wait_for
from tests.durability.load import wait_converged
from webfront.cluster import LocalCluster
from webfront.coordinator.events import parse_event
from webfront.coordinator.status import format_table
from webfront.protocol import connect, encode_frame, recv_frame

pytestmark = pytest.mark.timeout(60)


# Helpers ------------------------------------------------------------------------------------

def write_history(cluster: LocalCluster, username: str, posts: list[str]) -> int:
    """Create username and its posts through the coordinator; returns the last seq."""
    with cluster.client() as client:
        r = client.write("create_user", {"username": username, "password_hash": b"h"})
        assert r.reply["ok"], r.reply
        for text in posts:
            r = client.write("create_post", {"actor": username, "text": text})
            assert r.reply["ok"], r.reply
    return r.seq


def all_events(cluster: LocalCluster) -> list[dict]:
    """Every event in the coordinator's log, in order."""
    text = (cluster.data_dir / "coordinator.log").read_text(errors="replace")
    return [ev for ev in map(parse_event, text.splitlines()) if ev]


def events(cluster: LocalCluster, name: str, replica: str | None = None) -> list[dict]:
    """The coordinator's log events called name (about replica, if given), in log order."""
    return [ev for ev in all_events(cluster) if ev.get("event") == name
            and (replica is None or ev.get("replica") == replica)]


def divergence_alarm(cluster: LocalCluster, rid: str, seq: int) -> str | None:
    """The status's alarm saying replica rid diverged at seq, if it is there."""
    needle = f"replica {rid} diverged at seq {seq}:"
    return next((a for a in cluster.status()["alarms"] if needle in a), None)


def divergences(cluster: LocalCluster, since_last_start: bool = False
                ) -> list[tuple[str, str, str]]:
    """(replica, seq, check) of every divergence event the coordinator logged, in order (one
    divergence is one event: a heartbeat of a replica being rebuilt is not checked again);
    with `since_last_start`, only the current coordinator's (after the last epoch claim)."""
    evs = all_events(cluster)
    if since_last_start:
        claims = [i for i, ev in enumerate(evs) if ev.get("event") == "epoch_claim"]
        evs = evs[claims[-1]:] if claims else evs
    return [(ev["replica"], ev["seq"], ev["what"]) for ev in evs
            if ev.get("event") == "divergence"]


def replica_entry(status: dict, rid: str) -> dict:
    return next(r for r in status["replicas"] if r["id"] == rid)


def assert_rebuilt_by_state_transfer(cluster: LocalCluster, rid: str) -> dict:
    """Replica rid, taken out as diverged, was rebuilt by state transfer and is up again, at
    the head seq with the same digest as every other replica. Returns the converged status."""
    wait_for(lambda: events(cluster, "state_transfer_end", rid), timeout=15,
             what=f"state transfer to replica {rid}")
    status = wait_converged(cluster, timeout=15)
    assert not replica_entry(status, rid)["diverged"]
    names = [ev["event"] + ("=" + ev.get("to", "") if ev["event"] == "replica_state" else "")
             for ev in all_events(cluster) if ev.get("replica") == rid]
    diverged = names.index("divergence")
    transfer = names.index("state_transfer_start", diverged)
    installed = names.index("state_transfer_end", transfer)
    assert "replica_state=up" in names[installed:], names
    starts = events(cluster, "recovery_start", rid)
    assert any(s.get("mode") == "state transfer" and "diverged" in s.get("reason", "")
               for s in starts), starts
    return status


def assert_one_more_write_reaches_all(cluster: LocalCluster, username: str) -> None:
    text = f"after-{uuid.uuid4().hex[:6]}"
    with cluster.client() as client:
        r = client.write("create_post", {"actor": username, "text": text})
    assert r.reply["ok"], r.reply
    status = wait_converged(cluster, timeout=10)
    assert status["last_seq"] == r.seq
    for proc in cluster.replica_procs():
        assert post_texts(cluster, proc.id, username)[0] == text, proc.id


# A returning replica whose data differs ------------------------------------------------------

def test_returning_replica_with_other_data_is_found_diverged_and_rebuilt(cluster_factory):
    a = cluster_factory()  # 3 replicas, majority
    a.kill_replica(3)
    a.wait_state(3, "down", timeout=5)
    a_posts = ["a-one", "a-two", "a-three"]
    a_seq = write_history(a, "alice", a_posts)

    # Another cluster writes a different history of exactly as many writes, in the same epoch.
    b = cluster_factory(replicas=1)
    b_seq = write_history(b, "mallory", ["m-one", "m-two", "m-three"])
    a_status, b_status = a.status(), b.status()
    assert a_seq == b_seq == a_status["last_seq"] == b_status["last_seq"]
    assert a_status["committed_seq"] == b_status["committed_seq"] == a_seq
    assert a_status["epoch"] == b_status["epoch"] == 1
    b_digest = b_status["replicas"][0]["digest"]
    a_digest = replica_entry(a_status, "1")["digest"]
    assert b_digest != a_digest  # same seq, other history: the chains differ
    b.stop()

    # A data dir records no replica id (storage/Layout.h: epoch, snapshots, log/), so A's
    # replica 3 starts from B's replica's files as if they were its own.
    a3, b1 = Path(a.replica(3).data_dir), Path(b.replica(1).data_dir)
    shutil.rmtree(a3)
    shutil.copytree(b1, a3)
    a.restart_replica(3)
    # Its epoch file says B's coordinator took epoch 1, so it refuses A's (the same epoch for
    # another claim): A's coordinator stops as fenced, and the next one, started as a
    # supervisor would, takes epoch 2 from every replica (docs/protocol.md, "Epoch").
    wait_for(lambda: not a.procs["coordinator"].alive(), timeout=10, what="A's coordinator fenced")
    assert "was taken by another coordinator" in (a.data_dir / "coordinator.log").read_text()
    a.start_coordinator()

    # It recovers B's state from the copied files, then the coordinator refuses it.
    def recovered_line():
        log = (a.data_dir / "replica-3.log").read_text(errors="replace")
        lines = [ln for ln in log.splitlines() if "event=recovered" in ln]
        return lines[-1] if len(lines) >= 2 else None  # first start, then this one

    assert f"applied={a_seq}" in wait_for(recovered_line, timeout=10, what="replica 3 start")
    alarm = wait_for(lambda: divergence_alarm(a, "3", a_seq), timeout=10,
                     what="divergence alarm for replica 3")
    assert "digest at its applied seq differs" in alarm
    assert f"ALARM: {alarm}" in format_table(a.status())  # what `webfront status` prints
    assert ("3", str(a_seq), "digest at its applied seq differs") in divergences(a)

    status = assert_rebuilt_by_state_transfer(a, "3")
    assert len({r["digest"] for r in status["replicas"]}) == 1
    assert replica_entry(status, "3")["digest"] != b_digest
    assert {r["applied_seq"] for r in status["replicas"]} == {a_seq}
    assert post_texts(a, "3", "alice") == a_posts[::-1]
    assert post_texts(a, "3", "mallory") == []  # B's history is gone
    # Once by the coordinator that rebuilt it (the fenced one may have seen it too, in a
    # heartbeat answered before its epoch was refused).
    assert [(rid, at) for rid, at, _ in divergences(a, since_last_start=True)] == \
        [("3", str(a_seq))]

    assert_one_more_write_reaches_all(a, "alice")


# A running replica that applies a write the others did not ----------------------------------

def rogue_write(cluster: LocalCluster, rid: str, epoch: int, seq: int, op: str,
                args: dict) -> dict:
    """Send replica rid one write frame as a second coordinator of `epoch` would (handshake
    with the cluster's secret, protocol 1: one `a` frame per write); return its ack."""
    sock, ready = connect(cluster.replica_addresses()[rid], cluster.secret(), "coordinator",
                          timeout=3.0)
    try:
        assert ready["s"] == seq - 1 and ready["e"] == epoch, ready
        sock.sendall(encode_frame({"t": "w", "e": epoch, "s": seq,
                                   "ts": time.time_ns() // 1000, "rid": uuid.uuid4().hex,
                                   "op": op, "a": args}))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                body = recv_frame(sock)
            except TimeoutError:
                break
            if body.get("t") == "a" and body.get("s") == seq:
                return body
            assert body.get("t") != "err", body
        raise AssertionError(f"replica {rid} did not ack the rogue write {seq}")
    finally:
        sock.close()


def test_replica_that_applied_a_write_the_others_did_not_is_found_by_heartbeat(
        cluster_factory):
    c = cluster_factory()
    seq = write_history(c, "alice", ["one", "two"])
    status = wait_converged(c, timeout=10)
    epoch = status["epoch"]

    # Replica 3 applies a write for the next seq that the coordinator never sequenced.
    ack = rogue_write(c, "3", epoch, seq + 1, "create_post",
                      {"actor": "alice", "text": "rogue"})
    assert ack.get("rb") and not ack.get("dup")
    assert msgpack.unpackb(ack["rb"], raw=False)["ok"]
    assert post_texts(c, "3", "alice")[0] == "rogue"
    assert post_texts(c, "1", "alice")[0] == "two"

    # The coordinator's own write of that seq: replicas 1 and 2 apply it, replica 3 answers it
    # as a duplicate (no reply, its current digest): the client gets 1 and 2's reply.
    with c.client() as client:
        r = client.write("create_post", {"actor": "alice", "text": "honest"})
    assert r.seq == seq + 1
    assert r.reply["ok"] and r.reply["post"]["text"] == "honest"

    # Its next heartbeat reports seq+1 with a digest other than the one acked for seq+1.
    alarm = wait_for(lambda: divergence_alarm(c, "3", seq + 1), timeout=5,
                     what="divergence alarm for replica 3")
    assert "heartbeat digest differs" in alarm
    assert f"ALARM: {alarm}" in format_table(c.status())
    assert ("3", str(seq + 1), "heartbeat digest differs") in divergences(c)

    status = assert_rebuilt_by_state_transfer(c, "3")
    assert {r["applied_seq"] for r in status["replicas"]} == {seq + 1}
    assert post_texts(c, "3", "alice") == ["honest", "two", "one"]
    assert [(rid, at) for rid, at, _ in divergences(c)] == [("3", str(seq + 1))]  # once

    assert_one_more_write_reaches_all(c, "alice")


@pytest.mark.parametrize("policy", ["majority", "first"])
def test_odd_replica_whose_acks_come_first_does_not_outvote_the_majority(cluster_factory,
                                                                           policy):
    """Replica 1 applied a rogue write at seq+1; replicas 2 and 3 are paused (suspect, still
    sent writes) while the coordinator sequences two writes, so replica 1's acks come first:
    a dup for seq+1 (not counted: nothing says it applied this write) and an ack of seq+2 on
    its own chain. When 2 and 3 run again their digests agree with each other: that settles
    the seq, replica 1 is the odd one, rebuilt from them, and both acknowledged writes stay.
    (Before, the first ack was the reference: 2 and 3 were taken out as diverged, rebuilt from
    replica 1, and the acknowledged write at seq+1 was lost everywhere. Under `first` that
    held until the settling count was split from the answering one: there replica 1's ack
    answers honest2 at once, but no longer decides the digest.)"""
    c = cluster_factory(policy=policy, coordinator_args=["--miss-threshold", "1000"])
    seq = write_history(c, "alice", ["one"])
    epoch = wait_converged(c, timeout=10)["epoch"]
    rogue_write(c, "1", epoch, seq + 1, "create_post", {"actor": "alice", "text": "rogue"})
    results: dict[str, object] = {}

    def write(text: str) -> None:
        with c.client(timeout=8.0) as client:
            try:
                r = client.write("create_post", {"actor": "alice", "text": text})
                results[text] = (r.seq, r.reply["post"]["text"])
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                results[text] = repr(exc)

    for rid in (2, 3):
        c.signal_replica(rid, signal.SIGSTOP)
    writers = []
    try:
        for text in ("honest1", "honest2"):
            writers.append(threading.Thread(target=write, args=(text,)))
            writers[-1].start()
            time.sleep(0.3)  # in order: honest1 gets seq+1, honest2 seq+2
    finally:
        for rid in (2, 3):
            c.signal_replica(rid, signal.SIGCONT)
    for t in writers:
        t.join(15)
    assert results == {"honest1": (seq + 1, "honest1"), "honest2": (seq + 2, "honest2")}, results

    alarm = wait_for(lambda: next((a for a in c.status()["alarms"] if "replica 1 " in a), None),
                     timeout=5, what="divergence alarm for replica 1")
    assert f"diverged at seq {seq + 2}" in alarm or f"diverged at seq {seq + 1}" in alarm, alarm
    status = assert_rebuilt_by_state_transfer(c, "1")
    assert {r["applied_seq"] for r in status["replicas"]} == {seq + 2}
    for rid in "123":
        assert post_texts(c, rid, "alice") == ["honest2", "honest1", "one"], rid
    assert [rid for rid, _, _ in divergences(c)] == ["1"]  # only the odd one, once
    assert_one_more_write_reaches_all(c, "alice")
