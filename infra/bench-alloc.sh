#!/usr/bin/env bash
# The global allocator of the `starling` binary: mimalloc (the default) beside the system's
# glibc malloc (`starling-api` built with --no-default-features), in the same run. Runs
# infra/bench-api.sh's REST rows against each build twice, in the order glibc, mimalloc,
# mimalloc, glibc (so neither gets the machine's better moments), and writes bench/alloc.md with
# the mean req/s, p99 and the server's RSS of each side by side, ratios mimalloc / glibc.
# About 10 minutes plus two release links of the api crate.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cargo build --release -q -p starling-api --bin starling --no-default-features
cp target/release/starling "$work/starling-glibc"
cargo build --release -q -p starling-api --bin starling
cp target/release/starling "$work/starling-mimalloc"
n=0
for a in glibc mimalloc mimalloc glibc; do
  n=$((n + 1))
  STARLING_BIN="$work/starling-$a" API_OUT="$work/$a.$n.md" infra/bench-api.sh >/dev/null
done
python3 - "$work"/glibc.1.md "$work"/glibc.4.md "$work"/mimalloc.2.md "$work"/mimalloc.3.md > bench/alloc.md <<'PY'
import re, sys, subprocess, datetime, os
def rows(path):
    t = open(path).read()
    r = {}
    for m in re.finditer(r"^\| ([^|]+) \| ([\d,]+) \| [\d.]+ \| ([\d.]+) ms \| ([\d.]+) ms \| (\d+) \|$", t, re.M):
        r[m.group(1)] = (float(m.group(2).replace(",", "")), float(m.group(4)), int(m.group(5)))
    rss = float(re.search(r"RSS after all rows: (\d+) MiB", t).group(1))
    return r, rss
def mean(a, b):
    (ra, rssa), (rb, rssb) = rows(a), rows(b)
    return {k: tuple((x + y) / 2 for x, y in zip(ra[k], rb[k])) for k in ra}, (rssa + rssb) / 2
g, grss = mean(sys.argv[1], sys.argv[2]); m, mrss = mean(sys.argv[3], sys.argv[4])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Global allocator: mimalloc beside glibc malloc (infra/bench-alloc.sh)\n")
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on {os.cpu_count()} cores: "
      "the same release build of `starling` with mimalloc (default) and with the system allocator "
      "(`--no-default-features`), each under infra/bench-api.sh's rows (wrk, 1 thread, 32 connections, "
      "closed loop), twice each in the order glibc, mimalloc, mimalloc, glibc in this run; figures are the means "
      "of a build's two runs. Ratio = mimalloc ÷ glibc (req/s: higher is better; p99: lower is better).\n")
print("| endpoint | glibc req/s | mimalloc req/s | ratio | glibc p99 | mimalloc p99 | ratio | non-2xx |")
print("|---|---|---|---|---|---|---|---|")
for k in g:
    (gr, gp, gb), (mr, mp, mb) = g[k], m[k]
    print(f"| {k} | {gr:,.0f} | {mr:,.0f} | {mr/gr:.2f} | {gp:.2f} ms | {mp:.2f} ms | {mp/gp:.2f} | {gb:.0f} / {mb:.0f} |")
print(f"\nServer RSS after all rows (200 sign-ups, the login and sign-up rows' argon2id hashes included): "
      f"glibc {grss:.0f} MiB, mimalloc {mrss:.0f} MiB ({mrss/grss:.2f}).")
PY
cat bench/alloc.md
