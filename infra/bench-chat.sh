#!/usr/bin/env bash
# Starling's chat beside Centrifugo v6.9.1 on this machine, one load client for both
# (`starling-load run --scenario chat --protocol starling|centrifugo`: one schedule, one
# histogram code path, one delivery check). Writes bench/chat.md.
#
#   1. idle memory: IDLE (5 000) authenticated idle sockets on a fresh server of each kind,
#      server RSS growth / sockets (once per server);
#   2. ABAB rounds (Starling, Centrifugo, Starling, Centrifugo), each on a fresh server: 1:1 chat
#      (CONVS conversations, 2 sockets each) at every rate of RATES msg/s, then GROUP_COUNT groups of
#      GROUP_SIZE members at GROUP_RATE msg/s (every message fanned out to the other members);
#      open loop (Poisson), WARMUP s unmeasured then SECS s measured, 2 s grace;
#   3. in each round, between the two, Starling on its default embedded store (fjall on disk,
#      default fsync 100 ms; the default of `starling serve`), fresh, 1:1 at EMBEDDED_RATES msg/s
#      (1000,5000; EMBEDDED=0 skips it): rows "Starling, embedded store" with their own ratio;
#   4. the bare tokio-tungstenite relay of api/benches/chat.rs at RATES (its own in-process
#      client: another harness; BASELINE=0 skips it).
# Per run: the load average before it, delivered %, delivery p50/p99/p99.9, ack p99, and the
# server's CPU time (utime+stime from /proc/PID/stat over the measured window) per delivery.
# The table takes, per server and scenario, the round with the lower load average before it.
#   RATES=1000,5000,10000 SECS=10 infra/bench-chat.sh        (about 20 minutes on 2 cores)
#   REPORT_FROM=/tmp/bench-chat.XXXXXX infra/bench-chat.sh   (rewrite bench/chat.md from a run's raw reports)
#   OUT=/tmp/chat.md infra/bench-chat.sh                      (write the page there instead)
# Also: WARMUP (2), CONVS (1000), GROUP_COUNT (20), GROUP_SIZE (100), GROUP_RATE (1000), IDLE
# (5000), ROUNDS (2), EMBEDDED (1), BASELINE (1), S_PORT/C_PORT, STARLING_BIN/LOAD_BIN,
# SETUP_CONCURRENCY (16: sign-ups and connections at once; lower it on a busy machine, where 16
# argon2id sign-ups at once time out). Run it under `nice -n 19` beside work that must not be
# disturbed: every server and client inherits it, and the report says so. NOTE: a paragraph put
# under the report's first lines (what else ran on the machine).
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
. infra/lib.sh
RATES="${RATES:-1000,5000,10000}"; SECS="${SECS:-10}"; WARMUP="${WARMUP:-2}"
CONVS="${CONVS:-1000}"; GROUP_COUNT="${GROUP_COUNT:-20}"; GROUP_SIZE="${GROUP_SIZE:-100}"
GROUP_RATE="${GROUP_RATE:-1000}"; IDLE="${IDLE:-5000}"; EMBEDDED="${EMBEDDED:-1}"
EMBEDDED_RATES="${EMBEDDED_RATES:-1000,5000}"; OUT="${OUT:-bench/chat.md}"
BASELINE="${BASELINE:-1}"; ROUNDS="${ROUNDS:-2}"; SETUP_CONCURRENCY="${SETUP_CONCURRENCY:-16}"
S_PORT="${S_PORT:-18080}"; C_PORT="${C_PORT:-18000}"
if [ -n "${REPORT_FROM:-}" ]; then
  # Rewrite bench/chat.md from the raw reports of an earlier run (its directory).
  WORK=$REPORT_FROM
  # shellcheck disable=SC1091
  . "$WORK/meta"
