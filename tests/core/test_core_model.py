"""Model-based test: the C++ state machine and a Python reference model, command by command."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.core.reference_model import Model, strip_msg
from webfront.core import Replica

NAMES = ["alice", "Alice", "bob", "BOB", "carol", "dave_1", "eve", "xy", "a-b", "mallory"]
names = st.sampled_from(NAMES)
texts = st.one_of(
    st.sampled_from(["hello", "  padded  ", "", "   ", "\u3000x\u2028", "é" * 280, "é" * 281]),
    st.text(max_size=30),
)
ints = st.integers(min_value=-3, max_value=400)
limits = st.one_of(st.none(), st.integers(min_value=-1, max_value=5), st.just(200), st.just(201))
befores = st.one_of(st.none(), st.integers(min_value=0, max_value=400), st.just("x"))


class ReplicaVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cpp = Replica()
        self.model = Model()
        self.ts = 1_700_000_000_000_000

    def write(self, op: str, args: object, rid: str = "") -> None:
        self.ts += 1000
        got = self.cpp.apply(op, args, ts=self.ts, rid=rid)
        want = self.model.apply(op, args, self.ts, rid)
        assert strip_msg(got) == want, (op, args, got, want)

    def read(self, q: str, args: object) -> None:
        got = self.cpp.query(q, args)
        want = self.model.query(q, args)
        assert strip_msg(got) == want, (q, args, got, want)

    @rule(name=names, pw=st.sampled_from([b"h", "hash", b"", b"x" * 257]),
          display=st.one_of(st.none(), st.text(max_size=55)))
    def create_user(self, name: str, pw: object, display: str | None) -> None:
        args = {"username": name, "password_hash": pw}
        if display is not None:
            args["display_name"] = display
        self.write("create_user", args)

    @rule(name=names)
    def delete_user(self, name: str) -> None:
        self.write("delete_user", {"actor": name})

    @rule(name=names, text=texts, rid=st.sampled_from(["", "r1", "r2", "r3"]))
    def create_post(self, name: str, text: str, rid: str) -> None:
        self.write("create_post", {"actor": name, "text": text}, rid)

    @rule(name=names, data=st.data())
    def create_many_posts(self, name: str, data: st.DataObject) -> None:
        for i in range(data.draw(st.integers(1, 5))):
            self.write("create_post", {"actor": name, "text": f"post {i}"})

    def since_of(self, name: str, stale: bool | None) -> object:
        """An `actor_since` for `name`: its account's created_at, an older one (the name deleted
        and taken again) when stale, a mistyped value when None."""
        if stale is None:
            return "x"
        user = self.model._user(name)
        return (user.created_at if user else 1) - (1000 if stale else 0)

    @rule(name=names, op=st.sampled_from(["create_post", "delete_post", "follow", "delete_user"]),
          stale=st.sampled_from([False, True, None]))
    def as_account(self, name: str, op: str, stale: bool | None) -> None:
        """A write naming its account by created_at (`actor_since`)."""
        since = self.since_of(name, stale)
        args = {"actor": name, "actor_since": since, "text": "hi", "id": 1, "target": "bob"}
        self.write(op, args)

    @rule(name=names, q=st.sampled_from(["home", "relation"]),
          stale=st.sampled_from([False, True, None]))
    def read_as_account(self, name: str, q: str, stale: bool | None) -> None:
        """A read for the session's own account (home timeline, relation) with `actor_since`."""
        since = self.since_of(name, stale)
        key = "username" if q == "home" else "actor"
        self.read(q, {key: name, "actor_since": since, "target": "bob"})

    @rule(name=names, pid=ints)
    def delete_post(self, name: str, pid: int) -> None:
        self.write("delete_post", {"actor": name, "id": pid})

    @rule(a=names, b=names, on=st.booleans())
    def follow(self, a: str, b: str, on: bool) -> None:
        self.write("follow" if on else "unfollow", {"actor": a, "target": b})

    @rule(op=st.sampled_from(["create_user", "create_post", "follow", "delete_post", "nope"]),
          args=st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),
                         st.dictionaries(st.sampled_from(["actor", "text", "id", "username",
                                                          "target", "password_hash"]),
                                         st.one_of(st.integers(-(2**63), 2**63 - 1), st.none(), st.binary(max_size=3),
                                                   st.booleans(), names), max_size=4)))
    def garbage_write(self, op: str, args: object) -> None:
        self.write(op, args)

    @rule(q=st.sampled_from(["user_posts", "home", "followers", "following", "user"]),
          name=names, before=befores, limit=limits)
    def user_query(self, q: str, name: str, before: object, limit: object) -> None:
        args: dict[str, object] = {"username": name}
        if before is not None:
            args["before"] = before
        if limit is not None:
            args["limit"] = limit
        self.read(q, args)

    @rule(before=befores, limit=limits)
    def public(self, before: object, limit: object) -> None:
        self.read("public", {"before": before, "limit": limit})

    @rule(prefix=st.one_of(st.sampled_from(["", "a", "AL", "b", "x" * 21]), st.text(max_size=3)),
          limit=limits)
    def search(self, prefix: str, limit: object) -> None:
        self.read("search", {"prefix": prefix, "limit": limit})

    @rule(a=st.one_of(names, st.just(1)), b=names)
    def relation(self, a: object, b: str) -> None:
        self.read("relation", {"actor": a, "target": b})

    @rule()
    def bad_query(self) -> None:
        self.read("nope", {})

    @invariant()
    def same_state_counts(self) -> None:
        self.read("state", None)


ReplicaVsModel.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReplicaVsModel = ReplicaVsModel.TestCase
