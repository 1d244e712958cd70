#!/usr/bin/env bash
# Validates the alert rules (deploy/prometheus/alerts.yaml) and the Grafana dashboard
# (deploy/grafana/starling.json) against a real Prometheus scraping a real `starling cluster`:
#   1. promtool check rules, promtool test rules (deploy/prometheus/alerts.test.yaml);
#   2. a local cluster (2 regions × 2 nodes, embedded store) and Prometheus scraping its nodes
#      every second with the rules loaded, under a little traffic (sign-ups, posts, reads, 404s);
#   3. every dashboard query (its variables set to "all", $__rate_interval to 15s) returns data,
#      every alert expression evaluates, every metric an alert names has series, and Prometheus
#      reports every rule healthy.
#
#   infra/prometheus-check.sh        (STARLING_BIN: the starling binary; default: target/release
#                                     or target/debug, built if neither exists)
#
# Prometheus and promtool are built once from the Go module github.com/prometheus/prometheus
# ($PROM_VERSION) into ~/.cache/starling (a few minutes); a cached run takes under a minute.
# Not part of CI (infra/test.sh); the README names it.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n==> %s\n' "$*"; }
# shellcheck source=infra/lib.sh
. infra/lib.sh

PROM_VERSION=v0.316.0
PROM_DIR="${STARLING_CACHE:-$HOME/.cache/starling}/prometheus-$PROM_VERSION"
RULES=deploy/prometheus/alerts.yaml
DASHBOARD=deploy/grafana/starling.json

for tool in promtool prometheus; do
  if [ ! -x "$PROM_DIR/$tool" ]; then
    command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
    log "building $tool $PROM_VERSION from its Go module (once, cached in $PROM_DIR)"
    GOFLAGS="${GOFLAGS:--p=1}" GOBIN="$PROM_DIR" go install -trimpath \
      "github.com/prometheus/prometheus/cmd/$tool@$PROM_VERSION"
  fi
done

log "promtool check rules, test rules"
"$PROM_DIR/promtool" check rules "$RULES"
(cd "$(dirname "$RULES")" && "$PROM_DIR/promtool" test rules alerts.test.yaml)

BIN="$(starling_bin)"

WORK="$(mktemp -d)"
PROM_PID=""
cleanup() {
  [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null || true
  "$BIN" cluster down --dir "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

starling_cluster_up "$BIN" "$WORK/cluster" --regions us,eu --nodes-per-region 2 --store embedded \
  --admin-token check

PROM_PORT="$(free_port)"
python3 - "$WORK" "$(cd "$(dirname "$RULES")" && pwd)/$(basename "$RULES")" <<'PY'
import json, sys
work, rules = sys.argv[1], sys.argv[2]
c = json.load(open(f"{work}/cluster/cluster.json"))
jobs = []
for n in c["nodes"]:
    host = n["http"].split("://", 1)[1].rstrip("/")
    jobs.append(f'      - targets: ["{host}"]\n        labels: {{region: "{n["region"]}", node: "{n["name"]}"}}')
open(f"{work}/prometheus.yml", "w").write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
scrape_configs:
  - job_name: starling
    static_configs:
{chr(10).join(jobs)}
""")
PY
"$PROM_DIR/promtool" check config "$WORK/prometheus.yml" >/dev/null
log "prometheus on 127.0.0.1:$PROM_PORT"
"$PROM_DIR/prometheus" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
P="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 1 100); do curl -fsS "$P/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$P/-/ready" >/dev/null || { tail -20 "$WORK/prometheus.log" >&2; exit 1; }

log "traffic for 20 s"
U="http://127.0.0.1:$BASE"
TOKEN="$(curl -fsS -X POST "$U/v1/users" -H 'content-type: application/json' \
  -d '{"handle":"promcheck","password":"correct horse battery"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
end=$(( $(date +%s) + 20 ))
i=0
while [ "$(date +%s)" -lt "$end" ]; do
  i=$((i + 1))
  for n in 0 1 2 3; do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$((BASE + n))/v1/posts" -H "authorization: Bearer $TOKEN" \
      -H 'content-type: application/json' -H "idempotency-key: p-$i-$n" -d "{\"text\":\"post $i\"}" || true
    curl -fsS -o /dev/null "http://127.0.0.1:$((BASE + n))/v1/feed?limit=5" -H "authorization: Bearer $TOKEN" || true
    curl -sS -o /dev/null "http://127.0.0.1:$((BASE + n))/v1/no-such-route" || true
  done
  sleep 0.2
done

log "every dashboard query returns data; every alert expression evaluates"
python3 - "$P" "$DASHBOARD" "$RULES" <<'PY'
import json, re, sys, urllib.parse, urllib.request
prom, dashboard, rules = sys.argv[1], sys.argv[2], sys.argv[3]

def query(expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.load(urllib.request.urlopen(url, timeout=10))
    except urllib.error.HTTPError as e:
        return "error", json.load(e).get("error")
    return body["status"], body["data"]["result"]

failed = 0
d = json.load(open(dashboard))
subst = {"$__rate_interval": "15s", "$region": ".*", "$instance": ".*"}
for v in d["templating"]["list"]:
    if v["type"] == "query":
        expr = v["definition"].replace("label_values(", "count by (%s) (" % v["name"]).rsplit(",", 1)[0] + ")"
        for k, s in subst.items():
            expr = expr.replace(k, s)
        status, result = query(expr)
        ok = status == "success" and len(result) > 0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} variable {v['name']}: {len(result) if ok else result} values")
for p in d["panels"]:
    for t in p["targets"]:
        expr = t["expr"]
        for k, s in subst.items():
            expr = expr.replace(k, s)
        status, result = query(expr)
        ok = status == "success" and len(result) > 0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} panel {p['title']!r} {t['refId']}: {len(result) if ok else result} series")

import yaml
names = set()
for g in yaml.safe_load(open(rules))["groups"]:
    for r in g["rules"]:
        status, result = query(r["expr"])
        ok = status == "success"
        failed += not ok
        metrics = sorted(set(re.findall(r"\bstarling_[a-z_]+\b", r["expr"]))
                         | ({"up"} if re.search(r"\bup\{", r["expr"]) else set()))
        missing = []
        for m in metrics:
            s, res = query(f'count({m})')
            if s != "success" or not res:
                missing.append(m)
        failed += bool(missing) or not metrics
        state = "ok  " if ok and not missing and metrics else "FAIL"
        print(f"{state} alert {r['alert']}: evaluates ({len(result)} firing), metrics {', '.join(metrics)}"
              + (f" MISSING {missing}" if missing else ""))
health = json.load(urllib.request.urlopen(f"{prom}/api/v1/rules"))["data"]["groups"]
bad = [r["name"] for g in health for r in g["rules"] if r.get("health") != "ok"]
n = sum(len(g["rules"]) for g in health)
print(f"{'ok  ' if not bad and n else 'FAIL'} Prometheus loaded {n} rules, unhealthy: {bad}")
failed += bool(bad) or not n
sys.exit(1 if failed else 0)
PY
log "dashboards and alerts: ok"