else
  WORK=$(mktemp -d /tmp/bench-chat.XXXXXX)
  # The tree at the start (the binaries are built from it unless STARLING_BIN / LOAD_BIN are given).
  bench_provenance "${STARLING_BIN:+STARLING_BIN=$STARLING_BIN }${LOAD_BIN:+LOAD_BIN=$LOAD_BIN }RATES=$RATES SECS=$SECS ROUNDS=$ROUNDS IDLE=$IDLE EMBEDDED=$EMBEDDED${EMBEDDED_RATES:+ EMBEDDED_RATES=$EMBEDDED_RATES} BASELINE=$BASELINE SETUP_CONCURRENCY=$SETUP_CONCURRENCY infra/bench-chat.sh"
  NOTE="${NOTE:-}"
  declare -p COMMIT COMMAND STARTED_AT RATES SECS WARMUP CONVS GROUP_COUNT GROUP_SIZE NOTE >"$WORK/meta"
fi

measure() {
  # Both processes hold one file per socket: keep the soft limit at the hard one (20 000 here).
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(ulimit -n)" -lt $((IDLE + 1000)) ]; then
    echo "open-file limit $(ulimit -n) is below IDLE+1000 = $((IDLE + 1000))" >&2; exit 1
  fi

  # STARLING_BIN / LOAD_BIN: measure these binaries instead of building the work tree's.
  release_bins
  infra/centrifugo.sh >/dev/null

  PIDS=$WORK/pids   # servers this script started, stopped on exit
  : >"$PIDS"
  cleanup() {
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$PIDS"
    infra/centrifugo.sh stop "$WORK/centrifugo" 2>/dev/null || true
  }
  trap cleanup EXIT

  start_starling() { # dir, environment (VAR=value or -), extra args… → pid
    local dir=$1 envs=$2; shift 2
    [ "$envs" = - ] && envs=STARLING_BENCH=1
    mkdir -p "$dir"
    env "$envs" "$STARLING" serve --listen "127.0.0.1:$S_PORT" --data-dir "$dir/data" \
      --auth-per-minute 1000000000 "$@" >"$dir/starling.log" 2>&1 &
    local pid=$!
    echo "$pid" >>"$PIDS"
    for _ in $(seq 1 200); do
      curl -fsS "http://127.0.0.1:$S_PORT/readyz" >/dev/null 2>&1 && { echo "$pid"; return; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "starling did not start:" >&2; tail -5 "$dir/starling.log" >&2; exit 1
  }
  stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }
  start_centrifugo() { infra/centrifugo.sh start "$C_PORT" "$WORK/centrifugo"; }
  stop_centrifugo() { infra/centrifugo.sh stop "$WORK/centrifugo"; }

  RUNS=$WORK/runs.tsv   # server round scenario rate group_size load1 load5 load15 report
  : >"$RUNS"
  chat() { # server round scenario rate group_size users pid [extra args…]
    local server=$1 round=$2 scenario=$3 rate=$4 g=$5 users=$6 pid=$7; shift 7
    local report="$WORK/$server-$round-$scenario-$rate.json" target proto
    if [ "${server%%-*}" = centrifugo ]; then
      target=ws://127.0.0.1:$C_PORT; proto=centrifugo
    else
      target=http://127.0.0.1:$S_PORT; proto=starling
    fi
    local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== $server round $round: $scenario at $rate msg/s (load $load)" >&2
    STARLING_LOAD_CENTRIFUGO_SECRET=$(cat "$WORK/centrifugo/secret" 2>/dev/null || true) \
      "$LOAD" run --scenario chat --protocol "$proto" --target "$target" --users "$users" \
        --group-size "$g" --rate "$rate" --duration "${SECS}s" --warmup "${WARMUP}s" --grace 2s \
        --setup-concurrency "$SETUP_CONCURRENCY" --server-pid "$pid" --report "$report" --quiet "$@" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$round" "$scenario" "$rate" "$g" "$(tr ' ' '\t' <<<"$load")" "$report" >>"$RUNS"
  }

  # 1. Idle memory, on fresh servers. Starling runs with MIMALLOC_PURGE_DELAY=0 here only: the
  #    argon2id buffers of the sign-ups (19 MiB each) are then returned to the system at once
  #    instead of being reused for the sockets (which hid most of their cost).
  IDLE_TSV=$WORK/idle.tsv; : >"$IDLE_TSV"
  pid=$(start_starling "$WORK/s-idle" MIMALLOC_PURGE_DELAY=0 --store memory)
  echo "== starling idle: signing up $IDLE users, then $IDLE sockets" >&2
  "$LOAD" run --scenario idle --target "http://127.0.0.1:$S_PORT" --users "$IDLE" --conns "$IDLE" \
    --setup-concurrency "$SETUP_CONCURRENCY" --server-pid "$pid" --report "$WORK/idle-starling.json" --quiet >&2
  printf 'starling\t%s\n' "$WORK/idle-starling.json" >>"$IDLE_TSV"
  stop_pid "$pid"
  pid=$(start_centrifugo)
  STARLING_LOAD_CENTRIFUGO_SECRET=$(cat "$WORK/centrifugo/secret") \
    "$LOAD" run --scenario idle --protocol centrifugo --target "ws://127.0.0.1:$C_PORT" \
    --conns "$IDLE" --server-pid "$pid" --report "$WORK/idle-centrifugo.json" --quiet >&2
  printf 'centrifugo\t%s\n' "$WORK/idle-centrifugo.json" >>"$IDLE_TSV"
  stop_centrifugo

  # 2. ABAB.
  IFS=, read -r -a rates <<<"$RATES"
  pairs=$((CONVS * 2)); members=$((GROUP_COUNT * GROUP_SIZE)); users=$((pairs > members ? pairs : members))
  signup() { # dir pid: sign the users up once per server (argon2id: ~40 s for 2 000), unmeasured
    echo "== starling: signing up $users users" >&2
    "$LOAD" run --scenario chat --target "http://127.0.0.1:$S_PORT" --users "$users" --rate 100 \
      --duration 1s --warmup 0s --grace 1s --setup-concurrency "$SETUP_CONCURRENCY" --sessions "$1/sessions" --quiet >/dev/null
  }
  for round in $(seq 1 "$ROUNDS"); do
    pid=$(start_starling "$WORK/s-$round" - --store memory)
    signup "$WORK/s-$round"
    for r in "${rates[@]}"; do
      chat starling "$round" 1:1 "$r" 2 "$pairs" "$pid" --sessions "$WORK/s-$round/sessions"
    done
    chat starling "$round" groups "$GROUP_RATE" "$GROUP_SIZE" "$members" "$pid" --sessions "$WORK/s-$round/sessions"
    stop_pid "$pid"
    if [ "$EMBEDDED" = 1 ]; then
      pid=$(start_starling "$WORK/se-$round" -)
      signup "$WORK/se-$round"
      IFS=, read -r -a erates <<<"$EMBEDDED_RATES"
      for r in "${erates[@]}"; do
        chat starling-embedded "$round" 1:1 "$r" 2 "$pairs" "$pid" --sessions "$WORK/se-$round/sessions"
      done
      stop_pid "$pid"
    fi
    pid=$(start_centrifugo)
    for r in "${rates[@]}"; do
      chat centrifugo "$round" 1:1 "$r" 2 "$pairs" "$pid"
    done
    chat centrifugo "$round" groups "$GROUP_RATE" "$GROUP_SIZE" "$members" "$pid"
    stop_centrifugo
  done

  # 4. The bare relay of api/benches/chat.rs (in-process client, 50 pairs).
  : >"$WORK/baseline.md"
  if [ "$BASELINE" = 1 ]; then
    echo "== bare relay (api/benches/chat.rs) at $RATES msg/s" >&2
    cargo bench -q -p starling-api --bench chat -- latency --server baseline --rates "$RATES" \
      --secs "$SECS" 2>/dev/null | grep '^|' >"$WORK/baseline.md" || true
  fi

}
[ -n "${REPORT_FROM:-}" ] || measure

