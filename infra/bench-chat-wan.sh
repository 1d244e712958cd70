#!/usr/bin/env bash
# Chat delivery across regions: a two-region `starling cluster` (one node per region, the
# simulated WAN between them) and one load client whose users alternate between the regions'
# nodes, so every 1:1 conversation has one member in each region and a group of 100 has 50 in
# each. Writes bench/chat-regions.md (its hand-written part, from the line `## Reading` on, is kept).
#
# For each one-way latency of ONE_WAY (ms; the cluster's `--rtt` is twice it, and the WAN adds to
# each message a uniform jitter of 0 to J whole ms, J = round trip / 20 (a tenth of the one way,
# rounded down), see `Wan::with_rtts` in gossip/src/wan.rs),
# round by round (ROUNDS, the latencies in order within a round, a fresh cluster each time):
#   1. sign up max(2·CONVS, GROUP_COUNT·GROUP_SIZE) users, unmeasured (`--sessions`);
#   2. 1:1 chat, CONVS conversations at RATE msg/s (Poisson, open loop), WARMUP s then SECS s;
#   3. GROUP_COUNT groups of GROUP_SIZE members at GROUP_RATE msg/s.
# A 0 in ONE_WAY is the same cluster with no WAN delay: the baseline of the same run (what the
# two nodes and the load client cost on this machine without the WAN). JITTER=0 (ms) sets the
# links' jitter through `PUT /v1/admin/wan` after the start, instead of the cluster's tenth of
# the round trip: then "p99 − one way" is the system's own share alone.
# Per run: the load average before it, delivered %, and the delivery latency from the scheduled
# send split by `starling-load` into `chat_deliver_cross` (the receiver's node is in the other
# region: the figure the goal "p99 ≤ one way + 20 ms" is about) and `chat_deliver_local`, and
# the ack. Beside "p99 − one way", the page gives the link's own p99 one way, one way + J (J as
# above, or JITTER): the jitter takes whole ms, so J itself has probability 1/(J+1) ≥ 1 % (J ≤ 99)
# and is its p99, and the per-peer writer sends frames in order, each at its delivery time, so a
# frame waits for a later one ahead of it but never past J; and "p99 − link p99", the nodes' own
# share of the tail, the figure for the goal once the simulated WAN's jitter is its own.
#   infra/bench-chat-wan.sh                              (about 15 minutes on 2 cores)
#   ONE_WAY=50,100 ROUNDS=2 RATE=1000 infra/bench-chat-wan.sh
#   REPORT_FROM=/tmp/bench-chat-wan.XXXXXX infra/bench-chat-wan.sh   (rewrite the page from a run)
# Also: STORE (embedded: fjall on disk, default fsync 100 ms; or memory), CONVS (500),
# GROUP_COUNT (10), GROUP_SIZE (100), GROUP_RATE (100), SECS (10), WARMUP (2),
# SETUP_CONCURRENCY (8), BASE_PORT (19380: HTTP on it and the next, gossip 1000 above),
# STARLING_BIN/LOAD_BIN, NOTE (a paragraph under the page's first lines). Run it under
# `nice -n 19` beside work that must not be disturbed. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
. infra/lib.sh
ONE_WAY="${ONE_WAY:-0,50,125}"; ROUNDS="${ROUNDS:-1}"; RATE="${RATE:-1000}"; SECS="${SECS:-10}"
WARMUP="${WARMUP:-2}"; CONVS="${CONVS:-500}"; GROUP_COUNT="${GROUP_COUNT:-10}"
GROUP_SIZE="${GROUP_SIZE:-100}"; GROUP_RATE="${GROUP_RATE:-100}"; STORE="${STORE:-embedded}"
SETUP_CONCURRENCY="${SETUP_CONCURRENCY:-8}"; BASE_PORT="${BASE_PORT:-19380}"; JITTER="${JITTER:-}"
log() { echo "== $*" >&2; }
if [ -n "${REPORT_FROM:-}" ]; then
  WORK=$REPORT_FROM
  # shellcheck disable=SC1091
  . "$WORK/meta"
else
  WORK=$(mktemp -d /tmp/bench-chat-wan.XXXXXX)
  bench_provenance "${STARLING_BIN:+STARLING_BIN=$STARLING_BIN }${LOAD_BIN:+LOAD_BIN=$LOAD_BIN }ONE_WAY=$ONE_WAY ROUNDS=$ROUNDS RATE=$RATE GROUP_RATE=$GROUP_RATE CONVS=$CONVS GROUP_COUNT=$GROUP_COUNT SECS=$SECS STORE=$STORE${JITTER:+ JITTER=$JITTER} infra/bench-chat-wan.sh"
  NOTE="${NOTE:-}"
  declare -p COMMIT COMMAND STARTED_AT JITTER ONE_WAY RATE GROUP_RATE CONVS GROUP_COUNT GROUP_SIZE SECS WARMUP STORE NOTE >"$WORK/meta"
fi

