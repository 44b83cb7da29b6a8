"""Consistency checker: a history plus the final state of every replica in, a verdict out.

What it proves (docs/protocol.md, DESIGN.md guarantees 1-6), each check sound in the face of
indeterminate operations (an `info` write may or may not have been applied, and may have been
applied late, so it never makes a check fail by itself):

- every acknowledged write is present exactly once on every up replica, in seq order:
  acknowledged posts are there once with the id the API returned (unless a delete may have
  removed them), acknowledged registrations exist, follow edges match their owner's last
  acknowledged follow or unfollow;
- no write that failed with a definite error is present;
- nothing is present that no operation asked for (phantom posts, users or edges);
- all up replicas end at the same applied seq, digest and content;
- reads agree with the total order: a linearizable read never misses a post acknowledged before
  it started, nor shows one whose deletion was acknowledged before it started; a session read
  never misses the session's own earlier acknowledged posts.

The final state is a JSON object (written by `state.collect_final_state`)::

    {"replicas": {"r1": {"up": true, "applied": 812, "digest": "ab12...",
                         "counts": {"users": 40, "posts": 300, "follows": 25},
                         "users": ["alice", ...],            # lower-case names found
                         "posts": [{"id": 812, "author": "alice", "text": "...", "seq": 812}, ...],
                         "follows": [["alice", "bob", 40], ...]}}}   # follower, followee, since
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webfront.chaos.history import FAIL, INFO, OK, Fault, Op, read_history


@dataclass(order=True)
class Violation:
    """One broken guarantee, ordered by the time of the operation it names."""

    time: float
    check: str
    message: str
    op_index: int | None = None
    replica: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "op": self.op_index,
                "replica": self.replica, "time": round(self.time, 6)}


class _Model:
    """What the history says about each post, user and follow edge."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.posts_by_text: dict[str, Op] = {}
        self.acked_posts: dict[int, Op] = {}          # id -> op
        self.post_deletes: dict[int, list[Op]] = defaultdict(list)
        self.user_deletes: dict[str, list[Op]] = defaultdict(list)
        self.registrations: dict[str, list[Op]] = defaultdict(list)
        self.edge_ops: dict[tuple[str, str], list[Op]] = defaultdict(list)
        for op in ops:
            p = op.payload
            if op.kind == "post":
                self.posts_by_text[p["text"]] = op
                if op.result == OK and _post_id(op) is not None:
                    self.acked_posts[_post_id(op)] = op
            elif op.kind == "delete_post":
                self.post_deletes[int(p["id"])].append(op)
            elif op.kind == "delete_user":
                self.user_deletes[p["username"].lower()].append(op)
            elif op.kind == "register":
                self.registrations[p["username"].lower()].append(op)
            elif op.kind in ("follow", "unfollow"):
                self.edge_ops[(p["actor"].lower(), p["target"].lower())].append(op)

    # A delete "may have happened" if it was acknowledged or indeterminate; "surely happened"
    # only if acknowledged. `before` bounds the delete's start time (for reads).
    def user_maybe_deleted(self, name: str, before: float = float("inf")) -> bool:
        return any(d.result in (OK, INFO) and d.start < before
                   for d in self.user_deletes.get(name.lower(), ()))

    def user_surely_deleted(self, name: str, before: float = float("inf")) -> bool:
        return any(d.result == OK and d.end < before for d in self.user_deletes.get(name.lower(), ()))

    def post_maybe_deleted(self, post_id: int, author: str, before: float = float("inf")) -> bool:
        return self.user_maybe_deleted(author, before) or any(
            d.result in (OK, INFO) and d.start < before for d in self.post_deletes.get(post_id, ()))

    def post_surely_deleted(self, post_id: int, author: str, before: float = float("inf")) -> bool:
        return self.user_surely_deleted(author, before) or any(
            d.result == OK and d.end < before for d in self.post_deletes.get(post_id, ()))


