"""The C++ core alone: the C++ engineer's benchmarks, run and parsed.

  - bench/core_bench.cpp (built by CMake as `core_bench`): apply throughput and home-timeline
    latency of the state machine, no I/O;
  - bench/core_bench.py: apply throughput through the pybind11 module.
Both print key=value lines; this collects them into the results JSON.

    python -m bench core [--quick] [--out FILE]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench import common


def find_core_bench() -> str | None:
    if os.environ.get("CORE_BENCH_BIN"):
        return os.environ["CORE_BENCH_BIN"]
    for candidate in sorted(common.ROOT.glob("build/*/core_bench")) + \
            [common.ROOT / "build" / "core_bench"]:
        if candidate.exists():
            return str(candidate)
    return shutil.which("core_bench")


def parse(output: str) -> list[dict]:
    rows = []
    for line in output.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "bench" in fields:
            for k, v in fields.items():
                try:
                    fields[k] = float(v) if "." in v else int(v)
                except ValueError:
                    pass
            rows.append(fields)
    return rows


def main(argv: list[str]) -> int:
    p = common.parser("core", __doc__)
    args = p.parse_args(argv)
    common.settle(args)
    n = "50000" if args.quick else "500000"
    rows: list[dict] = []
    progress = common.Progress(2, "core")
    binary = find_core_bench()
    progress.step(f"C++ core_bench {n} ({binary or 'not built'})")
    if binary:
        out = subprocess.run([binary, n], capture_output=True, text=True, timeout=300, check=True)
        rows += [dict(r, via="c++") for r in parse(out.stdout)]
    progress.step(f"module apply {n}")
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("core_bench.py")), n],
                         capture_output=True, text=True, timeout=300, check=True,
                         cwd=common.ROOT)
    rows += [dict(r, via="module") for r in parse(out.stdout)]
    progress.finish()
    for r in rows:
        print(" ".join(f"{k}={v}" for k, v in r.items()))
    common.write_results("core", args, {"results": rows, "core_bench": binary})
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
