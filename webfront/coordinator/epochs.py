"""The coordinator's durable epoch record: its current epoch and the history of where each
epoch began (docs/protocol.md, "Epochs, state transfer and membership").

Stored in the state dir as `epoch.json` (`{"epoch": E, "history": [[E, first_seq], ...]}`),
written to a temporary file, fsynced and renamed, before the coordinator sends `epoch` to any
replica. The history answers "which epoch owns seq s?": the newest epoch whose first seq is at or
below s (first seqs never decrease; equal ones mean the older epoch wrote nothing that counts).
A replica whose last write is of an older epoch than the owner of its applied seq holds a suffix
that no majority ever acknowledged and must be rebuilt by state transfer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_durably(path: Path, data: object) -> None:
    """Write, fsync and rename, then fsync the directory: the file is old or new, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EpochStore:
    """Current epoch and epoch history; in memory only when state_dir is None."""

    def __init__(self, state_dir: str | None) -> None:
        self.path = Path(state_dir) / "epoch.json" if state_dir else None
        self.epoch = 0
        self.history: list[tuple[int, int]] = []  # (epoch, first seq), oldest first
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text())
                self.epoch = int(data["epoch"])
                self.history = [(int(e), int(s)) for e, s in data.get("history", [])]
            except (OSError, ValueError, KeyError, TypeError):
                pass

    def claim(self, epoch: int) -> None:
        """Store `epoch` as ours before any replica hears of it (never reused after a crash)."""
        assert epoch > self.epoch, (epoch, self.epoch)
        self.epoch = epoch
        if self.path is not None:
            write_json_durably(self.path, {"epoch": epoch, "history": self.history})

    def begin(self, epoch: int, first_seq: int) -> None:
        """Record that `epoch` sequences from `first_seq` on, durably."""
        assert epoch >= self.epoch, (epoch, self.epoch)
        self.epoch = epoch
        self.history = [(e, s) for e, s in self.history if e < epoch][-999:]
        self.history.append((epoch, first_seq))
        if self.path is not None:
            write_json_durably(self.path, {"epoch": epoch, "history": self.history})

    def owner(self, seq: int) -> int | None:
        """The epoch whose write is the one that counts at seq (None: unknown, e.g. seq 0)."""
        owner = None
        for epoch, first in self.history:
            if first <= seq:
                owner = epoch
        return owner

    def stale_suffix(self, applied: int, last_epoch: int) -> bool:
        """True when a replica's last write (at `applied`, of `last_epoch`) belongs to an epoch
        that a newer one overwrote at or before `applied`."""
        if applied <= 0 or not last_epoch:
            return False
        owner = self.owner(applied)
        return owner is not None and last_epoch < owner
