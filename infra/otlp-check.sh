#!/usr/bin/env bash
# Checks the OpenTelemetry traces against a real OTLP receiver: Jaeger v2 (in-memory storage)
# receiving OTLP/HTTP from a real `starling cluster`:
#   1. a cluster of 2 regions (us, eu; one node each; us arbitrates handles) whose nodes export
#      traces (OTEL_EXPORTER_OTLP_ENDPOINT, which `starling serve` reads like --otlp-endpoint);
#   2. a sign-up on the eu node: its handle claim is a CAS forwarded to the owner in us;
#   3. Jaeger's query API has a trace from the eu node with the request span
#      (`POST /v1/users`: route, method, status 201) and, as its child, the forward span
#      (`cas forwarded us`, kind client); and a request with a client's `traceparent` header
#      continues the client's trace.
#
#   infra/otlp-check.sh        (STARLING_BIN: the starling binary; default: target/release or
#                               target/debug, built if neither exists)
#
# Jaeger is built once from its Go module (github.com/jaegertracing/jaeger $JAEGER_VERSION, the
# v2 binary; its go.mod has a replace directive, so it is built from the module's source rather
# than with `go install`) into ~/.cache/starling (about 10 minutes on 2 cores); a cached run
# takes under a minute. Not part of CI (infra/test.sh); the README names it.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n==> %s\n' "$*"; }
# shellcheck source=infra/lib.sh
. infra/lib.sh

JAEGER_VERSION=v1.76.0 # the module's tag of Jaeger v2.13.0
CACHE="${STARLING_CACHE:-$HOME/.cache/starling}"
JAEGER="$CACHE/jaeger-$JAEGER_VERSION/jaeger"

if [ ! -x "$JAEGER" ]; then
  command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
  log "building jaeger $JAEGER_VERSION from its Go module (once, cached in $(dirname "$JAEGER"))"
  SRC="$(mktemp -d)"
  (cd "$SRC" && GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" >mod.json)
  DIR="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Dir"])' "$SRC/mod.json")"
  cp -r "$DIR" "$SRC/jaeger" && chmod -R u+w "$SRC/jaeger"
  (cd "$SRC/jaeger" && GOFLAGS="${GOFLAGS:--p=2}" go build -trimpath -o "$JAEGER.tmp" ./cmd/jaeger)
  mv "$JAEGER.tmp" "$JAEGER"
  rm -rf "$SRC"
fi

BIN="$(starling_bin)"
WORK="$(mktemp -d)"
JAEGER_PID=""
cleanup() {
  [ -n "$JAEGER_PID" ] && kill "$JAEGER_PID" 2>/dev/null || true
  "$BIN" cluster down --dir "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

OTLP_PORT="$(free_port)"
QUERY_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
cat >"$WORK/jaeger.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$GRPC_PORT
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$OTLP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
log "jaeger: OTLP/HTTP on 127.0.0.1:$OTLP_PORT, query API on 127.0.0.1:$QUERY_PORT"
"$JAEGER" --config "$WORK/jaeger.yaml" >"$WORK/jaeger.log" 2>&1 &
JAEGER_PID=$!
Q="http://127.0.0.1:$QUERY_PORT"
for _ in $(seq 1 150); do curl -fsS "$Q/api/services" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$Q/api/services" >/dev/null || { tail -30 "$WORK/jaeger.log" >&2; exit 1; }

# us, eu: one node each, traces to jaeger.
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" \
  starling_cluster_up "$BIN" "$WORK/cluster" --regions us,eu --nodes-per-region 1 --store memory
EU="$(python3 -c 'import json,sys; print([n["http"] for n in json.load(open(sys.argv[1]))["nodes"] if n["region"]=="eu"][0].rstrip("/"))' "$WORK/cluster/cluster.json")"

log "a sign-up on the eu node ($EU): its handle claim is a CAS at the owner in us"
code=""
for _ in $(seq 1 100); do
  code="$(curl -sS -o "$WORK/signup.json" -w '%{http_code}' -X POST "$EU/v1/users" \
    -H 'content-type: application/json' -d '{"handle":"otlpcheck","password":"correct horse battery"}' || true)"
  [ "$code" = 201 ] && break
  sleep 0.3 # the cluster is still forming (503 until us is seen)
done
[ "$code" = 201 ] || { echo "sign-up on eu: HTTP $code: $(cat "$WORK/signup.json")" >&2; exit 1; }
TRACE_ID=4bf92f3577b34da6a3ce929d0e0e4736
curl -sS -o /dev/null "$EU/v1/users/by-handle/otlpcheck" \
  -H "traceparent: 00-$TRACE_ID-00f067aa0ba902b7-01" || true

log "the traces in jaeger"
python3 - "$Q" "$TRACE_ID" <<'PY'
import json, sys, time, urllib.parse, urllib.request
q, client_trace = sys.argv[1], sys.argv[2]

def get(path, **params):
    url = f"{q}{path}?" + urllib.parse.urlencode(params)
    return json.load(urllib.request.urlopen(url, timeout=10))

def tags(x):
    return {t["key"]: t["value"] for t in x.get("tags", [])}

failed = 0
def check(ok, what):
    global failed
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}")

found = None
deadline = time.time() + 30
while time.time() < deadline and found is None:
    try:
        traces = get("/api/traces", service="starling", operation="POST /v1/users", limit=20)["data"]
    except Exception:
        traces = []
    for t in traces:
        spans = {s["spanID"]: s for s in t["spans"]}
        for s in t["spans"]:
            if s["operationName"] != "POST /v1/users":
                continue
            kids = [c for c in t["spans"]
                    if any(r["refType"] == "CHILD_OF" and r["spanID"] == s["spanID"] for r in c["references"])]
            if any(k["operationName"] == "cas forwarded us" for k in kids):
                found = (t, s, kids)
    if found is None:
        time.sleep(0.5)
check(found is not None, "a trace of POST /v1/users with a child span 'cas forwarded us'")
if found:
    t, req, kids = found
    procs = t["processes"]
    rt = tags(req)
    check(rt.get("http.route") == "/v1/users" and rt.get("http.request.method") == "POST",
          f"request span: route and method {rt.get('http.route')} {rt.get('http.request.method')}")
    check(str(rt.get("http.response.status_code")) == "201", f"request span: status {rt.get('http.response.status_code')}")
    check(rt.get("span.kind") == "server", f"request span: kind {rt.get('span.kind')}")
    p = tags(procs[req["processID"]])
    check(p.get("starling.region") == "eu", f"request span from the eu node ({p.get('service.instance.id')})")
    fwd = next(k for k in kids if k["operationName"] == "cas forwarded us")
    ft = tags(fwd)
    check(ft.get("span.kind") == "client" and ft.get("starling.region") == "us",
          f"forward span: kind {ft.get('span.kind')}, owner region {ft.get('starling.region')}")
    check(fwd["startTime"] >= req["startTime"] and fwd["duration"] <= req["duration"],
          "forward span inside the request span")
    print("     spans:", ", ".join(f"{s['operationName']} ({tags(procs[s['processID']]).get('service.instance.id')})" for s in t["spans"]))
try:
    t = get(f"/api/traces/{client_trace}")["data"]
except Exception as e:
    t = []
names = [s["operationName"] for tr in t for s in tr["spans"]]
check("GET /v1/users/by-handle/{handle}" in names,
      f"a client's traceparent continues its trace {client_trace}: {names}")
sys.exit(1 if failed else 0)
PY
log "traces: ok"