measure() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  release_bins
  CLUSTER=""   # the running cluster's directory, stopped on exit
  trap '[ -z "$CLUSTER" ] || "$STARLING" cluster down --dir "$CLUSTER" >/dev/null 2>&1 || true' EXIT
  A=http://127.0.0.1:$BASE_PORT; B=http://127.0.0.1:$((BASE_PORT + 1))
  pairs=$((CONVS * 2)); members=$((GROUP_COUNT * GROUP_SIZE)); users=$((pairs > members ? pairs : members))
  RUNS=$WORK/runs.tsv   # round one_way scenario rate group_size load1 load5 load15 report
  : >"$RUNS"
  IFS=, read -r -a one_ways <<<"$ONE_WAY"
  for round in $(seq 1 "$ROUNDS"); do
    for ow in "${one_ways[@]}"; do
      CLUSTER=$WORK/c-$round-$ow
      log "round $round: cluster us+eu, one way $ow ms (rtt $((ow * 2)) ms), $STORE store"
      # High sign-up limit for the load client's thousands of sign-ups from one address.
      STARLING_AUTH_PER_MINUTE=1000000000 "$STARLING" cluster --regions us,eu --nodes-per-region 1 \
        --base-port "$BASE_PORT" --rtt "us-eu=$((ow * 2))ms" --store "$STORE" --dir "$CLUSTER" \
        --detach >"$WORK/cluster-$round-$ow.txt"
      token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_token"])' "$CLUSTER/cluster.json")
      # Both nodes alive in each other's membership before the sign-ups (an owner in the other
      # region not yet known answers 503), up to 60 s.
      for node in "$A" "$B"; do
        for i in $(seq 1 120); do
          curl -fsS -H "Authorization: Bearer $token" "$node/v1/cluster" 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin)
sys.exit(0 if any(m["region"] != v["region"] and m["state"] == "alive" for m in v["members"]) else 1)' && break
          [ "$i" -lt 120 ] || { echo "the cluster did not converge (see $CLUSTER/logs)" >&2; exit 1; }
          sleep 0.5
        done
      done
      if [ -n "$JITTER" ]; then
        link() { printf '{"from":"%s","to":"%s","latency_ms":%s,"jitter_ms":%s,"loss":0,"partitioned":false}' "$1" "$2" "$ow" "$JITTER"; }
        for node in "$A" "$B"; do
          curl -fsS -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "{\"links\":[$(link us eu),$(link eu us)]}" "$node/v1/admin/wan" >/dev/null
        done
      fi
      log "signing up $users users (half in each region)"
      # Up to three times: a conversation whose other member signed up on the other node a moment
      # before can meet her not yet replicated there (404 unknown user); a retry keeps the users
      # already signed up (409 -> login) and conversations made (one per pair).
      for try in 1 2 3; do
        "$LOAD" run --scenario chat --target "$A,$B" --users "$users" --rate 100 --duration 1s \
          --warmup 0s --grace 1s --setup-concurrency "$SETUP_CONCURRENCY" \
          --sessions "$CLUSTER/sessions" --quiet >/dev/null && break
        [ "$try" -lt 3 ] || { echo "the setup failed three times" >&2; exit 1; }
        log "the setup failed (see above); again in 2 s"
        sleep 2
      done
      chat() { # scenario rate group_size users
        local report="$WORK/$round-$ow-$1.json" load
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        log "round $round, one way $ow ms: $1 at $2 msg/s (load $load)"
        "$LOAD" run --scenario chat --target "$A,$B" --users "$4" --group-size "$3" --rate "$2" \
          --duration "${SECS}s" --warmup "${WARMUP}s" --grace 3s \
          --setup-concurrency "$SETUP_CONCURRENCY" --sessions "$CLUSTER/sessions" \
          --report "$report" --quiet >&2
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$ow" "$1" "$2" "$3" \
          "$(tr ' ' '\t' <<<"$load")" "$report" >>"$RUNS"
      }
      chat 1:1 "$RATE" 2 "$pairs"
      chat groups "$GROUP_RATE" "$GROUP_SIZE" "$members"
      "$STARLING" cluster down --dir "$CLUSTER" >/dev/null
      CLUSTER=""
    done
  done
}
[ -n "${REPORT_FROM:-}" ] || measure

python3 - "$WORK" "$COMMAND" "$COMMIT" "$STARTED_AT" "${NOTE:-}" "$STORE" "${JITTER:-}" <<'PY' >"$WORK/chat-regions.md"
import os, sys
sys.path.insert(0, "infra")
from chat_runs import counts_cells, delivery, errors_cell, num as f, scenario
work, command, commit, started, note, store, jitter = sys.argv[1:8]
runs = []
for line in open(os.path.join(work, "runs.tsv")):
    rnd, ow, scen, rate, g, l1, l5, l15, path = line.rstrip("\n").split("\t")
    x = delivery(path, int(g))
    ops = x.pop("report")["ops"]
    def lat(op):
        o = ops.get(op) or {}
        lu = o.get("latency_us") or {}
        return dict(n=o.get("ok", 0), **{k: lu.get(k, 0) / 1000 for k in ("p50", "p90", "p99", "p999", "max")})
    runs.append(dict(x, round=int(rnd), ow=int(ow), scen=scen, rate=int(rate), g=int(g),
        load=(float(l1), float(l5), float(l15)),
        cross=lat("chat_deliver_cross"), local=lat("chat_deliver_local"), ack=lat("chat_send")))

