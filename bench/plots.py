"""Draw docs/img/*.png from the results JSON of the other scenarios.

    python -m bench plots [--results DIR] [--img DIR]
(defaults: bench/results/ and docs/img/; needs matplotlib: scripts/bench-deps.sh)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import common


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def replication(plt, doc: dict, img: Path) -> list[Path]:
    rows = doc["results"]
    fsyncs = sorted({r["fsync"] for r in rows})
    fig, axes = plt.subplots(1, len(fsyncs), figsize=(5.5 * len(fsyncs), 4), squeeze=False)
    for ax, fsync in zip(axes[0], fsyncs):
        for policy, style in (("majority", "-o"), ("first", "--s")):
            for replicas in sorted({r["replicas"] for r in rows}):
                pts = sorted((r["clients"], r["writes_per_s"]) for r in rows
                             if r["fsync"] == fsync and r["policy"] == policy
                             and r["replicas"] == replicas)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style,
                            label=f"{replicas} replicas, {policy}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("closed-loop clients")
        ax.set_ylabel("writes/s")
        ax.set_title(f"replica fsync {fsync}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Writes through the coordinator (small posts)")
    fig.tight_layout()
    out1 = img / "replication_throughput.png"
    fig.savefig(out1, dpi=110)
    plt.close(fig)

    sel = sorted((r for r in rows if r["replicas"] == 3 and r["policy"] == "majority"),
                 key=lambda r: (r["fsync"], r["clients"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"fsync {r['fsync']}\n{r['clients']} cl." for r in sel]
    x = range(len(sel))
    for i, (key, name) in enumerate((("p50_us", "p50"), ("p99_us", "p99"),
                                     ("p999_us", "p99.9"))):
        ax.bar([xi + (i - 1) * 0.27 for xi in x], [r[key] for r in sel], width=0.27, label=name)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (us, log)")
    ax.set_title("3 replicas, majority: write latency percentiles")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    out2 = img / "replication_latency.png"
    fig.savefig(out2, dpi=110)
    plt.close(fig)
    return [out1, out2]


def peers(plt, doc: dict, img: Path) -> list[Path]:
    rows = doc["results"]
    systems = []
    for r in rows:
        if r["system"] not in systems:
            systems.append(r["system"])
    clients = sorted({r["clients"] for r in rows})
    by = {(r["system"], r["clients"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(clients)
    for j, c in enumerate(clients):
        xs = [i + (j - (len(clients) - 1) / 2) * width for i in range(len(systems))]
        axes[0].bar(xs, [by[(s, c)]["writes_per_s"] if (s, c) in by else 0 for s in systems],
                    width=width, label=f"{c} clients")
        axes[1].bar(xs, [by[(s, c)]["p50_us"] if (s, c) in by else 0 for s in systems],
                    width=width, label=f"{c} clients")
    for ax, title in ((axes[0], "writes/s"), (axes[1], "p50 latency (us, log)")):
        ax.set_xticks(range(len(systems)), systems, rotation=20, fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("Ours (3 replicas) vs etcd (3 members) vs Redis (master + 2 replicas, WAIT 2)")
    fig.tight_layout()
    out = img / "peers.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def failover(plt, doc: dict, img: Path) -> list[Path]:
    res = doc["results"]
    tl = res["timeline"]
    t = [b["t_s"] for b in tl]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    ax1.plot(t, [b["p50_us"] / 1000 for b in tl], label="p50")
    ax1.plot(t, [b["p99_us"] / 1000 for b in tl], label="p99")
    ax1.plot(t, [b["max_us"] / 1000 for b in tl], label="max", alpha=0.5)
    ax1.set_yscale("log")
    ax1.set_ylabel("latency (ms, log)")
    ax2.plot(t, [b["writes"] * 10 for b in tl], label="writes/s")
    ax2.plot(t, [b["errors"] * 10 for b in tl], label="failed/s", color="red")
    ax2.set_ylabel("per second (100 ms buckets)")
    ax2.set_xlabel("seconds")
    for ax in (ax1, ax2):
        ax.axvline(res["kill_at_s"], color="red", ls="--", lw=1)
        if res.get("restart_at_s"):
            ax.axvline(res["restart_at_s"], color="green", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    ax1.set_title(f"3 replicas, {res['clients']} clients: replica 3 killed -9 (red), "
                  f"restarted (green)")
    fig.tight_layout()
    out = img / "failover.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench plots", description=__doc__)
    p.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--img", type=Path, default=common.ROOT / "docs" / "img")
    p.add_argument("--quick", action="store_true", help="ignored (for `python -m bench quick`)")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.img.mkdir(parents=True, exist_ok=True)
    made = []
    for name, fn in (("replication", replication), ("peers", peers), ("failover", failover)):
        doc = _load(args.results, name)
        if doc is None:
            print(f"plots: no {name}.json in {args.results}", file=sys.stderr)
            continue
        made += fn(plt, doc, args.img)
    for path in made:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
