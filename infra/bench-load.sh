#!/usr/bin/env bash
# The load generator (starling-load) against a release `starling serve` on loopback: feed reads,
# posts with fan-out, and a 99:1 read/post mix, each at a fixed open-loop rate (latency from the
# intended start) and closed-loop at max, beside GET /healthz run the same way on the same server
# as the baseline. Then `starling-load verify` reads every acknowledged write back. Writes
# bench/load.md and the plots bench/load-*.png. About 3 minutes on 2 cores plus the build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
# plotters draws text with a TTF read at run time; without one the plots have no labels.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || {
  apt-get update -qq && apt-get install -y -qq fonts-dejavu-core || true
}
cargo build --release -q -p starling-api --bin starling -p starling-loadgen --bin starling-load
RATE="${RATE:-500}"; DUR="${DUR:-10s}"; WARM="${WARM:-2s}"; CONC="${CONC:-32}"; USERS="${USERS:-50}"
work=$(mktemp -d); port=$((20000 + RANDOM % 20000))
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
STARLING_LOG=warn target/release/starling serve --listen 127.0.0.1:$port --data-dir "$work/data" \
  --auth-per-minute 100000000 > "$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port
mkdir -p bench
rm -f bench/load-*.png
load=target/release/starling-load
common=(--target "$url" --users "$USERS" --handles 'bench{i}' --quiet)
# The first run signs the users up, has each follow 10 others and write 5 posts (so every feed
# page holds 20 posts); later runs log the same users in.
$load run "${common[@]}" --follows 10 --posts 5 --mix health --rate 50 --duration 1s --warmup 0s \
  --acked-log "$work/setup.acked.jsonl" > /dev/null
: > "$work/runs"
bench() { # name, mix, rate
  local name=$1 mix=$2 rate=$3
  $load run "${common[@]}" --login --mix "$mix" --rate "$rate" --concurrency "$CONC" \
    --duration "$DUR" --warmup "$WARM" \
    --report "$work/$name.json" --plots bench --plot-prefix "load-$name-" \
    --acked-log "$work/$name.acked.jsonl" > "$work/$name.txt"
  echo "$name $mix $rate" >> "$work/runs"
}
for r in "$RATE" max; do
  tag=$([ "$r" = max ] && echo max || echo fixed)
  bench "health-$tag" health "$r"
  bench "read-$tag" read "$r"
  bench "post-$tag" post "$r"
  bench "mix-$tag" read=99,post=1 "$r"
done
cat "$work"/*.acked.jsonl > "$work/all.jsonl"
$load verify --target "$url" --acked-log "$work/all.jsonl" --report "$work/verify.json" > "$work/verify.txt"

python3 - "$work" "$RATE" "$DUR" "$WARM" "$CONC" "$USERS" > bench/load.md <<'PY'
import json, os, platform, subprocess, sys, datetime
work, rate, dur, warm, conc, users = sys.argv[1:]
runs = [l.split() for l in open(f"{work}/runs").read().splitlines() if l]
rep = {name: json.load(open(f"{work}/{name}.json")) for name, _, _ in runs}
ver = json.load(open(f"{work}/verify.json"))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
load1, load5, load15 = os.getloadavg()
print("# Load generator against one node (infra/bench-load.sh)\n")
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on "
      f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Linux {platform.release()}; the server (release, "
      f"embedded store) and `starling-load` share the machine. {users} users, each following 10 others "
      f"with 5 posts each (feed pages of 20 hydrated posts). Each row: {warm} warm-up then {dur} measured. "
      f"Load average when the report was written: {load1:.2f} / {load5:.2f} / {load15:.2f} (1/5/15 min): "
      "other work on the machine shows up in these figures.\n")
print(f"- **fixed**: open loop at {rate} req/s, Poisson arrivals, latency measured from each request's "
      "*intended* start (no coordinated omission), at most "
      f"{conc} in flight (more would be counted as `dropped`).")
print(f"- **max**: closed loop, {conc} workers, each sending its next request when the last is answered "
      "(latency from the actual send: a saturation figure).")
print("- **ratio** (max rows): the row's throughput ÷ the `/healthz` max row on the same server. Fixed rows all "
      "run at the same rate: compare their latencies with the `/healthz` fixed row instead.\n")
print("| scenario | mode | ok/s | ratio to /healthz | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
label = {"health": "GET /healthz (baseline)", "read": "GET /v1/feed (20 posts)",
         "post": "POST /v1/posts (fan-out to 10)", "read=99,post=1": "mix read 99 : post 1"}
for name, mix, r in runs:
    tag = name.rsplit("-", 1)[1]
    base = rep[f"health-{tag}"]
    tot = lambda rp: sum(o["rate"] for o in rp["ops"].values())
    errs = sum(o["errors"] for o in rep[name]["ops"].values())
    ops = sorted(rep[name]["ops"].items(), key=lambda kv: -kv[1]["ok"])
    for i, (op, o) in enumerate(ops):
        l = o["latency_us"]
        ms = lambda us: f"{us / 1000:.2f}"
        scen = label[mix] + (f" — {op}" if "," in mix else "")
        ratio = f"{tot(rep[name]) / tot(base):.3f}" if tag == "max" and i == 0 else ""
        print(f"| {scen} | {tag} | {o['rate']:,.0f} | {ratio} | {ms(l['p50'])} | {ms(l['p90'])} | {ms(l['p99'])} "
              f"| {ms(l['p999'])} | {ms(l['max'])} | {o['errors']} |")
print(f"\nFor the mix the ratio is of both operations together. Verification (`starling-load verify`) of every "
      f"acknowledged write of the setup and the runs: {ver['posts']} posts and {ver['edges']} follow edges read back, "
      f"**{len(ver['missing'])} missing**.\n")
print("Plots (latency p50/p99 per second, throughput per second): " + ", ".join(
    f"[{n}](load-{n}-latency.png) / [tp](load-{n}-throughput.png)" for n, _, _ in runs) + ".\n")
print("Commands (see the script):\n```")
print(f"starling serve --listen 127.0.0.1:PORT --auth-per-minute 100000000")
print(f"starling-load run --target URL --users {users} --handles 'bench{{i}}' --follows 10 --posts 5 --mix health --rate 50 --duration 1s   # setup")
print(f"starling-load run --target URL --users {users} --handles 'bench{{i}}' --login --mix MIX --rate {rate}|max "
      f"--concurrency {conc} --duration {dur} --warmup {warm} --report R.json --plots bench --acked-log A.jsonl")
print("starling-load verify --target URL --acked-log all.jsonl")
print("```")
PY
cat bench/load.md
