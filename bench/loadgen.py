"""The closed-loop load generator (bench/loadgen.c) and the clients it drives.

Python opens one socket per client (for our coordinator it also runs the authenticated
handshake), then hands the file descriptors to the C generator, so every system under test sees
the same load shape: N clients, one request in flight each, the same value size. The generator
is compiled on first use with the system C compiler into build/bench/.
"""

from __future__ import annotations

import array
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BINARY = ROOT / "build" / "bench" / "loadgen"

# A small post: 80 characters of text, as the web front end's typical post. Redis and etcd
# store a value of the same size.
VALUE_SIZE = 80


def c_program(source: Path, binary: Path, flags: tuple[str, ...] = ()) -> Path:
    """Compile the C file `source` into `binary` (-O2 -Wall, plus `flags`) unless the binary is
    newer than the source. The binary appears whole or not at all, even when two processes
    build it at once."""
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError(f"no C compiler (cc) to build {source.name}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    try:
        subprocess.run([cc, "-O2", "-Wall", *flags, "-o", str(tmp), str(source)], check=True)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


def loadgen_binary() -> Path:
    """bench/loadgen.c, compiled unless the binary is newer than the source."""
    return c_program(SOURCE, BINARY)


@dataclass
class Samples:
    """Per-request records of one measured window."""

    t_us: array.array = field(default_factory=lambda: array.array("I"))  # completion time
    lat_ns: array.array = field(default_factory=lambda: array.array("I"))
    ok: bytearray = field(default_factory=bytearray)

    @classmethod
    def load(cls, path: Path) -> Samples:
        raw = path.read_bytes()
        n = len(raw) // 9
        s = cls()
        t = array.array("I")
        lat = array.array("I")
        mv = memoryview(raw)
        for i in range(n):
            rec = mv[i * 9:i * 9 + 8].cast("I")
            t.append(rec[0])
            lat.append(rec[1])
        s.t_us, s.lat_ns = t, lat
        s.ok = bytearray(raw[8::9][:n])
        return s


def percentiles(lat_ns: array.array | list[int]) -> dict[str, float]:
    lat = sorted(lat_ns)
    if not lat:
        return {"p50_us": 0.0, "p99_us": 0.0, "p999_us": 0.0, "max_us": 0.0}

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0, 1)

    return {"p50_us": q(0.50), "p99_us": q(0.99), "p999_us": q(0.999),
            "max_us": round(lat[-1] / 1000.0, 1)}


class Load:
    """A running load generator (start it, do something to the system, then finish())."""

    def __init__(self, socks: list[socket.socket], request: bytes, mode: str, warmup: float,
                 seconds: float, env: dict[str, str] | None = None) -> None:
        binary = loadgen_binary()
        self.socks = socks
        self.seconds = seconds
        self.tmp = tempfile.TemporaryDirectory(prefix="loadgen-")
        req_file = Path(self.tmp.name) / "request"
        req_file.write_bytes(request)
        self.out_file = Path(self.tmp.name) / "samples"
        fds = [s.fileno() for s in socks]
        for s in socks:
            s.setblocking(True)
            s.settimeout(None)
        self.timeout = warmup + seconds + 30
        self.proc = subprocess.Popen(
            [str(binary), mode, str(warmup), str(seconds), str(req_file), str(self.out_file)]
            + [str(fd) for fd in fds],
            pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self.started = time.monotonic()
        self.measure_from = self.started + warmup  # monotonic time of sample t_us == 0

    def finish(self) -> tuple[dict, Samples]:
        try:
            stdout, stderr = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
        try:
            if self.proc.returncode != 0:
                raise RuntimeError(f"loadgen failed: {stderr.strip()}")
            fields = dict(kv.split("=") for kv in stdout.split())
            samples = Samples.load(self.out_file)
        finally:
            self.tmp.cleanup()
        requests = int(fields["requests"])
        errors = int(fields["errors"])
        ok_lat = array.array("I", (lat for lat, ok in zip(samples.lat_ns, samples.ok) if ok))
        summary = {"clients": len(self.socks), "requests": requests, "errors": errors,
                   "closed": int(fields["eof"]), "seconds": self.seconds,
                   "writes_per_s": round((requests - errors) / self.seconds),
                   **percentiles(ok_lat)}
        return summary, samples


def run_load(socks: list[socket.socket], request: bytes, mode: str, warmup: float,
             seconds: float, env: dict[str, str] | None = None) -> tuple[dict, Samples]:
    """Drive the sockets (one client each) for warmup + seconds; return a summary and samples."""
    return Load(socks, request, mode, warmup, seconds, env).finish()


# Our coordinator ----------------------------------------------------------------------------

def our_sockets(address: tuple[str, int], secret: bytes, clients: int) -> list[socket.socket]:
    from webfront.protocol import connect

    return [connect(address, secret, "client", timeout=5.0)[0] for _ in range(clients)]


def our_request(actor: str = "bench1") -> bytes:
    """A create_post write with 80 characters of text. rid is empty: each send is a new post
    (a request id would make the coordinator answer every resend from its table)."""
    from webfront.protocol import encode_frame

    return encode_frame({"t": "cw", "id": 1, "rid": "", "op": "create_post",
                         "a": {"actor": actor, "text": "x" * VALUE_SIZE}})


# Redis --------------------------------------------------------------------------------------

def redis_sockets(port: int, clients: int) -> list[socket.socket]:
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    return socks


def redis_request(key: str, replicas: int) -> bytes:
    """SET key value, then WAIT replicas 0 (block until that many replicas have it)."""
    value = "x" * VALUE_SIZE

    def cmd(*parts: str) -> bytes:
        out = f"*{len(parts)}\r\n"
        for p in parts:
            out += f"${len(p.encode())}\r\n{p}\r\n"
        return out.encode()

    return cmd("SET", key, value) + cmd("WAIT", str(replicas), "0")


# etcd ---------------------------------------------------------------------------------------

def etcd_sockets(port: int, clients: int) -> list[socket.socket]:
    return redis_sockets(port, clients)


def etcd_request(key: str, port: int) -> bytes:
    """A put through etcd's v3 HTTP/JSON gateway (keep-alive)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(b"x" * VALUE_SIZE).decode()}).encode()
    head = (f"POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
    time.sleep(0.05)
