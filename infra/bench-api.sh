#!/usr/bin/env bash
# REST throughput and latency of a real `starling serve` (release build, embedded store) on
# loopback under wrk, beside /healthz on the same server as the ceiling. Writes bench/api.md.
# Needs wrk (installed from Debian's packages if missing). About 2 minutes plus the build.
# STARLING_BIN runs that binary instead of building one; API_OUT names the page (bench/api.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=infra/wrk/lib.sh
. infra/wrk/lib.sh
out="${API_OUT:-bench/api.md}"
serve_bench --auth-per-minute 100000000
signup() { curl -sf -X POST -H 'content-type: application/json' -d "{\"handle\":\"$1\",\"password\":\"password1\"}" $url/v1/users; }
me=$(signup benchuser); token=$(echo "$me" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ids=""
for i in $(seq 200); do
  id=$(signup "target$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'); ids="$ids,$id"
done
ids=${ids#,}
post=$(curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"text":"a post to read"}' $url/v1/posts | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

run bare "$url/healthz"
run post_get -H "Authorization: Bearer $token" "$url/v1/posts/$post"
METHOD=POST TARGET_PATH=/v1/posts TOKEN=$token BODY='{"text":"benchmark post"}' run post_create -s infra/wrk/post_json.lua "$url"
IDS=$ids TOKEN=$token run follow -s infra/wrk/follow.lua "$url"
METHOD=POST TARGET_PATH=/v1/sessions TOKEN= BODY='{"handle":"benchuser","password":"password1"}' run login -s infra/wrk/post_json.lua "$url"
RUN=$RANDOM run signup -s infra/wrk/signup.lua "$url"
rss_mib=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$pid/status)

python3 - "$work/rows" "$DUR" "$CONN" "$rss_mib" > "$out" <<'PY'
import sys
sys.path.insert(0, "infra/wrk")
import page
print("# REST API under load (infra/bench-api.sh)\n")
print(page.run_line("release build, embedded store (fsync every 100 ms), " + page.wrk_setup(sys.argv[2], sys.argv[3])) + "\n")
names = {"bare": "GET /healthz (ceiling)", "post_get": "GET /v1/posts/{id}", "post_create": "POST /v1/posts",
         "follow": "PUT /v1/following/{id}", "login": "POST /v1/sessions (argon2id)", "signup": "POST /v1/users (argon2id)"}
print(page.ceiling_table(sys.argv[1], "endpoint", names))
print("\nwrk is closed-loop: latencies under saturation, not at a fixed rate. "
      "`PUT /v1/following/{id}` cycles over 200 seeded users: after the first pass a follow is the idempotent "
      "path (a read that finds the edge). Sign-up and login are bound by argon2id (19 MiB, 2 passes), by design; they are also rate limited per address "
      "(disabled for this run).")
print(f"\nThe server's RSS after all rows: {sys.argv[4]} MiB.")
PY
cat "$out"
