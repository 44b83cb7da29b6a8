"""The checker catches what it must: a lost write, a duplicate, a stale read, a divergent
replica, a failed write that is present; and a clean history passes."""

from __future__ import annotations

import copy
import json

import pytest

from webfront.chaos import checker
from webfront.chaos.history import FAIL, INFO, OK, HistoryWriter, read_history


def _clean(tmp_path):
    """A small clean history: two users register, post, follow, delete a post, read."""
    h = HistoryWriter(tmp_path / "history.jsonl", clock_origin=0.0)
    t = iter(range(1000))

    def op(process, kind, result, **kw):
        start = float(next(t))
        return h.op(process, kind, start, result, end=start + 0.5, **kw)

    op(0, "register", OK, seq=1, payload={"username": "alice", "session": "s0"})
    op(1, "register", OK, seq=2, payload={"username": "bob", "session": "s1"})
    op(0, "post", OK, seq=3, payload={"actor": "alice", "text": "a1", "session": "s0"},
       value={"id": 3, "seq": 3})
    op(1, "post", OK, seq=4, payload={"actor": "bob", "text": "b1", "session": "s1"},
       value={"id": 4, "seq": 4})
    op(0, "follow", OK, payload={"actor": "alice", "target": "bob", "session": "s0"})
    op(1, "post", OK, seq=6, payload={"actor": "bob", "text": "b2", "session": "s1"},
       value={"id": 6, "seq": 6})
    op(1, "delete_post", OK, payload={"id": 6, "actor": "bob", "session": "s1"})
    op(0, "post", FAIL, payload={"actor": "alice", "text": "x" * 300, "session": "s0"},
       error="invalid")
    op(0, "post", INFO, payload={"actor": "alice", "text": "a-maybe", "session": "s0"},
       error="timeout")
    op(0, "register", FAIL, payload={"username": "public", "session": "s2"}, error="invalid")
    op(2, "read_public", OK, payload={"scope": "public", "mode": "linearizable"},
       value={"ids": [4, 3], "more": False})
    op(0, "read_user_posts", OK, payload={"scope": "user:alice", "mode": "session",
                                          "session": "s0"}, value={"ids": [3], "more": False})
    h.fault("kill", "r2", "start")
    h.fault("kill", "r2", "end")
    h.close()
    replica = {"up": True, "applied": 9, "digest": "00ff",
               "counts": {"users": 2, "posts": 2, "follows": 1},
               "users": ["alice", "bob"],
               "posts": [{"id": 4, "author": "bob", "text": "b1", "seq": 4},
                         {"id": 3, "author": "alice", "text": "a1", "seq": 3}],
               "follows": [["alice", "bob", 5]]}
    final = {"replicas": {name: copy.deepcopy(replica) for name in ("r1", "r2", "r3")}}
    return tmp_path / "history.jsonl", final


def _run(path, final):
    ops, faults = read_history(path)
    return checker.check(ops, faults, final)


def test_clean_history_passes(tmp_path):
    path, final = _clean(tmp_path)
    summary = _run(path, final)
    assert summary["valid"], summary["violations"]
    assert summary["faults"] == {"kill": 1}
    assert summary["writes"]["indeterminate"] == 1
    assert summary["first_bad"] is None


def test_indeterminate_write_may_be_present(tmp_path):
    path, final = _clean(tmp_path)
    for r in final["replicas"].values():
        r["posts"].insert(0, {"id": 9, "author": "alice", "text": "a-maybe", "seq": 9})
        r["counts"]["posts"] = 3
    assert _run(path, final)["valid"]


def test_lost_write_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    r3 = final["replicas"]["r3"]
    r3["posts"] = [p for p in r3["posts"] if p["id"] != 3]
    r3["counts"]["posts"] = 1
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["lost"] >= 1
    assert summary["first_bad"]["check"] == "lost_write"
    assert "post 3" in summary["first_bad"]["message"] and "r3" in summary["first_bad"]["message"]


def test_lost_follow_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    for r in final["replicas"].values():
        r["follows"] = []
        r["counts"]["follows"] = 0
    summary = _run(path, final)
    assert not summary["valid"]
    assert any("alice->bob" in v["message"] for v in summary["violations"])


def test_duplicate_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    for r in final["replicas"].values():
        r["posts"].insert(0, {"id": 7, "author": "bob", "text": "b1", "seq": 7})
        r["counts"]["posts"] = 3
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["first_bad"]["check"] == "exactly_once"
    assert "2 times" in summary["first_bad"]["message"]


def test_failed_write_present_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    for r in final["replicas"].values():
        r["posts"].insert(0, {"id": 9, "author": "alice", "text": "x" * 300, "seq": 9})
        r["counts"]["posts"] = 3
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["violations_by_check"].get("failed_write_present") == 3


def test_deleted_post_still_present_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    r1 = final["replicas"]["r1"]
    r1["posts"].insert(0, {"id": 6, "author": "bob", "text": "b2", "seq": 6})
    r1["counts"]["posts"] = 3
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["violations_by_check"].get("lost_delete") == 1


def test_stale_linearizable_read_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for rec in records:
        if rec.get("kind") == "read_public":
            rec["value"]["ids"] = [3]  # misses post 4, acknowledged before the read started
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["first_bad"]["check"] == "stale_read"
    assert "misses post 4" in summary["first_bad"]["message"]


def test_stale_session_read_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in records:
        if rec.get("kind") == "read_user_posts":
            rec["value"]["ids"] = []  # alice does not see her own acknowledged post
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["first_bad"]["check"] == "stale_read"
    assert "session read" in summary["first_bad"]["message"]


