"""A replica whose disk fills up under load (docs/failures.md, "Replica disk full").

Replica 2's data dir is a small tmpfs of its own, filled to the last byte once the cluster is
up. Its next log segment then cannot be written: it must stop (it may not ack what it could not
log), the coordinator must carry on with the other two without a failed write, and once space
is freed and it is started again it must catch up to the same state, nothing lost."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import pytest

from tests.conftest import ask_replica, replica_command
from tests.durability.disk import fill, tmpfs
from tests.durability.load import wait_converged
from webfront.client import ClusterClient, ClusterError
from webfront.cluster import LocalCluster


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs at tmp_path/replica-2 (where LocalCluster puts replica 2's data)."""
    with tmpfs(tmp_path / "replica-2", "16m") as mount:
        yield mount


class PostWriters:
    """Threads posting as one user, each write with its own request id; bounded in time."""

    def __init__(self, cluster: LocalCluster, user: str, threads: int = 16,
                 max_seconds: float = 60.0) -> None:
        self.cluster, self.user, self.max_seconds = cluster, user, max_seconds
        self.acked: list[float] = []  # completion times
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, index: int) -> None:
        client = ClusterClient(self.cluster.coordinator_address, self.cluster.secret(), 5.0)
        deadline = time.monotonic() + self.max_seconds
        tag = uuid.uuid4().hex[:6]
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                n += 1
                try:
                    client.write("create_post", {"actor": self.user, "text": "x" * 270},
                                 request_id=f"full-{tag}-{index}-{n}")
                    with self.lock:
                        self.acked.append(time.monotonic())
                except ClusterError as exc:
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc.message}")
        finally:
            client.close()

    def __enter__(self) -> PostWriters:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
        assert not any(t.is_alive() for t in self.threads), "writers hung"


def test_a_replica_with_a_full_disk_stops_the_others_go_on_and_it_catches_up(small_disk, tmp_path):
    # Small snapshot intervals roll the log into new segments early, so the full disk is met
    # after a few thousand writes rather than after two 4 MiB segments.
    cluster = LocalCluster(tmp_path, replicas=3, replica_cmd=replica_command(),
                           replica_args=["--snapshot-every", "2000", "--snapshot-log-ratio", "0"])
    try:
        cluster.start()
        client = cluster.client(timeout=5.0)
        client.write("create_user", {"username": "ann", "password_hash": b"h"})
        client.close()
        filler = fill(small_disk)
        replica = cluster.replica("2").popen
        with PostWriters(cluster, "ann") as writers:
            deadline = time.monotonic() + 60
            while replica.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            died = time.monotonic()
            assert replica.poll() is not None, "replica 2 still running on a full disk"
            time.sleep(1.0)  # writes go on without it
        log = (tmp_path / "replica-2.log").read_text()
        assert "event=fatal" in log and "No space left on device" in log, log[-2000:]
        assert not writers.errors, writers.errors[:3]
        after = sum(1 for t in writers.acked if t > died)
        print(f"{len(writers.acked)} writes acknowledged, {after} after replica 2 stopped")
        assert after > 100

        # The operator frees space: the filler goes, and the disk grows (the catch-up of what
        # it missed, with its own snapshots and log segments, would not fit in 16 MiB again).
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        cluster.restart_replica("2")
        status = wait_converged(cluster, timeout=30)
        posts = [ask_replica(cluster, rid, [("user", {"username": "ann"})])[0]["user"]["posts"]
                 for rid in ("1", "2", "3")]
        assert posts == [len(writers.acked)] * 3, (posts, len(writers.acked), status)
    finally:
        cluster.stop()
