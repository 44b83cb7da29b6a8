"""A bounded in-memory buffer of recent writes (their encoded frames) and first digests.

A replica coming back after a short absence is sent every write it missed from here; one whose
gap is older than the buffer needs a state transfer instead. Seqs are gap-free, so the buffer
is a dict keyed by seq with a moving lower bound: O(1) append, lookup and eviction.
"""

from __future__ import annotations


class History:
    def __init__(self, max_writes: int, max_bytes: int) -> None:
        self.max_writes = max_writes
        self.max_bytes = max_bytes
        self.first_seq = 1  # lowest seq still held (== next_seq when empty)
        self.next_seq = 1
        self.bytes = 0
        self._frames: dict[int, bytes] = {}
        self.digests: dict[int, bytes] = {}  # first digest seen for seq (from acks)
        self._pins: dict[str, int] = {}  # a state transfer in progress keeps seqs >= its pin
        self._floor: int | None = None  # lowest pin

    def reset(self, last_seq: int) -> None:
        """Start empty after last_seq (a new coordinator knows nothing before it)."""
        self._frames.clear()
        self.digests.clear()
        self.first_seq = self.next_seq = last_seq + 1
        self.bytes = 0

    def append(self, seq: int, frame: bytes) -> None:
        assert seq == self.next_seq, (seq, self.next_seq)
        self._frames[seq] = frame
        self.next_seq = seq + 1
        self.bytes += len(frame)
        frames = self._frames
        while self.bytes > self.max_bytes or len(frames) > self.max_writes:
            if self._floor is not None and self.first_seq >= self._floor:
                if self.bytes <= 4 * self.max_bytes and len(frames) <= 4 * self.max_writes:
                    break  # pinned by a state transfer: keep the writes it will need
                self._pins.clear()  # 4x over: give up the pin, the transfer reads the log
                self._floor = None
            old = frames.pop(self.first_seq)
            self.digests.pop(self.first_seq, None)
            self.bytes -= len(old)
            self.first_seq += 1

    def pin(self, owner: str, seq: int) -> None:
        """Keep every write from seq on while owner's state transfer runs (bounded at 4x the
        caps: past that the pin is dropped and the transfer fetches the source's log)."""
        self._pins[owner] = max(seq, self.first_seq)
        self._floor = min(self._pins.values())

    def unpin(self, owner: str) -> None:
        if self._pins.pop(owner, None) is not None:
            self._floor = min(self._pins.values()) if self._pins else None

    def covers_after(self, applied_seq: int) -> bool:
        """True when every write after applied_seq is still held (a replay can fill the gap)."""
        return applied_seq + 1 >= self.first_seq and applied_seq < self.next_seq

    def frames_after(self, applied_seq: int) -> list[bytes]:
        frames = self._frames
        return [frames[s] for s in range(applied_seq + 1, self.next_seq)]

    def note_digest(self, seq: int, digest: bytes) -> bytes | None:
        """Record the first digest seen for seq; return the one recorded before, if any."""
        if seq < self.first_seq:
            return None
        known = self.digests.get(seq)
        if known is None:
            self.digests[seq] = digest
        return known
