#!/usr/bin/env python3
"""Writes bench/likes.md from the Criterion estimates of posts/benches/likes.rs.

Usage: bench-likes.py CRITERION_DIR OUT.md

Both rows come from the same run: likes on distinct posts (the baseline: no two likes share a key)
and every like on one hot post. A round is 32 clients x 32 likes, acknowledged and counted.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

LIKES_PER_ROUND = 32 * 32


def mean_ns(root, bench):
    with open(os.path.join(root, "likes", bench, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]


def main():
    root, out = sys.argv[1:]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    distinct, hot = mean_ns(root, "distinct_posts"), mean_ns(root, "hot_post")
    rate = lambda ns: LIKES_PER_ROUND / (ns / 1e9)
    lines = [
        "# Likes: one hot post against distinct posts",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on "
        f"{os.cpu_count()} cores ({platform.machine()}): `infra/bench.sh likes` (posts/benches/likes.rs).",
        "",
        "The embedded store, 32 concurrent clients each liking 32 times per round, the count consumer",
        "running beside them as in the server; a round ends when every like is counted (the bench checks",
        "the counts). The baseline, in the same run, puts each like on a post of its own; the hot post",
        "takes every like. A ratio near 1 means the hot post does not serialize on its counter: a like",
        "writes only its own (post, liker) element, and the consumer folds a batch into one counter",
        "write per post.",
        "",
        "| case | time per round (1 024 likes) | likes/s, acknowledged and counted |",
        "|---|---|---|",
        f"| distinct posts (baseline) | {distinct / 1e6:.2f} ms | {rate(distinct):,.0f} |",
        f"| one hot post | {hot / 1e6:.2f} ms | {rate(hot):,.0f} |",
        "",
        f"**Hot post / distinct posts throughput: {distinct / hot:.2f}×** (machine shared and noisy: compare ratios).",
        "",
        "One hot post liked from three regions at once, through the real binary: the next section",
        "(`infra/bench-likes-regions.sh`).",
        "",
    ]
    # Keep the three-region section that infra/bench-likes-regions.sh writes.
    marker = "## One hot post from three regions"
    kept = ""
    if os.path.exists(out):
        old = open(out).read()
        if marker in old:
            kept = "\n" + marker + old.split(marker, 1)[1]
    with open(out, "w") as f:
        f.write("\n".join(lines) + kept)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