def _post_id(op: Op) -> int | None:
    if isinstance(op.value, dict) and op.value.get("id") is not None:
        return int(op.value["id"])
    return op.seq


def check(ops: list[Op], faults: list[Fault], final: dict[str, Any] | None,
          require_all_up: bool = True) -> dict[str, Any]:
    """Run every check; return the summary (its `valid` is False if any check failed)."""
    model = _Model(ops)
    violations: list[Violation] = []
    if final is not None:
        violations += _check_final_state(model, final, require_all_up)
    violations += _check_reads(model)
    violations += _check_unique_seqs(ops)
    violations.sort()
    summary = _summary(ops, faults, final, violations)
    return summary


# --------------------------------------------------------------------------- final state

def _check_final_state(model: _Model, final: dict[str, Any], require_all_up: bool) -> list[Violation]:
    out: list[Violation] = []
    replicas: dict[str, dict[str, Any]] = final.get("replicas", {})
    up = {name: r for name, r in replicas.items() if r.get("up") and "posts" in r}
    end = max((op.end for op in model.ops), default=0.0)
    for name, r in replicas.items():
        if name not in up:
            why = r.get("error") or r.get("state") or "not up"
            if require_all_up:
                out.append(Violation(end, "all_up", f"replica {name} is not up at the end: {why}",
                                     replica=name))
    if not up:
        out.append(Violation(end, "all_up", "no replica is up at the end"))
        return out
    for name, r in sorted(up.items()):
        out += _check_replica(model, name, r)
    out += _check_agreement(up, end)
    return out


