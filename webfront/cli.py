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
from pathlib import Path
from typing import Sequence

from webfront.cluster import RUN_FILE, LocalCluster


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
    cluster = LocalCluster(data_dir, replicas=args.replicas, policy=args.policy,
                           web_port=args.web_port, insecure=args.insecure_no_auth,
                           replica_cmd=shlex.split(args.replica_command)
                           if args.replica_command else None)
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
    host, port = cluster.coordinator_address
    print(f"coordinator {host}:{port}, {args.replicas} replicas, policy {args.policy}")
    if "web" in cluster.procs:
        print(f"web front end: http://{cluster.host}:{args.web_port}/")
    else:
        print("web front end: not available yet (webfront.web missing)")
    print(f"run file {data_dir / RUN_FILE}; Ctrl-C stops everything", flush=True)
    try:
        while not stopping:
            time.sleep(0.2)
            try:
                recorded = {p["id"]: p.get("pid") for p in json.loads(
                    (data_dir / RUN_FILE).read_text())["processes"] if p["role"] == "replica"}
            except (OSError, ValueError, KeyError):
                recorded = {}
            for proc in cluster.replica_procs():
                pid = recorded.get(proc.id)
                if not proc.alive() and pid and pid != proc.pid:
                    print(f"replica {proc.id} started again outside (pid {pid}): adopted",
                          flush=True)
                    cluster.adopt_replica(proc.id, pid)
                    continue
                if not proc.alive() and proc.pid:
                    print(f"replica {proc.id} (pid {proc.pid}) exited with "
                          f"{proc.popen.returncode}", flush=True)
                    proc.pid = None
                    cluster.write_run_file()
                    if args.restart_dead:
                        print(f"restarting replica {proc.id}", flush=True)
                        cluster.restart_replica(proc.id)
    finally:
        print("stopping cluster", flush=True)
        cluster.stop()
    return 0


def _load_run_file(data_dir: str) -> dict:
    path = Path(data_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except OSError:
        raise SystemExit(f"webfront: no run file {path}: is a cluster running there?") from None


def _cmd_replica_start(args: argparse.Namespace) -> int:
    run = _load_run_file(args.data_dir)
    proc = next((p for p in run["processes"] if p["role"] == "replica"
                 and p["id"] == str(args.id)), None)
    if proc is None:
        raise SystemExit(f"webfront: no replica {args.id} in the run file")
    if proc.get("pid"):
        try:
            os.kill(proc["pid"], 0)
            raise SystemExit(f"webfront: replica {args.id} is running (pid {proc['pid']})")
        except ProcessLookupError:
            pass
    log = open(Path(args.data_dir) / f"replica-{args.id}.log", "ab")
    popen = subprocess.Popen(proc["argv"], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    proc["pid"] = popen.pid
    tmp = Path(args.data_dir) / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(run, indent=2))
    os.replace(tmp, Path(args.data_dir) / RUN_FILE)
    print(f"replica {args.id} started, pid {popen.pid}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from webfront.client import ClusterClient, ClusterError
    from webfront.coordinator.status import format_table
    from webfront.protocol import read_secret

    secret_file = args.secret_file
    if args.coordinator:
        address = args.coordinator
    else:
        run = _load_run_file(args.data_dir)
        address = run["coordinator"]
        secret_file = secret_file or run.get("secret_file")
    client = ClusterClient(address, read_secret(secret_file) if secret_file else b"",
                           timeout=args.timeout)
    try:
        status = client.status()
    except ClusterError as exc:
        print(f"webfront: {exc.message}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(status, indent=2) if args.json else format_table(status))
    return 0


def _cmd_web(argv: list[str]) -> int:
    try:
        from webfront.web.serve import main as web_main
    except ImportError as exc:
        raise SystemExit(f"webfront: the web front end is not available: {exc}") from None
    return web_main(argv) or 0


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
    up.add_argument("--replicas", type=int, default=3)
    up.add_argument("--data-dir", default="./var")
    up.add_argument("--web-port", type=int, default=8000)
    up.add_argument("--policy", choices=("first", "majority", "all"), default="majority")
    up.add_argument("--restart-dead", action="store_true")
    up.add_argument("--insecure-no-auth", action="store_true")
    up.add_argument("--replica-command", help=argparse.SUPPRESS)  # tests: a stand-in replica
    replica = sub.add_parser("replica", help="one replica of a running local cluster")
    replica_sub = replica.add_subparsers(dest="action", required=True)
    start = replica_sub.add_parser("start", help="start a replica again with its recorded flags")
    start.add_argument("id")
    start.add_argument("--data-dir", default="./var")
    status = sub.add_parser("status", help="show every replica's state")
    status.add_argument("--data-dir", default="./var")
    status.add_argument("--coordinator", help="HOST:PORT (default: from the run file)")
    status.add_argument("--secret-file")
    status.add_argument("--json", action="store_true")
    status.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "cluster":
        return _cmd_cluster_up(args)
    if args.command == "replica":
        return _cmd_replica_start(args)
    return _cmd_status(args)


if __name__ == "__main__":
    sys.exit(main())
