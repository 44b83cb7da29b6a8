"""Benchmarks of the C++ replica core that need Python around them.

    .venv/bin/python bench/core_bench.py [n]
        apply throughput through the pybind11 module (pre-encoded bodies, as a coordinator
        sends them); n defaults to 200,000. (bench/core.py runs this form.)

    .venv/bin/python bench/core_bench.py recovery [--commands N] [--snapshot-every K] [--text T]
                                                  [--restarts R]
        restart recovery: one replica_server (--fsync never) is fed N writes over TCP exactly as
        a coordinator sends them (pipelined; a create_user, then create_post of T characters,
        default 80), killed with SIGKILL, and started again on the same data dir. Reported: the
        time from exec to its `listening` line (it loads its snapshot and replays the log
        before it listens). --snapshot-every 0 (the default here) means no snapshot: all N
        commands are replayed, the worst case. Issue 5's target: < 3 s for 1,000,000. The
        measurement is bench/recovery.py's (`python -m bench recovery`), here with SIGKILL,
        the best of --restarts, and a key=value line.

    .venv/bin/python bench/core_bench.py transfer [--commands N] [--snapshot-every K]
        state transfer read rate from a source replica, through its frames as the coordinator
        reads them: snap_open + snap_read (512 KiB chunks) + log_read pages (512 KiB) from the
        snapshot's seq to the end. Reported: commands/s (the source's applied seq over the
        elapsed time) and MB/s. Target: >= 200,000 commands/s or 50 MB/s.

Every line printed is key=value (bench=... first), so bench/core.py can parse it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.recovery import fill, measure_restart, replica
from webfront.core import StateMachine, write_body
from webfront.protocol import FrameDecoder, connect, encode_frame
from webfront.replica_process import find_binary

CHUNK = 512 << 10


def module_apply(n: int) -> None:
    sm = StateMachine()
    seq = 0
    for i in range(1000):
        seq += 1
        sm.apply(write_body(seq, "create_user", {"username": f"user{i}", "password_hash": b"h"}))
    bodies = []
    for i in range(n):
        seq += 1
        if i % 2 == 0:
            args = {"actor": f"user{i % 1000}", "text": "hello world"}
            bodies.append(write_body(seq, "create_post", args, rid=f"rid-{i}"))
        else:
            args = {"actor": f"user{i % 1000}", "target": f"user{(i * 7 + 1) % 1000}"}
            bodies.append(write_body(seq, "follow", args, rid=f"rid-{i}"))
    start = time.perf_counter()
    for body in bodies:
        sm.apply(body)
    elapsed = time.perf_counter() - start
    print(f"bench=module_apply commands={n} seconds={elapsed:.3f} commands_per_s={n / elapsed:.0f}")


# ---------------------------------------------------------------- recovery

def replica_parser(name: str) -> argparse.ArgumentParser:
    """The options recovery and transfer share: how the source replica is filled."""
    p = argparse.ArgumentParser(prog=f"core_bench.py {name}")
    p.add_argument("--commands", type=int, default=1_000_000)
    p.add_argument("--snapshot-every", type=int, default=0)
    p.add_argument("--text", type=int, default=80)
    return p


def recovery(argv: list[str]) -> None:
    p = replica_parser("recovery")
    p.add_argument("--restarts", type=int, default=3)
    args = p.parse_args(argv)
    run = measure_restart(find_binary(), args.commands, args.snapshot_every, args.text,
                          args.restarts, stop=signal.SIGKILL)
    if any(s != args.commands for s in run.applied):
        raise RuntimeError(f"recovered to {run.applied}, not {args.commands}")
    best = run.best_s
    print(f"bench=recovery commands={args.commands} snapshot_every={args.snapshot_every} "
          f"text={args.text} data_dir_mb={run.data_bytes / 1e6:.1f} restart_s={best:.3f} "
          f"restart_s_all={','.join(f'{t:.3f}' for t in run.restart_s)} "
          f"replay_commands_per_s={args.commands / best:.0f} "
          f"fill_writes_per_s={args.commands / run.fill_s:.0f} "
          f"load={os.getloadavg()[0]:.2f}")


# ---------------------------------------------------------------- state transfer

class Reader:
    """Request/reply over one replica connection (one request in flight, as recovery paces it)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock, self.ready = connect(addr, b"", "coordinator", timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.decoder = FrameDecoder()
        self.frames: list[dict] = []
        self.bytes_in = 0

    def call(self, body: dict) -> dict:
        self.sock.sendall(encode_frame(body))
        while not self.frames:
            data = self.sock.recv(4 << 20)
            if not data:
                raise ConnectionError("replica closed the connection")
            self.bytes_in += len(data)
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)


