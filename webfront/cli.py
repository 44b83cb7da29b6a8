"""The `webfront` command: coordinator, cluster up, replica start, status, web."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from webfront.cluster import RUN_FILE, LocalCluster, Proc, describe_exit, free_port


class RestartBackoff:
    """How long to wait before starting a process again: nothing the first time, then 0.1 s
    doubling up to 5 s while each run ends within 10 s of its start (a coordinator whose state
    dir is full exits at once, every time, until space is freed)."""

    def __init__(self, first: float = 0.1, most: float = 5.0, lasted: float = 10.0) -> None:
        self.first, self.most, self.lasted = first, most, lasted
        self.quick_exits = 0

    def delay(self, ran_for: float) -> float:
        self.quick_exits = self.quick_exits + 1 if ran_for < self.lasted else 0
        if self.quick_exits < 2:
            return 0.0
        return min(self.most, self.first * 2 ** (self.quick_exits - 2))


class _Restarter:
    """Restarts one supervised process (the coordinator, the web front end) whenever it dies,
    with RestartBackoff between quick deaths, and says so on stdout."""

    def __init__(self, cluster: LocalCluster, role: str, label: str, start) -> None:
        self.cluster, self.role, self.label, self.start = cluster, role, label, start
        self.backoff = RestartBackoff()
        self.started_at = time.monotonic()
        self.restart_at: float | None = None

    def check(self, now: float) -> None:
        proc = self.cluster.procs[self.role]
        if self.restart_at is None and not proc.alive():
            # at once and on the same ports (clients retry); later and later while it keeps
            # exiting soon after its start (a full state dir, a port taken)
            delay = self.backoff.delay(ran_for=now - self.started_at)
            print(f"{self.cluster.exit_report(proc, self.label)}: restarting it"
                  + (f" in {delay:.1f} s" if delay else ""), flush=True)
            self.restart_at = now + delay
        if self.restart_at is not None and now >= self.restart_at:
            self.start()
            self.started_at, self.restart_at = now, None
            print(f"{self.label} restarted (pid {self.cluster.procs[self.role].pid})",
                  flush=True)


def _cmd_cluster_up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "cluster.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"webfront: a cluster is already running on {data_dir} (lock {lock.name} is held);"
              " stop it first (Ctrl-C in its terminal)", file=sys.stderr)
        return 2
    cluster = LocalCluster(data_dir, replicas=args.replicas or 3, policy=args.policy,
                           web_port=args.web_port, insecure=args.insecure_no_auth,
                           replica_cmd=shlex.split(args.replica_command)
                           if args.replica_command else None, standby=True)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"webfront: cluster did not start: {exc}", file=sys.stderr)
        return 1
    for rid, (old, new) in cluster.moved.items():
        print(f"replica {rid}: its port {old} is taken by another process; it listens on {new} "
              "now (stored membership updated)")
    count = len(cluster.replica_procs())
    if args.replicas is not None and args.replicas != count:
        print(f"note: {data_dir} holds a cluster of {count} replicas; --replicas only sizes a "
              "new cluster (`webfront replica new`, `webfront replicas remove` change this one)")
    host, port = cluster.coordinator_address
    print(f"coordinator {host}:{port}, {count} replicas, policy {args.policy}")
    if "web" in cluster.procs:
        print(f"web front end: http://{cluster.host}:{args.web_port}/")
    else:
        print("web front end: not available yet (webfront.web missing)")
    print(f"coordinator metrics: http://{host}:{cluster.metrics_port}/metrics")
    print(f"run file {data_dir / RUN_FILE}; Ctrl-C stops everything", flush=True)
    restarters = [_Restarter(cluster, "coordinator", "coordinator", cluster.start_coordinator)]
    if "web" in cluster.procs:
        restarters.append(_Restarter(cluster, "web", "web front end", cluster.restart_web))
    try:
        while not stopping:
            time.sleep(0.05)
            for restarter in restarters:
                restarter.check(time.monotonic())
            cluster.ensure_standby()
            _supervise_replicas(cluster, data_dir, args.restart_dead)
    finally:
        print("stopping cluster", flush=True)
        cluster.stop()
    return 0


def _supervise_replicas(cluster: LocalCluster, data_dir: Path, restart_dead: bool) -> None:
    """Adopt replicas `webfront replica new` / `replica start` started (they record their pid in
    the run file), report replicas that died and, with --restart-dead, start them again."""
    try:
        entries = [p for p in json.loads((data_dir / RUN_FILE).read_text())["processes"]
                   if p["role"] == "replica"]
    except (OSError, ValueError, KeyError):
        entries = []
    recorded = {p["id"]: p.get("pid") for p in entries}
    for entry in entries:  # added by `webfront replica new`
        name = f"replica-{entry['id']}"
        if name not in cluster.procs and entry.get("pid"):
            cluster.procs[name] = Proc("replica", entry["id"], entry["argv"],
                                       entry["address"], entry["data_dir"])
            cluster.adopt_replica(entry["id"], entry["pid"])
            print(f"replica {entry['id']} added (pid {entry['pid']}): adopted", flush=True)
    for proc in cluster.replica_procs():
        pid = recorded.get(proc.id)
        if not proc.alive() and pid and pid != proc.pid:
            print(f"replica {proc.id} started again outside (pid {pid}): adopted", flush=True)
            cluster.adopt_replica(proc.id, pid)
            continue
        if not proc.alive() and proc.pid:
            print(cluster.exit_report(proc), flush=True)
            proc.pid = None
            cluster.write_run_file()
            if restart_dead:
                print(f"restarting replica {proc.id}", flush=True)
                cluster.restart_replica(proc.id)


def _load_run_file(data_dir: str) -> dict:
    path = Path(data_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SystemExit(f"webfront: no run file {path}: is a cluster running there?") from None


def _require_supervisor(run: dict, data_dir: str) -> None:
    """Exit with a clear message unless the cluster's supervisor (`webfront cluster up`, or a
    LocalCluster in a test) is alive: a replica started without it would run unsupervised,
    and the coordinator it would need is not running either."""
    pid = run.get("supervisor_pid")
    if not (isinstance(pid, int) and _pid_alive(pid)):
        raise SystemExit(f"webfront: the cluster in {Path(data_dir).resolve()} is not running "
                         f"(its supervisor, pid {pid}, is gone): start it with "
                         f"`webfront cluster up --data-dir {data_dir}`")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except PermissionError:
        return True  # someone else's process
    except (OSError, IndexError):
        return False


def _launch_replica(argv: list[str], log_path: Path, name: str,
                    timeout: float) -> tuple[subprocess.Popen | None, str]:
    """Start a replica_server (output appended to log_path) and wait until it listens. Returns
    (popen, '') once it does; (None, why) if it exited first (its fatal line from the log);
    (popen, why) if it still runs but does not listen after timeout (recovering a long log?)."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")
    popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout

    def since_start() -> list[str]:
        with open(log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()

    while True:
        exited = popen.poll() is not None
        lines = since_start()
        if any(line.startswith("replica_server listening ") for line in lines):
            return popen, ""
        if exited:
            fatal = next((x for x in reversed(lines) if "event=fatal" in x),
                         lines[-1] if lines else "")
            return None, (f"{name} (pid {popen.pid}) {describe_exit(popen.returncode)} at once: "
                          f"{fatal}; log: {log_path}")
        if time.monotonic() > deadline:
            return popen, (f"{name} (pid {popen.pid}) runs but does not listen after "
                           f"{timeout:g} s; see {log_path}")
        time.sleep(0.05)


def _save_run_file(run: dict, data_dir: str | Path) -> None:
    tmp = Path(data_dir) / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(run, indent=2))
    os.replace(tmp, Path(data_dir) / RUN_FILE)


