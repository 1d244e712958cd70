#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/starling without a Kubernetes cluster:
#   - `helm lint --strict` and `helm template` with every value set in deploy/helm/starling/ci/;
#   - every rendered manifest validated by kubeconform in strict mode (unknown or misplaced
#     fields are errors) against Kubernetes v$K8S_VERSION's JSON schemas, generated offline by
#     infra/k8s-schemas.py from the swagger.json of the k8s.io/kubernetes Go module, plus the
#     ServiceMonitor and PrometheusRule CRDs of the prometheus-operator Go module;
#   - values that cannot work are refused by the chart (no cluster secret, a bad region name,
#     an unknown store engine, scylla without nodes) and a misspelt field is refused by the
#     schemas, so the check itself is known to fail when it should.
# Tools are built once from their Go modules (GitHub is not needed) and cached under
# ~/.cache/starling: helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION, the schemas. A cached
# run takes seconds; a fresh one a few minutes (two Go builds and two module downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\n==> %s\n' "$*"; }

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.8.0
K8S_VERSION=1.35.0
PROM_OPERATOR_VERSION=v0.89.0
CACHE="${STARLING_CACHE:-$HOME/.cache/starling}"
HELM="$CACHE/helm-$HELM_VERSION/helm"
KUBECONFORM="$CACHE/kubeconform-$KUBECONFORM_VERSION/kubeconform"
SCHEMAS="$CACHE/k8s-schemas-v$K8S_VERSION-po-$PROM_OPERATOR_VERSION"
CHART=deploy/helm/starling

need_go() {
  command -v go >/dev/null 2>&1 && return 0
  [ -x /usr/local/go/bin/go ] && { export PATH="/usr/local/go/bin:$PATH"; return 0; }
  echo "helm-check: Go is needed to build helm and kubeconform once (https://go.dev/dl/)" >&2
  exit 1
}

go_tool() { # go_tool BIN MODULE@VERSION
  [ -x "$1" ] && return 0
  need_go
  log "building $2 (once, cached in $(dirname "$1"))"
  GOBIN="$(dirname "$1")" go install -trimpath "$2"
}

schemas() {
  [ -f "$SCHEMAS/.done" ] && return 0
  need_go
  log "generating Kubernetes v$K8S_VERSION JSON schemas (once, cached in $SCHEMAS)"
  local k8s po
  k8s="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  po="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # PyYAML reads the CRDs. Debian's package serves Debian's interpreter: a python3 earlier on
  # PATH (pyenv's, on the CI machines) does not see it, so that one is used instead.
  local py=python3
  if ! "$py" -c 'import yaml' 2>/dev/null; then
    . infra/lib.sh
    need_deb_pkg python3-yaml
    py=/usr/bin/python3
    "$py" -c 'import yaml' || { echo "helm-check: PyYAML is needed (python3-yaml)" >&2; exit 1; }
  fi
  rm -rf "$SCHEMAS"
  "$py" infra/k8s-schemas.py "$k8s/api/openapi-spec/swagger.json" \
    "$SCHEMAS/v$K8S_VERSION-standalone-strict" \
    "$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$po/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  touch "$SCHEMAS/.done"
}

validate() { # validate FILE: kubeconform, strict, nothing skipped
  "$KUBECONFORM" -strict -summary -kubernetes-version "$K8S_VERSION" \
    -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "$1"
}

go_tool "$HELM" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
go_tool "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
schemas

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" -values.yaml)"
  log "chart with $values"
  "$HELM" lint --strict --kube-version "$K8S_VERSION" -f "$values" "$CHART" | grep -v '^$' | grep -v 'icon is recommended'
  "$HELM" template starling "$CHART" --namespace starling --kube-version "$K8S_VERSION" \
    -f "$values" >"$OUT/$name.yaml"
  summary="$(validate "$OUT/$name.yaml")" || { echo "$summary" >&2; exit 1; }
  echo "$summary"
  case "$summary" in *"Skipped: 0"*) ;; *) echo "FAIL: kubeconform skipped a resource" >&2; exit 1 ;; esac
done

log "values that cannot work are refused"
refuse() { # refuse WHY NEEDLE HELM-ARGS...
  local why=$1 needle=$2; shift 2
  local err
  if err="$("$HELM" template starling "$CHART" --kube-version "$K8S_VERSION" "$@" 2>&1)"; then
    echo "FAIL: the chart rendered with $why" >&2; exit 1
  fi
  case "$err" in *"$needle"*) echo "refused: $why" ;; *) echo "FAIL: $why: $err" >&2; exit 1 ;; esac
}
refuse "no cluster secret" "clusterSecret is required"
refuse "a short cluster secret" "at least 16" --set clusterSecret=short,adminToken=t
refuse "a region name with a capital" "regions[0].name" -f "$CHART/ci/one-region-values.yaml" --set 'regions[0].name=US'
refuse "an unknown store engine" "store.engine" -f "$CHART/ci/one-region-values.yaml" --set store.engine=postgres
refuse "scylla without nodes" "store.scylla.nodes" -f "$CHART/ci/one-region-values.yaml" --set store.engine=scylla
refuse "a Redis URL without redis://" "regions[0].redis" -f "$CHART/ci/one-region-values.yaml" --set-json 'regions=[{"name":"us","redis":"host:6379"}]'
sed 's/^  serviceName:/  serviceNme:/' "$OUT/one-region.yaml" >"$OUT/misspelt.yaml"
if validate "$OUT/misspelt.yaml" >/dev/null 2>&1; then
  echo "FAIL: kubeconform accepted a misspelt field (spec.serviceNme)" >&2; exit 1
fi
echo "refused: a misspelt field (kubeconform -strict)"
log "helm chart: ok"
