#!/usr/bin/env bash
# One hot post liked from three regions at once, against the same likes spread over many posts
# (the baseline), alternating in one run (ABAB): a `starling cluster` of three regions, one node
# each, over the simulated WAN; `starling-load` users spread over the three nodes (each user's
# home region is its node's), every like acknowledged by the liker's own region. The mix is
# like=1,unlike=1 (a user liking a post again is idempotent, so likes and unlikes keep every
# request a write). After each run `starling-load verify` checks every acknowledged like and
# unlike on every region and that each post's count equals its likers there; the hot post's
# count and its listed likers are read on each region too. Writes the section "One hot post
# from three regions" of bench/likes.md (the rest of the page is infra/bench-likes.py's).
#
#   infra/bench-likes-regions.sh
#   USERS=300 CONC=32 DUR=20s ROUNDS=2 POSTS=512 infra/bench-likes-regions.sh
#   STARLING_BIN=/tmp/starling LOAD_BIN=/tmp/starling-load …   # prebuilt binaries
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. infra/lib.sh
need_deb curl curl
bin="${STARLING_BIN:-target/release/starling}"
load="${LOAD_BIN:-target/release/starling-load}"
[ -n "${STARLING_BIN:-}" ] && [ -n "${LOAD_BIN:-}" ] ||
  cargo build --release -q -p starling-api --bin starling -p starling-loadgen --bin starling-load
