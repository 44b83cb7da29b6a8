"""`webfront web` (gunicorn) as a real subprocess for tests, stopped by the pid it was given."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_web(cluster, workdir: Path, admins: str = "", workers: int = 2,
                env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start gunicorn against `cluster`'s coordinator (with `env` added to the environment);
    yield (base URL, the master process)."""
    from webfront.cluster import free_port

    port = free_port()
    key_file = workdir / "session.key"
    key_file.write_text(os.urandom(32).hex())
    argv = [sys.executable, "-m", "webfront.cli", "web", "--bind", f"127.0.0.1:{port}",
            "--coordinator", "{}:{}".format(*cluster.coordinator_address),
            "--workers", str(workers), "--session-key-file", str(key_file)]
    if admins:
        argv += ["--admins", admins]
    if cluster.secret_file:
        argv += ["--secret-file", str(cluster.secret_file)]
    with open(workdir / "web.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("webfront web did not start:\n" +
                                   (workdir / "web.log").read_text()[-3000:])
            time.sleep(0.1)
        yield url, proc
    finally:
        # gunicorn's workers are in the session its master leads.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/api/v1/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def worker_pids(master_pid: int) -> list[int]:
    """gunicorn's worker processes: the children of its master."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(p) for p in children.read_text().split()]
