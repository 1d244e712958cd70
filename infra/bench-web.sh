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
import sys
sys.path.insert(0, "infra/wrk")
import page
print("# Serving the web client (infra/bench-web.sh)\n")
print(page.run_line("release build, " + page.wrk_setup(sys.argv[2], sys.argv[3])) + "\n")
names = {"bare": "GET /healthz (ceiling)", "page": "GET / (index.html)",
         "module": f"GET /web/js/chat.js ({int(sys.argv[4]):,} bytes)", "revalidate": "GET /web/js/chat.js, If-None-Match (304)"}
print(page.ceiling_table(sys.argv[1], "request", names))
print("\nThe files are embedded in the binary and served from a static slice (no copy, no disk read); "
      "each answer carries `Cache-Control: no-cache` and an ETag computed once at the first request, so a "
      "browser's reload is one 304 per file. The client's routes are merged beside the API's router, outside its "
      "layers (request deadline, declared-size check, problem+json mapping) that `/healthz` goes through: a ratio "
      "above 1 is that difference, not a faster server.")
PY
cat "$out"
