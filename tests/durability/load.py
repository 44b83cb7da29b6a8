"""Write load for the durability tests: threads writing create_user then create_post, each
acknowledged write recorded with its seq and the time it completed; errors are counted, not
raised (some tests kill everything on purpose)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Self

from tests.conftest import ask_replica
from webfront.client import ClusterClient, ClusterError
from webfront.cluster import LocalCluster


class ClientThreads:
    """Client threads over one ClusterClient, started by `with` and stopped (joined, checked
    not hung) on exit. Subclasses set `client`, `threads`, `stop_event` and `what`."""

    client: ClusterClient
    threads: list[threading.Thread]
    stop_event: threading.Event
    what = "clients"

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), f"{self.what} hung"
        self.client.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Load(ClientThreads):
    what = "writers"

    def __init__(self, cluster: LocalCluster, threads: int = 4, rate: float | None = None,
                 timeout: float = 5.0, max_seconds: float = 60.0) -> None:
        self.client = ClusterClient(cluster.coordinator_address, cluster.secret(), timeout)
        self.rate = rate  # total writes/s over all threads (None: as fast as possible)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        self.n = threads
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, float]] = []  # (user or post key, seq, done time)
        self.posts: dict[str, int] = {}  # user -> acknowledged posts
        self.errors: list[str] = []
        self.prefix = uuid.uuid4().hex[:5]

    def _run(self, index: int) -> None:
        name = f"d{self.prefix}{index}"
        deadline = time.monotonic() + self.max_seconds
        period = self.n / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        created = False
        i = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            if period:
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                if not created:
                    r = self.client.write("create_user", {"username": name,
                                                          "password_hash": b"h"})
                    ok = r.reply["ok"] or r.reply.get("code") == "conflict"
                    created = ok
                else:
                    i += 1
                    r = self.client.write("create_post", {"actor": name, "text": f"p{i}"})
                    ok = r.reply["ok"]
            except ClusterError as exc:
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc.message}")
                time.sleep(0.01)
                continue
            with self.lock:
                if ok and i:
                    self.posts[name] = self.posts.get(name, 0) + 1
                self.acked.append((name if not i else f"{name}:{i}", r.seq, time.monotonic()))

    def count(self) -> int:
        with self.lock:
            return len(self.acked)



def times_listened(cluster: LocalCluster, rid: str) -> int:
    """How many times replica rid has started listening (its log file survives restarts)."""
    path = cluster.data_dir / f"replica-{rid}.log"
    return path.read_text(errors="replace").count("event=listening") if path.exists() else 0


def wait_converged(cluster: LocalCluster, timeout: float = 20.0) -> dict:
    """Every member up, at the head seq, with one digest."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        try:
            status = cluster.status()
        except ClusterError:
            time.sleep(0.1)
            continue
        reps = status["replicas"]
        if all(r["state"] == "up" and r["applied_seq"] == status["last_seq"] for r in reps) \
                and len({r["digest"] for r in reps}) == 1:
            return status
        time.sleep(0.05)
    raise AssertionError(f"not converged after {timeout}s: {status}")


def check_acked_everywhere(cluster: LocalCluster, load: Load, replica_ids: list[str]) -> None:
    """Every acknowledged user exists with at least its acknowledged posts, on every replica."""
    users = sorted(load.posts) or sorted({k.split(":")[0] for k, _, _ in load.acked})
    for rid in replica_ids:
        replies = ask_replica(cluster, rid, [("user", {"username": u}) for u in users])
        for user, reply in zip(users, replies, strict=True):
            assert reply["ok"], (rid, user, reply)
            assert reply["user"]["posts"] >= load.posts.get(user, 0), (rid, user, reply)


class ReadWriteLoop(ClientThreads):
    """Closed-loop clients like the web tier's: each thread posts, then reads (session mode,
    min_seq 0, so every live replica is a candidate), then posts again. A read stuck on a
    sick replica therefore stalls that thread's writes too. Records each acknowledged write's
    completion time, each read's (start, latency) and every error."""

    def __init__(self, cluster: LocalCluster, threads: int = 6, timeout: float = 3.0,
                 max_seconds: float = 40.0) -> None:
        self.client = ClusterClient(cluster.coordinator_address, cluster.secret(), timeout)
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.writes: list[float] = []
        self.reads: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.prefix = uuid.uuid4().hex[:5]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, index: int) -> None:
        name = f"m{self.prefix}{index}"
        deadline = time.monotonic() + self.max_seconds
        created = False
        i = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                if not created:
                    r = self.client.write("create_user", {"username": name,
                                                          "password_hash": b"h"})
                    created = r.reply["ok"] or r.reply.get("code") == "conflict"
                else:
                    i += 1
                    self.client.write("create_post", {"actor": name, "text": f"p{i}"})
                    with self.lock:
                        self.writes.append(time.monotonic())
                t0 = time.monotonic()
                self.client.read("user_posts", {"username": name, "limit": 5}, min_seq=0)
                with self.lock:
                    self.reads.append((t0, time.monotonic() - t0))
            except ClusterError as exc:
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc.message}")
                time.sleep(0.01)

    def write_gap(self, start: float, end: float) -> float:
        """Longest stretch in [start, end] without an acknowledged write."""
        with self.lock:
            marks = [start] + sorted(t for t in self.writes if start < t < end) + [end]
        return max(b - a for a, b in itertools.pairwise(marks))

    def slowest_read(self, start: float, end: float) -> float:
        with self.lock:
            return max((lat for t0, lat in self.reads if start <= t0 <= end), default=0.0)

