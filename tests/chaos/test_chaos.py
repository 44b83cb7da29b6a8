"""Chaos runs against a real local cluster: the checker must pass under faults.

Five seeds of 60 s each (CHAOS_DURATION overrides, e.g. 20 for a quick look): kills and pauses
on loopback replicas (one seed with five replicas, two of them faulty at once), coordinator kills, and partitions with replicas in their own network namespaces where root
and `ip netns` are available (marked `netns`; skipped with the reason otherwise); one seed
runs under the reply policy `first`. Each run's
history, final state and summary stay under pytest's tmp_path (or $CHAOS_OUT, for CI
artifacts) for a post-mortem.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from webfront.chaos import netns
from webfront.cluster import find_replica_server

DURATION = float(os.environ.get("CHAOS_DURATION", "60"))


def _need_cluster() -> None:
    if find_replica_server() is None:
        pytest.skip("no real cluster: replica_server not found: run scripts/bootstrap.sh")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists() and not shutil.which("gunicorn"):
        pytest.skip("gunicorn is not installed: run scripts/bootstrap.sh")


def _need_netns() -> None:
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"partitions need a network namespace: {why}")


def _run(tmp_path, seed: int, faults: tuple[str, ...], use_netns: bool,
         policy: str = "majority", replicas: int = 3) -> dict:
    from webfront.chaos.run import run

    lines: list[str] = []
    root = Path(os.environ["CHAOS_OUT"]) if os.environ.get("CHAOS_OUT") else tmp_path
    summary = run(root / f"seed{seed}", duration=DURATION, seed=seed, faults=faults,
                  use_netns=use_netns, log=lines.append, policy=policy, replicas=replicas)
    summary["out"] = root / f"seed{seed}"
    report = "\n".join(lines)
    print(report)
    assert summary["valid"], report + "\n" + json.dumps(summary["violations"][:10], indent=1)
    assert summary["writes"]["acknowledged"] > 0, report
    assert summary["lost"] == 0 and summary["divergences"] == 0
    return summary


@pytest.mark.slow
@pytest.mark.timeout(DURATION + 120)
def test_kill_and_pause_seed_1(tmp_path):
    _need_cluster()
    summary = _run(tmp_path, 1, ("kill", "pause"), use_netns=False)
    assert sum(summary["faults"].values()) > 0


@pytest.mark.slow
@pytest.mark.timeout(DURATION + 120)
def test_kill_pause_and_coordinator_seed_2(tmp_path):
    """Replica kills and pauses, plus kill -9 of the coordinator and its restart (new epoch)."""
    _need_cluster()
    summary = _run(tmp_path, 2, ("kill", "pause", "coordinator"), use_netns=False)
    assert sum(summary["faults"].values()) > 0


@pytest.mark.slow
@pytest.mark.timeout(DURATION + 120)
def test_policy_first_kill_and_pause_seed_4(tmp_path):
    """Under `first` a write is answered on one ack and its digest settled by a majority
    (AckCounter): with replicas killed and paused under load, nothing acknowledged is lost
    and no healthy replica is taken out. (Coordinator kills are left out: under `first` a
    write only one replica holds may be lost with the coordinator, as documented.)"""
    _need_cluster()
    summary = _run(tmp_path, 4, ("kill", "pause"), use_netns=False, policy="first")
    assert sum(summary["faults"].values()) > 0


@pytest.mark.slow
@pytest.mark.timeout(DURATION + 120)
def test_five_replicas_two_faults_at_once_seed_51(tmp_path):
    """Five members: the nemesis may hold two replicas faulty at once (kills and pauses), the
    most a majority survives. The run must really have had two at once."""
    from webfront.chaos.history import read_history

    _need_cluster()
    summary = _run(tmp_path, 51, ("kill", "pause"), use_netns=False, replicas=5)
    _ops, faults = read_history(summary["out"] / "history.jsonl")
    faulty, most = 0, 0
    for fault in sorted(faults, key=lambda f: (f.time, f.phase == "start")):  # ends first
        faulty += 1 if fault.phase == "start" else -1
        most = max(most, faulty)
    assert most == 2, f"never two faults at once: {[(f.kind, f.phase) for f in faults]}"


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.timeout(DURATION + 120)
def test_kill_pause_partition_seed_3(tmp_path):
    _need_cluster()
    _need_netns()
    summary = _run(tmp_path, 3, ("kill", "pause", "partition", "netem"), use_netns=True)
    assert summary["faults"].get("partition", 0) > 0, summary["faults"]


def test_seed_reproduces_fault_schedule(tmp_path):
    """The same seed draws the same schedule (the nemesis uses nothing but its rng)."""
    from webfront.chaos.history import HistoryWriter
    from webfront.chaos.nemesis import Nemesis

    class Target:
        replica_names = ("r1", "r2", "r3")

        def replica_pid(self, name):
            return None

        def restart_replica(self, name):
            pass

        def replica_link(self, name):
            return None

    def schedule(seed):
        n = Nemesis(Target(), HistoryWriter(tmp_path / f"h{seed}.jsonl"), seed)
        return [(n.rng.choice(n.kinds), n.rng.choice(Target.replica_names),
                 round(n.rng.uniform(*n.duration), 6)) for _ in range(20)]

    assert schedule(5) == schedule(5)
    assert schedule(5) != schedule(6)


def test_nemesis_keeps_a_minority_faulty_and_heals_everything(tmp_path):
    """Against a stand-in target: faults start and heal, at most one of three at a time."""
    import threading
    import time

    from webfront.chaos.history import HistoryWriter, read_history
    from webfront.chaos.nemesis import Nemesis

    lock = threading.Lock()
    broken: set[str] = set()
    peak = [0]

    class Link:
        def __init__(self, name):
            self.name, self.host_dev = name, f"veth-{name}"

        def cut(self):
            with lock:
                broken.add(self.name)
                peak[0] = max(peak[0], len(broken))

        def heal(self):
            with lock:
                broken.discard(self.name)

    class Target:
        replica_names = ("r1", "r2", "r3")
        links = MappingProxyType({n: Link(n) for n in replica_names})

        def replica_pid(self, name):
            return None

        def restart_replica(self, name):
            pass

        def replica_link(self, name):
            return self.links[name]

    history = HistoryWriter(tmp_path / "h.jsonl")
    nemesis = Nemesis(Target(), history, seed=1, kinds=("partition",), interval=(0.05, 0.1),
                      duration=(0.05, 0.2))
    nemesis.start(time.monotonic() + 1.5)
    time.sleep(1.6)
    nemesis.stop()
    history.close()
    _, faults = read_history(tmp_path / "h.jsonl")
    starts = [f for f in faults if f.phase == "start"]
    assert len(starts) >= 3
    assert len(starts) == len([f for f in faults if f.phase == "end"])
    assert peak[0] == 1 and not broken
