"""Login rate limits hold across gunicorn workers: the counters live in one file they share."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request

from .conftest import PASSWORD, unique
from .web_process import running_web, worker_pids


def _token_status(url: str, username: str, password: str) -> int:
    req = urllib.request.Request(url + "/api/v1/tokens", method="POST",
                                 data=json.dumps({"username": username, "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@contextlib.contextmanager
def only(worker: int, others: list[int]):
    """Every new connection goes to `worker`: the others are stopped (SIGSTOP) meanwhile."""
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def test_account_limit_counts_attempts_on_every_worker(web_cluster, tmp_path):
    # The default account limit is 5 failed attempts a minute. Three go to one worker and two
    # to the other; with per-worker counters the next one would still be checked (401).
    with running_web(web_cluster, tmp_path, workers=2) as (url, master):
        deadline = time.monotonic() + 15
        while len(workers := worker_pids(master.pid)) < 2:
            assert time.monotonic() < deadline, f"gunicorn workers: {workers}"
            time.sleep(0.05)
        a, b = workers
        name = unique()
        req = urllib.request.Request(url + "/api/v1/users", method="POST",
                                     data=json.dumps({"username": name, "password": PASSWORD}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
        with only(a, [b]):
            assert [_token_status(url, name, "wrong") for _ in range(3)] == [401, 401, 401]
        with only(b, [a]):
            assert [_token_status(url, name, "wrong") for _ in range(3)] == [401, 401, 429]
            assert _token_status(url, name, PASSWORD) == 429  # locked for the window
        with only(a, [b]):
            assert _token_status(url, name, PASSWORD) == 429
            assert _token_status(url, unique(), "wrong") == 401  # other accounts unaffected
