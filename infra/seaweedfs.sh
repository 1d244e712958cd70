#!/usr/bin/env bash
# A single-process SeaweedFS (master, volume server, filer and S3 gateway) on loopback, so media
# is tested against a real S3-compatible server. SeaweedFS is built from its Go module through
# the Go module proxy (once, cached under ~/.cache/starling) — no docker, no download of a
# prebuilt binary.
#
#   infra/seaweedfs.sh start    build (once), boot, wait until S3 answers; prints the endpoint
#   infra/seaweedfs.sh stop     kill the server and remove its data
#   infra/seaweedfs.sh status   prints the endpoint if S3 answers, exits 1 otherwise
#   infra/seaweedfs.sh env      prints `export …` lines for the tests (endpoint, bucket, keys)
#
# `start --background` returns at once after launching (use `wait` later); `wait` blocks until
# S3 answers and the bucket exists. Environment: SEAWEEDFS_VERSION (a Go module version of
# github.com/seaweedfs/seaweedfs), STARLING_SEAWEEDFS_STATE (pid, ports, keys and data; default
# /tmp/starling-seaweedfs-$UID), SEAWEEDFS_WAIT_SECS (default 120).
set -euo pipefail

# SeaweedFS tags its releases without the `v` Go wants, so the proxy serves pseudo-versions:
# this one is SeaweedFS 4.53 (`weed version`).
VERSION="${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/starling/seaweedfs-${VERSION##*-}"
STATE="${STARLING_SEAWEEDFS_STATE:-/tmp/starling-seaweedfs-$(id -u)}"
WAIT_SECS="${SEAWEEDFS_WAIT_SECS:-120}"
BUCKET="starling-media"
WEED="$CACHE/weed"

log() { printf '[seaweedfs] %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# `go install module/weed@version` refuses a module whose go.mod has replace directives (this
# one has), so the module is downloaded into the module cache and built there as the main module.
build() {
  if [ -x "$WEED" ]; then
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    [ -x /usr/local/go/bin/go ] || { log "Go is needed to build SeaweedFS once (https://go.dev/dl/)"; exit 1; }
    export PATH="/usr/local/go/bin:$PATH"
  fi
  mkdir -p "$CACHE"
  log "building SeaweedFS ($VERSION) from its Go module into $CACHE (once; several minutes)"
  local dir
  dir="$(cd /tmp && go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || {
    log "the Go module proxy did not serve github.com/seaweedfs/seaweedfs@$VERSION"
    exit 1
  }
  (cd "$dir" && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$WEED.tmp" ./weed) \
    >"$CACHE/build.log" 2>&1 || {
    tail -30 "$CACHE/build.log" >&2
    log "go build of SeaweedFS failed"
    exit 1
  }
  mv "$WEED.tmp" "$WEED"
}

s3_answers() {
  # Any HTTP answer from the S3 gateway (an anonymous list is refused with 403) means it is up.
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null | grep -q '^[1-5]'
}

