"""A local cluster supervisor: N replica_server processes, the coordinator and (when the web
package exists) the web front end, on loopback ports, each with its own data dir.

Used by `webfront cluster up`, by the tests (tests/conftest.py) and, through a thin subclass,
by the chaos harness (webfront/chaos/cluster.py). Every process is started in its own session and
stopped by its pid, never by name. The run file DIR/cluster.json lists each process's pid, role,
address, data dir and command line. A replica may be placed elsewhere (`Placement`: another
listen host and a command prefix such as `ip netns exec NS`); its command line is kept, so a
restart runs exactly the same command.

Started again on a data dir a previous run left, it brings back the same membership: the
coordinator's stored membership (coordinator/members.json, which `webfront replica new` and
`webfront replicas add/remove` change) names the replicas, the run file their data dirs, and
each replica listens on its recorded port again. A recorded port that another process took
meanwhile is replaced by a free one and the stored membership is rewritten to match before the
coordinator starts (the coordinator trusts the stored membership over its flags).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webfront.replica_process import find_binary

RUN_FILE = "cluster.json"
_ROOT = str(Path(__file__).resolve().parent.parent)  # on the PYTHONPATH of every process


def _standby_argv(coordinator: Proc) -> list[str]:
    return [*coordinator.argv, "--standby"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (with SO_REUSEADDR, as replica_server and
    gunicorn bind: connections of a previous run in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError:
            return False
        return True


def describe_exit(code: int | None) -> str:
    """A Popen return code in words: 'exited with 2', 'killed by signal 9 (SIGKILL)'."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with {code}"


