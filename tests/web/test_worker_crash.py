"""A web worker killed with -9 is replaced by gunicorn and the site keeps serving."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

from .web_process import running_web, worker_pids


def test_killed_worker_is_replaced_and_site_keeps_serving(web_cluster, tmp_path):
    with running_web(web_cluster, tmp_path, workers=2) as (url, master):
        deadline = time.monotonic() + 15
        while len(before := worker_pids(master.pid)) < 2:  # the second may still be booting
            assert time.monotonic() < deadline, f"gunicorn workers: {before}"
            time.sleep(0.05)
        os.kill(before[0], signal.SIGKILL)
        # The surviving worker serves meanwhile; every request in this bounded loop succeeds.
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(url + "/api/v1/public", timeout=5) as r:
                assert r.status == 200
                assert "posts" in json.load(r)
            after = worker_pids(master.pid)
            if len(after) == 2 and before[0] not in after:
                break
            assert time.monotonic() < deadline, f"worker not replaced: {after}"
            time.sleep(0.1)
        assert before[1] in after
