"""Recovery: replica restart replay time for 1,000,000 logged commands and the state transfer
rate (issue 5's targets: under 3 s; at least 200,000 commands/s or 50 MB/s).

Not measured yet: state transfer and membership are being built in webfront/coordinator/
(recovery.py) at the time of writing. This scenario records that, so `python -m bench recovery`
and the docs say so instead of printing a number that measures something else.

    python -m bench recovery [--out FILE]
"""

from __future__ import annotations

import sys

from bench import common


def main(argv: list[str]) -> int:
    p = common.parser("recovery", __doc__)
    args = p.parse_args(argv)
    common.settle(args)
    print("recovery: not measured yet (state transfer in progress); see docs/benchmarks.md",
          file=sys.stderr)
    common.write_results("recovery", args, {"results": [], "status": "not implemented"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