python3 - "$WORK" "$COMMAND" "$COMMIT" "$STARTED_AT" "${NOTE:-}" <<'PY'
import json, os, sys
sys.path.insert(0, "infra")
from chat_runs import counts_cells, delivery, errors_cell, num as f, scenario
work, command, commit, started, note = sys.argv[1:6]
env = os.environ
runs = []
for line in open(os.path.join(work, "runs.tsv")):
    server, rnd, scen, rate, g, l1, l5, l15, path = line.rstrip("\n").split("\t")
    x = delivery(path, int(g))
    r = x.pop("report")
    c, ops = r["chat"], r["ops"]
    d, s = ops.get("chat_deliver", {}), ops.get("chat_send", {})
    lat = d.get("latency_us", {})
    wd = c.get("window_deliveries") or 0
    cpu = c.get("server_cpu_us")
    ccpu = c.get("client_cpu_us")
    runs.append(dict(x, server=server, round=int(rnd), scen=scen, rate=int(rate), g=int(g),
        load=(float(l1), float(l5), float(l15)),
        per_s=wd / r["run"]["duration_s"], p50=lat.get("p50", 0) / 1000,
        p99=lat.get("p99", 0) / 1000, p999=lat.get("p999", 0) / 1000,
        ack99=s.get("latency_us", {}).get("p99", 0) / 1000,
        cpu=(cpu / wd if cpu is not None and wd else None),
        ccpu=(ccpu / wd if ccpu is not None and wd else None)))

