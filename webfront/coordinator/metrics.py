"""Prometheus metrics (thin for now): gauges read from the status object on scrape."""

from __future__ import annotations

from typing import Any


def start_metrics(coordinator: Any, port: int) -> None:
    from prometheus_client import REGISTRY, start_http_server
    from prometheus_client.core import GaugeMetricFamily

    class Collector:
        def collect(self):  # noqa: ANN201 - prometheus_client's protocol
            status = coordinator.status()
            yield GaugeMetricFamily("webfront_committed_seq", "Highest answered seq",
                                    value=status["committed_seq"])
            yield GaugeMetricFamily("webfront_epoch", "Coordinator epoch", value=status["epoch"])
            lag = GaugeMetricFamily("webfront_replica_lag", "Writes behind", labels=["replica"])
            up = GaugeMetricFamily("webfront_replica_up", "1 when up", labels=["replica"])
            for r in status["replicas"]:
                lag.add_metric([r["id"]], r["lag"])
                up.add_metric([r["id"]], 1 if r["state"] == "up" else 0)
            yield lag
            yield up

    REGISTRY.register(Collector())
    start_http_server(port, addr="127.0.0.1")