def _cmd_replica_start(args: argparse.Namespace) -> int:
    run = _load_run_file(args.data_dir)
    proc = next((p for p in run["processes"] if p["role"] == "replica"
                 and p["id"] == str(args.id)), None)
    if proc is None:
        raise SystemExit(f"webfront: no replica {args.id} in the run file")
    _require_supervisor(run, args.data_dir)
    if proc.get("pid") and _pid_alive(proc["pid"]):
        raise SystemExit(f"webfront: replica {args.id} is running (pid {proc['pid']})")
    popen, problem = _launch_replica(proc["argv"], Path(args.data_dir) / f"replica-{args.id}.log",
                                     f"replica {args.id}", args.wait)
    if popen is not None:  # the supervisor adopts it by this pid
        proc["pid"] = popen.pid
        _save_run_file(run, args.data_dir)
    if problem:
        print(f"webfront: {problem}", file=sys.stderr)
        return 1
    print(f"replica {args.id} started, pid {popen.pid}, listening on {proc['address']}")
    return 0


def _client_for(args: argparse.Namespace):
    from webfront.client import ClusterClient
    from webfront.protocol import read_secret

    secret_file = args.secret_file
    if args.coordinator:
        address = args.coordinator
    else:
        run = _load_run_file(args.data_dir)
        address = run["coordinator"]
        secret_file = secret_file or run.get("secret_file")
    return ClusterClient(address, read_secret(secret_file) if secret_file else b"",
                         timeout=args.timeout)