def pick(server, scen, rate):
    c = [x for x in runs if x["server"] == server and x["scen"] == scen and x["rate"] == rate]
    return min(c, key=lambda x: x["load"][0]) if c else None

def ratio(a, b):
    return "–" if a is None or b is None or not b else f"{a / b:.2f}"

out = ["# Chat: Starling beside Centrifugo", "",
       f"Generated by `infra/bench-chat.sh`, run from {started} on the tree at commit {commit}, "
       f"{os.cpu_count()} cores, loopback. "
       f"Command: `{command}`.",
       "One load client for both servers (`starling-load`, the same chat runner, schedule, histograms and "
       "delivery check; only the wire protocol differs), on the same 2 cores as the server. Each row is "
       f"the quieter of {max(x['round'] for x in runs)} rounds run ABAB (Starling, Centrifugo, Starling, "
       "Centrifugo), on a fresh server per round: the one with the lower 1-minute load average before it.", "",
       *([note, ""] if note else []),
       "## Side by side", "",
       "Latency from the scheduled send (stamped in the body) to receipt by the other member(s), ms; ack = "
       "to the sender's ack. CPU = the server process's utime+stime over the measured window / deliveries "
       "received in it, µs. Delivered = distinct deliveries / (sent × other members), warm-up included. "
       "Ratio = Starling / Centrifugo (< 1: Starling lower); ratio, embedded = Starling on its embedded store "
       "(fjall on disk, the default of `starling serve`) / Centrifugo.", "",
       "| scenario | msg/s | server | load before | delivered % | deliveries/s | p50 | p99 | p99.9 | ack p99 | CPU µs/delivery |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
scens = []
for x in runs:
    k = (x["scen"], x["rate"], x["g"])
    if x["server"] in ("starling", "centrifugo") and k not in scens:
        scens.append(k)
for scen, rate, g in scens:
    label = scenario(g)
    a, b = pick("starling", scen, rate), pick("centrifugo", scen, rate)
    e = pick("starling-embedded", scen, rate)
    for name, x in (("Starling", a), ("Starling, embedded store", e), ("Centrifugo", b)):
        if x:
            out.append(f"| {label} | {rate:,} | {name} | {x['load'][0]:.2f} (round {x['round']}) | {x['pct']:.2f} | "
                       f"{x['per_s']:,.0f} | {f(x['p50'])} | {f(x['p99'])} | {f(x['p999'])} | {f(x['ack99'])} | {f(x['cpu'], 1)} |")
    if a and b:
        out.append(f"| {label} | {rate:,} | **ratio** | | {ratio(a['pct'], b['pct'])} | {ratio(a['per_s'], b['per_s'])} | "
                   f"**{ratio(a['p50'], b['p50'])}** | **{ratio(a['p99'], b['p99'])}** | **{ratio(a['p999'], b['p999'])}** | "
                   f"**{ratio(a['ack99'], b['ack99'])}** | **{ratio(a['cpu'], b['cpu'])}** |")
    if e and b:
        out.append(f"| {label} | {rate:,} | **ratio, embedded** | | {ratio(e['pct'], b['pct'])} | {ratio(e['per_s'], b['per_s'])} | "
                   f"**{ratio(e['p50'], b['p50'])}** | **{ratio(e['p99'], b['p99'])}** | **{ratio(e['p999'], b['p999'])}** | "
                   f"**{ratio(e['ack99'], b['ack99'])}** | **{ratio(e['cpu'], b['cpu'])}** |")
idle = {}
for line in open(os.path.join(work, "idle.tsv")):
    name, path = line.rstrip("\n").split("\t")
    idle[name] = json.load(open(path))
if idle:
    out += ["", "## Idle memory per authenticated socket", "",
            "A fresh server; N sockets, each of its own user, open and ready (Starling: session token in the "
            "URL, registered with the hub, answered a ping; Centrifugo: connected with its JWT and subscribed "
            "to one channel, two sockets per channel), held 3 s; server RSS growth / sockets open. Kernel "
            "socket buffers are not in RSS. Starling runs this measurement with `MIMALLOC_PURGE_DELAY=0`: "
            "otherwise the argon2id buffers of the sign-ups (19 MiB each), freed but kept by mimalloc, are "
            "reused for the sockets and hide most of their cost; live memory is the same. Centrifugo's RSS "
            "includes Go's GC headroom (`GOGC=100`), part of what a Go server costs.", "",
            "| server | sockets | RSS before KiB | RSS after KiB | bytes per socket | connect s |", "|---|---|---|---|---|---|"]
    for name in ("starling", "centrifugo"):
        if name in idle:
            i = idle[name]
            fails = f" ({sum(i['failed'].values())} failed)" if i["failed"] else ""
            out.append(f"| {name.capitalize()} | {i['open']:,}{fails} | {i['rss_before_kib']:,} | {i['rss_after_kib']:,} | "
                       f"{i['bytes_per_socket']:,.0f} | {i['connect_s']:.1f} |")
    if "starling" in idle and "centrifugo" in idle and idle["centrifugo"]["bytes_per_socket"]:
        out.append(f"| **ratio** | | | | **{idle['starling']['bytes_per_socket'] / idle['centrifugo']['bytes_per_socket']:.2f}** | |")
out += ["", "## Every run", "",
        "Load average (1/5/15 min) read from /proc/loadavg just before each run; the machine is shared with "
        "other work. Client CPU is the load generator's own CPU per delivery over the same window.", "",
        "| server | round | scenario | msg/s | load before | sent | acked | delivered / expected | missing | duplicates | p50 | p99 | p99.9 | ack p99 | CPU µs/delivery | client CPU µs/delivery | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for x in runs:
    out.append(f"| {x['server']} | {x['round']} | {scenario(x['g'])} | {x['rate']:,} | {counts_cells(x)} | "
               f"{f(x['p50'])} | {f(x['p99'])} | {f(x['p999'])} | {f(x['ack99'])} | {f(x['cpu'], 1)} | {f(x['ccpu'], 1)} | {errors_cell(x)} |")
base = open(os.path.join(work, "baseline.md")).read().strip()
if base:
    out += ["", "## Bare relay (api/benches/chat.rs)", "",
            "The tokio-tungstenite relay of `cargo bench -p starling-api --bench chat -- latency --server baseline` "
            "(no auth, storage, seq, ack or ordering: a frame in, the same frame out to its addressee), run after "
            "the rounds above at the same rates. Another harness: its own in-process client with 50 sender→receiver "
            "pairs and µs figures, so compare it with the rows above only roughly.", "", base]
open(os.path.join(work, "tables.md"), "w").write("\n".join(out) + "\n")
PY
# The tables, then the fixed text (configurations, guarantees, reading).
{
  cat "$WORK/tables.md"
  cat <<EOF

## Configurations

- **Starling**: \`starling serve --store memory --auth-per-minute 1000000000\` (release build, mimalloc
  2.x), one node, one region; everything else default (\`--ws-queue-bytes\` 1 MiB, 16 sockets per
  user). The memory store writes nothing to disk, so no fsync policy applies; the embedded-store
  row is \`starling serve\` on fjall in a fresh data directory with the default \`--fsync 100\`
  (the log is fsynced every 100 ms; an acknowledged write is in the OS's page cache, so it
  survives a crash of the process but not of the machine within those 100 ms). Users sign up
  over REST once per server (\`--sessions\`), conversations are created over REST before each run.
- **Centrifugo v6.9.1**: built from its Go module by \`infra/centrifugo.sh\` (Go $(go env GOVERSION 2>/dev/null || echo ?)),
  config written by \`infra/centrifugo.sh start\`: the **memory engine**; namespace \`chat\` with
  \`history_size\` 1000, \`history_ttl\` 300 s, \`force_recovery\`, \`allow_subscribe_for_client\`,
  \`allow_publish_for_subscriber\` (client-side publish); bound to 127.0.0.1; usage stats off.
  **Auth: HS256 JWTs** (\`sub\` = the user, \`exp\` a day ahead) signed by the load client with the
  \`client.token.hmac_secret_key\` of the config, sent in the \`connect\` command: the server checks a
  signature, with no lookup. Starling authenticates each socket by a session token in the URL that it
  looks up in its store. A conversation is a channel \`chat:<k>\` (no REST setup); each socket
  subscribes to its conversation with \`recover: true\` before the first send.
- **Centrifugo's defaults that matter**: a write to a socket blocking more than 1 s
  (\`websocket.write_timeout\`) or a client queue over 1 MiB (\`client.queue_max_size\`) drops the
  client (disconnect 3008 "slow"); one command at a time per connection
  (\`client.concurrency\` 0); server ping every 25 s, pong expected within 8 s (the load client
  answers); messages to one client are batched into one WebSocket frame, one JSON per line (the
  load client parses them all). Go's GC runs at its default \`GOGC=100\` (RSS includes its headroom).
- **Load**: 1:1 runs use $CONVS conversations ($((CONVS * 2)) sockets), groups runs $GROUP_COUNT groups of
  $GROUP_SIZE ($((GROUP_COUNT * GROUP_SIZE)) sockets, $((GROUP_SIZE - 1)) deliveries per message); Poisson
  arrivals from random members, open loop: latency counts from the scheduled send, a send whose
  connection queue is full is dropped and counted; ${WARMUP} s warm-up, ${SECS} s measured, 2 s
  grace; 64-byte bodies. Every socket is ready before the first send: Starling's has sent
  \`resume\` after seq 0 for its conversation and got \`resumed\` (the exact catch-up a client does;
  a 1:1 between the same two users is one conversation, so later runs replay the earlier runs'
  messages first, unmeasured), Centrifugo's is connected and subscribed with \`recover: true\`.
  Load client and server share the 2 cores: the load client's own CPU per delivery is in
  "Every run".

## What differs in guarantees

| | Starling | Centrifugo (memory engine) |
|---|---|---|
| ack | after the message is stored (memory store here; on the embedded store, in its log) | after the publication is in the channel's in-memory history and handed to the node's hub for broadcast |
| durability | store's: embedded = survives a process crash; replicated to K regions in a cluster | none: history and offsets live in the process, lost on restart |
| order | gap-free per-conversation \`seq\` assigned by CAS at the home region; one sender's messages in send order | per-channel \`offset\` in one node's memory; per-connection commands one at a time |
| idempotency | \`client_id\`: a repeated send gets the original ack, stored once | none: a repeated publish is a new publication (an idempotency key exists in the server API, not used by client publish) |
| catch-up | \`resume\` after a seq: exact, from the store, any age | recovery by offset/epoch from the bounded history (1000 publications, 300 s); beyond, "not recovered" |
| membership | conversations and groups with roles, checked on every send | channel permissions from the namespace; any authenticated client may subscribe and publish in \`chat:*\` here |
| slow clients | closed when its send queue passes \`--ws-queue-bytes\` (4008) | dropped after a 1 s blocked write or a 1 MiB queue |

The comparison is of the live path at equal load; Starling does strictly more per message
(a store write with a CAS and a client-id index entry, membership checks), which is what its ack
means. Both servers also send each message back to the sender's own socket (Starling: to the
sender's devices; Centrifugo: the publisher is a subscriber); the load client ignores that copy.
EOF
} >"$WORK/chat.md"
mv "$WORK/chat.md" "$OUT"
cat "$OUT"
echo "raw reports: $WORK" >&2