bucket_exists() {
  # A signed HEAD of the bucket, with the keys in $STATE (SigV4 by python's standard library).
  python3 - "$1" "$(cat "$STATE/access_key")" "$(cat "$STATE/secret_key")" "$BUCKET" <<'EOF'
import datetime, hashlib, hmac, sys, urllib.request
port, ak, sk, bucket = sys.argv[1:5]
host = f"127.0.0.1:{port}"
now = datetime.datetime.now(datetime.timezone.utc)
amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
empty = hashlib.sha256(b"").hexdigest()
canon = f"HEAD\n/{bucket}\n\nhost:{host}\nx-amz-content-sha256:{empty}\nx-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{empty}"
scope = f"{day}/us-east-1/s3/aws4_request"
to_sign = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canon.encode()).hexdigest()}"
k = ("AWS4" + sk).encode()
for part in (day, "us-east-1", "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
req = urllib.request.Request(f"http://{host}/{bucket}", method="HEAD", headers={
    "x-amz-date": amz, "x-amz-content-sha256": empty,
    "Authorization": f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"})
try:
    sys.exit(0 if urllib.request.urlopen(req, timeout=3).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

launch() {
  if svc_running "$STATE"; then
    log "already running (pid $(cat "$STATE/pid"))"
    return
  fi
  build
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  # Fresh keys per run, in an S3 identity file only this server and the tests read.
  python3 -c 'import secrets; print("AK" + secrets.token_hex(8).upper())' >"$STATE/access_key"
  python3 -c 'import secrets; print(secrets.token_hex(20))' >"$STATE/secret_key"
  chmod 600 "$STATE/access_key" "$STATE/secret_key"
  cat >"$STATE/s3.json" <<EOF
{"identities": [{"name": "starling-test",
  "credentials": [{"accessKey": "$(cat "$STATE/access_key")", "secretKey": "$(cat "$STATE/secret_key")"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
  chmod 600 "$STATE/s3.json"
  local p=()
  for _ in $(seq 1 10); do p+=("$(free_port)"); done
  # Every listener on its own free loopback port (each gRPC port too, which would otherwise be
  # the HTTP port + 10000); no telemetry, no profiling listener, no admin UI.
  local args=(
    server -ip=127.0.0.1 -ip.bind=127.0.0.1 "-dir=$STATE/data"
    "-master.port=${p[0]}" "-master.port.grpc=${p[1]}" -master.telemetry=false
    -master.volumeSizeLimitMB=64 -volume.max=8
    "-volume.port=${p[2]}" "-volume.port.grpc=${p[3]}"
    "-filer.port=${p[4]}" "-filer.port.grpc=${p[5]}"
    -s3 "-s3.port=${p[6]}" "-s3.port.grpc=${p[7]}" "-s3.port.iceberg=0" "-s3.port.lance=0" "-s3.config=$STATE/s3.json"
    "-metricsPort=${p[8]}" "-debug.port=${p[9]}"
  )
  echo "${p[6]}" >"$STATE/port"
  echo "${p[4]}" >"$STATE/filer_port"
  log "starting SeaweedFS S3 on 127.0.0.1:${p[6]} (data in $STATE)"
  nohup "$WEED" "${args[@]}" >"$STATE/weed.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
}

wait_ready() {
  [ -f "$STATE/port" ] || { log "not started"; exit 1; }
  local port made=""
  port="$(cat "$STATE/port")"
  # Up, then the bucket made (once) and seen.
  ready() { s3_answers "$port" && { [ -n "$made" ] || make_bucket "$port"; made=1; bucket_exists "$port"; }; }
  svc_wait "$STATE" "$WAIT_SECS" "S3 on 127.0.0.1:$port" ready "$STATE/weed.log"
  log "S3 answers on 127.0.0.1:$port (bucket $BUCKET)"
  echo "http://127.0.0.1:$port"
}

# The bucket: a directory under the filer's /buckets (what `s3.bucket.create` makes), created
# over the filer's HTTP API, so no S3 client is needed.
make_bucket() {
  curl -s -o /dev/null -m 5 -X POST "http://127.0.0.1:$(cat "$STATE/filer_port")/buckets/$BUCKET/" \
    >>"$STATE/bucket.log" 2>&1 || true
}

print_env() {
  local port
  port="$(cat "$STATE/port")"
  echo "export STARLING_TEST_S3_URL=http://127.0.0.1:$port"
  echo "export STARLING_TEST_S3_BUCKET=$BUCKET"
  echo "export STARLING_TEST_S3_ACCESS_KEY=$(cat "$STATE/access_key")"
  echo "export STARLING_TEST_S3_SECRET_KEY=$(cat "$STATE/secret_key")"
}

case "${1:-}" in
  start)
    launch
    if [ "${2:-}" != "--background" ]; then wait_ready; fi
    ;;
  wait) wait_ready ;;
  build) build ;;
  env) print_env ;;
  stop) svc_stop "$STATE" ;;
  status)
    if [ -f "$STATE/port" ] && s3_answers "$(cat "$STATE/port")"; then
      echo "http://127.0.0.1:$(cat "$STATE/port")"
    else
      exit 1
    fi
    ;;
  *) echo "usage: $0 start [--background] | wait | stop | status | env | build" >&2; exit 2 ;;
esac
