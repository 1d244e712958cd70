{{/* Names and labels shared by the templates. */}}

{{- define "starling.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "starling.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "starling.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "starling.secretName" -}}
{{- default (printf "%s-secret" (include "starling.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{/* The headless Service every node is a DNS record of: the gossip seeds. */}}
{{- define "starling.gossipService" -}}
{{- printf "%s-gossip" (include "starling.fullname" .) -}}
{{- end -}}

{{- define "starling.seeds" -}}
{{- $own := printf "%s.%s.svc.cluster.local:%d" (include "starling.gossipService" .) .Release.Namespace (int .Values.gossip.port) -}}
{{- join "," (prepend .Values.extraSeeds $own) -}}
{{- end -}}

{{/* The --store URL of a node of region .region: on ScyllaDB, each node has its own keyspace
(its change feed is its own), KEYSPACE_REGION_ORDINAL, the ordinal from $(POD_INDEX). */}}
{{- define "starling.store" -}}
{{- $s := .root.Values.store -}}
{{- if eq $s.engine "scylla" -}}
{{- if not $s.scylla.nodes }}{{ fail "store.engine scylla needs store.scylla.nodes" }}{{ end -}}
{{- $ks := printf "%s_%s_$(POD_INDEX)" $s.scylla.keyspace (.region | replace "-" "_") -}}
{{- printf "scylla://%s/%s" (join "," $s.scylla.nodes) $ks -}}{{ if $s.scylla.options }}?{{ $s.scylla.options }}{{ end -}}
{{- else if or (eq $s.engine "embedded") (eq $s.engine "memory") -}}
{{- $s.engine -}}
{{- else -}}
{{- fail (printf "store.engine %q: expected embedded, memory or scylla" $s.engine) -}}
{{- end -}}
{{- end -}}
