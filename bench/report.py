"""Print the Markdown tables of docs/benchmarks.md from the results JSON.

    python -m bench report [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import common, machine
from bench.replication import COLUMNS as REPLICATION_COLUMNS


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _head(doc: dict) -> str:
    m = doc["machine"]
    start = ", ".join(f"{x:.1f}" for x in m["loadavg_start"])
    end = ", ".join(f"{x:.1f}" for x in doc["loadavg_end"])
    return (f"_{m['date']}; load average at start {start}, at end {end}; "
            f"{doc['rounds']} round(s) of {doc['duration_s']} s per case._")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench report", description=__doc__)
    p.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--quick", action="store_true", help="ignored")
    args = p.parse_args(argv)
    out = []
    doc = _load(args.results, "machine")
    if doc:
        out += ["### machine", "", _head(doc), "", machine.table(doc["results"]), ""]
    doc = _load(args.results, "core")
    if doc:
        out += ["### core", "", _head(doc), "", "```"]
        out += [" ".join(f"{k}={v}" for k, v in r.items()) for r in doc["results"]]
        out += ["```", ""]
    doc = _load(args.results, "replication")
    if doc:
        out += ["### replication", "", _head(doc), "",
                common.fmt_table(doc["results"], REPLICATION_COLUMNS), "",
                common.fmt_table(doc["ratios"], [("replicas", "replicas"), ("policy", "policy"),
                                                 ("fsync", "fsync"), ("clients", "clients"),
                                                 ("ratio", "throughput / 1 replica")]), ""]
    doc = _load(args.results, "peers")
    if doc:
        out += ["### peers", "", _head(doc), "", f"Versions: {doc['versions']}", "",
                common.fmt_table(doc["results"], [
                    ("system", "system"), ("clients", "clients"), ("writes_per_s", "writes/s"),
                    ("p50_us", "p50 us"), ("p99_us", "p99 us"), ("p999_us", "p99.9 us"),
                    ("errors", "errors"), ("cpu_us_per_write_servers", "server CPU us/write")]),
                "",
                common.fmt_table(doc["ratios"], [
                    ("ours", "ours"), ("theirs", "theirs"), ("clients", "clients"),
                    ("throughput_ratio", "throughput ours/theirs"),
                    ("p50_ratio", "p50 ours/theirs")]), ""]
    doc = _load(args.results, "failover")
    if doc:
        out += ["### failover", "",
                ("| killed | clients | writes | failed | steady p50 us | steady p99 us "
                "| p99 us around the kill | ratio | max us around | longest gap ms "
                "| gap after kill ms |"),
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, r in (("replica 3", doc["results"]), ("coordinator", doc.get("coordinator"))):
            if not r:
                continue
            s = r["summary"]
            out.append(f"| {label} | {r['clients']} | {s['requests']:,} | {s['errors']} | "
                       f"{r['steady_p50_us']} | {r['steady_p99_us']} | {r['around_p99_us']} "
                       f"({r['around_window_s']} s) | {r['p99_ratio']} | {r['around_max_us']} | "
                       f"{r['longest_gap_ms']} | {r['longest_gap_after_kill_ms']} |")
        out.append("")
    doc = _load(args.results, "http")
    if doc:
        out += ["### http", "", _head(doc), "",
                common.fmt_table(doc["results"], [
                    ("replicas", "replicas"), ("request", "request"),
                    ("requests_per_s", "requests/s"), ("p50_us", "p50 us"), ("p99_us", "p99 us"),
                    ("non2xx", "non-2xx"), ("errors", "socket errors")]), ""]
    doc = _load(args.results, "recovery")
    if doc and doc["results"]:
        out += ["### recovery", "", _head(doc), "",
                common.fmt_table(doc["results"], [
                    ("commands", "logged commands"), ("snapshot_every", "snapshot every"),
                    ("data_dir_mb", "data dir MB"), ("restart_s", "restart to listening (s)"),
                    ("replay_commands_per_s", "commands/s"),
                    ("applied_after", "applied after restart")]), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
