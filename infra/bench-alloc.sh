#!/usr/bin/env bash
# The global allocator of the `starling` binary: mimalloc 2.x (the default, feature `mimalloc`)
# beside mimalloc 3.x (feature `mimalloc-v3`: what the mimalloc crate bundles by default) and
# the system's glibc malloc (`--no-default-features`), in the same run. Runs
# infra/bench-api.sh's REST rows against each build twice, in the order glibc, v3, v2, v2, v3,
# glibc (so none gets the machine's better moments), and writes bench/alloc.md with the mean
# req/s, p99 and the server's RSS of each side by side, ratios v2 / v3 and v2 / glibc.
# About 15 minutes plus three release links of the api crate.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cargo build --release -q -p starling-api --bin starling --no-default-features
cp target/release/starling "$work/starling-glibc"
cargo build --release -q -p starling-api --bin starling --no-default-features --features mimalloc-v3
cp target/release/starling "$work/starling-v3"
cargo build --release -q -p starling-api --bin starling
cp target/release/starling "$work/starling-v2"
n=0
for a in glibc v3 v2 v2 v3 glibc; do
  n=$((n + 1))
  STARLING_BIN="$work/starling-$a" API_OUT="$work/$a.$n.md" infra/bench-api.sh >/dev/null
done
python3 - "$work"/glibc.1.md "$work"/glibc.6.md "$work"/v3.2.md "$work"/v3.5.md \
  "$work"/v2.3.md "$work"/v2.4.md > bench/alloc.md <<'PY'
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
g, grss = mean(sys.argv[1], sys.argv[2])
t, trss = mean(sys.argv[3], sys.argv[4])
v, vrss = mean(sys.argv[5], sys.argv[6])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Global allocator: mimalloc 2.x beside mimalloc 3.x and glibc malloc (infra/bench-alloc.sh)\n")
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on {os.cpu_count()} cores: "
      "the same release build of `starling` with mimalloc 2.x (v2, the default), mimalloc 3.x (v3, "
      "`--no-default-features --features mimalloc-v3`) and the system allocator (glibc, "
      "`--no-default-features`), each under infra/bench-api.sh's rows (wrk, 1 thread, 32 connections, "
      "closed loop), twice each in the order glibc, v3, v2, v2, v3, glibc in this run; figures are the means "
      "of a build's two runs. Ratios: v2 ÷ v3 and v2 ÷ glibc (req/s: higher is better; p99: lower is better).\n")
print("| endpoint | glibc req/s | v3 req/s | v2 req/s | v2/v3 | v2/glibc | glibc p99 | v3 p99 | v2 p99 | v2/v3 | v2/glibc | non-2xx |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in g:
    (gr, gp, gb), (tr, tp, tb), (vr, vp, vb) = g[k], t[k], v[k]
    print(f"| {k} | {gr:,.0f} | {tr:,.0f} | {vr:,.0f} | {vr/tr:.2f} | {vr/gr:.2f} | {gp:.2f} ms | {tp:.2f} ms | "
          f"{vp:.2f} ms | {vp/tp:.2f} | {vp/gp:.2f} | {gb:.0f} / {tb:.0f} / {vb:.0f} |")
print(f"\nServer RSS after all rows (200 sign-ups, the login and sign-up rows' argon2id hashes included): "
      f"glibc {grss:.0f} MiB, v3 {trss:.0f} MiB, v2 {vrss:.0f} MiB (v2/v3 {vrss/trss:.2f}, v2/glibc {vrss/grss:.2f}).")
PY
cat bench/alloc.md