def transfer(argv: list[str]) -> None:
    args = replica_parser("transfer").parse_args(argv)
    binary = find_binary()
    with (tempfile.TemporaryDirectory(prefix="core-bench-transfer-") as tmp,
          replica(binary, Path(tmp) / "replica", args.snapshot_every, signal.SIGKILL) as (addr, _)):
        fill(addr, args.commands, args.text)
        r = Reader(addr)
        t0 = time.perf_counter()
        info = r.call({"t": "snap_open", "id": 1})
        size, off, snap_bytes = info["size"], 0, 0
        while off < size:
            chunk = r.call({"t": "snap_read", "id": 2, "x": info["x"], "off": off, "len": CHUNK})
            off += len(chunk["data"])
            snap_bytes += len(chunk["data"])
        r.sock.sendall(encode_frame({"t": "snap_close", "x": info["x"]}))  # no reply
        t_snap = time.perf_counter()
        frm, records, log_bytes, pages = info["s"] + 1, 0, 0, 0
        while True:
            page = r.call({"t": "log_read", "id": 3, "from": frm, "max": CHUNK})
            if page.get("t") != "log_data":
                raise RuntimeError(f"log_read failed: {page}")
            recs = page["recs"]
            if not recs:
                break
            pages += 1
            records += len(recs)
            log_bytes += sum(len(x) for x in recs)
            frm += len(recs)
            if frm > page["last"]:
                break
        t1 = time.perf_counter()
        transfer_bytes = r.bytes_in
        # The log alone, from seq 1 (held when snapshots are off): what a replica whose gap
        # is still in the source's log gets instead of a snapshot.
        frm, full, full_bytes, t2 = 1, 0, 0, time.perf_counter()
        while frm <= info["s"] + records:
            page = r.call({"t": "log_read", "id": 4, "from": frm, "max": CHUNK})
            if page.get("t") != "log_data" or not page["recs"]:
                break
            full += len(page["recs"])
            full_bytes += sum(len(x) for x in page["recs"])
            frm += len(page["recs"])
        t3 = time.perf_counter()
        r.sock.close()
    total = t1 - t0
    commands = info["s"] + records
    print(f"bench=transfer commands={commands} snapshot_every={args.snapshot_every} "
          f"snapshot_seq={info['s']} snapshot_mb={snap_bytes / 1e6:.1f} snapshot_s={t_snap - t0:.3f} "
          f"log_records={records} log_mb={log_bytes / 1e6:.1f} log_pages={pages} log_s={t1 - t_snap:.3f} "
          f"seconds={total:.3f} commands_per_s={commands / total:.0f} "
          f"mb_per_s={transfer_bytes / 1e6 / total:.1f} "
          f"log_commands_per_s={records / max(t1 - t_snap, 1e-9):.0f} load={os.getloadavg()[0]:.2f}")
    if full:
        print(f"bench=log_read_all commands={full} mb={full_bytes / 1e6:.1f} seconds={t3 - t2:.3f} "
              f"commands_per_s={full / (t3 - t2):.0f} mb_per_s={full_bytes / 1e6 / (t3 - t2):.1f} "
              f"load={os.getloadavg()[0]:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "recovery":
        recovery(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "transfer":
        transfer(sys.argv[2:])
    else:
        module_apply(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)


if __name__ == "__main__":
    main()
