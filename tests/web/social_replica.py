"""A Python replica with the whole social state machine, for web tests before the C++ one.

It is the coordinator tests' stand-in replica (tests/coordinator/fake_replica.py: handshake,
ordering, exactly-once, epochs, reads with min_seq) with its few commands replaced by the full
set from docs/protocol.md (fake_cluster.FakeState). Used only while `replica_server` is not
built; the web tests prefer the real binary.

    python -m tests.web.social_replica --id 1 --listen 127.0.0.1:7001 --insecure-no-auth
"""

from __future__ import annotations

from tests.coordinator import fake_replica as base
from tests.web.fake_cluster import FakeState


def _social(state) -> FakeState:
    if not hasattr(state, "social"):
        state.social = FakeState()
    return state.social


def _execute(self, op: str, a: dict, seq: int, ts: int) -> dict:
    return _social(self).execute(op, dict(a), seq, ts)


def _query(self, q: str, a: dict) -> dict:
    reply = _social(self).query(q, dict(a))
    if q == "state" and reply.get("ok"):
        reply["applied"] = self.applied
    return reply


base.State._execute = _execute
base.State.query = _query

if __name__ == "__main__":
    base.main()
