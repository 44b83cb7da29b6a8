"""The machine's own latency baselines, measured in the same run as a benchmark's results.

On this 2-vCPU virtual machine, waking an idle vCPU costs tens of microseconds and that cost
moves through the day, and a write through our cluster pays it on every hop. So a latency is
only worth comparing next to what the machine itself costs at that moment. bench/machine.c
(compiled on first use into build/bench/, like bench/loadgen.c) measures, with nothing of ours
in the way:
  - a 1-byte loopback TCP round trip (TCP_NODELAY) between two processes pinned to two CPUs:
    both blocking in recv, the echo server busy-polling, both busy-polling; and both pinned to
    one CPU, blocking (no idle vCPU to wake);
  - pwrite of 150 bytes + fdatasync into a preallocated, zero-filled, fsynced 4 MiB file, by 1
    writer, and by 3 writers at once on their own files: the first, second and third to finish
    in each round (a majority of 3 replicas waits for the second).
Each case stops at its count or after --duration seconds, whichever comes first; --rounds runs
the whole set that many times and reports each number's median. The fsync files go in a
temporary directory under --dir (default: the system's, where the benchmarks' clusters keep
their data), removed afterwards.

Another scenario records the same numbers beside its own with `measure(args.quick)`.

    python -m bench machine [--quick] [--rounds N] [--duration S] [--dir DIR] [--out FILE]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import common
from bench.loadgen import c_program

SOURCE = Path(__file__).resolve().parent / "machine.c"
BINARY = common.ROOT / "build" / "bench" / "machine"

# Samples per case (round trips; fsync rounds). A full run takes 3-8 s here, depending on load;
# a quick one under half a second.
RTT_N = {False: 20_000, True: 2_000}
FSYNC_N = {False: 2_000, True: 200}

# What bench/machine.c measures: the name its key=value lines start with, and what it is.
CASES = [
    ("rtt_blocking", "TCP round trip, 2 CPUs, both block"),
    ("rtt_server_polls", "TCP round trip, 2 CPUs, echo server busy-polls"),
    ("rtt_both_poll", "TCP round trip, 2 CPUs, both busy-poll"),
    ("rtt_same_cpu", "TCP round trip, 1 CPU, both block"),
    ("fsync_1", "pwrite + fdatasync, 1 writer"),
    ("fsync_3_first", "pwrite + fdatasync, 3 writers: 1st done"),
    ("fsync_3_second", "pwrite + fdatasync, 3 writers: 2nd done (majority)"),
    ("fsync_3_third", "pwrite + fdatasync, 3 writers: 3rd done"),
]


def machine_binary() -> Path:
    """bench/machine.c, compiled unless the binary is newer than the source."""
    return c_program(SOURCE, BINARY, ("-pthread",))


def parse(output: str) -> dict[str, int | float]:
    """bench/machine.c's key=value lines."""
    values: dict[str, int | float] = {}
    for line in output.split():
        key, _, value = line.partition("=")
        values[key] = float(value) if "." in value else int(value)
    return values


def run_once(rtt_n: int, fsync_n: int, limit_s: float, directory: Path) -> dict[str, int | float]:
    """One run of bench/machine.c. Raises RuntimeError if it fails; on a timeout it is killed
    (its echo server dies with it) and the caller's directory holds whatever files it left."""
    argv = [str(machine_binary()), str(rtt_n), str(fsync_n), str(limit_s), str(directory)]
    # Each case takes at most limit_s (+1 s of grace for a stuck peer) plus making its files.
    out = subprocess.run(argv, check=False, capture_output=True, text=True,
                         timeout=len(CASES) * (limit_s + 2) + 30)
    if out.returncode != 0:
        raise RuntimeError(f"bench/machine.c failed ({out.returncode}): {out.stderr.strip()}")
    return parse(out.stdout)


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on (ext4, tmpfs, ...), from /proc/mounts."""
    best, fs_type = "", "unknown"
    path_s = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fs_type
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = path_s == mount or path_s.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fs_type = mount, fields[2]
    return fs_type


def measure(quick: bool, rounds: int = 1, limit_s: float | None = None,
            directory: Path | None = None,
            progress: common.Progress | None = None) -> dict[str, Any]:
    """The machine's baselines now: for every NAME in CASES, NAME_p50_us, NAME_p99_us and NAME_n
    (samples), each the median over `rounds` runs (a measured value, not an average of two);
    also `runs` (every run's numbers), `cpus` (CPUs this process may use), `pinned` (False: one
    CPU, the round trips ran unpinned), `fsync_fs` (the fsync files' filesystem: on tmpfs an
    fdatasync costs nothing) and the counts asked for. quick: a tenth of the samples, well under
    a second a run. limit_s: the most seconds a case may take (default 5, 1 quick). directory:
    where the temporary directory for the fsync files goes (default the system's)."""
    limit = limit_s if limit_s is not None else (1.0 if quick else 5.0)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-machine-", dir=directory) as tmp:
        fs_type = filesystem(Path(tmp))
        for i in range(rounds):
            if progress:
                progress.step(f"round {i + 1}/{rounds}: round trips, fsyncs")
            runs.append(run_once(RTT_N[quick], FSYNC_N[quick], limit, Path(tmp)))
    result: dict[str, Any] = {k: statistics.median_low(run[k] for run in runs) for k in runs[0]}
    result.update(cpus=runs[0]["cpus"], pinned=bool(runs[0]["pinned"]), fsync_fs=fs_type,
                  fsync_dir=str(directory or tempfile.gettempdir()), rtt_n_asked=RTT_N[quick],
                  fsync_n_asked=FSYNC_N[quick], limit_s=limit, rounds=rounds, runs=runs)
    return result


def table(result: dict[str, Any]) -> str:
    """measure()'s numbers as a Markdown table, with a line saying where they were taken."""
    rows = [{"measurement": what, "p50_us": result[f"{name}_p50_us"],
             "p99_us": result[f"{name}_p99_us"], "n": result[f"{name}_n"]}
            for name, what in CASES]
    pinned = "pinned to 2 of" if result["pinned"] else "unpinned on"
    return (f"Round trips {pinned} {result['cpus']} CPU(s); fsync files on "
            f"{result['fsync_fs']} ({result['fsync_dir']}); median of {result['rounds']} "
            f"run(s).\n\n"
            + common.fmt_table(rows, [("measurement", "measurement"), ("p50_us", "p50 us"),
                                      ("p99_us", "p99 us"), ("n", "samples")]))


def main(argv: list[str]) -> int:
    p = common.parser("machine", __doc__)
    p.add_argument("--dir", type=Path, default=None,
                   help="put the fsync files' temporary directory here (default: the system's)")
    args = p.parse_args(argv)
    common.settle(args)
    if args.dir is not None and not os.access(args.dir, os.W_OK):
        p.error(f"--dir {args.dir}: not a writable directory")
    progress = common.Progress(args.rounds, "machine")
    result = measure(args.quick, args.rounds, args.duration, args.dir, progress)
    progress.finish()
    print(table(result))
    common.write_results("machine", args, {"results": result})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