USERS="${USERS:-300}"; CONC="${CONC:-32}"; DUR="${DUR:-20s}"; ROUNDS="${ROUNDS:-2}"
POSTS="${POSTS:-512}"; RTT="${RTT:-us-eu=100,us-ap=250,eu-ap=180}"
work=$(mktemp -d)
# A base port whose three HTTP ports and three gossip ports (base + 1000 …) are free.
base=$(python3 -c '
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    b = random.randrange(20000, 40000)
    if all(free(b + d) for d in (0, 1, 2, 1000, 1001, 1002)):
        print(b); break')
trap '"$bin" cluster down --dir "$work/c" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export STARLING_AUTH_PER_MINUTE=100000000 STARLING_LIKES_PER_MINUTE=100000000 STARLING_LOG=warn
"$bin" cluster --regions us,eu,ap --nodes-per-region 1 --base-port "$base" --rtt "$RTT" \
  --dir "$work/c" --detach >"$work/cluster.out"
mapfile -t urls < <(python3 -c 'import json,sys; [print(n["http"]) for n in json.load(open(sys.argv[1]))["nodes"]]' "$work/c/cluster.json")
targets=$(IFS=,; echo "${urls[*]}")

# The posts, written in the first region and read back in every region before the runs.
tok=$(curl -sf -X POST "${urls[0]}/v1/users" -H 'content-type: application/json' \
  -d '{"handle":"likebench","password":"password1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
: >"$work/posts"
for i in $(seq 0 "$POSTS"); do
  curl -sf -X POST "${urls[0]}/v1/posts" -H 'content-type: application/json' \
    -H "authorization: Bearer $tok" -d "{\"text\":\"post $i to like\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' >>"$work/posts"
done
hot=$(head -1 "$work/posts")
spread=$(tail -n +2 "$work/posts" | paste -sd,)
last=$(tail -1 "$work/posts")
for u in "${urls[@]}"; do
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $tok" "$u/v1/posts/$last")" = 200 ] && break
    sleep 0.1
  done
done

common=(--target "$targets" --users "$USERS" --follows 0 --posts 0 --mix like=1,unlike=1
  --rate max --concurrency "$CONC" --duration "$DUR" --warmup 3s --quiet
  --sessions "$work/sessions.json" --setup-concurrency 4)
for r in $(seq "$ROUNDS"); do
  for case in spread hot; do
    if [ "$case" = hot ]; then posts=$hot; else posts=$spread; fi
    cut -d' ' -f1-3 /proc/loadavg >"$work/$case-$r.load"
    "$load" run "${common[@]}" --like-posts "$posts" --seed "$r" \
      --report "$work/$case-$r.json" --acked-log "$work/$case-$r.acked" >/dev/null
    # Replication over the WAN and each region's count consumer settle within seconds: the
    # check is read-only, so it is repeated until it passes (at most a minute).
    for try in $(seq 12); do
      "$load" verify --target "$targets" --acked-log "$work/$case-$r.acked" \
        >"$work/$case-$r.verify" 2>&1 && break
      [ "$try" -lt 12 ] || { grep -v '^ ' "$work/$case-$r.verify" | tail -5; exit 1; }
      sleep 5
    done
    echo "settled after $try check(s)" >>"$work/$case-$r.verify"
  done
done
# The hot post on every region: its count and its likers, listed page by page.
for u in "${urls[@]}"; do
  python3 - "$u" "$hot" "$tok" >>"$work/hot-counts" <<'PY'
import json, sys, urllib.request
base, post, tok = sys.argv[1:]
def get(path):
    req = urllib.request.Request(base + path, headers={"authorization": "Bearer " + tok})
    return json.load(urllib.request.urlopen(req))
count, likers, cursor = get(f"/v1/posts/{post}")["counts"]["likes"], 0, ""
while True:
    page = get(f"/v1/posts/{post}/likes?limit=100{cursor}")
    likers += len(page["items"])
    if not page.get("next_cursor"):
        break
    cursor = "&cursor=" + page["next_cursor"]
print(f"{base} {count} {likers}")
PY
done

python3 - "$work" "$ROUNDS" "$USERS" "$CONC" "$DUR" "$POSTS" "$RTT" <<'PY'
import json, os, subprocess, sys, datetime
work, rounds, users, conc, dur, posts, rtt = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
def rd(n): return open(os.path.join(work, n)).read().strip()
def op(name, o):
    x = json.load(open(os.path.join(work, name + ".json")))["ops"].get(o, {})
    return x
rows, ratios = [], []
for r in range(1, int(rounds) + 1):
    got = {}
    for case in ("spread", "hot"):
        like, unlike = op(f"{case}-{r}", "like"), op(f"{case}-{r}", "unlike")
        rate = like.get("rate", 0) + unlike.get("rate", 0)
        err = like.get("errors", 0) + unlike.get("errors", 0)
        ok = like.get("ok", 0) + unlike.get("ok", 0)
        p99 = max(like["latency_us"]["p99"], unlike["latency_us"]["p99"]) / 1000
        p50 = like["latency_us"]["p50"] / 1000
        lines = rd(f"{case}-{r}.verify").splitlines()
        verify = lines[-2].replace("|", "/") + "; " + lines[-1]
        got[case] = (rate, p99)
        label = "one hot post" if case == "hot" else f"{posts} posts (baseline)"
        rows.append(f"| {r} | {label} | {ok} | {err} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {rd(f'{case}-{r}.load')} | {verify} |")
    ratios.append((got["hot"][0] / got["spread"][0], got["hot"][1] / got["spread"][1]))
hot = [l.split() for l in rd("hot-counts").splitlines()]
l1, l5, l15 = os.getloadavg()
section = [
    "## One hot post from three regions",
    "",
    f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}` on {os.cpu_count()} cores, "
    f"load average at the end {l1:.1f}/{l5:.1f}/{l15:.1f}: `infra/bench-likes-regions.sh` (USERS={users} CONC={conc} "
    f"DUR={dur} ROUNDS={rounds} POSTS={posts}, WAN `{rtt}` ms).",
    "",
    "A `starling cluster` of three regions (us, eu, ap; one release node each, all on this machine) and",
    f"`starling-load` with {users} users spread over the three (each liking through its own region), closed",
    f"loop with {conc} workers, mix `like=1,unlike=1` for {dur} per run: all on one hot post, or the same",
    f"load spread over {posts} posts (the baseline), alternating in one run. Each run's acknowledged likes",
    "and unlikes were checked on every region afterwards (`starling-load verify`: each in place, each",
    "post's count equal to its likers on each region).",
    "",
    "| round | posts liked | ok | errors | likes+unlikes/s accepted | like p50 ms | p99 ms (worse of like, unlike) | load average before | verify |",
    "|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    "| round | hot / baseline throughput | hot / baseline p99 |",
    "|---|---|---|",
    *[f"| {i + 1} | {a:.2f}× | {b:.2f}× |" for i, (a, b) in enumerate(ratios)],
    "",
    "The hot post after the last run, on each region (count served / likers listed):",
    "",
    *[f"- {u}: {c} / {n}" + (" (equal)" if c == n else " (**differ**)") for u, c, n in hot],
    "",
]
page = os.path.join("bench", "likes.md")
text = open(page).read() if os.path.exists(page) else "# Likes\n\n"
head = text.split("## One hot post from three regions")[0].rstrip("\n") + "\n\n"
open(page, "w").write(head + "\n".join(section))
print("\n".join(section))
PY
