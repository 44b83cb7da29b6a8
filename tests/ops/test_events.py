"""Structured log events (webfront.coordinator.events): the coordinator's log, captured while a
replica is killed and restarted, parses into one event per line with the expected fields."""

from __future__ import annotations

import time

from webfront.coordinator.events import format_event, parse_event


def events_of(cluster) -> list[dict[str, str]]:
    text = (cluster.data_dir / "coordinator.log").read_text(errors="replace")
    return [e for e in map(parse_event, text.splitlines()) if e is not None]


def test_format_and_parse_round_trip():
    line = format_event("replica_state", replica="2", to="down",
                        reason='connection lost ("reset") a=b', seq=7)
    assert line.startswith("event=replica_state replica=2 to=down reason=\"")
    assert parse_event("2026-01-01 coordinator WARNING " + line) == {
        "event": "replica_state", "replica": "2", "to": "down",
        "reason": 'connection lost ("reset") a=b', "seq": "7"}
    assert parse_event("coordinator listening on 127.0.0.1:7000") is None


def test_kill_and_restart_a_replica_logs_each_state_change(cluster):
    client = cluster.client()
    try:
        client.write("create_user", {"username": "evt_alice", "password_hash": b"h"})
        cluster.kill_replica(2)
        cluster.wait_state(2, "down")
        client.write("create_user", {"username": "evt_bob", "password_hash": b"h"})
        cluster.restart_replica(2)
        cluster.wait_state(2, "up", timeout=15)
    finally:
        client.close()
    time.sleep(0.1)  # the log line follows the state change
    events = events_of(cluster)
    names = [e["event"] for e in events]
    assert "epoch_claim" in names and "epoch_begin" in names
    begin = next(e for e in events if e["event"] == "epoch_begin")
    assert int(begin["epoch"]) >= 1 and "after_seq" in begin

    mine = [e for e in events if e.get("replica") == "2"]
    changes = [(e["from"], e["to"]) for e in mine if e["event"] == "replica_state"]
    for e in mine:
        if e["event"] == "replica_state":
            assert e["reason"], e  # every state change says why
    down_at = changes.index(("up", "down"))
    after = changes[down_at + 1:]
    assert after[0] == ("down", "recovering"), changes
    assert after[-1][1] == "up", changes
    starts = [e for e in mine if e["event"] == "recovery_start"]
    ends = [e for e in mine if e["event"] == "recovery_end"]
    assert starts and ends and ends[-1]["ok"] == "1", mine
    assert starts[-1]["mode"] in ("replay", "log catch-up", "state transfer")
