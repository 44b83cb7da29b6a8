"""Ours against the systems a user would pick instead, on this machine, in the same run.

Started by the benchmark on loopback, each in its own temp data dir, stopped by pid after:
  - etcd, 3 members (Debian's etcd-server 3.4); puts through its v3 HTTP/JSON gateway, sent to
    the leader; etcd fsyncs its WAL on every commit.
  - Redis, a master and 2 replicas (Debian's redis-server); SET then `WAIT 2 0` (both replicas
    have it), once with `appendonly yes, appendfsync always` and once without AOF.
  - ours, 3 replicas, policy majority, with replica fsync `batch`, `always` and `never`.
Every system gets the same load (bench/loadgen.c: N clients, one connection each, one request
in flight each) and a value of the same size (80 bytes). The cases run interleaved, all systems
up at once, so machine noise hits all alike. Ratios: ours fsync batch / etcd, ours fsync always /
Redis appendfsync always, ours fsync never / Redis without AOF.

    python -m bench peers [--quick] [--duration S] [--rounds N] [--out FILE]
    (needs scripts/bench-deps.sh: etcd-server, redis-server)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import common, loadgen
from webfront.cluster import free_port


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - poll until the deadline
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s: {last}")


# etcd ---------------------------------------------------------------------------------------

@contextmanager
def etcd_cluster(tmp: Path, members: int = 3) -> Iterator[tuple[int, list[int]]]:
    """Start etcd members; yield the client port of the leader and the members' pids."""
    binary = shutil.which("etcd")
    if binary is None:
        raise RuntimeError("etcd not installed: run scripts/bench-deps.sh")
    ports = [(free_port(), free_port()) for _ in range(members)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    procs = []
    try:
        for i, (client, peer) in enumerate(ports):
            data = tmp / f"etcd-{i}"
            procs.append(_spawn([
                binary, "--name", f"m{i}", "--data-dir", str(data),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "bench", "--logger", "zap", "--log-level", "warn",
            ], tmp / f"etcd-{i}.log"))

        def status(port: int) -> dict:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/maintenance/status",
                                         data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=1) as r:
                return json.loads(r.read())

        leader_port: list[int] = []

        def ready() -> bool:
            for client, _ in ports:
                st = status(client)
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    leader_port.append(client)
                    return True
            return False

        _wait(ready, 30, "etcd")
        yield leader_port[0], [p.pid for p in procs]
    finally:
        _stop(procs)


# Redis --------------------------------------------------------------------------------------

