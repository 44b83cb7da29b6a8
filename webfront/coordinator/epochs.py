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

from pathlib import Path

from webfront.coordinator.state_files import StateDirError, read_state_file, write_state_file


class EpochStore:
    """Current epoch and epoch history; in memory only when state_dir is None.

    Both changes are stored before they are made in memory: a store that fails (StateDirError,
    e.g. a full disk) leaves the epoch and the history as they were."""

    def __init__(self, state_dir: str | None) -> None:
        self.path = Path(state_dir) / "epoch.json" if state_dir else None
        self.epoch = 0
        self.history: list[tuple[int, int]] = []  # (epoch, first seq), oldest first
        data = read_state_file(self.path) if self.path is not None else None
        if data is not None:
            try:
                self.epoch = int(data["epoch"])
                self.history = [(int(e), int(s)) for e, s in data.get("history", [])]
            except (ValueError, KeyError, TypeError) as exc:
                raise StateDirError(f"{self.path} is corrupt (bad field: {exc!r})") from exc

    def claim(self, epoch: int) -> None:
        """Store `epoch` as ours before any replica hears of it (never reused after a crash)."""
        assert epoch > self.epoch, (epoch, self.epoch)
        self._store(epoch, self.history)

    def begin(self, epoch: int, first_seq: int) -> None:
        """Record that `epoch` sequences from `first_seq` on, durably."""
        assert epoch >= self.epoch, (epoch, self.epoch)
        history = [(e, s) for e, s in self.history if e < epoch][-999:]
        self._store(epoch, history + [(epoch, first_seq)])

    def _store(self, epoch: int, history: list[tuple[int, int]]) -> None:
        if self.path is not None:
            write_state_file(self.path, {"epoch": epoch, "history": history})
        self.epoch, self.history = epoch, history

    def owner(self, seq: int) -> int | None:
        """The epoch whose write is the one that counts at seq (None: unknown, e.g. seq 0)."""
        owner = None
        for epoch, first in self.history:
            if first <= seq:
                owner = epoch
        return owner

    def valid_through(self, applied: int, last_epoch: int) -> int:
        """The seq up to which a replica's writes are the agreed ones: `applied`, or, when a
        newer epoch began at or before it (a stale suffix), the seq before the oldest such
        epoch began. Its writes up to there are older epochs' and agree with every copy."""
        newer = [first for epoch, first in self.history if epoch > last_epoch]
        if applied <= 0 or not last_epoch or not newer or min(newer) > applied:
            return applied
        return min(newer) - 1

    def stale_suffix(self, applied: int, last_epoch: int) -> bool:
        """True when a replica's last write (at `applied`, of `last_epoch`) belongs to an epoch
        that a newer one overwrote at or before `applied`."""
        return self.valid_through(applied, last_epoch) < applied
