#!/usr/bin/env bash
# GET /v1/feed (20 hydrated posts, warm) under wrk beside GET /healthz on the same server, on
# a release `starling serve`: once with the in-process cache only, once with Redis as L2.
# The page carries what hydration fills in: the reader likes a post of every author and every
# author reposts one post of another, so items have counters, viewer state and reposted posts.
# Writes bench/feed-api.md. Needs wrk and redis-server (installed from Debian's packages if
# missing). About 2 minutes plus the build; STARLING_BIN=PATH runs a prebuilt binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# wrk, curl, $bin, $DUR, $work and wrk_figures (its serve_bench keeps one data directory; the
# two servers here keep one each, beside a Redis).
# shellcheck source=infra/wrk/lib.sh
. infra/wrk/lib.sh
need_deb redis-server redis-server
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
rport=$((20000 + RANDOM % 20000))
redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)

json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

bench_server() { # label, extra serve flags...
  local label=$1; shift
  local port=$((20000 + RANDOM % 20000))
  STARLING_LOG=warn "$bin" serve --listen 127.0.0.1:$port \
    --data-dir "$work/data-$label" --auth-per-minute 100000000 "$@" > "$work/$label.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
  local url=http://127.0.0.1:$port
  signup() { curl -sf -X POST -H 'content-type: application/json' -d "{\"handle\":\"$1\",\"password\":\"password1\"}" $url/v1/users; }
  local token
  token=$(signup reader | json token)
  local prev=""
  for i in $(seq 50); do
    local a atoken aid post
    a=$(signup "author$i"); atoken=$(echo "$a" | json token); aid=$(echo "$a" | json id)
    curl -sf -X PUT -H "authorization: Bearer $token" $url/v1/following/$aid
    for j in 1 2 3; do
      post=$(curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $atoken" \
        -d "{\"text\":\"post $j of author $i, some words to make it look like a post\"}" $url/v1/posts | json id)
    done
    curl -sf -X PUT -H "authorization: Bearer $token" $url/v1/posts/$post/like
    [ -z "$prev" ] || curl -sf -o /dev/null -X PUT -H "authorization: Bearer $atoken" $url/v1/posts/$prev/repost
    prev=$post
  done
  # The fan-out is asynchronous: wait a moment, then check the page is (about) full — a page
  # of 20 timeline entries shows a post once, so a repost of a post already on it folds away.
  sleep 2
  curl -sf -H "authorization: Bearer $token" "$url/v1/feed?limit=20" > "$work/page.json"
  python3 -c "import json; n=len(json.load(open('$work/page.json'))['items']); assert n >= 15, n"
  local conns bare feed
  for conns in 32 2; do
    wrk -t1 -c$conns -d"$DUR" --latency "$url/healthz" > "$work/bare.txt"
    wrk -t1 -c$conns -d"$DUR" --latency -H "Authorization: Bearer $token" "$url/v1/feed?limit=20" > "$work/feed.txt"
    bare=$(wrk_figures "$work/bare.txt")
    feed=$(wrk_figures "$work/feed.txt")
    printf '%s\t%s\t%s\t%s\n' "$label" "$conns" "$bare" "$feed" >> "$work/rows"
  done
  kill $pid; wait $pid 2>/dev/null || true
}

bench_server moka
bench_server redis --redis redis://127.0.0.1:$rport

python3 - "$work/rows" "$DUR" > bench/feed-api.md <<'PY'
import sys
sys.path.insert(0, "infra/wrk")
import page
rows = page.rows(sys.argv[1])
print("# GET /v1/feed under load (infra/bench-feed.sh)\n")
print(page.run_line(
      f"release build, embedded store, wrk with 1 thread for {sys.argv[2]} per row on the same machine as the "
      "server (and Redis). A reader follows 50 authors with 3 posts each, likes one post of each, and each author "
      "reposts one post of the one before; each request returns 20 hydrated posts (author summary, counters, the "
      "reader's liked/reposted, the reposted post; warm). The baseline is `GET /healthz` on the same server in the same run (a bare axum handler); "
      "ratio = feed req/s ÷ bare req/s. 32 connections saturate the server; 2 connections is light load. wrk is "
      "closed-loop: the open-loop figures at a fixed rate come with the load generator.\n"))
print("| cache tiers | connections | bare req/s | feed req/s | ratio | bare p50 / p99 | feed p50 / p99 | non-2xx |")
print("|---|---|---|---|---|---|---|---|")
for label, conns, brps, bp50, bp99, bbad, frps, fp50, fp99, fbad in rows:
    tiers = "in-process (L1) only" if label == "moka" else "in-process L1 + Redis L2"
    print(f"| {tiers} | {conns} | {float(brps):,.0f} | {float(frps):,.0f} | {float(frps)/float(brps):.2f} | "
          f"{float(bp50):.2f} / {float(bp99):.2f} ms | {float(fp50):.2f} / {float(fp99):.2f} ms | {int(bbad)+int(fbad)} |")
print("\nWarm reads are served from the in-process tier in both configurations; Redis is on the fan-out path "
      "(one script call per 512 followers) and on L1 misses (a timeline load, an MGET of post bodies).")
PY
cat bench/feed-api.md