def _redis_cmd(port: int, *parts: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        payload = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
        s.sendall(payload.encode())
        time.sleep(0.05)
        return s.recv(65536)


@contextmanager
def redis_group(tmp: Path, name: str, aof: bool,
                replicas: int = 2) -> Iterator[tuple[int, list[int]]]:
    """A Redis master and its replicas; yield the master's port and every pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not installed: run scripts/bench-deps.sh")
    ports = [free_port() for _ in range(replicas + 1)]
    procs = []
    try:
        for i, port in enumerate(ports):
            data = tmp / f"{name}-{i}"
            data.mkdir()
            argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                    "--save", "", "--daemonize", "no", "--protected-mode", "no"]
            argv += (["--appendonly", "yes", "--appendfsync", "always"] if aof
                     else ["--appendonly", "no"])
            if i:
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            procs.append(_spawn(argv, tmp / f"{name}-{i}.log"))
        _wait(lambda: f"connected_slaves:{replicas}".encode() in
              _redis_cmd(ports[0], "INFO", "replication")
              and _redis_cmd(ports[0], "WAIT", str(replicas), "1000").startswith(
                  f":{replicas}".encode()), 30, f"redis {name}")
        yield ports[0], [p.pid for p in procs]
    finally:
        _stop(procs)


# The run ------------------------------------------------------------------------------------

def measure(system: str, target, clients: int, warmup: float, seconds: float) -> dict:
    if system == "etcd":
        port, pids = target
        socks = loadgen.etcd_sockets(port, clients)
        request = loadgen.etcd_request("bench-0", port)
        mode, env = "http", None
    elif system.startswith("redis"):
        port, pids = target
        socks = loadgen.redis_sockets(port, clients)
        request = loadgen.redis_request("bench-0", 2)
        mode, env = "resp", {"LOADGEN_WAIT_N": "2"}
    else:
        pids = [pid for group in common.cluster_pids(target).values() for pid in group]
        socks = loadgen.our_sockets(target.coordinator_address, target.secret(), clients)
        request = loadgen.our_request()
        mode, env = "frame", None
    try:
        # Every client sends the same bytes (for etcd and Redis the same key); a key per client
        # would not change the work of either.
        load = loadgen.Load(socks, request, mode, warmup, seconds, env=env)
        time.sleep(max(0.0, load.measure_from - time.monotonic()))
        meter = common.CpuMeter({"servers": pids})
        summary, _ = load.finish()
        summary.update(meter.per_request(summary["requests"]))
    finally:
        loadgen.close_all(socks)
    return summary


SYSTEMS = ["ours-batch", "etcd", "ours-always", "redis-aof-always", "ours-never", "redis-no-aof"]
PAIRS = [("ours-batch", "etcd"), ("ours-always", "redis-aof-always"),
         ("ours-batch", "redis-aof-always"), ("ours-never", "redis-no-aof")]


def main(argv: list[str]) -> int:
    p = common.parser("peers", __doc__)
    args = p.parse_args(argv)
    common.settle(args)
    client_counts = [64] if args.quick else [1, 16, 64]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-")))
        print("starting etcd, Redis and our clusters...", file=sys.stderr, flush=True)
        targets = {
            "etcd": stack.enter_context(etcd_cluster(tmp)),
            "redis-aof-always": stack.enter_context(redis_group(tmp, "redis-aof", True)),
            "redis-no-aof": stack.enter_context(redis_group(tmp, "redis-plain", False)),
            "ours-batch": stack.enter_context(common.our_cluster(3, "majority", "batch")),
            "ours-always": stack.enter_context(common.our_cluster(3, "majority", "always")),
            "ours-never": stack.enter_context(common.our_cluster(3, "majority", "never")),
        }
        versions = {
            "etcd": subprocess.run(["etcd", "--version"], capture_output=True, check=False,
                                   text=True).stdout.split("\n")[0],
            "redis": subprocess.run(["redis-server", "--version"], capture_output=True, check=False,
                                    text=True).stdout.strip(),
        }
        progress = common.Progress(args.rounds * len(client_counts) * len(SYSTEMS), "peers")
        runs: dict[tuple, list[dict]] = {}
        for rnd in range(args.rounds):
            for clients in client_counts:
                for system in SYSTEMS:
                    progress.step(f"round {rnd + 1}: {system}, {clients} clients")
                    r = measure(system, targets[system], clients, args.warmup, args.duration)
                    r["system"] = system
                    runs.setdefault((system, clients), []).append(r)
        progress.finish()
    rows = [common.median_run(v) for v in runs.values()]
    by = {(r["system"], r["clients"]): r for r in rows}
    ratios = []
    for ours, theirs in PAIRS:
        for clients in client_counts:
            a, b = by[(ours, clients)], by[(theirs, clients)]
            ratios.append({"ours": ours, "theirs": theirs, "clients": clients,
                           "throughput_ratio": round(a["writes_per_s"] / max(1, b["writes_per_s"]), 2),
                           "p50_ratio": round(a["p50_us"] / max(0.1, b["p50_us"]), 2)})
    rows.sort(key=lambda r: (r["clients"], SYSTEMS.index(r["system"])))
    print(common.fmt_table(rows, [("system", "system"), ("clients", "clients"),
                                  ("writes_per_s", "writes/s"), ("p50_us", "p50 us"),
                                  ("p99_us", "p99 us"), ("p999_us", "p99.9 us"),
                                  ("errors", "errors"),
                                  ("cpu_us_per_write_servers", "server CPU us/write")]))
    print()
    print(common.fmt_table(ratios, [("ours", "ours"), ("theirs", "theirs"),
                                    ("clients", "clients"),
                                    ("throughput_ratio", "throughput ours/theirs"),
                                    ("p50_ratio", "p50 ours/theirs")]))
    common.write_results("peers", args, {"results": rows, "ratios": ratios,
                                         "versions": versions})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