def p99(l):
    return f(l["p99"]) if l["n"] else "–"

store_text = ("the embedded store (fjall on disk, the default `--fsync 100`)" if store == "embedded"
              else f"the `{store}` store")
out = ["# Chat delivery across regions", "",
       f"Generated by `infra/bench-chat-wan.sh`, run from {started} on the tree at commit {commit}, "
       f"{os.cpu_count()} cores, loopback. Command: `{command}`.", "",
       *([note, ""] if note else []),
       "`starling cluster --regions us,eu --nodes-per-region 1 --rtt us-eu=2×ONE_WAY` — two `starling "
       f"serve` processes on {store_text}, joined by gossip over the simulated WAN (one way = half the round "
       "trip, plus a uniform jitter per message of "
       + ("0 to J whole ms, J = round trip / 20 rounded down (a tenth of the one way: 5, 10, 12 ms at 50, 100, 125 ms)"
          if jitter == "" else f"0 to {jitter} ms, set by `PUT /v1/admin/wan`")
       + "). One `starling-load` "
       "client, `--target` both nodes: users alternate between them, conversations are consecutive users, "
       "so every 1:1 conversation has one member in each region and a group of "
       f"{max((x['g'] for x in runs), default=100)} has half its members in each. A send from the conversation's home "
       "region is claimed there and reaches the other region by replication (one way); a send from the "
       "other region is forwarded to the home (one way), claimed there and delivered by its tail, while its "
       "ack returns (the second half of the round trip). A one way of 0 is the same cluster without WAN "
       "delay: the baseline of the run.", "",
       "Latency from the scheduled send (stamped in the body) to receipt, ms. **cross** = deliveries to a "
       "member on the other region's node (what the goal \"p99 ≤ one way + 20 ms\" is about); local = to a "
       "member on the sender's node; ack = to the sender's ack (a round trip for a sender outside the "
       "home region). Delivered = distinct deliveries / (sent × other members), warm-up included. "
       "**link p99** = the simulated link's own p99 one way, one way + J (J, the jitter's bound, has "
       "probability 1/(J+1) ≥ 1 % as the jitter takes whole ms, and the in-order writer delays a frame "
       "behind a later one, never past J); **p99 − link p99** = what the nodes add at the p99 beyond the "
       "link itself, the figure for the goal's 20 ms once the WAN's jitter is counted as the WAN's.", "",
       "| scenario | msg/s | one way ms | round | load before | delivered % | cross n | cross p50 | cross p90 | cross p99 | cross p99.9 | p99 − one way | link p99 | **p99 − link p99** | local p99 | ack p50 | ack p99 |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
def jitter_of(ow):
    # Wan::with_rtts: jitter_ms = rtt / 20 (integer ms), rtt = 2 × one way; or JITTER.
    return int(jitter) if jitter != "" else (2 * ow) // 20 if ow else 0
def link_p99(ow):
    j = jitter_of(ow) if ow else 0
    # The p99 of a uniform on 0..=J whole ms is J while J ≤ 99; the in-order writer never adds past J.
    return ow + (j if j <= 99 else -(-99 * (j + 1) // 100) - 1)
for x in runs:
    label = scenario(x["g"])
    c = x["cross"]
    margin = c["p99"] - x["ow"]
    link = link_p99(x["ow"])
    own = c["p99"] - link
    mark = lambda m: "met" if m <= 20 else "**not met**"
    out.append(f"| {label} | {x['rate']:,} | {x['ow']} | {x['round']} | {x['load'][0]:.2f} | {x['pct']:.2f} | "
               f"{c['n']:,} | {f(c['p50'])} | {f(c['p90'])} | {f(c['p99'])} | {f(c['p999'])} | "
               f"{margin:+.1f} ({mark(margin) if x['ow'] else 'baseline'}) | {link} | "
               f"**{own:+.1f}** ({mark(own) if x['ow'] else 'baseline'}) | {p99(x['local'])} | "
               f"{f(x['ack']['p50'])} | {f(x['ack']['p99'])} |")
out += ["", "## Every run", "",
        "| round | one way ms | scenario | msg/s | load before (1/5/15) | sent | acked | delivered / expected | missing | duplicates | cross max | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for x in runs:
    out.append(f"| {x['round']} | {x['ow']} | {scenario(x['g'])} | {x['rate']:,} | {counts_cells(x)} | "
               f"{f(x['cross']['max'])} | {errors_cell(x)} |")
print("\n".join(out))
PY
# The generated tables, then the page's hand-written part kept from its `## Reading` line on.
{
  cat "$WORK/chat-regions.md"
  if grep -q '^## Reading' bench/chat-regions.md 2>/dev/null; then
    echo; sed -n '/^## Reading/,$p' bench/chat-regions.md
  fi
} >"$WORK/page.md"
mv "$WORK/page.md" bench/chat-regions.md
cat bench/chat-regions.md
echo "raw reports: $WORK" >&2