def _change_membership(args: argparse.Namespace) -> str | None:
    """Add args.address or remove args.id (args.action) and print the outcome; the error
    message (not printed) when the coordinator refused or did not answer."""
    from webfront.client import ClusterError

    client = _client_for(args)
    try:
        if args.action == "add":
            rid = client.add_replica(args.address)
            print(f"replica {rid} at {args.address} added; it is recovering (from an up "
                  "replica's log, or by state transfer when that no longer reaches back) and "
                  "becomes up once caught up: see `webfront status`")
        else:
            client.remove_replica(args.id)
            print(f"replica {args.id} removed from the membership")
    except ClusterError as exc:
        return exc.message
    finally:
        client.close()
    return None


def _cmd_replicas(args: argparse.Namespace) -> int:
    error = _change_membership(args)
    if error is not None:
        print(f"webfront: {error}", file=sys.stderr)
        return 1
    return 0


def _cmd_replica_new(args: argparse.Namespace) -> int:
    """Start a replica with an empty data dir for the local cluster and add it."""
    run = _load_run_file(args.data_dir)
    replicas = [p for p in run["processes"] if p["role"] == "replica"]
    if not replicas:
        raise SystemExit("webfront: no replica in the run file to copy flags from")
    _require_supervisor(run, args.data_dir)
    ids = [int(p["id"]) for p in replicas if str(p["id"]).isdigit()]
    rid = str(max(ids, default=0) + 1)
    model = replicas[0]["argv"]
    skip = {"--id", "--listen", "--data-dir"}
    argv, i = [], 0
    while i < len(model):
        if model[i] in skip:
            i += 2
            continue
        argv.append(model[i])
        i += 1
    root = Path(args.data_dir).resolve()
    rdir = Path(args.replica_data_dir).resolve() if args.replica_data_dir else \
        root / f"replica-{rid}"
    if rdir.exists() and any(rdir.iterdir()):
        raise SystemExit(f"webfront: {rdir} is not empty")
    rdir.mkdir(parents=True, exist_ok=True)
    host = run["coordinator"].rpartition(":")[0] or "127.0.0.1"
    address = f"{host}:{free_port(host)}"
    argv += ["--id", rid, "--listen", address, "--data-dir", str(rdir)]
    popen, problem = _launch_replica(argv, root / f"replica-{rid}.log", f"replica {rid}",
                                     args.wait)
    if problem:
        if popen is not None:
            popen.kill()
        print(f"webfront: {problem}", file=sys.stderr)
        return 1
    run["processes"].append({"role": "replica", "id": rid, "pid": popen.pid, "address": address,
                             "data_dir": str(rdir), "argv": argv})
    _save_run_file(run, root)
    print(f"replica {rid} started, pid {popen.pid}, {address}, data dir {rdir}")
    args.address, args.action = address, "add"
    deadline = time.monotonic() + args.timeout
    while True:  # the coordinator may be restarting: only the last failure is reported
        error = _change_membership(args)
        if error is None:
            return 0
        if time.monotonic() > deadline:
            print(f"webfront: {error}", file=sys.stderr)
            return 1
        time.sleep(0.1)


