#!/usr/bin/env bash
# Seeds a large synthetic graph into a fresh store, serves it, and runs the read-heavy mix
# against it — beside the same steps on a small graph, in the same run, so the figures compare
# as ratios (this machine is shared and noisy). Writes bench/seed.md and bench/load1m-*.png.
#
#   infra/bench-seed.sh                      # 1 M users, 100 follows each (100 M edges)
#   USERS=100000 FOLLOWS=50 infra/bench-seed.sh
#   LIKES=5 REPOSTS=0.5 REPLIES=0.5          # engagement per user (the defaults; Zipf-skewed)
#   SEED_CACHE=/tmp/starling-seed infra/bench-seed.sh   # seed once, copy the store each run
#
# Needs about 6 GiB of free disk for 1 M users (set WORK to put it elsewhere; twice that with
# SEED_CACHE) and 4 GiB of memory. With SEED_CACHE the seeding rows are those of the run that
# filled the cache (a seed is deterministic: same flags, byte-identical store).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }  # wall time and peak memory of a seed
cargo build --release -q -p starling-api --bin starling -p starling-loadgen --bin starling-load
USERS="${USERS:-1000000}"; FOLLOWS="${FOLLOWS:-100}"; BASE_USERS="${BASE_USERS:-10000}"
LIKES="${LIKES:-5}"; REPOSTS="${REPOSTS:-0.5}"; REPLIES="${REPLIES:-0.5}"
engage=(--likes "$LIKES" --reposts "$REPOSTS" --replies "$REPLIES")
RATE="${RATE:-300}"; DUR="${DUR:-30s}"; CLIENTS="${CLIENTS:-400}"
work=$(mktemp -d "${WORK:-/tmp}/starling-seed.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
bin=target/release/starling; load=target/release/starling-load

# seed NAME USERS: seeds, then serves (timing the start), runs the mix fixed and closed-loop.
run() {
  local name=$1 users=$2 port=$((20000 + RANDOM % 20000))
  if [ -n "${SEED_CACHE:-}" ]; then
    local cached="$SEED_CACHE/u$users-f$FOLLOWS-l$LIKES-r$REPOSTS-p$REPLIES"
    if [ ! -f "$cached.seed" ]; then
      rm -rf "$cached"; mkdir -p "$SEED_CACHE"
      /usr/bin/time -f "%e %M" -o "$cached.time" \
        $bin seed --users "$users" --follows "$FOLLOWS" --posts 1 "${engage[@]}" --data-dir "$cached" \
        > "$cached.tmp" 2>/dev/null
      mv "$cached.tmp" "$cached.seed"
    fi
    cp "$cached.time" "$work/$name.time"; cp "$cached.seed" "$work/$name.seed"
    cp -a "$cached" "$work/$name"
  else
    /usr/bin/time -f "%e %M" -o "$work/$name.time" \
      $bin seed --users "$users" --follows "$FOLLOWS" --posts 1 "${engage[@]}" --data-dir "$work/$name" \
      > "$work/$name.seed" 2>/dev/null
  fi
  local t0; t0=$(date +%s.%N)
  STARLING_LOG=warn $bin serve --listen 127.0.0.1:$port --data-dir "$work/$name" \
    --auth-per-minute 100000000 > "$work/$name.log" 2>&1 &
  pid=$!
  until curl -sf localhost:$port/healthz >/dev/null; do
    kill -0 $pid 2>/dev/null || { cat "$work/$name.log"; exit 1; }
    sleep 0.2
  done
  echo "$(date +%s.%N) - $t0" | bc > "$work/$name.start"
  cut -d' ' -f1-3 /proc/loadavg > "$work/$name.load"
  local common=(--target http://127.0.0.1:$port --users "$CLIENTS" --handles 'user{i}'
    --password password1 --login --follows 0 --posts 0 --mix 'read=99,post=1' --quiet)
  $load run "${common[@]}" --rate "$RATE" --duration "$DUR" --warmup 5s --concurrency 64 \
    --report "$work/$name-fixed.json" --acked-log "$work/$name.acked" \
    --plots bench --plot-prefix "load$name-fixed-" > /dev/null
  $load run "${common[@]}" --rate max --duration 20s --warmup 3s --concurrency 32 \
    --report "$work/$name-max.json" --acked-log "$work/$name.acked2" \
    --plots bench --plot-prefix "load$name-max-" > /dev/null
  cat "$work/$name.acked" "$work/$name.acked2" > "$work/$name.all"
  $load verify --target http://127.0.0.1:$port --acked-log "$work/$name.all" > "$work/$name.verify"
  kill -TERM $pid; wait $pid || true; pid=
  du -sb "$work/$name" | cut -f1 > "$work/$name.bytes"
  rm -rf "${work:?}/$name"
}
run base "$BASE_USERS"
run 1m "$USERS"
rm -f bench/loadbase-*.png

python3 - "$work" "$USERS" "$FOLLOWS" "$BASE_USERS" "$RATE" "$DUR" "$CLIENTS" "${engage[*]}" > bench/seed.md <<'PY'
import json, os, subprocess, sys, datetime
work, users, follows, base_users, rate, dur, clients, engage = sys.argv[1:]
def rd(n): return open(f"{work}/{n}").read().strip()
def seedline(n): return next(l for l in rd(f"{n}.seed").splitlines() if l.startswith("seeded"))
def op(n, kind, o):
    x = json.load(open(f"{work}/{n}-{kind}.json"))["ops"][o]
    lat = x["latency_us"]
    return {"ok": x["ok"], "errors": x["errors"], "rate": x["rate"], "p50_ms": lat["p50"] / 1000,
            "p99_ms": lat["p99"] / 1000, "p999_ms": lat["p999"] / 1000}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
l1, l5, l15 = os.getloadavg()
print(f"# A million users: seeding, start, load\n")
print(f"Generated by `infra/bench-seed.sh` on {datetime.date.today()} at commit `{commit}`; "
      f"{os.cpu_count()} cores ({cpu}), load average at the end {l1:.1f}/{l5:.1f}/{l15:.1f}. "
      f"Release build. Each step ran on a {users}-user graph and, in the same run, on a "
      f"{base_users}-user baseline; ratios are large / baseline.\n")
print("## Seeding (`starling seed --follows %s --posts 1 %s --data-dir …`)\n" % (follows, engage))
print("| graph | output |\n|---|---|")
for n, u in (("base", base_users), ("1m", users)):
    secs, kib = rd(f"{n}.time").split()
    print(f"| {u} users | {seedline(n)} (wall {float(secs):.0f} s, max RSS {int(kib)/1048576:.1f} GiB) |")
print("\n## Start of `starling serve` on the seeded store\n")
print("| graph | start to `/healthz` | store on disk | load average before the runs |\n|---|---|---|---|")
for n, u in (("base", base_users), ("1m", users)):
    print(f"| {u} users | {float(rd(n + '.start')):.1f} s | {int(rd(n + '.bytes'))/2**20:.0f} MiB | {rd(n + '.load')} |")
print(f"\n## Read-heavy mix (`read=99,post=1`, {clients} logged-in users, feed pages of 20)\n")
print("| run | graph | op | ok | err | rate/s | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|---|---|---|---|")
for kind, label in (("fixed", f"open loop {rate}/s, {dur}"), ("max", "closed loop, 32 clients, 20 s")):
    for n, u in (("base", base_users), ("1m", users)):
        for o in ("read", "post"):
            x = op(n, kind, o)
            print(f"| {label} | {u} | {o} | {x['ok']} | {x['errors']} | {x['rate']:.0f} | "
                  f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['p999_ms']:.2f} |")
print("\n| ratio (large / baseline) | value |\n|---|---|")
for kind, what in (("fixed", "p99"), ("max", "rate")):
    key = {"p99": "p99_ms", "rate": "rate"}[what]
    a, b = op("1m", kind, "read")[key], op("base", kind, "read")[key]
    print(f"| read {what}, {kind} | {a / b:.2f} |")
print("\nEvery acknowledged write of the runs was read back afterwards (`starling-load verify`):\n")
for n in ("base", "1m"):
    print(f"- {n}: {rd(n + '.verify').splitlines()[-1]}")
print("\nPlots of the large graph: `bench/load1m-fixed-*.png`, `bench/load1m-max-*.png`. Where a "
      "read's time goes at 1 M users, before and after the in-process lists of pulled accounts' "
      "posts: [seed-profile.md](seed-profile.md).")
PY
echo "wrote bench/seed.md"
