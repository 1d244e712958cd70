#!/usr/bin/env python3
"""Turns Criterion's estimates into a side-by-side table of ratios.

Usage: bench-summary.py CRITERION_DIR OUT.md TITLE GROUP:CANDIDATE/BASELINE[,...] ...

Each spec names a benchmark group, the engine measured and the baseline it is compared with,
all from the same run. Ratios (candidate time / baseline time) are what to compare across runs:
absolute times on shared 2-core machines are noisy.
"""
import json
import os
import platform
import subprocess
import sys
import datetime


def mean_ns(root, group, bench):
    path = os.path.join(root, group, bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["mean"]["point_estimate"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main():
    root, out, title, *specs = sys.argv[1:]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = []
    for spec in specs:
        group, pair = spec.split(":")
        cand, bases = pair.split("/", 1)
        c = mean_ns(root, group, cand)
        for base in bases.split(","):
            b = mean_ns(root, group, base)
            rows.append((group, cand, fmt(c), f"{1e9 / c:,.0f}", base, fmt(b), f"{c / b:.2f}×"))
    lines = [
        f"# {title}",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on "
        f"{os.cpu_count()} cores ({platform.machine()}), one process, same keys and values for every column.",
        "Ratio = engine time / baseline time (lower is better); ops/s is one thread, one operation at a time.",
        "",
        "| op | engine | time | ops/s | baseline | baseline time | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
