"""Counting the replicas' acks against the reply policy.

For each write: which digest is its answer (the one that first gets the settling count of
acks, not the first to arrive), which replicas diverged (those behind any other digest), and
acks lost with a connection (credited when the replica comes back with the same chain). The
Coordinator answers the clients (`_answer`) and takes replicas out (`divergence`); this module
decides when.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webfront.coordinator.broadcaster import PendingWrite, ReplicaLink
    from webfront.coordinator.core import Coordinator


class AckCounter:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator
        # seq -> [(link, its connection, its digest at seq)]: replicas back at a seq nobody
        # had acked yet, credited once the first ack of it shows the same digest
        self._unverified: dict[int, list] = {}

    def batch(self, link: ReplicaLink, seqs: list, digests: list, replies: list) -> bool | None:
        """One replica's acks, in its order of application; a reply None marks a `dup` (seq
        applied before). True if it got further, False if every ack was stale, None if the
        replica diverged (it was taken down: stop reading its frames). One loop for a whole
        batch: this runs for every write on every replica."""
        pending = self.c.broadcaster.pending
        acked = link.acked_seq
        # Acks up to here were counted on an earlier connection. One that lost its log tail
        # (fsync never) acks those seqs again after the replay: checked, not counted twice.
        floor = link.counted_seq
        advanced = False
        last_digest = None
        for seq, digest, reply in zip(seqs, digests, replies):
            if seq <= acked and acked:
                continue
            acked = seq
            advanced = True
            last_digest = digest
            if reply is None:
                # dup: it applied seq before, and `d` is its current digest, not seq's, so
                # nothing says it applied this write: not counted (its heartbeats are checked)
                continue
            p = pending.get(seq)
            if p is None or seq <= floor:  # answered and collected, or counted before
                known = self.c.history.digests.get(seq)
                if known is not None and known != digest:
                    link.acked_seq, link.digest = seq, digest
                    self.c.divergence(link, seq, "ack digest differs")
                    return None
                continue
            # The reply stays opaque bytes (`rb`): the digest chain covers them, so equal
            # digests mean equal replies, and the client gets them spliced, undecoded.
            if p.reply is None:
                p.reply = reply
                p.digest = digest
                if self._unverified and seq in self._unverified:  # after this batch
                    self.c.loop.call_soon(self._verify_returned, seq)
            elif digest != p.digest:
                if self._rival(p, link, digest, reply):
                    link.acked_seq, link.digest = seq, digest
                    return None
                continue
            p.acks += 1
            p.acked_by |= link.bit
            if not p.done:
                if p.acks >= p.needed:
                    self.c._answer(p)  # which settles it too when the counts are the same
            elif not p.settled and p.acks >= p.settle:
                self.agreed(p)  # under `first`: the settling ack after the answer
        link.acked_seq = acked
        if last_digest is not None:
            link.digest = last_digest  # so the status shows the digest of the seq it shows
        return advanced

    def forget_acks_of(self, p: PendingWrite, link: ReplicaLink) -> None:
        """Uncounts `link`'s ack of p (it is leaving the membership)."""
        if p.acked_by & link.bit:
            p.acked_by &= ~link.bit
            p.acks -= 1
        for rival in (p.rivals or {}).values():
            if rival[1] & link.bit:
                rival[1] &= ~link.bit
                rival[2] -= 1

    def reached(self, p: PendingWrite) -> None:
        """p's digest has `needed` acks: answer the client, and settle the digest once it has
        `settle` (the same count but under `first`). batch() has this written out."""
        if not p.done:
            self.c._answer(p)
        elif p.acks >= p.settle:
            self.agreed(p)

    def _rival(self, p: PendingWrite, link: ReplicaLink, digest: bytes, reply: Any) -> bool:
        """An ack of p with another digest than p's first. Decided by count, not by order:
        the digest that gets the settling count first is the answer, and the replicas behind
        any other have diverged; so one odd replica that happens to ack first cannot make the
        healthy ones look diverged. True if `link` is the odd one (taken down now)."""
        if p.settled:  # enough replicas agreed on p.digest before this ack came
            self.c.divergence(link, p.seq, f"digest differs from the {p.acks} replicas' "
                              f"that settled the write: {_hex(digest)} vs {_hex(p.digest)}")
            return True
        if p.rivals is None:
            p.rivals = {}
        rival = p.rivals.setdefault(digest, [reply, 0, 0])
        rival[1] |= link.bit
        rival[2] += 1
        self._decide(p)
        return False

    def _decide(self, p: PendingWrite) -> None:
        """Settle p on the digest with the settling count of acks, if one has it. An answered
        write (`first`) that every replica receiving writes has acked without one getting the
        count is settled on the digest with the most acks, ties going to the one the client
        got: left open, the replicas would go on diverging unseen."""
        lead, most, seen = None, p.acks, p.acked_by
        for digest, (_reply, mask, count) in p.rivals.items():
            seen |= mask
            if count > most:
                lead, most = digest, count
        if most < p.settle:
            if not p.done or any(x.receives_writes and not x.bit & seen for x in self.c.links):
                return
            p.settle = most
        if lead is not None:  # the first digest's side lost
            rival = p.rivals.pop(lead)
            p.rivals[p.digest] = [p.reply, p.acked_by, p.acks]
            p.digest, p.reply, p.acked_by, p.acks = lead, rival[0], rival[1], rival[2]
            if p.done:  # a retry of the request gets the settled reply
                self.c.sequencer.finish(p.rid, p.seq, p.reply)
        self.reached(p)

    def settle_with(self, count: int) -> None:
        """Under `first`, after replicas went down or left: `count` replicas now settle a
        pending write (those still to ack may never do), and those answered are decided now
        where they can be."""
        for p in list(self.c.broadcaster.pending.values()):
            if not p.settled and p.settle > count:
                p.settle = max(p.needed, count)
                if p.done:
                    if p.rivals:
                        self._decide(p)
                    elif p.acks >= p.settle:
                        self.agreed(p)

    def credit_lost(self, link: ReplicaLink, applied: int, digest: bytes) -> None:
        """Count a returning replica's acks that were lost with its connection.

        Its digest at `applied` equal to the one other replicas acked for that seq (the
        witnesses) means the same chain: it holds every write up to there, as they do, so it
        joins their side of every unanswered write up to `applied` (acks up to `counted_seq`
        were counted before it went). With no ack of `applied` yet the check waits for the
        first one (_verify_returned). Where acks of a write disagree, nothing is credited: the
        write waits for acks. Without this a write it applied but could not ack waits for the
        write timeout whenever the other replicas' acks are short of the policy (one hung but
        not yet declared down).
        """
        b = self.c.broadcaster
        if applied <= link.counted_seq or applied < b.gc_seq:
            return  # it lost writes it had acked (see batch), or nothing is left to credit
        pending = b.pending
        top = pending.get(applied)
        if top is None:
            return
        if top.reply is None:
            self._unverified.setdefault(applied, []).append((link, link.conn, digest))
            return
        if top.rivals or top.digest != digest:
            return
        witnesses = top.acked_by & ~link.bit
        for seq in range(max(link.counted_seq + 1, b.gc_seq), applied + 1):
            p = pending.get(seq)
            if p is None or p.settled or p.rivals or p.acked_by & link.bit:
                continue
            if p.acked_by & witnesses:
                p.acks += 1
                p.acked_by |= link.bit
                self.c._maybe_answer(p)
        link.counted_seq = applied

    def _verify_returned(self, seq: int) -> None:
        """The first ack of seq came: settle the replicas that came back at seq."""
        for link, conn, theirs in self._unverified.pop(seq, ()):
            if link.conn is not conn or not link.receives_writes:
                continue  # gone again since: its next return is checked afresh
            # Another digest than the first ack's is one against one: not decided here (no
            # credit); its heartbeats are checked against the digest the acks agree on.
            self.credit_lost(link, seq, theirs)

    def _diverged_at(self, link: ReplicaLink, seq: int, agreed: bytes) -> None:
        if not link.diverged:
            self.c.divergence(link, seq, f"its ack's digest differs from the {_hex(agreed)} "
                              "the settling count of acks agreed on")

    def agreed(self, p: PendingWrite) -> None:
        """p is settled: record its digest, the one the settling count of replicas agreed on
        (what later acks, heartbeats and returning replicas are checked against), and take out
        the replicas behind any other."""
        p.settled = True
        self.c.history.note_digest(p.seq, p.digest)
        if p.rivals:
            lost = 0
            for _reply, mask, _count in p.rivals.values():
                lost |= mask
            for loser in self.c.links:
                if loser.bit & lost:  # after this batch: they may be mid-loop in batch()
                    self.c.loop.call_soon(self._diverged_at, loser, p.seq, p.digest)

    def forget_before(self, seq: int) -> None:
        """No pending write below seq is left to credit (heartbeats still check digests)."""
        for stale in [s for s in self._unverified if s < seq]:
            del self._unverified[stale]


def _hex(digest: Any) -> str:
    return digest.hex() if isinstance(digest, bytes) else repr(digest)
