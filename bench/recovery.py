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

Then a replica rebuilt from its peers, end to end through the coordinator (issue 5's target:
at least 200,000 commands/s or 50 MB/s): three replicas (fsync never) are written to by the
load generator through the coordinator (64 clients, --fill-seconds), replica 3 is stopped, its
data dir emptied, and it is started again. The coordinator brings it back from a peer (its
recent-write buffer is set to 10,000 writes, so the peer's part is most of it):
  - `log`: the replicas run with --snapshot-every 0, so a peer's log reaches back to seq 1 and
    every write is forwarded from it (log_read -> cu);
  - `snapshot`: the default snapshots compact the peers' logs, so it gets a state transfer
    (snap_read -> inst_data), then the log after the snapshot.
Measured from the coordinator's own log: the time from its recovery_start to the replica's
state `up` (after the peer's part, the coordinator replays its recent-write buffer to it), and
recovery_end's seqs forwarded from the peer's log and snapshot bytes.

    python -m bench recovery [--quick] [--commands N] [--out FILE]
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgpack

from bench import common, loadgen
from webfront.cluster import find_replica_server
from webfront.protocol import connect, encode_frame, frame_bytes, recv_frame
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


def commit(addr: tuple[str, int], seq: int) -> None:
    """Says seq is committed, as the coordinator's heartbeats do, so the replica compacts its
    log as it would in a cluster (docs/replication.md, "Compaction waits for the commit"); a
    snapshot still being written is compacted to when a SIGTERM stop reaps it (a SIGKILL takes
    the child with it)."""
    sock, _ = connect(addr, b"", "coordinator", timeout=10)
    with sock:
        sock.sendall(encode_frame({"t": "hb", "id": 1, "c": seq, "e": 1}))
        if recv_frame(sock).get("t") != "hba":
            raise RuntimeError("the replica did not answer the heartbeat")


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
    """Fills a fresh replica with n writes, says they are committed, stops it with `stop`, and
    times `restarts` restarts on its data dir (each one stopped with `stop` again once it has
    answered a handshake)."""
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        data = Path(tmp) / "replica"
        with replica(binary, data, snapshot_every, stop) as (addr, _):
            fill_s = fill(addr, n, text_len)
            commit(addr, n)
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


def rebuild(mode: str, fill_seconds: float, clients: int = 64) -> dict:
    """One end-to-end rebuild of an emptied replica (see the module doc); `mode` log or
    snapshot names what the peers' logs allow, the row says what the coordinator did."""
    from webfront.coordinator.events import parse_event

    replica_args = ["--snapshot-every", "0"] if mode == "log" else []
    # A recent-write buffer of 10,000 (default 100,000): a short --quick fill must still
    # leave a gap only a peer can fill.
    with common.our_cluster(3, "majority", "never", replica_args=replica_args,
                            coordinator_args=["--history-writes", "10000"]) as cluster:
        socks = loadgen.our_sockets(cluster.coordinator_address, cluster.secret(), clients)
        try:
            summary, _ = loadgen.Load(socks, loadgen.our_request(), "frame", 0.0,
                                      fill_seconds).finish()
        finally:
            loadgen.close_all(socks)
        last = cluster.status()["last_seq"]
        cluster.stop_replica(3)
        coordinator_log = cluster.data_dir / "coordinator.log"
        before = len(coordinator_log.read_text(errors="replace").splitlines())
        data = Path(cluster.replica(3).data_dir)
        size = du(data)
        shutil.rmtree(data)
        cluster.restart_replica(3)
        entry = cluster.wait_state(3, "up", timeout=600)
        lines = coordinator_log.read_text(errors="replace").splitlines()[before:]
    events = [(line[:23], ev) for line in lines
              if (ev := parse_event(line)) and ev.get("replica") == "3"]
    start = next(i for i, (_, ev) in enumerate(events) if ev["event"] == "recovery_start")
    up = next(i for i, (_, ev) in enumerate(events) if i > start
              and ev["event"] == "replica_state" and ev.get("to") == "up")
    # the end of the part from a peer (logged just after `up` when nothing was left to replay;
    # a `replay` one, without ms, ends the buffer's replay)
    end = next(ev for _, ev in events[start:] if ev["event"] == "recovery_end" and "ms" in ev)
    if end.get("ok") != "1":
        raise RuntimeError(f"replica 3 was not rebuilt: {end}")
    stamp = "%Y-%m-%d %H:%M:%S,%f"  # the coordinator log's asctime
    seconds = (datetime.strptime(events[up][0], stamp)
               - datetime.strptime(events[start][0], stamp)).total_seconds()
    snapshot_bytes = int(end.get("bytes", 0)) if end.get("mode") == "state transfer" else 0
    return {"peers_log": "whole" if mode == "log" else "compacted",
            "how": end.get("mode"), "commands": last, "fill_writes_per_s":
            summary["writes_per_s"], "data_dir_mb": round(size / 1e6, 1),
            "rebuild_s": round(seconds, 2), "commands_per_s": round(last / max(seconds, 1e-3)),
            "log_records_forwarded": int(end.get("seqs", 0)),
            "snapshot_mb": round(snapshot_bytes / 1e6, 1),
            "mb_per_s": round(size / 1e6 / max(seconds, 1e-3), 1),
            "applied_when_up": entry.get("applied_seq")}


def main(argv: list[str]) -> int:
    p = common.parser("recovery", __doc__)
    p.add_argument("--commands", type=int, default=None)
    p.add_argument("--fill-seconds", type=float, default=None,
                   help="load before a replica is rebuilt (default 15, 2 with --quick)")
    args = p.parse_args(argv)
    common.settle(args)
    n = args.commands or (20_000 if args.quick else 1_000_000)
    binary = find_replica_server()
    if binary is None:
        print("replica_server not built", file=sys.stderr)
        return 1
    fill_seconds = args.fill_seconds or (2.0 if args.quick else 15.0)
    progress = common.Progress(4, "recovery")
    rows = []
    for snap in (0, None):
        progress.step(f"{n:,} commands, snapshot every {snap if snap is not None else 'default'}")
        rows.append(case(binary, n, snap))
    rebuilds = []
    for mode in ("log", "snapshot"):
        progress.step(f"3 replicas, {fill_seconds:.0f} s of writes, replica 3 emptied and "
                      f"rebuilt from a peer ({mode})")
        rebuilds.append(rebuild(mode, fill_seconds))
    progress.finish()
    print(common.fmt_table(rows, [("commands", "logged commands"),
                                  ("snapshot_every", "snapshot every"),
                                  ("data_dir_mb", "data dir MB"),
                                  ("restart_s", "restart to listening (s)"),
                                  ("replay_commands_per_s", "commands/s replayed"),
                                  ("applied_after", "applied after restart"),
                                  ("fill_writes_per_s", "fill rate (writes/s, 1 replica)")]))
    print()
    print(common.fmt_table(rebuilds, [("peers_log", "peers' logs"), ("how", "rebuilt by"),
                                      ("commands", "commands"),
                                      ("data_dir_mb", "data dir MB"),
                                      ("rebuild_s", "rebuild (s)"),
                                      ("commands_per_s", "commands/s"),
                                      ("mb_per_s", "data dir MB/s"),
                                      ("snapshot_mb", "snapshot MB"),
                                      ("log_records_forwarded", "log records forwarded")]))
    common.write_results("recovery", args, {"results": rows, "rebuilds": rebuilds})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
