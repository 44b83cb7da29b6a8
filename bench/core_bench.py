"""Apply throughput through the Python module (pre-encoded bodies, as a coordinator sends them).

    .venv/bin/python bench/core_bench.py [n]
"""

from __future__ import annotations

import sys
import time

from webfront.core import StateMachine, write_body


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    sm = StateMachine()
    seq = 0
    for i in range(1000):
        seq += 1
        sm.apply(write_body(seq, "create_user", {"username": f"user{i}", "password_hash": b"h"}))
    bodies = []
    for i in range(n):
        seq += 1
        if i % 2 == 0:
            args = {"actor": f"user{i % 1000}", "text": "hello world"}
            bodies.append(write_body(seq, "create_post", args, rid=f"rid-{i}"))
        else:
            args = {"actor": f"user{i % 1000}", "target": f"user{(i * 7 + 1) % 1000}"}
            bodies.append(write_body(seq, "follow", args, rid=f"rid-{i}"))
    start = time.perf_counter()
    for body in bodies:
        sm.apply(body)
    elapsed = time.perf_counter() - start
    print(f"bench=module_apply commands={n} seconds={elapsed:.3f} commands_per_s={n / elapsed:.0f}")


if __name__ == "__main__":
    main()
