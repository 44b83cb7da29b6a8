"""Prometheus metrics at /metrics: requests by endpoint and status, and their latency, then
the coordinator's and every replica's figures gathered through the coordinator.

Under gunicorn each worker counts its own requests; set PROMETHEUS_MULTIPROC_DIR (serve.py
does) to aggregate all workers. The cluster part comes from the coordinator's status object
(one `st` frame), cached for `STATUS_CACHE_SECONDS` per worker so that scrapes cost the
coordinator at most one status per second per worker; the families are the same as on the
coordinator's own metrics port (webfront.coordinator.metrics).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from webfront.coordinator.metrics import StatusCollector

from .cluster_access import get_cluster

_metrics: dict[str, Counter | Histogram] = {}

STATUS_CACHE_SECONDS = 1.0
_status_lock = threading.Lock()
_status_cache: dict[str, Any] = {"at": -1e9, "status": None, "error": None}


def cluster_status() -> dict[str, Any]:
    """The coordinator's status, at most STATUS_CACHE_SECONDS old (raises when unreachable,
    and keeps raising for the cache period without asking again)."""
    with _status_lock:
        now = time.monotonic()
        if now - _status_cache["at"] >= STATUS_CACHE_SECONDS:
            try:
                _status_cache.update(status=get_cluster().status(), error=None)
            except Exception as exc:  # noqa: BLE001 - reported as reachable 0
                _status_cache.update(status=None, error=exc)
            _status_cache["at"] = time.monotonic()
        if _status_cache["error"] is not None:
            raise _status_cache["error"]
        return _status_cache["status"]


def enable_multiprocess(directory: str) -> None:
    """Share metrics between gunicorn workers through files in `directory`.

    Must run before the first request metric is created (serve.main calls it before forking).
    """
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()


def _get() -> dict[str, Counter | Histogram]:
    # Created on first use, not at import, so that serve.main can switch to multiprocess mode.
    if not _metrics:
        _metrics["requests"] = Counter("webfront_http_requests_total", "HTTP requests.",
                                       ["method", "endpoint", "status"])
        _metrics["latency"] = Histogram(
            "webfront_http_request_seconds", "HTTP request latency.", ["method", "endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    return _metrics


def init_app(app: Flask) -> None:
    metrics = _get()

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.pop("request_started", None)
        endpoint = request.endpoint or "unknown"
        metrics["requests"].labels(request.method, endpoint, str(response.status_code)).inc()
        if started is not None:
            metrics["latency"].labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            data = generate_latest(registry)
        else:
            data = generate_latest()
        if current_app.config.get("METRICS_CLUSTER", True):
            cluster = CollectorRegistry()
            cluster.register(StatusCollector(cluster_status))
            data += generate_latest(cluster)
        return Response(data, content_type=CONTENT_TYPE_LATEST)  # it carries its charset
