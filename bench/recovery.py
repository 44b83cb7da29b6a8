"""Recovery: how long a replica takes to come back after a restart with a long log.

One replica_server (fsync never, so filling it is quick) is fed N writes directly, as a
coordinator would send them (pipelined create_post commands of 80 characters, each with a
request id), stopped with SIGTERM, and started again on the same data dir. Measured: the time
from exec to its "listening" line (it replays snapshot + log before it listens), the replay
rate, and the size of its data dir. Twice: with snapshots off (--snapshot-every 0: the whole
log is replayed) and with the default snapshot interval (the latest snapshot plus the log
after it). Issue 5's target: under 3 s for 1,000,000 logged commands.

The measurement itself (`measure_restart`, and `replica` and `fill` below it) is also what
`bench/core_bench.py recovery` and `transfer` run, with SIGKILL and key=value output.

State transfer between replicas (target: at least 200,000 commands/s or 50 MB/s) is not
measured here yet: it is being built in webfront/coordinator/recovery.py.

    python -m bench recovery [--quick] [--commands N] [--out FILE]
"""

from __future__ import annotations

import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgpack

from bench import common
from webfront.cluster import find_replica_server
from webfront.protocol import connect, frame_bytes
from webfront.replica_process import start_replica

# fill sends BATCH frames per sendall and keeps at most WINDOW writes unacknowledged, which
# stays within the replica's bounded buffers.
BATCH = 4000
WINDOW = 50_000


@contextmanager
def replica(binary: str, data: Path, snapshot_every: int | None,
            stop: signal.Signals = signal.SIGTERM) -> Iterator[tuple[tuple[str, int], float]]:
    """One replica_server (--fsync never, no auth, loopback) on `data`, stopped with `stop`
    on the way out. Yields its address and the seconds from exec to its `listening` line,
    which it prints after loading its snapshot and replaying its log. snapshot_every None:
    the server's default interval."""
    extra = [] if snapshot_every is None else ["--snapshot-every", str(snapshot_every)]
    t0 = time.perf_counter()
    proc = start_replica(binary, id="1", data_dir=data, fsync="never", extra_args=extra,
                         ready_timeout=600.0)
    elapsed = time.perf_counter() - t0
    try:
        yield proc.address, elapsed
    finally:
        if stop == signal.SIGKILL:
            proc.kill()
        else:
            proc.stop(timeout=30.0)


def count_acks(sock: socket.socket, expected: int, acked: list[int]) -> None:
    """Counts the frames (acks) read from sock into acked[0] until `expected` or EOF; the
    frames are only delimited, never decoded, so the reader keeps up with the writer."""
    buf = b""
    while acked[0] < expected:
        data = sock.recv(1 << 20)
        if not data:
            return
        buf += data
        off = 0
        while len(buf) - off >= 4:
            length = int.from_bytes(buf[off:off + 4], "big")
            if len(buf) - off - 4 < length:
                break
            off += 4 + length
            acked[0] += 1
        buf = buf[off:]


def fill(addr: tuple[str, int], n: int, text_len: int = 80) -> float:
    """Sends the writes after the replica's applied seq up to seq n, pipelined as a coordinator
    does (seq 1 creates user bench1, every other one is a create_post of text_len characters
    with a request id), and waits for every ack. Returns the seconds that took."""
    sock, ready = connect(addr, b"", "coordinator", timeout=10)
    sock.settimeout(None)
    first = ready.get("s", 0) + 1
    acked = [0]
    thread = threading.Thread(target=count_acks, args=(sock, n - first + 1, acked), daemon=True)
    t0 = time.perf_counter()
    thread.start()
    ts = 1_700_000_000_000_000
    text = "x" * text_len
    pack = msgpack.Packer(use_bin_type=True).pack
    progress_every = max(1, n // 20)
    chunk: list[bytes] = []
    for seq in range(first, n + 1):
        if seq == 1:
            body = {"t": "w", "e": 1, "s": 1, "ts": ts, "rid": "", "op": "create_user",
                    "a": {"username": "bench1", "password_hash": b"h"}}
        else:
            body = {"t": "w", "e": 1, "s": seq, "ts": ts + seq, "rid": f"r{seq}",
                    "op": "create_post", "a": {"actor": "bench1", "text": text}}
        chunk.append(frame_bytes(pack(body)))
        if len(chunk) == BATCH:
            sock.sendall(b"".join(chunk))
            chunk = []
            while seq - first + 1 - acked[0] > WINDOW:
                time.sleep(0.001)
        if seq % progress_every == 0:
            print(f"\r  filled {seq:,}/{n:,}", end="", file=sys.stderr, flush=True)
    sock.sendall(b"".join(chunk))
    thread.join(600)
    print(file=sys.stderr)
    sock.close()
    if acked[0] != n - first + 1:
        raise RuntimeError(f"only {acked[0]} of {n - first + 1} writes acknowledged")
    return time.perf_counter() - t0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class RestartRun:
    """What measure_restart saw: one fill, then `restarts` restarts on the same data dir."""

    commands: int
    fill_s: float
    data_bytes: int
    restart_s: list[float]  # exec to listening, one per restart
    applied: list[int]  # the replica's applied seq after each restart

    @property
    def best_s(self) -> float:
        return min(self.restart_s)


def measure_restart(binary: str, n: int, snapshot_every: int | None, text_len: int = 80,
                    restarts: int = 1, stop: signal.Signals = signal.SIGTERM) -> RestartRun:
    """Fills a fresh replica with n writes, stops it with `stop`, and times `restarts` restarts
    on its data dir (each one stopped with `stop` again once it has answered a handshake)."""
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        data = Path(tmp) / "replica"
        with replica(binary, data, snapshot_every, stop) as (addr, _):
            fill_s = fill(addr, n, text_len)
        size = du(data)
        times, applied = [], []
        for _ in range(restarts):
            with replica(binary, data, snapshot_every, stop) as (addr, elapsed):
                sock, ready = connect(addr, b"", "coordinator", timeout=10)
                sock.close()
            times.append(elapsed)
            applied.append(ready.get("s"))
    return RestartRun(n, fill_s, size, times, applied)


def case(binary: str, n: int, snapshot_every: int | None) -> dict:
    run = measure_restart(binary, n, snapshot_every)
    return {"commands": n, "snapshot_every": snapshot_every if snapshot_every is not None
            else "default", "fill_writes_per_s": round(n / run.fill_s),
            "data_dir_mb": round(run.data_bytes / 1e6, 1), "restart_s": round(run.best_s, 3),
            "replay_commands_per_s": round(n / run.best_s), "applied_after": run.applied[-1]}


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
