{{/* The chart name, overridable. */}}
{{- define "atp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>` unless the release name already holds the chart name; room left for "-observer". */}}
{{- define "atp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "atp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels on every object. Call with (dict "root" $ "component" "gateway"); component optional. */}}
{{- define "atp.labels" -}}
helm.sh/chart: {{ include "atp.chart" .root }}
{{ include "atp.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: atp
{{- end -}}

{{/* Selector labels: name, instance and, for per-service objects, component. */}}
{{- define "atp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component | default "suite" }}
{{- end -}}

{{/* Labels that every pod of this release carries, whatever its component (NetworkPolicy peers). */}}
{{- define "atp.suitePodLabels" -}}
app.kubernetes.io/name: {{ include "atp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "atp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "atp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the API key and, unless overridden, the DSN, Redis URL and Vault credentials. */}}
{{- define "atp.secretName" -}}
{{- default (include "atp.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "atp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* host:port of a service inside the cluster. Call with (dict "root" $ "name" "router"). */}}
{{- define "atp.address" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "%s-%s:%v" (include "atp.fullname" .root) .name $svc.port -}}
{{- end -}}

{{/*
Seconds Kubernetes waits after starting to terminate a pod: the preStop sleep, then the service's own
drain (delay, grace) and a margin for flushing queues. Rounded up: the drain values may be fractional.
*/}}
{{- define "atp.terminationGracePeriodSeconds" -}}
{{- $d := .Values.drain -}}
{{- addf $d.preStopSleepSeconds $d.delaySeconds $d.graceSeconds $d.marginSeconds | ceil | int -}}
{{- end -}}

{{/* The config checksum that rolls every pod when the rendered configuration changes. */}}
{{- define "atp.configChecksum" -}}
{{- toYaml .Values.config | sha256sum -}}
{{- end -}}