def _check_replica(model: _Model, name: str, r: dict[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    posts = r["posts"]

    def bad(op: Op | None, check_name: str, message: str) -> None:
        out.append(Violation(op.end if op else float("inf"), check_name,
                             f"replica {name}: {message}", op.index if op else None, name))

    # Seq order: newest first, strictly decreasing, id == seq of its write.
    ids = [int(p["id"]) for p in posts]
    for a, b in itertools.pairwise(ids):
        if not a > b:
            bad(model.acked_posts.get(b), "seq_order", f"posts out of seq order: {a} before {b}")
            break
    for p in posts:
        if p.get("seq") is not None and int(p["seq"]) != int(p["id"]):
            bad(model.acked_posts.get(int(p["id"])), "seq_order",
                f"post {p['id']} has seq {p['seq']}")
    if r.get("applied") is not None and ids and max(ids) > int(r["applied"]):
        bad(None, "seq_order", f"post {max(ids)} is beyond applied seq {r['applied']}")

    by_text: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in posts:
        by_text[p["text"]].append(p)
    for text, found in by_text.items():
        op = model.posts_by_text.get(text)
        if op is None:
            bad(None, "phantom", f"post {found[0]['id']} ({text!r}) was never written")
            continue
        if len(found) > 1:
            bad(op, "exactly_once", f"{op.describe()} applied {len(found)} times: "
                f"ids {[p['id'] for p in found]}")
        if op.result == FAIL:
            bad(op, "failed_write_present", f"{op.describe()} failed ({op.error}) but post "
                f"{found[0]['id']} is present")
        if op.result == OK:
            want = _post_id(op)
            if want is not None and all(int(p["id"]) != want for p in found):
                bad(op, "wrong_id", f"{op.describe()} was acknowledged as id {want}, "
                    f"present as {[p['id'] for p in found]}")
        author = op.payload.get("actor")
        if author and any(p.get("author", "").lower() != author.lower() for p in found):
            bad(op, "wrong_author", f"{op.describe()} present with author {found[0].get('author')}")
    for post_id, op in model.acked_posts.items():
        author = op.payload.get("actor", "")
        present = op.payload["text"] in by_text
        if not present and not model.post_maybe_deleted(post_id, author):
            bad(op, "lost_write", f"acknowledged post {post_id} from {op.describe()} is missing")
        if present and model.post_surely_deleted(post_id, author):
            bad(op, "lost_delete", f"post {post_id} is present after its deletion was acknowledged")

    # Users.
    users = {u.lower() for u in r.get("users", [])}
    for uname, regs in model.registrations.items():
        acked = [o for o in regs if o.result == OK]
        if uname in users:
            if model.user_surely_deleted(uname):
                bad(model.user_deletes[uname][-1], "lost_delete",
                    f"user {uname} exists after its deletion was acknowledged")
            elif not acked and all(o.result == FAIL for o in regs):
                bad(regs[0], "failed_write_present",
                    f"{regs[0].describe()} failed ({regs[0].error}) but user {uname} exists")
        elif acked and not model.user_maybe_deleted(uname):
            bad(acked[0], "lost_write", f"registration of {uname} ({acked[0].describe()}) "
                "was acknowledged but the user is missing")
    counts = r.get("counts") or {}
    if counts.get("users") is not None and int(counts["users"]) != len(users):
        bad(None, "phantom", f"holds {counts['users']} users, the history accounts for {len(users)}")
    if counts.get("posts") is not None and int(counts["posts"]) != len(posts):
        bad(None, "phantom", f"counts {counts['posts']} posts, lists {len(posts)}")

    # Follow edges: each (actor, target) pair is driven by one process, one op at a time.
    edges = Counter((a.lower(), b.lower()) for a, b, *_ in r.get("follows", []))
    for edge, n in edges.items():
        if n > 1:
            bad(None, "exactly_once", f"follow edge {edge[0]}->{edge[1]} listed {n} times")
        if edge not in model.edge_ops:
            bad(None, "phantom", f"follow edge {edge[0]}->{edge[1]} was never requested")
    for edge, edge_ops in model.edge_ops.items():
        if model.user_maybe_deleted(edge[0]) or model.user_maybe_deleted(edge[1]):
            if edge in edges and (model.user_surely_deleted(edge[0])
                                  or model.user_surely_deleted(edge[1])):
                bad(edge_ops[-1], "lost_delete", f"edge {edge[0]}->{edge[1]} outlived a deleted user")
            continue
        allowed = _allowed_edge_states(edge_ops)
        present = edge in edges
        if present not in allowed:
            last = [o for o in edge_ops if o.result == OK][-1]
            bad(last, "lost_write" if last.kind == "follow" else "lost_delete",
                f"edge {edge[0]}->{edge[1]} is {'present' if present else 'absent'} after "
                f"{last.describe()}")
    if counts.get("follows") is not None and int(counts["follows"]) != sum(edges.values()):
        bad(None, "phantom", f"counts {counts['follows']} follows, lists {sum(edges.values())}")
    return out


def _allowed_edge_states(edge_ops: list[Op]) -> set[bool]:
    """Final presence of an edge: its last acknowledged op decides, but any indeterminate op (which
    may have been applied late) or a definite failure of a no-op may leave the other state."""
    ordered = sorted(edge_ops, key=lambda o: o.start)
    acked = [o for o in ordered if o.result == OK]
    allowed = {acked[-1].kind == "follow"} if acked else {False}
    for o in ordered:
        if o.result == INFO:
            allowed.add(o.kind == "follow")
    return allowed


def _check_agreement(up: dict[str, dict[str, Any]], end: float) -> list[Violation]:
    """All up replicas at one seq and digest, with the same content. The odd one out is named."""
    out: list[Violation] = []
    for field_name, key in (("applied seq", lambda r: r.get("applied")),
                            ("digest", lambda r: r.get("digest")),
                            ("content", _content_key)):
        values = {name: key(r) for name, r in up.items()}
        tally = Counter(values.values())
        if len(tally) <= 1:
            continue
        majority, _ = tally.most_common(1)[0]
        for name, value in sorted(values.items()):
            if value != majority:
                shown = value if field_name != "content" else "differs"
                out.append(Violation(end, "divergence", f"replica {name} {field_name} "
                                     f"{shown} != {majority if field_name != 'content' else 'others'}",
                                     replica=name))
    return out


def _content_key(r: dict[str, Any]) -> str:
    posts = [(p["id"], p.get("author", "").lower(), p["text"]) for p in r.get("posts", [])]
    follows = sorted((a.lower(), b.lower()) for a, b, *_ in r.get("follows", []))
    users = sorted(u.lower() for u in r.get("users", []))
    return json.dumps([posts, follows, users])


# --------------------------------------------------------------------------- reads

def _check_unique_seqs(ops: list[Op]) -> list[Violation]:
    """Total order: no two acknowledged writes were given the same seq."""
    out: list[Violation] = []
    owner: dict[int, Op] = {}
    for op in sorted(ops, key=lambda o: o.end):
        if not op.is_write or op.result != OK or op.seq is None:
            continue
        first = owner.setdefault(int(op.seq), op)
        if first is not op:
            out.append(Violation(op.end, "total_order", f"{op.describe()} was acknowledged with "
                                 f"seq {op.seq}, already given to {first.describe()}", op.index))
    return out


class _ScopeIndex:
    """Acknowledged posts of one scope sorted by acknowledgement time, with a running maximum of
    their ids, so a read finds "acknowledged before I started, newer than my page's oldest"
    by walking back from a bisection point instead of scanning every post."""

    def __init__(self, posts: list[tuple[int, Op]]) -> None:
        self.posts = sorted(posts, key=lambda kv: kv[1].end)
        self.ends = [op.end for _, op in self.posts]
        self.max_id: list[int] = []
        running = -1
        for post_id, _ in self.posts:
            running = max(running, post_id)
            self.max_id.append(running)

    def acked_before(self, time: float, above: int) -> Iterator[tuple[int, Op]]:
        """Posts acknowledged before `time` whose id is above `above`, newest first."""
        i = bisect.bisect_left(self.ends, time) - 1
        while i >= 0 and self.max_id[i] > above:
            post_id, op = self.posts[i]
            if post_id > above:
                yield post_id, op
            i -= 1


def _check_reads(model: _Model) -> list[Violation]:
    out: list[Violation] = []
    everything = _ScopeIndex(list(model.acked_posts.items()))
    by_author: dict[str, list[tuple[int, Op]]] = defaultdict(list)
    for post_id, op in model.acked_posts.items():
        by_author[op.payload.get("actor", "").lower()].append((post_id, op))
    author_index = {a: _ScopeIndex(posts) for a, posts in by_author.items()}
    empty = _ScopeIndex([])
    for read in model.ops:
        if not read.kind.startswith("read_") or read.result != OK:
            continue
        if not isinstance(read.value, dict) or "ids" not in read.value:
            continue
        mode = read.payload.get("mode", "session")
        scope = read.payload.get("scope", "")
        session = read.payload.get("session")
        ids = [int(i) for i in read.value["ids"]]
        seen = set(ids)
        # A full page may hide older posts even when the server sent no `next`.
        full = read.value.get("more") or len(ids) >= int(read.payload.get("limit") or 10**9)
        lo = min(ids) if ids and full else -1
        if scope == "public":
            index = everything
        else:
            index = author_index.get(scope.partition(":")[2].lower(), empty)
        for post_id, post in index.acked_before(read.start, lo):
            if mode != "linearizable" and (session is None or post.payload.get("session") != session):
                continue
            author = post.payload.get("actor", "")
            if post_id not in seen and not model.post_maybe_deleted(post_id, author, read.end):
                out.append(Violation(
                    read.end, "stale_read",
                    f"{mode} read {read.describe()} of {scope} misses post {post_id} "
                    f"acknowledged by {post.describe()} before the read started", read.index))
                break
        for post_id in ids:
            post = model.acked_posts.get(post_id)
            if post is None:
                continue
            author = post.payload.get("actor", "")
            own = session is not None and post.payload.get("session") == session
            if (mode == "linearizable" or own) and model.post_surely_deleted(post_id, author,
                                                                              read.start):
                out.append(Violation(
                    read.end, "stale_read",
                    f"{mode} read {read.describe()} of {scope} shows post {post_id} whose "
                    "deletion was acknowledged before the read started", read.index))
                break
    return out


# --------------------------------------------------------------------------- summary

def longest_write_gap(ops: list[Op]) -> dict[str, float]:
    """The longest stretch of the run in which no write succeeded (start, end, seconds).

    Counted from the first successful write other than a registration: before that the clients
    are still signing up and logging in (password hashing, seconds on a busy machine), which
    says nothing about the cluster's availability."""
    if not ops:
        return {"seconds": 0.0, "from": 0.0, "to": 0.0}
    warm = [op.end for op in ops if op.is_write and op.result == OK and op.kind != "register"]
    begin = min(warm) if warm else min(op.start for op in ops)
    finish = max(op.end for op in ops)
    marks = [begin] + sorted(op.end for op in ops
                             if op.is_write and op.result == OK and op.end >= begin) + [finish]
    best = max(itertools.pairwise(marks), key=lambda ab: ab[1] - ab[0])
    return {"seconds": round(best[1] - best[0], 6), "from": round(best[0], 6),
            "to": round(best[1], 6)}


def write_gaps_by_fault(ops: list[Op], faults: list[Fault],
                        after: float = 2.0) -> dict[str, float]:
    """Per fault kind, the longest window without a successful write that overlaps a fault of
    that kind (from its start to `after` seconds past its heal, to cover recovery).

    Attribution: a gap counts from the fault's start (the time before it is not the fault's
    doing); a fault's window ends where the next fault starts, if that is sooner, and a gap
    still open then counts only up to that moment (the rest is the next fault's doing:
    otherwise a coordinator kill right after a replica heals would be charged to the replica
    fault). A `coordinator` fault is measured from its restart: the nemesis keeps it dead for
    the fault's whole duration, so what says how fast writes resume is the time after the
    restart (under `webfront cluster up` the supervisor restarts it at once)."""
    marks = sorted(op.end for op in ops if op.is_write and op.result == OK)
    if len(marks) < 2:
        return {}
    spans: list[tuple[str, float, float]] = []  # kind, fault start, heal
    open_faults: dict[tuple[str, str], float] = {}
    for f in sorted(faults, key=lambda f: f.time):
        if f.phase == "start":
            open_faults[(f.kind, f.target)] = f.time
        elif (f.kind, f.target) in open_faults:
            spans.append((f.kind, open_faults.pop((f.kind, f.target)), f.time))
    starts = sorted(begin for _, begin, _ in spans)
    worst: dict[str, float] = {}
    for kind, begin, heal in spans:
        end = heal + after
        later = starts[bisect.bisect_right(starts, begin):]
        clipped = bool(later) and later[0] < end
        if clipped:
            end = later[0]
        if kind == "coordinator":
            begin = heal
        lo = max(0, bisect.bisect_left(marks, begin) - 1)
        hi = min(len(marks) - 1, bisect.bisect_right(marks, end))
        gap = 0.0
        for a, b in itertools.pairwise(marks[lo:hi + 1]):
            if b <= begin or a >= end:
                continue
            stop = min(b, end) if clipped else b
            gap = max(gap, stop - max(a, begin))
        worst[kind] = round(max(worst.get(kind, 0.0), gap), 6)
    return dict(sorted(worst.items()))


def _summary(ops: list[Op], faults: list[Fault], final: dict[str, Any] | None,
             violations: list[Violation]) -> dict[str, Any]:
    results = Counter(op.result for op in ops)
    writes = [op for op in ops if op.is_write]
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: {OK: 0, FAIL: 0, INFO: 0})
    for op in ops:
        by_kind[op.kind][op.result] += 1
    checks = Counter(v.check for v in violations)
    replicas = {}
    for name, r in (final or {}).get("replicas", {}).items():
        replicas[name] = {"up": bool(r.get("up")), "applied": r.get("applied"),
                          "digest": r.get("digest"), "posts": len(r.get("posts", []))}
    return {
        "valid": not violations,
        "operations": len(ops),
        "acknowledged": results[OK],
        "failed": results[FAIL],
        "indeterminate": results[INFO],
        "writes": {"total": len(writes), "acknowledged": sum(o.result == OK for o in writes),
                   "failed": sum(o.result == FAIL for o in writes),
                   "indeterminate": sum(o.result == INFO for o in writes)},
        "by_kind": dict(sorted(by_kind.items())),
        "faults": dict(sorted(Counter(f.kind for f in faults if f.phase == "start").items())),
        "longest_write_gap": longest_write_gap(ops),
        "longest_write_gap_by_fault": write_gaps_by_fault(ops, faults),
        "lost": checks["lost_write"],
        "divergences": checks["divergence"],
        "violations_by_check": dict(sorted(checks.items())),
        "first_bad": violations[0].as_dict() if violations else None,
        "violations": [v.as_dict() for v in violations[:100]],
        "replicas": replicas,
    }


def format_summary(summary: dict[str, Any]) -> str:
    gap = summary["longest_write_gap"]
    lines = [
        f"chaos check: {'PASS' if summary['valid'] else 'FAIL'}",
        (f"  operations {summary['operations']}: acknowledged {summary['acknowledged']}, "
        f"failed {summary['failed']}, indeterminate {summary['indeterminate']}"),
        (f"  writes {summary['writes']['total']}: acknowledged {summary['writes']['acknowledged']}, "
        f"failed {summary['writes']['failed']}, indeterminate {summary['writes']['indeterminate']}"),
        "  faults: " + (", ".join(f"{k} {v}" for k, v in summary["faults"].items()) or "none"),
        (f"  longest window without a successful write: {gap['seconds']:.3f} s "
        f"(t={gap['from']:.3f}-{gap['to']:.3f})"),
        f"  lost writes {summary['lost']}, divergences {summary['divergences']}",
    ]
    if summary.get("longest_write_gap_by_fault"):
        lines.insert(5, "  longest window without a successful write around a fault: " + ", ".join(
            f"{k} {v:.3f} s" + (" (from its restart)" if k == "coordinator" else "")
            for k, v in summary["longest_write_gap_by_fault"].items()))
    for name, r in sorted(summary["replicas"].items()):
        lines.append(f"  replica {name}: up={r['up']} applied={r['applied']} "
                     f"digest={(r['digest'] or '')[:16]} posts={r['posts']}")
    if summary["first_bad"]:
        lines.append(f"  FIRST BAD: [{summary['first_bad']['check']}] "
                     f"{summary['first_bad']['message']}")
        more = len(summary["violations"]) - 1
        if more > 0:
            lines.append(f"  ... and {more} more (see summary JSON)")
    return "\n".join(lines)


def check_files(history: str | Path, final: str | Path | None, out: str | Path | None = None,
                require_all_up: bool = True) -> dict[str, Any]:
    ops, faults = read_history(history)
    final_state = json.loads(Path(final).read_text()) if final else None
    summary = check(ops, faults, final_state, require_all_up=require_all_up)
    if out:
        Path(out).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webfront.chaos.checker",
                                     description="Check a chaos history and final state.")
    parser.add_argument("history")
    parser.add_argument("final", nargs="?")
    parser.add_argument("--out", help="write the summary JSON here")
    parser.add_argument("--allow-down", action="store_true",
                        help="do not fail when a replica is not up at the end")
    args = parser.parse_args(list(argv) if argv is not None else None)
    summary = check_files(args.history, args.final, args.out, not args.allow_down)
    print(format_summary(summary))
    return 0 if summary["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
