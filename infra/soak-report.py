#!/usr/bin/env python3
"""Tables and a plot of a soak's samples (infra/soak.sh writes them to soak-out/).

    infra/soak-report.py soak-out/ bench/soak/NAME.svg > bench/soak/NAME.md

Reads soak-samples.csv and soak.json, prints a Markdown table per node with one column per third
of the measured part (after the warm-up, as the test compares them): RSS floor, the store's files
on disk (mean), the change feed's longest, the gossip loop's late ticks and longest tick gap, the
failed requests, each interval's p99 (median and worst of the third's 10 s intervals; the third's
own p99 over all its requests is in soak.json) and the machine's load average (mean and worst:
other engineers' builds share the 2 cores). Writes an SVG with the same series over the whole
run, the measured part's start marked. Only the standard library.
"""

import csv
import json
import statistics
import sys
from pathlib import Path


def load(out):
    rows = list(csv.DictReader(open(out / "soak-samples.csv")))
    for r in rows:
        for k, v in r.items():
            if k != "node":
                r[k] = float(v)
    meta = json.load(open(out / "soak.json"))
    return rows, meta


def thirds(rows, start):
    measured = [r for r in rows if r["seconds"] >= start]
    n = len(measured) // 3
    return [measured[:n], measured[n : 2 * n], measured[len(measured) - n :]]


def table(rows, meta):
    start = meta["measured_from_seconds"]
    nodes = sorted({r["node"] for r in rows})
    lines = []
    for node in nodes:
        mine = [r for r in rows if r["node"] == node]
        parts = thirds(mine, start)
        span = [f"{p[0]['seconds']:.0f}-{p[-1]['seconds']:.0f} s" for p in parts]
        lines.append(f"**{node}** (measured from {start:.0f} s)\n")
        lines.append("| | first third | second third | last third | last / first |")
        lines.append("|---|---|---|---|---|")

        def row(name, f, fmt="{:.1f}", ratio=True):
            vals = [f(p) for p in parts]
            last = (
                f"{vals[2] / vals[0]:.3f}" if ratio and vals[0] else ""
            )
            lines.append(
                f"| {name} | " + " | ".join(fmt.format(v) for v in vals) + f" | {last} |"
            )

        lines.append("| seconds | " + " | ".join(span) + " | |")
        row("RSS floor MiB", lambda p: min(r["rss_kib"] for r in p) / 1024)
        row("store files MiB (mean)", lambda p: statistics.mean(r["disk_kib"] for r in p) / 1024)
        row("store files MiB (max)", lambda p: max(r["disk_kib"] for r in p) / 1024)
        if "journal_kib" in mine[0]:
            row("of which journals MiB (max)", lambda p: max(r["journal_kib"] for r in p) / 1024)
            row(
                "store files less journals MiB (mean)",
                lambda p: statistics.mean(r["disk_kib"] - r["journal_kib"] for r in p) / 1024,
            )
        row("store tables (max)", lambda p: max(r["tables"] for r in p), "{:.0f}")
        row("change feed longest", lambda p: max(r["feed_length"] for r in p), "{:.0f}")
        row("fan-out backlog max", lambda p: max(r["fanout_backlog"] for r in p), "{:.0f}")
        # The loop that fires SWIM's timers, then (samples that have it) the core loop.
        for key, loop in (("", "gossip"), ("core_", "gossip core loop")):
            if f"{key}stalls" in mine[0]:
                row(
                    f"{loop} ticks >100 ms late",
                    lambda p, k=f"{key}stalls": p[-1][k] - p[0][k],
                    "{:.0f}",
                    False,
                )
                row(
                    f"{loop} longest tick gap ms (since start)",
                    lambda p, k=f"{key}tick_gap_max_ms": p[-1][k],
                    "{:.0f}",
                    False,
                )
        row("failed requests", lambda p: p[-1]["errors"] - p[0]["errors"], "{:.0f}", False)
        row("ok requests", lambda p: p[-1]["ok"] - p[0]["ok"], "{:.0f}")
        row("p99 ms, median of 10 s intervals", lambda p: statistics.median(r["p99_us"] for r in p) / 1000, "{:.2f}")
        row("p99 ms, worst 10 s interval", lambda p: max(r["p99_us"] for r in p) / 1000, "{:.2f}")
        row("load average 1 min (mean)", lambda p: statistics.mean(r["load1"] for r in p), "{:.2f}")
        row("load average 1 min (max)", lambda p: max(r["load1"] for r in p), "{:.2f}")
        lines.append("")
    lines.append(
        f"p99 over every request of the third: {meta.get('p99_first_third_us', 0) / 1000:.2f} ms first, "
        f"{meta.get('p99_last_third_us', 0) / 1000:.2f} ms last; "
        f"{meta['ok']} ok, {meta['errors']} failed at {meta['rate_rps']:.0f} req/s; "
        f"failures: {meta['failures'] or 'none'}"
    )
    return "\n".join(lines)


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def svg(rows, meta, path):
    panels = [
        ("RSS MiB", lambda r: r["rss_kib"] / 1024),
        ("store files MiB", lambda r: r["disk_kib"] / 1024),
        ("change feed entries", lambda r: r["feed_length"]),
        ("p99 ms (10 s intervals)", lambda r: r["p99_us"] / 1000),
        ("gossip ticks >100 ms late (cumulative)", lambda r: r["stalls"]),
        ("load average (1 min)", lambda r: r["load1"]),
    ]
    nodes = sorted({r["node"] for r in rows})
    w, h, left, gap = 900, 150, 70, 30
    x_max = max(r["seconds"] for r in rows) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 20}" height="{len(panels) * (h + gap) + 40}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for i, node in enumerate(nodes):
        out.append(
            f'<text x="{left + 120 * i}" y="14" fill="{COLORS[i % 4]}">{node}</text>'
        )
    start = meta["measured_from_seconds"]
    for p, (name, f) in enumerate(panels):
        top = 30 + p * (h + gap)
        y_max = max(f(r) for r in rows) or 1
        out.append(f'<text x="{left}" y="{top - 4}">{name} (max {y_max:.1f})</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{w - left}" height="{h}" fill="none" stroke="#999"/>')
        sx = left + (w - left) * start / x_max
        out.append(f'<line x1="{sx:.1f}" y1="{top}" x2="{sx:.1f}" y2="{top + h}" stroke="#aaa" stroke-dasharray="4"/>')
        out.append(f'<text x="2" y="{top + 10}">{y_max:.0f}</text><text x="2" y="{top + h}">0</text>')
        for i, node in enumerate(nodes):
            pts = " ".join(
                f"{left + (w - left) * r['seconds'] / x_max:.1f},{top + h - h * f(r) / y_max:.1f}"
                for r in rows
                if r["node"] == node
            )
            out.append(f'<polyline fill="none" stroke="{COLORS[i % 4]}" stroke-width="1" points="{pts}"/>')
    bottom = 30 + len(panels) * (h + gap)
    out.append(f'<text x="{left}" y="{bottom - 10}">0 s</text><text x="{w - 40}" y="{bottom - 10}">{x_max:.0f} s</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows, meta = load(Path(sys.argv[1]))
    print(table(rows, meta))
    svg(rows, meta, sys.argv[2])


if __name__ == "__main__":
    main()
