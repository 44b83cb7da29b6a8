"""Prometheus metrics for the coordinator and, through it, every replica.

Hot path rule: a write or read only bumps plain attributes of `Stats` (an int and one bucket of
a `Buckets` histogram: no lock, no label lookup; everything runs on the event loop thread).
Everything else is read from what the coordinator already tracks (heartbeats carry each
replica's applied seq and digest) when the status object is built. `families()` turns a status
object into metric families at scrape time; the coordinator's own port (`--metrics-port`) and
the web front end's `/metrics` (which gets the status from the coordinator's `st` frame) both
use it, so the two expose the same names. The list is in docs/operations.md, "Metrics".
"""

from __future__ import annotations

import concurrent.futures
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

# Latency bucket upper bounds in seconds (coordinator-side: from the request's arrival to the
# reply being queued).
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1.0, 2.5, 5.0)
STATES = ("up", "suspect", "down", "recovering")
PHASES = ("starting", "snapshot", "log", "replay")


class Buckets:
    """A histogram kept as plain counts (not cumulative); index len(bounds) is +Inf."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}


class Stats:
    """The coordinator's counters, bumped on the hot path (event loop thread only)."""

    def __init__(self) -> None:
        self.writes = 0  # answered to a client
        self.write_errors = 0  # refused or failed (no majority, fenced, starting)
        self.reads = 0
        self.read_errors = 0  # no live replica, timed out
        self.read_hedges = 0  # reads also sent to a second replica (reads.py)
        self.write_latency = Buckets()
        self.read_latency = Buckets()

    def snapshot(self) -> dict[str, Any]:
        return {"writes": self.writes, "write_errors": self.write_errors, "reads": self.reads,
                "read_errors": self.read_errors, "read_hedges": self.read_hedges,
                "write_latency": self.write_latency.snapshot(),
                "read_latency": self.read_latency.snapshot()}


def _histogram(name: str, doc: str, data: dict[str, Any]) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    total, buckets = 0, []
    for bound, count in zip(data["bounds"], data["counts"]):
        total += count
        buckets.append((repr(float(bound)), total))
    total += data["counts"][-1]
    buckets.append(("+Inf", total))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=data["sum"])


