"""Prometheus metrics at /metrics: requests by endpoint and status, and their latency.

Under gunicorn each worker counts its own requests; set PROMETHEUS_MULTIPROC_DIR (serve.py
does) to aggregate all workers.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

_metrics: dict[str, Counter | Histogram] = {}


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
        return Response(data, mimetype=CONTENT_TYPE_LATEST)