def test_session_read_may_miss_others_posts(tmp_path):
    path, final = _clean(tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records.append({"type": "op", "index": 99, "process": 0, "kind": "read_public",
                    "start": 50.0, "end": 50.5, "result": OK, "seq": None,
                    "payload": {"scope": "public", "mode": "session", "session": "s0"},
                    "value": {"ids": [3], "more": False}, "error": None})
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert _run(path, final)["valid"]


def test_read_showing_deleted_post_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records.append({"type": "op", "index": 99, "process": 2, "kind": "read_public",
                    "start": 50.0, "end": 50.5, "result": OK, "seq": None,
                    "payload": {"scope": "public", "mode": "linearizable"},
                    "value": {"ids": [6, 4, 3], "more": False}, "error": None})
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = _run(path, final)
    assert summary["first_bad"]["check"] == "stale_read"
    assert "shows post 6" in summary["first_bad"]["message"]


@pytest.mark.parametrize("field", ["digest", "applied"])
def test_divergent_replica_is_caught(tmp_path, field):
    path, final = _clean(tmp_path)
    final["replicas"]["r2"][field] = "beef" if field == "digest" else 8
    summary = _run(path, final)
    assert not summary["valid"]
    assert summary["divergences"] == 1
    assert "replica r2" in summary["first_bad"]["message"]


def test_divergent_content_names_the_odd_replica(tmp_path):
    path, final = _clean(tmp_path)
    final["replicas"]["r1"]["posts"][0]["text"] = "b1"
    final["replicas"]["r1"]["posts"][1]["author"] = "mallory"
    summary = _run(path, final)
    assert not summary["valid"]
    assert any(v["check"] == "divergence" and v["replica"] == "r1" for v in summary["violations"])


def test_replica_down_at_end_is_reported(tmp_path):
    path, final = _clean(tmp_path)
    final["replicas"]["r3"] = {"up": False, "error": "connection refused"}
    summary = _run(path, final)
    assert summary["first_bad"]["check"] == "all_up"
    ops, faults = read_history(path)
    assert checker.check(ops, faults, final, require_all_up=False)["valid"]


def test_phantom_post_is_caught(tmp_path):
    path, final = _clean(tmp_path)
    for r in final["replicas"].values():
        r["posts"].insert(0, {"id": 8, "author": "bob", "text": "never written", "seq": 8})
        r["counts"]["posts"] = 3
    assert _run(path, final)["violations_by_check"]["phantom"] == 3


def test_longest_write_gap():
    from webfront.chaos.history import Op
    ops = [Op(0, 0, "post", 0.0, 1.0, OK), Op(1, 0, "post", 1.0, 4.5, INFO),
           Op(2, 0, "post", 4.5, 5.0, OK), Op(3, 0, "read_public", 5.0, 6.0, OK)]
    gap = checker.longest_write_gap(ops)
    assert gap == {"seconds": 4.0, "from": 1.0, "to": 5.0}


def test_command_line_exits_nonzero_on_failure(tmp_path, capsys):
    path, final = _clean(tmp_path)
    final["replicas"]["r2"]["digest"] = "beef"
    final_path = tmp_path / "final.json"
    final_path.write_text(json.dumps(final))
    out = tmp_path / "summary.json"
    assert checker.main([str(path), str(final_path), "--out", str(out)]) == 1
    assert "FIRST BAD" in capsys.readouterr().out
    assert json.loads(out.read_text())["valid"] is False


def test_torn_last_line_is_ignored(tmp_path):
    path, final = _clean(tmp_path)
    with path.open("a") as f:
        f.write('{"type": "op", "ind')
    assert _run(path, final)["valid"]


def test_two_writes_with_one_seq_are_caught(tmp_path):
    path, final = _clean(tmp_path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in records:
        if rec.get("kind") == "post" and rec.get("seq") == 4:
            rec["seq"] = 3
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = _run(path, final)
    assert summary["violations_by_check"].get("total_order") == 1


def test_write_gap_by_fault_kind():
    from webfront.chaos.history import Fault, Op
    ops = [Op(i, 0, "post", t - 0.01, t, OK) for i, t in enumerate([1.0, 2.0, 2.1, 3.5, 3.6, 9.0])]
    faults = [Fault(0, "kill", "r1", "start", 2.05), Fault(1, "kill", "r1", "end", 2.5)]
    assert checker.write_gaps_by_fault(ops, faults, after=0.5) == {"kill": 1.4}


def test_write_gap_is_charged_to_the_fault_that_caused_it():
    """A coordinator kill soon after a replica fault heals: the gap it causes belongs to the
    coordinator (measured from its restart), not to the replica fault still in its 2 s tail;
    and time before a fault started is not charged to it."""
    from webfront.chaos.history import Fault, Op
    ends = [1.0, 1.9, 2.2, 2.4, 3.0, 3.2, 7.3, 7.4]
    ops = [Op(i, 0, "post", t - 0.01, t, OK) for i, t in enumerate(ends)]
    faults = [Fault(0, "pause", "r1", "start", 2.0), Fault(1, "pause", "r1", "end", 3.1),
              Fault(2, "coordinator", "coordinator", "start", 3.3),
              Fault(3, "coordinator", "coordinator", "end", 7.0)]
    gaps = checker.write_gaps_by_fault(ops, faults, after=2.0)
    assert gaps["pause"] == pytest.approx(0.6)  # 2.4 -> 3.0; 3.2 -> 7.3 is clipped at 3.3
    assert gaps["coordinator"] == pytest.approx(0.3)  # restart at 7.0, first write 7.3
