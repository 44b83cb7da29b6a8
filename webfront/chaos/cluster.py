"""The local cluster the nemesis breaks: `webfront.cluster.LocalCluster` with each replica
(optionally) in its own network namespace, gunicorn serving the chaos app
(`webfront.chaos.wsgi`), and the few calls the nemesis and the workload make on it.

Everything about processes (ports, the replica_server binary, spawning, stopping by pid, the run
file, restarts with the same command line) is LocalCluster's; this layer only creates the
namespaces (`webfront.chaos.netns`) before the replicas start and deletes them after they stop.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from webfront import protocol
from webfront.chaos.netns import NetnsLink
from webfront.client import ClusterError
from webfront.cluster import LocalCluster, Placement, Proc


@dataclass
class ChaosCluster(LocalCluster):
    """`start()`, use, `stop()` (also on errors: use it as a context manager). Replica names
    are the cluster's replica ids ("1", "2", ...)."""

    netns: bool = False  # each replica in its own namespace (needs root; for partitions)
    web_workers: int = 3
    fsync: str | None = None  # replica_server --fsync (None: its default)
    links: dict[str, NetnsLink] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fsync:
            self.replica_args = [*self.replica_args, "--fsync", self.fsync]

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        try:
            if self.netns:
                tag = os.getpid() % 250
                for i in range(1, self.replicas + 1):
                    link = self.links[str(i)] = NetnsLink(tag, i - 1)
                    link.create()
                    self.placements[str(i)] = Placement(link.ns_ip, tuple(link.wrap([])))
            super().start(timeout)
            self._wait_web(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        try:
            super().stop(timeout)
        finally:
            for link in self.links.values():
                link.destroy()

    def __enter__(self) -> Self:
        self.start()
        return self

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}/api/v1"

    def _web_proc(self) -> Proc:
        """gunicorn serving the chaos app (raised rate limits, cheap password hashing)."""
        self.web_port = self.web_port or self._free_port()
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", "--workers",
                str(self.web_workers), "--bind", f"{self.host}:{self.web_port}", "--timeout", "30",
                "--graceful-timeout", "2", "--access-logfile", "-", "webfront.chaos.wsgi:app"]
        env = {"WEBFRONT_SECRET_KEY": secrets.token_hex(16),
               "WEBFRONT_COORDINATOR": "{}:{}".format(*self.coordinator_address),
               "WEBFRONT_SECRET_FILE": str(self.secret_file)}
        return Proc("web", "web", argv, f"{self.host}:{self.web_port}", str(self.data_dir),
                    env=env)

    def _wait_web(self, deadline: float) -> None:
        while True:
            web = self.procs["web"]
            if not web.alive():
                raise RuntimeError(f"web exited; see {self.data_dir / 'web.log'}")
            try:
                with urllib.request.urlopen(self.web_url + "/health", timeout=2) as r:
                    body = json.loads(r.read())
                if body.get("writes_possible"):
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("web front end did not come up")
            time.sleep(0.1)

    # ------------------------------------------------------------------ nemesis target

    @property
    def replica_names(self) -> list[str]:
        return [p.id for p in self.replica_procs()]

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        return self.replica_addresses()

    def replica_pid(self, name: str) -> int | None:
        proc = self.replica(name)
        return proc.pid if proc.alive() else None

    def replica_link(self, name: str) -> NetnsLink | None:
        return self.links.get(name)

    def restart_coordinator(self, timeout: float | None = None) -> None:
        """Start the coordinator again without waiting (by default): the nemesis measures how
        long the cluster takes to be writable."""
        super().restart_coordinator(timeout)

    # ------------------------------------------------------------------ status

    def session_read(self, query: str, args: dict[str, Any], min_seq: int) -> tuple[bool, Any]:
        """A session read through the coordinator (min_seq = the session's last write), one
        attempt."""
        sock, _ = protocol.connect(self.coordinator_address, self.secret(), role="client",
                                   timeout=5.0)
        try:
            sock.sendall(protocol.encode_frame({"t": "cr", "id": 1, "q": query, "a": args,
                                                "mode": "session", "min": int(min_seq)}))
            frame = protocol.recv_frame(sock)
            if frame.get("t") == "crr":
                reply = frame.get("r") or {}
                return bool(reply.get("ok")), reply
            return False, frame
        finally:
            sock.close()

    def healthy(self) -> bool:
        """Every replica `up` in the coordinator's view."""
        reps = self.status(timeout=1.0).get("replicas", [])
        return bool(reps) and all(r.get("state") == "up" for r in reps)

    def wait_converged(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until every replica is up at one applied seq; return the last status seen."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except (OSError, protocol.ProtocolError, ClusterError):
                time.sleep(0.2)
                continue
            reps = status.get("replicas", [])
            seqs = {r.get("applied_seq") for r in reps}
            if reps and all(r.get("state") == "up" for r in reps) and len(seqs) == 1:
                return status
            time.sleep(0.2)
        return status
