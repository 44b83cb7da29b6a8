"""A write whose arguments break a replica's frame limits is refused before it gets a seq.

Sequenced, such a write would be refused by every replica as a malformed frame, closing their
connections, and resent on every reconnect: one request could stall the cluster for good.
"""

from __future__ import annotations

import pytest

from webfront.client import Invalid
from webfront.coordinator.limits import argument_problem

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("args", [
    {"actor": "x" * 5000},
    {"actor": "ann", "blob": b"\0" * 5000},
    {f"k{i}": i for i in range(33)},
    {"deep": {"a": {"b": {"c": 1}}}},
    {"many": list(range(10_001))},
    {"é" * 2100: 1},
])
def test_limit_breaking_writes_are_refused_and_the_cluster_keeps_going(cluster, args):
    with cluster.client() as client:
        before = client.status()["last_seq"]
        with pytest.raises(Invalid):
            client.write("create_user", {"username": "limits", "password_hash": "h", **args})
        assert client.status()["last_seq"] == before  # no seq was spent on it
        result = client.write("create_user", {"username": "after", "password_hash": "h"})
        assert result.reply["ok"] and result.seq == before + 1
        assert all(r["state"] == "up" for r in client.status()["replicas"])


def test_arguments_within_limits_pass():
    args = {"actor": "a" * 4096, "list": [{"x": 1}] * 3, "n": -(1 << 63), "b": b"\0" * 4096}
    assert argument_problem(args, "create_post") is None
    assert argument_problem({"list": [{"x": [1]}]}, "create_post")  # a list at level 5
    assert argument_problem({"big": 1 << 70}, "create_post")  # the client cannot send it anyway
