"""A local cluster the nemesis can break: replicas (optionally each in its own network
namespace), the coordinator and gunicorn, all started here and cleaned up by pid.

Why not `webfront.cluster.LocalCluster`: the nemesis needs replicas inside network namespaces
(for partitions) and a restart with the exact same command line; this small launcher does both.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

from webfront import protocol
from webfront.chaos.netns import NetnsLink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_binary() -> str:
    """replica_server on PATH, beside this interpreter, or inside the package."""
    here = Path(sys.executable).parent / "replica_server"
    for candidate in (shutil.which("replica_server"), str(here),
                      str(Path(__file__).resolve().parent.parent / "replica_server")):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("replica_server not found: run scripts/bootstrap.sh")


class ChaosCluster:
    """`start()`, use, `stop()` (also on errors: use it as a context manager)."""

    def __init__(self, workdir: str | Path, replicas: int = 3, netns: bool = False,
                 web_workers: int = 3, policy: str = "majority", fsync: str | None = None,
                 replica_cmd: list[str] | None = None) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = replicas
        self.use_netns = netns
        self.web_workers = web_workers
        self.policy = policy
        self.fsync = fsync
        self.replica_cmd = replica_cmd  # default: the replica_server binary (tests may swap it)
        self.secret_file = self.dir / "secret"
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        os.chmod(self.secret_file, 0o600)
        self.secret = protocol.read_secret(self.secret_file)
        self.replica_names = [f"r{i + 1}" for i in range(replicas)]
        self.addresses: dict[str, tuple[str, int]] = {}
        self.links: dict[str, NetnsLink] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.coordinator_address = ("127.0.0.1", free_port())
        self.web_port = free_port()
        self.tag = os.getpid() % 250

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api/v1"

    def start(self, timeout: float = 30.0) -> None:
        for i, name in enumerate(self.replica_names):
            host = "127.0.0.1"
            if self.use_netns:
                link = NetnsLink(self.tag, i)
                link.create()
                self.links[name] = link
                host = link.ns_ip
            self.addresses[name] = (host, free_port())
            (self.dir / name).mkdir(exist_ok=True)
            self._spawn_replica(name)
        for name in self.replica_names:
            self._wait_replica(name, time.monotonic() + timeout)
        self._spawn_coordinator()
        _wait_port(self.coordinator_address, time.monotonic() + timeout, self.procs["coordinator"])
        self._spawn_web()
        self._wait_web(time.monotonic() + timeout)
        self._write_run_file()

    def stop(self) -> None:
        for name, proc in list(self.procs.items()):
            _terminate(proc)
        self.procs.clear()
        for link in self.links.values():
            link.destroy()

    # ------------------------------------------------------------------ processes

    def _log(self, name: str):
        return open(self.dir / f"{name}.log", "ab")

    def replica_command(self, name: str) -> list[str]:
        host, port = self.addresses[name]
        argv = [*(self.replica_cmd or [replica_binary()]), "--id", name, "--listen", f"{host}:{port}",
                "--data-dir", str(self.dir / name), "--secret-file", str(self.secret_file)]
        if self.fsync:
            argv += ["--fsync", self.fsync]
        link = self.links.get(name)
        return link.wrap(argv) if link else argv

    def _spawn_replica(self, name: str) -> None:
        with self._log(name) as log:
            self.procs[name] = subprocess.Popen(self.replica_command(name), stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_replica(self, name: str, deadline: float) -> None:
        while True:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"replica {name} exited with {proc.returncode}; see "
                                   f"{self.dir / (name + '.log')}")
            try:
                sock, _ = protocol.connect(self.addresses[name], self.secret, role="client",
                                           timeout=1.0)
                sock.close()
                return
            except (OSError, protocol.ProtocolError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {name} did not come up") from None
                time.sleep(0.05)

    def _spawn_coordinator(self) -> None:
        host, port = self.coordinator_address
        argv = [sys.executable, "-c", ("import sys; from webfront.coordinator import main; "
                "sys.exit(main())"), "--listen", f"{host}:{port}", "--policy", self.policy,
                "--secret-file", str(self.secret_file), "--state-dir",
                str(self.dir / "coordinator"), "--run-file", str(self.dir / "run.json")]
        for name in self.replica_names:
            h, p = self.addresses[name]
            argv += ["--replica", f"{name}={h}:{p}"]
        (self.dir / "coordinator").mkdir(exist_ok=True)
        with self._log("coordinator") as log:
            self.procs["coordinator"] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                         start_new_session=True)

    def _spawn_web(self) -> None:
        env = dict(os.environ, WEBFRONT_SECRET_KEY=secrets.token_hex(16),
                   WEBFRONT_COORDINATOR="{}:{}".format(*self.coordinator_address),
                   WEBFRONT_SECRET_FILE=str(self.secret_file))
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn) if gunicorn.exists() else "gunicorn", "--workers",
                str(self.web_workers), "--bind", f"127.0.0.1:{self.web_port}", "--timeout", "30",
                "--graceful-timeout", "2", "--access-logfile", "-",
                "webfront.chaos.wsgi:app"]
        with self._log("web") as log:
            self.procs["web"] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                 env=env, start_new_session=True)

    def _wait_web(self, deadline: float) -> None:
        while True:
            if self.procs["web"].poll() is not None:
                raise RuntimeError(f"web exited; see {self.dir / 'web.log'}")
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

    def _write_run_file(self) -> None:
        processes = [{"role": "replica", "id": n, "pid": self.procs[n].pid,
                      "address": "{}:{}".format(*self.addresses[n])} for n in self.replica_names
                     if n in self.procs]
        processes += [{"role": r, "pid": self.procs[r].pid} for r in ("coordinator", "web")
                      if r in self.procs]
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps({"processes": processes}, indent=1))
        tmp.replace(self.dir / "run.json")

    # ------------------------------------------------------------------ nemesis target

    def replica_pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def restart_replica(self, name: str) -> None:
        old = self.procs.get(name)
        if old is not None:
            _terminate(old, grace=0.0)
        self._spawn_replica(name)
        self._write_run_file()

    def kill_coordinator(self) -> int:
        proc = self.procs["coordinator"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        return proc.pid

    def restart_coordinator(self) -> None:
        _terminate(self.procs["coordinator"], grace=0.0)
        self._spawn_coordinator()
        self._write_run_file()

    def replica_link(self, name: str) -> NetnsLink | None:
        return self.links.get(name)

    # ------------------------------------------------------------------ status

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        sock, _ = protocol.connect(self.coordinator_address, self.secret, role="client",
                                   timeout=timeout)
        try:
            sock.sendall(protocol.encode_frame({"t": "st", "id": 1}))
            while True:
                frame = protocol.recv_frame(sock)
                if frame.get("t") == "str":
                    return frame["status"]
                if frame.get("t") == "err":
                    raise RuntimeError(f"status refused: {frame}")
        finally:
            sock.close()

    def session_read(self, query: str, args: dict[str, Any], min_seq: int) -> tuple[bool, Any]:
        """A session read through the coordinator (min_seq = the session's last write)."""
        sock, _ = protocol.connect(self.coordinator_address, self.secret, role="client",
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
            except (OSError, protocol.ProtocolError, RuntimeError):
                time.sleep(0.2)
                continue
            reps = status.get("replicas", [])
            seqs = {r.get("applied_seq") for r in reps}
            if reps and all(r.get("state") == "up" for r in reps) and len(seqs) == 1:
                return status
            time.sleep(0.2)
        return status


def _wait_port(address: tuple[str, int], deadline: float, proc: subprocess.Popen) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[:3]} exited with {proc.returncode}")
        try:
            socket.create_connection(address, timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {address}") from None
            time.sleep(0.05)


def _terminate(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop one process we started, by its pid: SIGCONT (it may be paused), SIGTERM, SIGKILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
