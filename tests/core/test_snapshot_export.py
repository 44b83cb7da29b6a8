"""snap_open's snapshot is written by a forked child: the source keeps serving meanwhile, the
snapshot is the state at snap_open whatever comes after it, and nothing is left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.core.test_replica_process import connect, send, write
from tests.core.test_state_transfer import CHUNK, install, seed_many
from webfront import protocol as P
from webfront.core import xxh3_64


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue  # exited while we looked
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_released(pid: int, fds: int, timeout: float = 10.0) -> None:
    """Until the replica has no child left and no more than `fds` descriptors open."""
    deadline = time.monotonic() + timeout
    while children_of(pid) or open_fds(pid) > fds:
        assert time.monotonic() < deadline, (children_of(pid), open_fds(pid), fds)
        time.sleep(0.02)


def seeded(launch, writes: int):
    """A replica holding `writes` writes, a connection to it, and its open descriptor count."""
    proc = launch(id="a")
    sock = connect(proc)
    seed_many(sock, 1, writes)
    return proc, sock, open_fds(proc.pid)


def test_snapshot_is_the_state_at_snap_open_and_the_loop_goes_on(launch) -> None:
    a, b = launch(id="a"), launch(id="b")
    sa, sb = connect(a), connect(b)
    seed_many(sa, 1, 3000)
    # snap_open, then a heartbeat and 50 more writes in the same packet.
    later = [write(s, "create_post", {"actor": "alice", "text": f"later {s}"})
             for s in range(3001, 3051)]
    send(sa, {"t": "snap_open", "id": 1}, {"t": "hb", "id": 7}, *later)
    replies = [P.recv_frame(sa) for _ in range(2 + len(later))]
    kinds = [r["t"] for r in replies]
    # The heartbeat and the writes after snap_open are answered while the child writes: an
    # in-loop snapshot would answer snap_open first.
    assert kinds[0] == "hba" and kinds.index("snap_info") > 0, kinds
    info = next(r for r in replies if r["t"] == "snap_info")
    assert info["s"] == 3000
    data = b""
    while len(data) < info["size"]:
        send(sa, {"t": "snap_read", "id": 2, "x": info["x"], "off": len(data), "len": CHUNK})
        chunk = P.recv_frame(sa)
        assert chunk["t"] == "snap_data" and chunk["h"] == xxh3_64(chunk["data"])
        data += chunk["data"]
    assert xxh3_64(data) == info["h"]
    done = install(sb, info, data)
    # B now holds A's state as of seq 3000 (digest checked by B itself), not A's current one.
    assert done["t"] == "inst_done" and done["s"] == 3000 and done["d"] == info["d"]
    send(sa, {"t": "hb", "id": 8})
    assert P.recv_frame(sa)["s"] == 3050


def test_asker_gone_before_the_child_finishes_leaves_nothing(launch) -> None:
    a, sa, baseline = seeded(launch, 2000)
    for _ in range(3):
        s = connect(a)
        send(s, {"t": "snap_open", "id": 1})
        s.close()  # before snap_info
    wait_released(a.pid, baseline)
    send(sa, {"t": "hb", "id": 9})
    assert P.recv_frame(sa)["s"] == 2000


def test_snapshot_closed_with_snap_close_and_with_the_connection(launch) -> None:
    a, sa, baseline = seeded(launch, 100)
    send(sa, {"t": "snap_open", "id": 1})
    info = P.recv_frame(sa)
    assert info["t"] == "snap_info"
    assert open_fds(a.pid) == baseline + 1  # the snapshot's file
    send(sa, {"t": "snap_close", "x": info["x"]}, {"t": "hb", "id": 2})
    assert P.recv_frame(sa)["t"] == "hba"
    assert open_fds(a.pid) == baseline
    s = connect(a)
    send(s, {"t": "snap_open", "id": 1})
    assert P.recv_frame(s)["t"] == "snap_info"
    s.close()
    wait_released(a.pid, baseline)


def fd_targets(pid: int) -> set[str]:
    """Where the process's descriptors point."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed while we looked
    return found


def test_snapshot_is_an_unnamed_file_in_the_data_dir(launch, tmp_path: Path) -> None:
    """Not a memory file: a large state's copy held for a transfer is page cache the kernel can
    write out. Unnamed, it leaves nothing in the directory, even if the replica dies."""
    data = tmp_path / "data"
    a = launch(id="a", data_dir=data)
    sa = connect(a)
    seed_many(sa, 1, 500)
    listed, before = sorted(os.listdir(data)), fd_targets(a.pid)
    send(sa, {"t": "snap_open", "id": 1})
    info = P.recv_frame(sa)
    assert info["t"] == "snap_info"
    opened = sorted(fd_targets(a.pid) - before)
    assert len(opened) == 1 and opened[0].startswith(f"{data}/#"), opened
    assert opened[0].endswith("(deleted)") and "memfd" not in opened[0]
    assert sorted(os.listdir(data)) == listed
    send(sa, {"t": "snap_read", "id": 2, "x": info["x"], "off": 0, "len": info["size"]})
    chunk = P.recv_frame(sa)
    assert chunk["t"] == "snap_data" and xxh3_64(chunk["data"]) == info["h"]
    a.kill()
    assert sorted(os.listdir(data)) == listed


def test_without_a_data_dir_the_snapshot_is_in_memory(launch) -> None:
    a, sa, _ = seeded(launch, 100)
    before = fd_targets(a.pid)
    send(sa, {"t": "snap_open", "id": 1})
    assert P.recv_frame(sa)["t"] == "snap_info"
    opened = sorted(fd_targets(a.pid) - before)
    assert len(opened) == 1 and opened[0].startswith("/memfd:replica-snap-open"), opened