def families(status: dict[str, Any]) -> Iterator[Any]:
    """Metric families from a status object (webfront.coordinator.status.build_status)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, doc: str, value: float) -> Any:
        return GaugeMetricFamily(name, doc, value=value)

    yield gauge("webfront_epoch", "The coordinator's epoch.", status["epoch"])
    yield gauge("webfront_committed_seq", "Highest seq answered to a client.",
                status["committed_seq"])
    yield gauge("webfront_last_seq", "Highest seq handed out by the sequencer.",
                status.get("last_seq", 0))
    yield gauge("webfront_writable", "1 when writes are accepted (a majority is live).",
                1 if status.get("writable") else 0)
    yield gauge("webfront_live_replicas", "Replicas receiving writes.", status.get("live", 0))
    yield gauge("webfront_majority", "Replicas needed for a majority.",
                status.get("majority", 0))
    stats = status.get("metrics")
    if stats:
        yield CounterMetricFamily("webfront_writes", "Writes answered to clients.",
                                  value=stats["writes"])
        yield CounterMetricFamily("webfront_write_errors",
                                  "Writes refused or failed (no majority, fenced, starting).",
                                  value=stats["write_errors"])
        yield CounterMetricFamily("webfront_reads", "Reads answered to clients.",
                                  value=stats["reads"])
        yield CounterMetricFamily("webfront_read_errors", "Reads failed (no replica, timeout).",
                                  value=stats["read_errors"])
        yield CounterMetricFamily("webfront_read_hedges",
                                  "Reads sent to a second replica after read_hedge_ms unanswered.",
                                  value=stats["read_hedges"])
        yield _histogram("webfront_write_latency_seconds",
                         "Write latency at the coordinator: request in to reply out.",
                         stats["write_latency"])
        yield _histogram("webfront_read_latency_seconds",
                         "Read latency at the coordinator: request in to reply out.",
                         stats["read_latency"])
    events = status.get("events") or {}
    yield CounterMetricFamily("webfront_divergence_alarms",
                              "Divergence alarms raised by this coordinator.",
                              value=events.get("divergence", 0))
    yield CounterMetricFamily("webfront_fencing_alarms",
                              "Times this coordinator found itself fenced.",
                              value=events.get("fenced", 0))
    ev = CounterMetricFamily("webfront_events", "Structured log events by name.",
                             labels=["event"])
    for name, count in sorted(events.items()):
        ev.add_metric([name], count)
    yield ev

    r_labels = ["replica"]
    state = GaugeMetricFamily("webfront_replica_state",
                              "1 for the replica's current state, else 0.",
                              labels=["replica", "state"])
    up = GaugeMetricFamily("webfront_replica_up", "1 when the replica is up.", labels=r_labels)
    lag = GaugeMetricFamily("webfront_replica_lag", "Seqs behind the sequencer.",
                            labels=r_labels)
    applied = GaugeMetricFamily("webfront_replica_applied_seq", "Highest seq applied/acked.",
                                labels=r_labels)
    epoch = GaugeMetricFamily("webfront_replica_epoch", "Epoch the replica has stored.",
                              labels=r_labels)
    rtt = GaugeMetricFamily("webfront_replica_heartbeat_rtt_seconds",
                            "Round trip of the last answered heartbeat.", labels=r_labels)
    age = GaugeMetricFamily("webfront_replica_heartbeat_age_seconds",
                            "Time since the last heartbeat reply.", labels=r_labels)
    diverged = GaugeMetricFamily("webfront_replica_diverged",
                                 "1 when taken out for divergence.", labels=r_labels)
    rec_bytes = GaugeMetricFamily("webfront_replica_recovery_bytes",
                                  "Snapshot bytes installed by the current state transfer.",
                                  labels=r_labels)
    rec_size = GaugeMetricFamily("webfront_replica_recovery_bytes_expected",
                                 "Snapshot size of the current state transfer.",
                                 labels=r_labels)
    rec_seqs = GaugeMetricFamily("webfront_replica_recovery_seqs",
                                 "Log records forwarded by the current catch-up.",
                                 labels=r_labels)
    rec_phase = GaugeMetricFamily("webfront_replica_recovery_phase",
                                  "1 for the current catch-up phase, else 0.",
                                  labels=["replica", "phase"])
    for r in status["replicas"]:
        rid = str(r["id"])
        for s in STATES:
            state.add_metric([rid, s], 1 if r["state"] == s else 0)
        up.add_metric([rid], 1 if r["state"] == "up" else 0)
        lag.add_metric([rid], r["lag"])
        applied.add_metric([rid], r["applied_seq"])
        epoch.add_metric([rid], r["epoch"])
        if r.get("hb_rtt_ms") is not None:
            rtt.add_metric([rid], r["hb_rtt_ms"] / 1000.0)
        if r.get("last_heartbeat_ms") is not None:
            age.add_metric([rid], r["last_heartbeat_ms"] / 1000.0)
        diverged.add_metric([rid], 1 if r.get("diverged") else 0)
        t = r.get("transfer") or {}
        rec_bytes.add_metric([rid], t.get("bytes", 0))
        rec_size.add_metric([rid], t.get("bytes_total", 0))
        rec_seqs.add_metric([rid], t.get("seqs", 0))
        for p in PHASES:
            rec_phase.add_metric([rid, p], 1 if t.get("phase") == p else 0)
    yield from (state, up, lag, applied, epoch, rtt, age, diverged, rec_bytes, rec_size,
                rec_seqs, rec_phase)


class StatusCollector:
    """A prometheus_client collector that builds the families from `get_status()` on scrape.
    `get_status` may raise: then only `webfront_coordinator_reachable 0` is exported."""

    def __init__(self, get_status: Any) -> None:
        self.get_status = get_status

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            status = self.get_status()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the cluster is down
            status = None
        yield GaugeMetricFamily("webfront_coordinator_reachable",
                                "1 when the coordinator answered the status request.",
                                value=0 if status is None else 1)
        if status is not None:
            yield from families(status)


def start_metrics(coordinator: Any, port: int, host: str = "127.0.0.1") -> None:
    """Serve the coordinator's metrics on http://host:port/metrics (its own registry)."""
    from prometheus_client import CollectorRegistry, start_http_server

    loop = coordinator.loop

    def status_from_loop() -> dict[str, Any]:
        # The HTTP server runs in its own thread: build the status on the event loop thread,
        # which owns every object it reads.
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def build() -> None:
            try:
                fut.set_result(coordinator.status())
            except Exception as exc:  # noqa: BLE001 - handed to the scraping thread
                fut.set_exception(exc)

        loop.call_soon_threadsafe(build)
        return fut.result(timeout=2.0)

    registry = CollectorRegistry()
    registry.register(StatusCollector(status_from_loop))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # writes matter more than metrics: keep running, say so loudly
        from webfront.coordinator.events import event

        event("metrics_unavailable", "error", address=f"{host}:{port}", error=str(exc))
