"""Entry point: python -m bench SCENARIO [--quick] [scenario options]."""

from __future__ import annotations

import sys

SCENARIOS = {
    "replication": "bench.replication",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m bench {{{','.join(SCENARIOS)}}} [--quick] [options]",
              file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(SCENARIOS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
