#!/usr/bin/env bash
# Serving the web client: the page and its largest module from a real `starling serve` (release
# build) on loopback under wrk, beside /healthz on the same server as the ceiling, and the
# revalidation a browser does on each load (If-None-Match → 304, no body). Writes bench/web.md.
# Needs wrk (installed from Debian's packages if missing). About 40 s plus the build.
# STARLING_BIN runs that binary instead of building one; WEB_OUT names the page (bench/web.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/wrk/lib.sh
. infra/wrk/lib.sh
out="${WEB_OUT:-bench/web.md}"
serve_bench --store memory
etag=$(curl -sfI "$url/web/js/chat.js" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
size=$(curl -sf "$url/web/js/chat.js" | wc -c)

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
