"""The nemesis: faults on replicas chosen from a seed, never more than a minority at once.

Fault kinds (each a start and a heal, both recorded in the history):

- `kill`: SIGKILL the replica's process; heal = start it again on the same data dir and port.
- `pause`: SIGSTOP; heal = SIGCONT (a hang, like a long GC pause or a full disk).
- `partition`: the replica's veth link is set down; heal = up. Needs the replica in a netns.
- `netem`: delay and loss on that link with `tc netem`; heal = qdisc removed.
- `coordinator`: SIGKILL the coordinator; heal = start it again (new epoch from a majority).
  It takes the fault slot like a replica fault, so it never coincides with one.

Between faults the nemesis waits until the coordinator reports every replica `up` again, so
a fault hits a healthy cluster and its unavailability window can be measured on its own.

The schedule (which fault, on which replica, for how long, how long between faults) comes from
`random.Random(seed)` alone, so a seed names a scenario. Timing of the system under test still
varies, so a seed reproduces the faults, not the exact history.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from webfront.chaos.history import HistoryWriter
from webfront.chaos.netns import NetnsLink

ALL_KINDS = ("kill", "pause", "partition", "netem", "coordinator")


class Target(Protocol):
    """What the nemesis needs from a cluster."""

    replica_names: list[str]

    def replica_pid(self, name: str) -> int | None: ...

    def restart_replica(self, name: str) -> None: ...

    def replica_link(self, name: str) -> NetnsLink | None: ...


@dataclass
class _Active:
    kind: str
    target: str
    heal_at: float


class Nemesis:
    """Runs in a thread: `start()`, then `stop()` heals everything still broken."""

    def __init__(self, target: Target, history: HistoryWriter, seed: int,
                 kinds: tuple[str, ...] = ("kill", "pause", "partition"),
                 interval: tuple[float, float] = (2.0, 5.0),
                 duration: tuple[float, float] = (1.0, 4.0),
                 log: Callable[[str], None] = lambda _msg: None) -> None:
        self.target = target
        self.history = history
        self.rng = random.Random(seed ^ 0x5EED)
        self.kinds = kinds
        self.interval = interval
        self.duration = duration
        self.log = log
        self.max_faulty = (len(target.replica_names) - 1) // 2
        self.active: list[_Active] = []
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, deadline: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(deadline,), name="nemesis",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for fault in list(self.active):
            self._heal(fault)

    def _run(self, deadline: float) -> None:
        next_fault = time.monotonic() + self.rng.uniform(*self.interval)
        while not self._stop.is_set():
            now = time.monotonic()
            for fault in [f for f in self.active if f.heal_at <= now]:
                self._heal(fault)
            if now >= deadline:
                break
            if now >= next_fault:
                # Draw from the rng whether or not the fault can start, so the schedule stays
                # a function of the seed alone.
                kind = self.rng.choice(self.kinds)
                name = self.rng.choice(self.target.replica_names)
                hold = self.rng.uniform(*self.duration)
                next_fault = now + self.rng.uniform(*self.interval)
                if kind == "coordinator":
                    name = "coordinator"
                    busy = bool(self.active)
                else:
                    busy = (len(self.active) >= self.max_faulty
                            or any(f.target in (name, "coordinator") for f in self.active))
                if not busy and self._healthy():
                    self._inject(kind, name, hold)
            self._stop.wait(0.05)
        for fault in list(self.active):
            self._heal(fault)

    def _healthy(self) -> bool:
        """With nothing active, start a fault only once every replica is back `up` (a replica
        that was just healed may still be recovering: faulting another one then would take a
        majority out). Targets without a `healthy()` are always ready."""
        check = getattr(self.target, "healthy", None)
        if self.active or check is None:
            return True
        try:
            return bool(check())
        except Exception:  # noqa: BLE001 - cannot tell: do not add a fault
            return False

    def _inject(self, kind: str, name: str, hold: float) -> None:
        link = None if kind == "coordinator" else self.target.replica_link(name)
        if kind in ("partition", "netem") and link is None:
            return  # this replica is not in a namespace
        pid = None if kind == "coordinator" else self.target.replica_pid(name)
        detail = ""
        try:
            if kind == "coordinator":
                detail = f"pid {self.target.kill_coordinator()}"
            elif kind == "kill":
                if pid is None:
                    return
                os.kill(pid, signal.SIGKILL)
                detail = f"pid {pid}"
            elif kind == "pause":
                if pid is None:
                    return
                os.kill(pid, signal.SIGSTOP)
                detail = f"pid {pid}"
            elif kind == "partition":
                link.cut()
                detail = link.host_dev
            elif kind == "netem":
                spec = ["delay", f"{self.rng.choice([20, 50, 100])}ms", "10ms",
                        "loss", f"{self.rng.choice([5, 20, 50])}%"]
                link.netem(*spec)
                detail = " ".join(spec)
        except Exception as exc:  # noqa: BLE001 - a fault that cannot start is skipped, not fatal
            self.errors.append(f"{kind} {name}: {exc}")
            return
        self.history.fault(kind, name, "start", detail)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.active.append(_Active(kind, name, time.monotonic() + hold))
        self.log(f"nemesis: {kind} {name} for {hold:.1f}s ({detail})")

    def _heal(self, fault: _Active) -> None:
        link = None if fault.kind == "coordinator" else self.target.replica_link(fault.target)
        try:
            if fault.kind == "coordinator":
                self.target.restart_coordinator()
            elif fault.kind == "kill":
                self.target.restart_replica(fault.target)
            elif fault.kind == "pause":
                pid = self.target.replica_pid(fault.target)
                if pid is not None:
                    os.kill(pid, signal.SIGCONT)
            elif fault.kind == "partition" and link is not None:
                link.heal()
            elif fault.kind == "netem" and link is not None:
                link.clear_netem()
        except Exception as exc:  # noqa: BLE001 - keep healing the others
            self.errors.append(f"heal {fault.kind} {fault.target}: {exc}")
        if fault in self.active:
            self.active.remove(fault)
        self.history.fault(fault.kind, fault.target, "end")
        self.log(f"nemesis: healed {fault.kind} {fault.target}")
