"""The status object (`webfront status --json`, the `st` frame, the web status page)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from webfront.coordinator import events


def read_pids(run_file: str | None) -> dict[str, int]:
    """Replica id -> pid from a local cluster's run file (empty when there is none)."""
    if not run_file:
        return {}
    try:
        data = json.loads(Path(run_file).read_text())
    except (OSError, ValueError):
        return {}
    pids = {}
    for proc in data.get("processes", []):
        if proc.get("role") == "replica" and proc.get("pid"):
            pids[str(proc.get("id"))] = proc["pid"]
    return pids


def replica_status(link: Any, head_seq: int, pid: int | None, now: float) -> dict[str, Any]:
    state = link.state
    return {
        "id": link.id,
        "address": f"{link.config.host}:{link.config.port}",
        "pid": pid,
        "state": state,
        "applied_seq": max(link.applied_seq, link.acked_seq),
        "epoch": link.epoch,
        "digest": link.digest.hex(),
        "lag": max(0, head_seq - max(link.applied_seq, link.acked_seq)),
        "last_heartbeat_ms": (
            round((now - link.last_heartbeat) * 1000.0, 1) if link.last_heartbeat else None
        ),
        "hb_rtt_ms": (round(link.hb_rtt * 1000.0, 3) if getattr(link, "hb_rtt", None)
                      is not None else None),
        "waiting_state_transfer": link.waiting_transfer,
        "diverged": link.diverged,
        "note": link.note,
        # catch-up in progress: mode (log catch-up / state transfer), phase (log, snapshot,
        # replay), source, snapshot bytes done / total, seqs forwarded from the source's log
        "transfer": dict(link.transfer) if link.transfer else None,
    }


def build_status(coordinator: Any) -> dict[str, Any]:
    c = coordinator
    now = time.monotonic()
    pids = read_pids(c.config.run_file)
    head = c.sequencer.last_seq
    replicas = [replica_status(link, head, pids.get(link.id), now) for link in c.links]
    live = sum(1 for link in c.links if link.receives_writes)
    return {
        "epoch": c.sequencer.epoch,
        "phase": c.phase,
        "committed_seq": c.broadcaster.committed_seq,
        "last_seq": head,
        "policy": c.config.policy,
        "writable": c.started and c.broadcaster.needed() > 0,
        "live": live,
        "majority": c.broadcaster.majority,
        "alarms": list(c.alarms),
        "replicas": replicas,
        # counters and latency buckets (webfront.coordinator.metrics), structured log events
        "metrics": c.stats.snapshot(),
        "events": dict(events.counts),
    }


def format_table(status: dict[str, Any]) -> str:
    """A table for people."""
    lines = [
        (f"epoch {status['epoch']}  committed seq {status['committed_seq']}  "
         f"policy {status['policy']}  writable {'yes' if status.get('writable') else 'NO'}"),
    ]
    header = ("ID", "ADDRESS", "PID", "STATE", "APPLIED", "EPOCH", "LAG", "HB AGE", "DIGEST")
    rows = [header]
    for r in status["replicas"]:
        hb = r.get("last_heartbeat_ms")
        rows.append((
            str(r["id"]), r["address"], str(r.get("pid") or "-"), r["state"],
            str(r["applied_seq"]), str(r["epoch"]), str(r["lag"]),
            "-" if hb is None else f"{hb:.0f} ms", r["digest"][:16],
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in status["replicas"]:
        if r.get("note"):
            lines.append(f"replica {r['id']}: {r['note']}")
        t = r.get("transfer")
        if t:
            lines.append(
                f"replica {r['id']}: {t.get('mode')} from {t.get('source') or '-'}, phase "
                f"{t.get('phase')}, snapshot {t.get('bytes', 0)}/{t.get('bytes_total', 0)} bytes"
                f" (seq {t.get('snapshot_seq') or '-'}), {t.get('seqs', 0)} log records "
                f"forwarded, attempt {t.get('attempt')}")
    for alarm in status.get("alarms", []):
        lines.append(f"ALARM: {alarm}")
    return "\n".join(lines)
