"""Find the `replica_server` binary; launch and stop one process and read its output.

`find_binary()` is the one rule for which binary runs (the cluster, the tests, the benchmarks).
`start_replica(...)` returns a ReplicaProcess once the server printed its listening line, so
callers get the real port even with port 0 (tests and benchmarks; the cluster supervisor starts
its processes with their output going to log files, in cluster.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"^replica_server listening id=(\S+) addr=(\S+):(\d+)$")


def find_binary() -> str:
    """`$REPLICA_SERVER_BIN`; else the one beside the running Python (the virtual environment's
    build), on PATH, or shipped inside the package."""
    explicit = os.environ.get("REPLICA_SERVER_BIN")
    if explicit:
        return explicit
    for candidate in (Path(sys.executable).parent / "replica_server",
                      shutil.which("replica_server"),
                      Path(__file__).parent / "bin" / "replica_server"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise FileNotFoundError("replica_server not found: run scripts/bootstrap.sh, or set "
                            "REPLICA_SERVER_BIN")


class ReplicaProcess:
    """A running replica_server. stderr lines are collected in `log_lines` (thread-safe append)."""

    def __init__(self, popen: subprocess.Popen[str], replica_id: str) -> None:
        self.popen = popen
        self.id = replica_id
        self.host = "127.0.0.1"
        self.port = 0
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _pump_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            match = _LISTENING.match(line.strip())
            if match:
                self.id, self.host, self.port = match[1], match[2], int(match[3])
                self._ready.set()

    def _pump_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.log_lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server listens; raise RuntimeError if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.02):
            if self.popen.poll() is not None:
                time.sleep(0.05)  # let the stderr pump catch the last lines
                raise RuntimeError(
                    f"replica_server exited with {self.popen.returncode}: "
                    + " | ".join(self.log_lines[-5:])
                )
            if time.monotonic() > deadline:
                raise RuntimeError("replica_server did not start in time")

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def kill(self) -> int:
        """SIGKILL (a crash, for failure tests)."""
        if self.popen.poll() is None:
            self.popen.kill()
        return self.popen.wait(5.0)

    def logged(self, needle: str) -> bool:
        return any(needle in line for line in list(self.log_lines))


def start_replica(
    binary: str | None = None,
    id: str = "r1",
    data_dir: str | os.PathLike[str] | None = None,
    port: int = 0,
    secret_file: str | os.PathLike[str] | None = None,
    fsync: str = "batch",
    host: str = "127.0.0.1",
    extra_args: list[str] | None = None,
    wait: bool = True,
    ready_timeout: float = 10.0,
) -> ReplicaProcess:
    """Start replica_server; with `wait` return once it listens (RuntimeError if it fails).

    Without `secret_file` it runs with --insecure-no-auth (loopback development mode).
    """
    args = [binary or find_binary(), "--id", id, "--listen", f"{host}:{port}", "--fsync", fsync]
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        args += ["--data-dir", str(data_dir)]
    args += ["--secret-file", str(secret_file)] if secret_file else ["--insecure-no-auth"]
    args += extra_args or []
    popen = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    proc = ReplicaProcess(popen, id)
    if wait:
        try:
            proc.wait_ready(ready_timeout)
        except BaseException:
            proc.kill()
            raise
    return proc