def log_tail(path: Path, lines: int = 5) -> list[str]:
    """The last non-empty lines of a log file ([] if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def why_exited(path: Path) -> str:
    """The line of a process's log that says why it stopped: its last `event=fatal` line, else
    its last line ('' if the log is empty)."""
    tail = log_tail(path, 20)
    return next((line for line in reversed(tail) if "event=fatal" in line), tail[-1] if tail
                else "")


def find_replica_server() -> str | None:
    """The replica_server binary (replica_process.find_binary's rule), or None."""
    try:
        return find_binary()
    except FileNotFoundError:
        return None


def ensure_secret(path: Path) -> Path:
    """Create a random cluster secret (mode 0600) unless the file exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path


@dataclass(frozen=True)
class Placement:
    """Where one replica runs: the host it listens on and a command prefix that puts it there
    (e.g. `ip netns exec NS`). The prefix must exec the command, so that the pid we hold is the
    replica's own and signals reach it."""

    host: str
    prefix: tuple[str, ...] = ()


@dataclass
class Proc:
    role: str  # replica | coordinator | standby | web
    id: str
    argv: list[str]
    address: str
    data_dir: str
    popen: subprocess.Popen | None = None
    pid: int | None = None
    external: bool = False  # started by `webfront replica start`, adopted by the supervisor
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's environment
    spawned_env: dict[str, str] | None = None  # the whole environment it was started with

    def alive(self) -> bool:
        if self.external and self.pid:
            try:
                os.kill(self.pid, 0)
                return Path(f"/proc/{self.pid}/stat").read_text().split()[2] != "Z"
            except (OSError, IndexError):
                return False
        return self.popen is not None and self.popen.poll() is None

    def record(self) -> dict[str, Any]:
        return {"role": self.role, "id": self.id, "pid": self.pid if self.alive() else None,
                "address": self.address, "data_dir": self.data_dir, "argv": self.argv}


@dataclass
class LocalCluster:
    data_dir: Path
    replicas: int = 3
    policy: str = "majority"
    host: str = "127.0.0.1"
    web_port: int | None = None  # None: no web front end
    replica_cmd: list[str] | None = None  # default: the replica_server binary
    insecure: bool = False
    coordinator_args: list[str] = field(default_factory=list)
    replica_args: list[str] = field(default_factory=list)  # extra replica_server flags
    procs: dict[str, Proc] = field(default_factory=dict)
    coordinator_port: int = 0
    metrics_port: int = 0  # the coordinator's Prometheus port (0: pick a free one)
    secret_file: Path | None = None
    placements: dict[str, Placement] = field(default_factory=dict)  # by replica id; default:
    # `host`, no prefix. Ports are picked free on `host` (a fresh network namespace has all free).
    standby: bool = False  # keep a warm coordinator (`--standby`) for start_coordinator
    # replicas whose recorded port was taken at start: id -> (old address, new address)
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)
    _ports: set[int] = field(default_factory=set, init=False, repr=False)  # every port handed out

    # Lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start every process and return once the cluster is writable with every replica up
        and the web front end (if any) listens; on a data dir a previous run left, with that
        run's membership and ports (see the module doc). Raises RuntimeError or TimeoutError
        (everything stopped again) with a message naming what did not come up."""
        deadline = time.monotonic() + timeout
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.insecure:
            self.secret_file = ensure_secret(self.data_dir / "secret")
        self._ports.update(p for p in (self.web_port, self.metrics_port) if p)  # given ones
        if self.web_port is not None and _web_available() and \
                not port_free(self.host, self.web_port):
            raise RuntimeError(f"web port {self.host}:{self.web_port} is in use by another "
                               "process: stop it or choose another port (--web-port)")
        cdir = self.data_dir / "coordinator"
        cdir.mkdir(exist_ok=True)
        previous = self._previous_run()
        recorded = self._recorded_replicas(cdir, previous)
        if recorded:
            self.replicas = len(recorded)
            for rid, address, rdir in recorded:
                rdir.mkdir(parents=True, exist_ok=True)
                self._add_replica_proc(rid, rdir, _port_of(address))
            self._store_moved_members(cdir)
        else:
            for i in range(1, self.replicas + 1):
                rdir = self.data_dir / f"replica-{i}"
                rdir.mkdir(exist_ok=True)
                self._add_replica_proc(str(i), rdir)
        self.coordinator_port = self._port(_port_of(previous.get("coordinator")))
        self.metrics_port = self.metrics_port or self._port(
            _port_of((previous.get("coordinator_metrics") or "").removesuffix("/metrics")))
        argv = [sys.executable, "-m", "webfront.cli", "coordinator",
                "--listen", f"{self.host}:{self.coordinator_port}", "--policy", self.policy,
                "--state-dir", str(cdir), "--run-file", str(self.data_dir / RUN_FILE),
                "--metrics-port", str(self.metrics_port)]
        argv += self._auth_flags()
        for proc in self.replica_procs():
            argv += ["--replica", f"{proc.id}={proc.address}"]
        argv += self.coordinator_args
        self.procs["coordinator"] = Proc("coordinator", "coordinator", argv,
                                         f"{self.host}:{self.coordinator_port}", str(cdir))
        web = self._web_proc()
        if web is not None:
            self.procs["web"] = web
        try:
            for proc in self.procs.values():
                self._spawn(proc)
            self.wait_writable(max(0.0, deadline - time.monotonic()), starting=True)
            if "web" in self.procs:
                self.wait_web_listening(max(5.0, deadline - time.monotonic()))
            self._start_standby()
        except BaseException:
            self.stop()
            raise

    def _previous_run(self) -> dict[str, Any]:
        """The run file a previous run on this data dir left ({} if none or unreadable)."""
        try:
            data = json.loads((self.data_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _recorded_replicas(self, cdir: Path,
                           previous: dict[str, Any]) -> list[tuple[str, str, Path]]:
        """(id, address, data dir) of each replica a previous run on this data dir left: the
        coordinator's stored membership if there is one (it includes replicas added at
        runtime and leaves out removed ones), else the run file's replicas; [] on a new dir."""
        from webfront.coordinator.membership import MembershipStore
        from webfront.coordinator.state_files import StateDirError

        entries = {str(p.get("id")): p for p in previous.get("processes", [])
                   if isinstance(p, dict) and p.get("role") == "replica"}
        store = MembershipStore(str(cdir))
        if store.path is not None and store.path.exists():
            try:
                members = [(m.id, f"{m.host}:{m.port}") for m in store.load([])]
            except StateDirError as exc:
                raise RuntimeError(str(exc)) from exc
        else:
            members = [(rid, str(p.get("address", ""))) for rid, p in entries.items()]
        return [(rid, address, Path(entries.get(rid, {}).get("data_dir")
                                    or self.data_dir / f"replica-{rid}"))
                for rid, address in members]

    def _store_moved_members(self, cdir: Path) -> None:
        """Rewrite the stored membership with the replicas' new addresses, if any moved (the
        coordinator is not running yet: it reads the file when it starts)."""
        from webfront.coordinator.config import ReplicaConfig
        from webfront.coordinator.membership import MembershipStore

        store = MembershipStore(str(cdir))
        if not self.moved or store.path is None or not store.path.exists():
            return
        members = []
        for proc in self.replica_procs():
            host, _, port = proc.address.rpartition(":")
            members.append(ReplicaConfig(proc.id, host.strip("[]"), int(port)))
        store.save(members)

    def _web_proc(self) -> Proc | None:
        """The web front end's process (not yet started), or None for none. Subclasses may
        serve another app."""
        if self.web_port is None or not _web_available():
            return None
        argv = [sys.executable, "-m", "webfront.cli", "web",
                "--bind", f"{self.host}:{self.web_port}",
                "--coordinator", f"{self.host}:{self.coordinator_port}",
                "--data-dir", str(self.data_dir / "web")]
        argv += ["--secret-file", str(self.secret_file)] if self.secret_file else []
        return Proc("web", "web", argv, f"{self.host}:{self.web_port}", str(self.data_dir))

    def _add_replica_proc(self, rid: str, rdir: Path, port: int | None = None) -> Proc:
        """Register (not start) replica rid on `port` (a previous run's) if it is free, else on
        a free port (noted in `moved`), at its placement, with data dir rdir; its command line
        is fixed here and reused by every restart."""
        place = self.placements.get(rid, Placement(self.host))
        address = f"{place.host}:{self._port(port)}"
        if port and not address.endswith(f":{port}"):
            self.moved[rid] = (f"{place.host}:{port}", address)
        argv = [*place.prefix, *self._replica_cmd(), "--id", rid, "--listen", address,
                "--data-dir", str(rdir)]
        argv += self._auth_flags() + self.replica_args
        proc = Proc("replica", rid, argv, address, str(rdir))
        self.procs[f"replica-{rid}"] = proc
        return proc

    def _port(self, wanted: int | None) -> int:
        """wanted if it is free (and not handed out already), else a free port."""
        if wanted and wanted not in self._ports and port_free(self.host, wanted):
            self._ports.add(wanted)
            return wanted
        return self._free_port()

    def _free_port(self) -> int:
        """A free port on host that this cluster has not handed out before: every port is
        picked before its process binds it, and meanwhile the kernel may offer it again."""
        while True:
            port = free_port(self.host)
            if port not in self._ports:
                self._ports.add(port)
                return port

    def _replica_cmd(self) -> list[str]:
        if self.replica_cmd is not None:
            return list(self.replica_cmd)
        binary = find_replica_server()
        if binary is None:
            raise RuntimeError("replica_server not found: run scripts/bootstrap.sh")
        return [binary]

    def _auth_flags(self) -> list[str]:
        if self.insecure:
            return ["--insecure-no-auth"]
        return ["--secret-file", str(self.secret_file)]

    def _env(self, proc: Proc) -> dict[str, str]:
        env = dict(os.environ, **proc.env)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
        return env

    def log_path(self, proc: Proc) -> Path:
        """Where proc's output goes: DIR/replica-N.log, DIR/coordinator.log, DIR/web.log."""
        return self.data_dir / (f"replica-{proc.id}.log" if proc.role == "replica"
                                else f"{proc.id}.log")

    def _spawn(self, proc: Proc, stdin: int = subprocess.DEVNULL) -> None:
        log = open(self.log_path(proc), "ab")
        proc.spawned_env = self._env(proc)
        proc.popen = subprocess.Popen(proc.argv, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=stdin, start_new_session=True,
                                      cwd=_ROOT, env=proc.spawned_env)
        log.close()
        proc.pid = proc.popen.pid
        self.write_run_file()

    def write_run_file(self) -> None:
        data = {
            "coordinator": f"{self.host}:{self.coordinator_port}",
            "coordinator_metrics": f"http://{self.host}:{self.metrics_port}/metrics",
            "web": f"http://{self.host}:{self.web_port}/" if "web" in self.procs else None,
            "secret_file": str(self.secret_file) if self.secret_file else None,
            "policy": self.policy,
            "supervisor_pid": os.getpid(),
            "processes": [p.record() for p in self.procs.values()],
        }
        tmp = self.data_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.data_dir / RUN_FILE)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every process by pid (web, coordinator, then replicas), SIGKILL stragglers."""
        order = sorted(self.procs.values(), key=lambda p: {
            "web": 0, "coordinator": 1, "standby": 1, "replica": 2}[p.role])
        for proc in order:
            if proc.alive():
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in order:
            if proc.external:
                while proc.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if proc.alive():
                    os.kill(proc.pid, signal.SIGKILL)
                continue
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(5)
        if self.data_dir.exists():
            self.write_run_file()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Individual processes ---------------------------------------------------------------------

    def replica_procs(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.role == "replica"]

    def replica_addresses(self) -> dict[str, tuple[str, int]]:
        """Each replica's (host, port), by id."""
        out = {}
        for proc in self.replica_procs():
            host, _, port = proc.address.rpartition(":")
            out[proc.id] = (host, int(port))
        return out

    def replica(self, rid: str | int) -> Proc:
        return self.procs[f"replica-{rid}"]

    def pids(self) -> dict[str, int | None]:
        return {name: (p.pid if p.alive() else None) for name, p in self.procs.items()}

    def signal_replica(self, rid: str | int, sig: int) -> None:
        proc = self.replica(rid)
        if proc.alive():
            os.kill(proc.pid, sig)

    def _kill(self, proc: Proc) -> int | None:
        """kill -9 proc by its pid if it runs, and reap it; returns the pid it had."""
        pid = proc.pid
        if proc.alive():
            os.kill(pid, signal.SIGKILL)
            if proc.popen is not None:
                proc.popen.wait(5)
        return pid

    def kill_replica(self, rid: str | int) -> None:
        """kill -9, as a crash."""
        self._kill(self.replica(rid))
        self.write_run_file()

    def adopt_replica(self, rid: str | int, pid: int) -> None:
        """Take over a replica started outside this supervisor (stopped with the rest)."""
        proc = self.replica(rid)
        proc.popen, proc.pid, proc.external = None, pid, True

    def stop_replica(self, rid: str | int) -> None:
        proc = self.replica(rid)
        if proc.alive():
            os.kill(proc.pid, signal.SIGTERM)
            proc.popen.wait(5)
        self.write_run_file()

    def restart_replica(self, rid: str | int) -> None:
        """Start a stopped or dead replica again with the same command line and data dir (a
        running one is killed first)."""
        proc = self.replica(rid)
        self._kill(proc)
        proc.external = False
        self._spawn(proc)

    def new_replica(self, rid: str | None = None) -> Proc:
        """Start a replica with a fresh, empty data dir (not yet a member: add it with
        `client().add_replica(proc.address)`)."""
        if rid is None:
            numbers = [int(p.id) for p in self.replica_procs() if p.id.isdigit()]
            rid = str(max(numbers, default=0) + 1)
        rdir = self.data_dir / f"replica-{rid}"
        if rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir()
        proc = self._add_replica_proc(rid, rdir)
        self._spawn(proc)
        return proc

    def kill_coordinator(self) -> int | None:
        """kill -9 the coordinator (a crash); returns its pid."""
        return self._kill(self.procs["coordinator"])

    def start_coordinator(self) -> None:
        """Start the coordinator again with the same flags and ports (without waiting): the
        warm standby, if there is one started the same way (command line and environment),
        else a new process."""
        coordinator = self.procs["coordinator"]
        standby = self.procs.pop("standby", None)
        if standby is not None and not self._promote(standby, coordinator):
            self._kill(standby)
            self._spawn(coordinator)
        elif standby is None:
            self._spawn(coordinator)
        self._start_standby()

    def _start_standby(self) -> None:
        if self.standby:
            coordinator = self.procs["coordinator"]
            proc = Proc("standby", coordinator.id, _standby_argv(coordinator),
                        coordinator.address, coordinator.data_dir, env=dict(coordinator.env))
            self.procs["standby"] = proc
            self._spawn(proc, stdin=subprocess.PIPE)

    def ensure_standby(self) -> None:
        """Replace a standby that died while waiting (the supervisor calls this often)."""
        proc = self.procs.get("standby")
        if self.standby and proc is not None and not proc.alive():  # alive() reaped it
            self._start_standby()

    def _promote(self, standby: Proc, coordinator: Proc) -> bool:
        """Tell the standby to run as the coordinator; False if it cannot be (gone, or started
        with another command line or environment than a new coordinator would be now)."""
        if not standby.alive() or standby.argv != _standby_argv(coordinator) \
                or standby.spawned_env != self._env(coordinator):
            return False
        try:
            standby.popen.stdin.write(b"go\n")
            standby.popen.stdin.close()
        except OSError:  # it died just now
            return False
        # From now on it is the coordinator; a later cold start runs the plain command line.
        standby.role, standby.argv = "coordinator", coordinator.argv
        self.procs["coordinator"] = standby
        self.write_run_file()
        return True

    def kill_all(self) -> None:
        """kill -9 every replica and the coordinator at once (web front end untouched)."""
        procs = [p for p in self.procs.values() if p.role in ("replica", "coordinator")]
        for proc in procs:
            if proc.alive():
                os.kill(proc.pid, signal.SIGKILL)
        for proc in procs:
            if proc.popen is not None:
                proc.popen.wait(5)

    def restart_coordinator(self, timeout: float | None = 20.0) -> None:
        """Stop the coordinator (SIGTERM) and start it again with the same flags; then wait
        until the cluster is writable, unless timeout is None."""
        proc = self.procs["coordinator"]
        if proc.alive():
            os.kill(proc.pid, signal.SIGTERM)
            proc.popen.wait(5)
        self.start_coordinator()
        if timeout is not None:
            self.wait_writable(timeout)

    # Addresses and clients -------------------------------------------------------------------

    @property
    def coordinator_address(self) -> tuple[str, int]:
        return (self.host, self.coordinator_port)

    def secret(self) -> bytes:
        from webfront.protocol import read_secret

        return read_secret(self.secret_file) if self.secret_file else b""

    def client(self, timeout: float = 3.0):
        from webfront.client import ClusterClient

        return ClusterClient(self.coordinator_address, self.secret(), timeout=timeout)

    def status(self, timeout: float = 3.0) -> dict:
        client = self.client(timeout)
        try:
            return client.status()
        finally:
            client.close()

    def wait_writable(self, timeout: float = 20.0, starting: bool = False) -> None:
        """Poll the status until the cluster is writable with every replica up. Raises
        RuntimeError at once if the coordinator or web front end exits (with `starting`, a
        replica too), TimeoutError naming the replicas that are not up."""
        deadline = time.monotonic() + timeout
        watched = ("coordinator", "web", "replica") if starting else ("coordinator", "web")
        last: Any = None
        while time.monotonic() < deadline:
            for proc in self.procs.values():
                if proc.popen is not None and proc.popen.poll() is not None and \
                        proc.role in watched:
                    raise RuntimeError(self.exit_report(proc))
            try:
                status = self.status()
                last = status
                if status.get("writable") and all(r["state"] == "up"
                                                  for r in status["replicas"]):
                    return
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"cluster not writable after {timeout:.0f} s: "
                           f"{self._not_writable_reason(last)}")

    def exit_report(self, proc: Proc, label: str | None = None) -> str:
        """'replica 2 (pid P) exited with 1: <why, from its log>; log: PATH' for a process that
        ended (killed by a signal: no reason from the log, it had no say)."""
        name = label or (f"replica {proc.id}" if proc.role == "replica" else proc.role)
        code = proc.popen.returncode if proc.popen is not None else None
        why = why_exited(self.log_path(proc)) if code is not None and code > 0 else ""
        return (f"{name} (pid {proc.pid}) {describe_exit(code)}" + (f": {why}" if why else "")
                + f"; log: {self.log_path(proc)}")

    def _not_writable_reason(self, last: Any) -> str:
        """Which replicas are not up and why, from the last status (or the coordinator's
        error when it never answered)."""
        if not isinstance(last, dict):
            return f"the coordinator at {self.host}:{self.coordinator_port} did not answer " \
                   f"({last}); see {self.data_dir / 'coordinator.log'}"
        reasons = []
        for entry in last.get("replicas", []):
            if entry.get("state") == "up":
                continue
            text = f"replica {entry.get('id')} at {entry.get('address')} is {entry.get('state')}"
            proc = self.procs.get(f"replica-{entry.get('id')}")
            if proc is None:
                text += " (no such replica process here)"
            elif not proc.alive():
                text += f" ({self.exit_report(proc)})"
            elif proc.address != entry.get("address"):
                text += f" (its process listens on {proc.address})"
            reasons.append(text)
        if not reasons:
            reasons.append(f"every replica is up but the cluster is not writable "
                           f"(majority {last.get('majority')}, live {last.get('live')})")
        return "; ".join(reasons)

    def wait_web_listening(self, timeout: float = 20.0) -> None:
        """Return once the web front end accepts connections on its port; RuntimeError with the
        last lines of web.log if it exits first, TimeoutError if it does not listen in time."""
        web = self.procs["web"]
        host, _, port = web.address.rpartition(":")
        deadline = time.monotonic() + timeout
        while True:
            if not web.alive():
                tail = "\n  ".join(log_tail(self.log_path(web), 8))
                code = web.popen.returncode if web.popen is not None else None
                raise RuntimeError(f"web front end (pid {web.pid}) {describe_exit(code)}; "
                                   f"last lines of {self.log_path(web)}:\n  {tail}")
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"web front end not listening on {web.address} after "
                                   f"{timeout:.0f} s; see {self.log_path(web)}")
            time.sleep(0.05)

    def restart_web(self) -> None:
        """Start the web front end again with the same command line (without waiting)."""
        self._spawn(self.procs["web"])

    def wait_state(self, rid: str | int, states: str | tuple[str, ...],
                   timeout: float = 5.0) -> dict:
        """Poll the status until replica rid is in one of states; return its entry."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        entry: dict = {}
        while time.monotonic() < deadline:
            entry = next(r for r in self.status()["replicas"] if r["id"] == str(rid))
            if entry["state"] in states:
                return entry
            time.sleep(0.02)
        raise TimeoutError(f"replica {rid} not {states} after {timeout}s: {entry}")


def _port_of(address: str | None) -> int | None:
    """The port of 'HOST:PORT' or 'http://HOST:PORT', or None."""
    port = (address or "").rpartition(":")[2]
    return int(port) if port.isdigit() else None


def _web_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("webfront.web.serve") is not None
    except (ImportError, ValueError):
        return False
