"""Recovery: how long a replica takes to come back after a restart with a long log.

One replica_server (fsync never, so filling it is quick) is fed N writes directly, as a
coordinator would send them (pipelined create_post commands of 80 characters), stopped with
SIGTERM, and started again on the same data dir. Measured: the time from exec to its
"listening" line (it replays snapshot + log before it listens), the replay rate, and the size
of its data dir. Twice: with snapshots off (--snapshot-every 0: the whole log is replayed) and
with the default snapshot interval (the latest snapshot plus the log after it).
Issue 5's target: under 3 s for 1,000,000 logged commands.

State transfer between replicas (target: at least 200,000 commands/s or 50 MB/s) is not
measured here yet: it is being built in webfront/coordinator/recovery.py.

    python -m bench recovery [--quick] [--commands N] [--out FILE]
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import common
from webfront.cluster import ensure_secret, find_replica_server
from webfront.protocol import connect, encode_body, frame_bytes, read_secret


def start_replica(binary: str, data: Path, secret: Path, snapshot_every: int | None
                  ) -> tuple[subprocess.Popen, tuple[str, int], float]:
    argv = [binary, "--id", "1", "--listen", "127.0.0.1:0", "--data-dir", str(data),
            "--secret-file", str(secret), "--fsync", "never"]
    if snapshot_every is not None:
        argv += ["--snapshot-every", str(snapshot_every)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"replica_server did not start: {line!r}")
    addr = line.split("addr=")[1].split()[0]
    host, _, port = addr.rpartition(":")
    return proc, (host, int(port)), elapsed


def fill(address: tuple[str, int], secret: bytes, n: int, progress_every: int) -> float:
    """Send n writes (seq 1..n) pipelined; return seconds until the last ack."""
    sock, ready = connect(address, secret, "coordinator", timeout=10)
    sock.settimeout(None)
    first = ready.get("s", 0) + 1
    acked = [0]

    def reader() -> None:
        buf = b""
        while acked[0] < n - first + 1:
            data = sock.recv(1 << 20)
            if not data:
                return
            buf += data
            off = 0
            while len(buf) - off >= 4:
                (length,) = struct.unpack_from(">I", buf, off)
                if len(buf) - off - 4 < length:
                    break
                off += 4 + length
                acked[0] += 1
            buf = buf[off:]

    thread = threading.Thread(target=reader, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    ts = 1_700_000_000_000_000
    text = "x" * 80
    chunk = []
    for seq in range(first, n + 1):
        if seq == 1:
            body = {"t": "w", "e": 1, "s": 1, "ts": ts, "rid": "", "op": "create_user",
                    "a": {"username": "bench1", "password_hash": b"h"}}
        else:
            body = {"t": "w", "e": 1, "s": seq, "ts": ts + seq, "rid": "", "op": "create_post",
                    "a": {"actor": "bench1", "text": text}}
        chunk.append(frame_bytes(encode_body(body)))
        if len(chunk) == 2000:
            sock.sendall(b"".join(chunk))
            chunk = []
            # Stay within the replica's bounded buffers: at most ~50,000 writes unacked.
            while seq - first + 1 - acked[0] > 50_000:
                time.sleep(0.001)
        if seq % progress_every == 0:
            print(f"\r  filled {seq:,}/{n:,}", end="", file=sys.stderr, flush=True)
    sock.sendall(b"".join(chunk))
    thread.join(600)
    print(file=sys.stderr)
    sock.close()
    return time.perf_counter() - t0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def case(binary: str, n: int, snapshot_every: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        secret_file = ensure_secret(Path(tmp) / "secret")
        secret = read_secret(secret_file)
        data = Path(tmp) / "replica"
        proc, addr, _ = start_replica(binary, data, secret_file, snapshot_every)
        try:
            fill_s = fill(addr, secret, n, max(1, n // 20))
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
        size = du(data)
        proc, addr, restart_s = start_replica(binary, data, secret_file, snapshot_every)
        try:
            sock, ready = connect(addr, secret, "coordinator", timeout=10)
            sock.close()
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return {"commands": n, "snapshot_every": snapshot_every if snapshot_every is not None
            else "default", "fill_writes_per_s": round(n / fill_s),
            "data_dir_mb": round(size / 1e6, 1), "restart_s": round(restart_s, 3),
            "replay_commands_per_s": round(n / restart_s), "applied_after": ready.get("s")}


def main(argv: list[str]) -> int:
    p = common.parser("recovery", __doc__)
    p.add_argument("--commands", type=int, default=None)
    args = p.parse_args(argv)
    common.settle(args)
    n = args.commands or (20_000 if args.quick else 1_000_000)
    binary = find_replica_server()
    if binary is None:
        print("replica_server not built", file=sys.stderr)
        return 1
    progress = common.Progress(2, "recovery")
    rows = []
    for snap in (0, None):
        progress.step(f"{n:,} commands, snapshot every {snap if snap is not None else 'default'}")
        rows.append(case(binary, n, snap))
    progress.finish()
    print(common.fmt_table(rows, [("commands", "logged commands"),
                                  ("snapshot_every", "snapshot every"),
                                  ("data_dir_mb", "data dir MB"),
                                  ("restart_s", "restart to listening (s)"),
                                  ("replay_commands_per_s", "commands/s replayed"),
                                  ("applied_after", "applied after restart"),
                                  ("fill_writes_per_s", "fill rate (writes/s, 1 replica)")]))
    common.write_results("recovery", args, {"results": rows,
                                            "state_transfer": "not measured yet"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
