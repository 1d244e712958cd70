#!/usr/bin/env bash
# Serving the web client: the page and its largest module from a real `starling serve` (release
# build) on loopback under wrk, beside /healthz on the same server as the ceiling, and the
# revalidation a browser does on each load (If-None-Match → 304, no body). Writes bench/web.md.
# Needs wrk (installed from Debian's packages if missing). About 40 s plus the build.
# STARLING_BIN runs that binary instead of building one; WEB_OUT names the page (bench/web.md).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
bin="${STARLING_BIN:-target/release/starling}"
out="${WEB_OUT:-bench/web.md}"
[ -n "${STARLING_BIN:-}" ] || cargo build --release -q -p starling-api --bin starling
DUR="${DUR:-8s}"; CONN="${CONN:-32}"
work=$(mktemp -d); port=$((20000 + RANDOM % 10000))
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
STARLING_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$work/data" --store memory > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf localhost:$port/healthz >/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port
etag=$(curl -sfI "$url/web/js/chat.js" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
size=$(curl -sf "$url/web/js/chat.js" | wc -c)

run() { # name, then wrk arguments
  local name=$1; shift
  wrk -t1 -c"$CONN" -d"$DUR" --latency "$@" > "$work/$name.txt"
  python3 - "$name" "$work/$name.txt" >> "$work/rows" <<'PY'
import re, sys
name, path = sys.argv[1], sys.argv[2]
t = open(path).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{name}\t{rps}\t{ms(50)}\t{ms(99)}\t{non2xx.group(1) if non2xx else 0}")
PY
}
: > "$work/rows"
run bare "$url/healthz"
run page "$url/"
run module "$url/web/js/chat.js"
run revalidate -H "If-None-Match: $etag" "$url/web/js/chat.js"

python3 - "$work/rows" "$DUR" "$CONN" "$size" > "$out" <<'PY'
import sys, subprocess, datetime, os
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
bare = float(rows[0][1])
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Serving the web client (infra/bench-web.sh)\n")
print(f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{commit}`: release build, "
      f"wrk with 1 thread and {sys.argv[3]} connections for {sys.argv[2]} per row, on the same {os.cpu_count()}-core "
      "machine as the server (shared, noisy: compare the ratios). The ceiling is `/healthz` on the same server; "
      "ratio = row req/s ÷ ceiling req/s.\n")
print("| request | req/s | ratio to ceiling | p50 | p99 | non-2xx |")
print("|---|---|---|---|---|---|")
names = {"bare": "GET /healthz (ceiling)", "page": "GET / (index.html)",
         "module": f"GET /web/js/chat.js ({int(sys.argv[4]):,} bytes)", "revalidate": "GET /web/js/chat.js, If-None-Match (304)"}
for name, rps, p50, p99, bad in rows:
    print(f"| {names[name]} | {float(rps):,.0f} | {float(rps)/bare:.3f} | {float(p50):.2f} ms | {float(p99):.2f} ms | {bad} |")
print("\nThe files are embedded in the binary and served from a static slice (no copy, no disk read); "
      "each answer carries `Cache-Control: no-cache` and an ETag computed once at the first request, so a "
      "browser's reload is one 304 per file. The client's routes are merged beside the API's router, outside its "
      "layers (request deadline, declared-size check, problem+json mapping) that `/healthz` goes through: a ratio "
      "above 1 is that difference, not a faster server.")
PY
cat "$out"
