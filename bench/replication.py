"""Write throughput and latency through the coordinator.

Starts a local cluster (real replica_server; WEBFRONT_FAKE_REPLICA=1 for the Python stand-in),
then drives it with a pipelined asyncio load generator: `clients` closed-loop callers spread
over `connections` sockets, each caller with one write in flight. Reports writes/s and latency
percentiles for: 3 replicas at 64 clients, 1 replica at 64 clients (for the 3/1 ratio), and
1 client (p50). Every run is bounded in time.

    python -m bench replication --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from webfront.cluster import LocalCluster, find_replica_server
from webfront.protocol import (
    NONCE_BYTES,
    FrameDecoder,
    check_welcome,
    encode_frame,
    hello_body,
)


class LoadConnection(asyncio.Protocol):
    """One socket carrying `depth` closed-loop callers; no coroutine per request."""

    def __init__(self, secret: bytes, depth: int, payload: list[dict], stats: dict,
                 ready: asyncio.Future) -> None:
        self.secret = secret
        self.depth = depth
        self.payload = payload
        self.stats = stats
        self.ready = ready
        self.decoder = FrameDecoder()
        self.nonce = os.urandom(NONCE_BYTES)
        self.phase = "welcome"
        self.sent: dict[int, float] = {}
        self.next_id = 0
        self.running = False
        self.out: list[bytes] = []
        self.transport = None

    def connection_made(self, transport) -> None:
        import socket

        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                      socket.TCP_NODELAY, 1)
        transport.write(encode_frame(hello_body("client", self.nonce)))

    def _send_one(self) -> None:
        self.next_id += 1
        args = self.payload[self.next_id % len(self.payload)]
        self.sent[self.next_id] = time.perf_counter()
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(encode_frame({"t": "cw", "id": self.next_id, "rid": "",
                                      "op": "create_post", "a": args}))

    def _flush(self) -> None:
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out = []

    def start(self) -> None:
        self.running = True
        for _ in range(self.depth):
            self._send_one()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        for body in self.decoder.feed(data):
            if self.phase == "welcome":
                self.transport.write(check_welcome(body, self.secret, self.nonce))
                self.phase = "ready"
                continue
            if self.phase == "ready":
                self.phase = "open"
                self.ready.set_result(None)
                continue
            t0 = self.sent.pop(body.get("id"), None)
            if t0 is None:
                continue
            if body["t"] == "cwr" and body["r"].get("ok"):
                if self.stats["measuring"]:
                    self.stats["latencies"].append(now - t0)
            else:
                self.stats["errors"] += 1
            if self.running:
                self._send_one()


async def drive(address: tuple[str, int], secret: bytes, clients: int, connections: int,
                seconds: float, warmup: float, users: list[str]) -> dict:
    loop = asyncio.get_running_loop()
    connections = max(1, min(connections, clients))
    stats = {"latencies": [], "errors": 0, "measuring": False}
    text = "x" * 80
    payload = [{"actor": u, "text": text} for u in users]
    conns = []
    for i in range(connections):
        depth = clients // connections + (1 if i < clients % connections else 0)
        ready = loop.create_future()
        conn = LoadConnection(secret, depth, payload, stats, ready)
        await loop.create_connection(lambda c=conn: c, *address)
        await asyncio.wait_for(ready, 5)
        conns.append(conn)
    for conn in conns:
        conn.start()
    await asyncio.sleep(warmup)
    stats["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    stats["measuring"] = False
    elapsed = time.perf_counter() - t0
    for conn in conns:
        conn.running = False
    await asyncio.sleep(0.2)
    for conn in conns:
        conn.transport.close()
    lat = sorted(stats["latencies"])
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6) if lat else (lambda p: 0)
    return {"clients": clients, "connections": connections, "writes": len(lat),
            "writes_per_s": round(len(lat) / elapsed), "p50_us": round(q(0.50)),
            "p99_us": round(q(0.99)), "errors": stats["errors"]}


def run_case(replicas: int, clients: int, connections: int, seconds: float, warmup: float,
             policy: str, replica_cmd: list[str] | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        cluster = LocalCluster(Path(tmp), replicas=replicas, policy=policy,
                               replica_cmd=replica_cmd)
        cluster.start()
        try:
            client = cluster.client()
            users = [f"bench{i}" for i in range(16)]
            for u in users:
                client.write("create_user", {"username": u, "password_hash": b"h"})
            client.close()
            try:
                import uvloop

                factory = uvloop.new_event_loop
            except ImportError:
                factory = None
            with asyncio.Runner(loop_factory=factory) as runner:
                result = runner.run(drive(cluster.coordinator_address, cluster.secret(), clients,
                                          connections, seconds, warmup, users))
        finally:
            cluster.stop()
    result.update(replicas=replicas, policy=policy)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replication", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (3 s each)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1, help="runs per case (median reported)")
    parser.add_argument("--policy", default="majority")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds
    warmup = 0.5 if args.quick else 1.0
    fake = os.environ.get("WEBFRONT_FAKE_REPLICA") == "1" or find_replica_server() is None
    replica_cmd = [sys.executable, "-m", "tests.coordinator.fake_replica"] if fake else None
    cases = [("3 replicas, 64 clients", 3, 64), ("1 replica, 64 clients", 1, 64),
             ("3 replicas, 1 client", 3, 1)]
    results = {}
    for label, replicas, clients in cases:
        runs = [run_case(replicas, clients, args.connections, seconds, warmup, args.policy,
                         replica_cmd) for _ in range(args.runs)]
        runs.sort(key=lambda r: r["writes_per_s"])
        results[label] = runs[len(runs) // 2]
        r = results[label]
        print(f"{label:24s} {r['writes_per_s']:>8} writes/s  p50 {r['p50_us']:>6} us  "
              f"p99 {r['p99_us']:>6} us  errors {r['errors']}", flush=True)
    ratio = (results["3 replicas, 64 clients"]["writes_per_s"]
             / max(1, results["1 replica, 64 clients"]["writes_per_s"]))
    print(f"3/1 replica throughput ratio {ratio:.2f}"
          f"{'  (Python stand-in replicas)' if fake else ''}")
    if args.json:
        print(json.dumps({"results": results, "ratio": ratio, "fake_replicas": fake,
                          "date": time.strftime("%Y-%m-%d %H:%M")}, indent=2))
    return 0
