"""Prometheus metrics: the coordinator's own port and the web front end's /metrics, scraped
from a real local cluster and parsed with prometheus_client's text parser."""

from __future__ import annotations

import time
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from webfront.web import cluster_access, create_app
from webfront.web import metrics as web_metrics

FAMILIES = (
    "webfront_writes", "webfront_reads", "webfront_write_latency_seconds",
    "webfront_read_latency_seconds", "webfront_replica_state", "webfront_replica_lag",
    "webfront_replica_applied_seq", "webfront_replica_heartbeat_rtt_seconds",
    "webfront_divergence_alarms", "webfront_replica_recovery_bytes",
    "webfront_replica_recovery_seqs", "webfront_replica_recovery_phase",
    "webfront_committed_seq", "webfront_epoch",
)


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """family name -> {(sample name, sorted labels): value}."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        samples = out.setdefault(family.name, {})
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, family: str, sample: str | None = None, **labels: str) -> float:
    return metrics[family][(sample or family, tuple(sorted(labels.items())))]


def scrape_coordinator(cluster) -> dict:
    url = f"http://{cluster.host}:{cluster.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return parse(r.read().decode())


def write_users(cluster, n: int) -> None:
    client = cluster.client()
    try:
        for _ in range(n):
            name = "m" + uuid.uuid4().hex[:12]
            client.write("create_user", {"username": name, "password_hash": b"h"})
            client.read("user", {"username": name})
    finally:
        client.close()


def test_coordinator_metrics_move_with_writes_and_a_killed_replica(cluster):
    before = scrape_coordinator(cluster)
    for family in FAMILIES:
        assert family in before, family
    w0 = value(before, "webfront_writes", "webfront_writes_total")
    write_users(cluster, 10)
    after = scrape_coordinator(cluster)
    assert value(after, "webfront_writes", "webfront_writes_total") >= w0 + 10
    assert value(after, "webfront_reads", "webfront_reads_total") >= 10
    assert value(after, "webfront_write_latency_seconds",
                 "webfront_write_latency_seconds_count") >= w0 + 10
    assert value(after, "webfront_committed_seq") >= 10
    for rid in ("1", "2", "3"):
        assert value(after, "webfront_replica_state", replica=rid, state="up") == 1
        assert value(after, "webfront_replica_applied_seq", replica=rid) >= 0

    cluster.kill_replica(3)
    cluster.wait_state(3, "down")
    write_users(cluster, 5)
    def lagging() -> dict | None:
        m = scrape_coordinator(cluster)
        return m if value(m, "webfront_replica_lag", replica="3") >= 5 else None

    m = wait_for(lagging, what="lag of replica 3")
    assert value(m, "webfront_replica_state", replica="3", state="down") == 1
    assert value(m, "webfront_replica_state", replica="3", state="up") == 0
    assert value(m, "webfront_replica_lag", replica="1") == 0

    cluster.restart_replica(3)
    cluster.wait_state(3, "up", timeout=15)
    m = scrape_coordinator(cluster)
    assert value(m, "webfront_replica_state", replica="3", state="up") == 1
    assert value(m, "webfront_events", "webfront_events_total", event="recovery_start") >= 1


def test_web_metrics_cover_the_app_the_coordinator_and_every_replica(cluster):
    web_metrics._status_cache["at"] = -1e9  # another test's cluster may be cached
    app = create_app({"TESTING": True, "SECRET_KEY": "t-" + uuid.uuid4().hex,
                      "COORDINATOR": cluster.coordinator_address,
                      "CLUSTER_SECRET": cluster.secret()})
    try:
        client = app.test_client()
        client.get("/public")
        m = parse(client.get("/metrics").get_data(as_text=True))
        assert "webfront_http_requests" in m  # the web app's own
        assert value(m, "webfront_coordinator_reachable") == 1
        for family in FAMILIES:
            assert family in m, family
        w0 = value(m, "webfront_writes", "webfront_writes_total")
        write_users(cluster, 5)
        cluster.kill_replica(2)
        cluster.wait_state(2, "down")
        time.sleep(web_metrics.STATUS_CACHE_SECONDS + 0.05)
        m = parse(client.get("/metrics").get_data(as_text=True))
        assert value(m, "webfront_writes", "webfront_writes_total") >= w0 + 5
        assert value(m, "webfront_replica_state", replica="2", state="down") == 1

        # within the cache period the coordinator is not asked again
        calls = []
        real = cluster_access.ClusterClient.status

        def counting(self):
            calls.append(1)
            return real(self)

        cluster_access.ClusterClient.status = counting
        try:
            for _ in range(5):
                client.get("/metrics")
        finally:
            cluster_access.ClusterClient.status = real
        assert len(calls) <= 1
    finally:
        cluster_access.close_all()


def test_web_metrics_when_the_coordinator_is_gone(tmp_path):
    web_metrics._status_cache["at"] = -1e9
    app = create_app({"TESTING": True, "SECRET_KEY": "t-" + uuid.uuid4().hex,
                      "COORDINATOR": "127.0.0.1:1", "CLUSTER_SECRET": b"x",
                      "CLUSTER_TIMEOUT": 0.5})
    try:
        m = parse(app.test_client().get("/metrics").get_data(as_text=True))
        assert value(m, "webfront_coordinator_reachable") == 0
        assert "webfront_http_requests" in m
    finally:
        cluster_access.close_all()
        web_metrics._status_cache["at"] = -1e9