def _cmd_status(args: argparse.Namespace) -> int:
    from webfront.client import ClusterError
    from webfront.coordinator.status import format_table

    if not args.coordinator:
        _require_supervisor(_load_run_file(args.data_dir), args.data_dir)
    client = _client_for(args)
    if args.watch:
        return _watch_status(client, args)
    try:
        status = client.status()
    except ClusterError as exc:
        print(f"webfront: {exc.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(status, indent=2) if args.json else format_table(status))
    return 0


def _watch_status(client, args: argparse.Namespace) -> int:
    """Redraw the status every `--interval` seconds until Ctrl-C (or `--count` redraws);
    a coordinator that does not answer is shown as such and asked again next time."""
    from webfront.client import ClusterError
    from webfront.coordinator.status import format_table

    tty = sys.stdout.isatty()
    shown = 0
    try:
        while args.count is None or shown < args.count:
            try:
                status = client.status()
                text = json.dumps(status) if args.json else format_table(status)
            except (ClusterError, OSError) as exc:
                text = f"coordinator not answering: {getattr(exc, 'message', exc)}"
            stamp = time.strftime("%H:%M:%S")
            if tty and not args.json:
                sys.stdout.write("\x1b[H\x1b[2J")  # home, clear screen
            print(text if args.json else f"{stamp}  (every {args.interval:g} s, Ctrl-C stops)"
                  f"\n{text}", flush=True)
            shown += 1
            if args.count is None or shown < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0


def _cmd_web(argv: list[str]) -> int:
    try:
        from webfront.web.serve import main as web_main
    except ImportError as exc:
        raise SystemExit(f"webfront: the web front end is not available: {exc}") from None
    return web_main(argv) or 0


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", help="HOST:PORT (default: from the run file)")
    parser.add_argument("--secret-file")
    parser.add_argument("--timeout", type=float, default=5.0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["coordinator"]:
        from webfront.coordinator import main as coordinator_main

        return coordinator_main(argv[1:])
    if argv[:1] == ["web"]:
        return _cmd_web(argv[1:])
    parser = argparse.ArgumentParser(prog="webfront", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("coordinator", help="run the coordinator (see webfront coordinator --help)")
    sub.add_parser("web", help="run the web front end (see webfront web --help)")
    cluster = sub.add_parser("cluster", help="a local cluster")
    cluster_sub = cluster.add_subparsers(dest="action", required=True)
    up = cluster_sub.add_parser("up", help="start a local cluster in the foreground")
    up.add_argument("--replicas", type=int,
                    help="replicas of a new cluster (default 3); a data dir a previous run "
                    "left keeps its membership")
    up.add_argument("--data-dir", default="./var")
    up.add_argument("--web-port", type=int, default=8000)
    up.add_argument("--policy", choices=("first", "majority", "all"), default="majority")
    up.add_argument("--restart-dead", action="store_true")
    up.add_argument("--insecure-no-auth", action="store_true")
    up.add_argument("--replica-command", help=argparse.SUPPRESS)  # tests: e.g. a sanitizer build of replica_server
    replica = sub.add_parser("replica", help="one replica of a running local cluster")
    replica_sub = replica.add_subparsers(dest="action", required=True)
    start = replica_sub.add_parser("start", help="start a replica again with its recorded flags")
    start.add_argument("id")
    start.add_argument("--data-dir", default="./var")
    start.add_argument("--wait", type=float, default=30.0,
                       help="seconds to wait for it to listen (default 30)")
    new = replica_sub.add_parser("new", help="start a replica with an empty data dir and add it "
                                 "to the running local cluster")
    new.add_argument("--data-dir", default="./var", help="the cluster's data dir")
    new.add_argument("--replica-data-dir", help="default: DIR/replica-<new id>")
    new.add_argument("--wait", type=float, default=30.0,
                     help="seconds to wait for it to listen (default 30)")
    _client_flags(new)
    replicas = sub.add_parser("replicas", help="change the membership at runtime")
    replicas_sub = replicas.add_subparsers(dest="action", required=True)
    add = replicas_sub.add_parser("add", help="add the replica at HOST:PORT (it catches up from the others)")
    add.add_argument("address", metavar="HOST:PORT")
    add.add_argument("--data-dir", default="./var")
    _client_flags(add)
    remove = replicas_sub.add_parser("remove", help="take replica ID out of the membership")
    remove.add_argument("id")
    remove.add_argument("--data-dir", default="./var")
    _client_flags(remove)
    status = sub.add_parser("status", help="show every replica's state")
    status.add_argument("--data-dir", default="./var")
    status.add_argument("--coordinator", help="HOST:PORT (default: from the run file)")
    status.add_argument("--secret-file")
    status.add_argument("--json", action="store_true")
    status.add_argument("--timeout", type=float, default=3.0)
    status.add_argument("--watch", action="store_true",
                        help="redraw every --interval seconds until Ctrl-C")
    status.add_argument("--interval", type=float, default=1.0)
    status.add_argument("--count", type=int, help="with --watch: stop after N redraws")
    args = parser.parse_args(argv)
    if args.command == "cluster":
        return _cmd_cluster_up(args)
    if args.command == "replica":
        if args.action == "new":
            return _cmd_replica_new(args)
        return _cmd_replica_start(args)
    if args.command == "replicas":
        return _cmd_replicas(args)
    return _cmd_status(args)


if __name__ == "__main__":
    sys.exit(main())
