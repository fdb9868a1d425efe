{{/* Service-specific environment (conventions.md). Each is called with (dict "root" $ "svc" $svc "prefix" ...). */}}

{{- define "atp.env.router" -}}
- name: ATP_ROUTER_OBSERVER_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "observer") | quote }}
{{- include "atp.env.redis" . }}
{{- end -}}

{{- define "atp.env.observer" -}}
- name: ATP_OBSERVER_RETENTION_DAYS
  value: {{ .svc.retentionDays | quote }}
- name: ATP_OBSERVER_SQLITE_PATH
  value: /app/var/observer.sqlite3
{{- if .root.Values.postgresql.enabled }}
- name: ATP_OBSERVER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "atp.secretName" .root) .root.Values.postgresql.existingSecret }}
      key: {{ .root.Values.postgresql.dsnKey }}
{{- end }}
{{- end -}}

{{- define "atp.env.adapters" -}}
- name: ATP_ADAPTERS_ROUTER_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "router") | quote }}
- name: ATP_ADAPTERS_OBSERVER_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "observer") | quote }}
- name: ATP_ADAPTERS_SPOOL_DIR
  value: /app/var/spool
{{- include "atp.env.redis" . }}
{{- end -}}

{{- define "atp.env.gateway" -}}
- name: ATP_GATEWAY_ADAPTERS_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "adapters") | quote }}
- name: ATP_GATEWAY_ROUTER_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "router") | quote }}
- name: ATP_GATEWAY_OBSERVER_ADDR
  value: {{ include "atp.address" (dict "root" .root "name" "observer") | quote }}
- name: ATP_GATEWAY_WORKERS
  value: {{ .svc.workers | quote }}
{{- include "atp.env.redis" . }}
{{- end -}}

{{/* Shared limits, budgets and the key directory live in Redis: the router (admin API), the adapters
     (enforcement) and the gateway (keys) must all see the same one. */}}
{{- define "atp.env.redis" -}}
{{- if .root.Values.redis.enabled }}
- name: ATP_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "atp.secretName" .root) .root.Values.redis.existingSecret }}
      key: {{ .root.Values.redis.urlKey }}
{{- end }}
{{- end -}}

{{/* Vault settings shared by every service (ATP_VAULT_*), per auth method. */}}
{{- define "atp.vaultEnv" -}}
{{- $v := .Values.vault -}}
{{- if $v.enabled -}}
{{- $secret := default (include "atp.secretName" .) $v.existingSecret -}}
- name: ATP_VAULT_ADDR
  value: {{ required "vault.address is required when vault.enabled" $v.address | quote }}
{{- if eq $v.auth "kubernetes" }}
- name: ATP_VAULT_K8S_ROLE
  value: {{ $v.kubernetesRole | quote }}
{{- else if eq $v.auth "approle" }}
- name: ATP_VAULT_ROLE_ID
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.roleIdKey }}}
- name: ATP_VAULT_SECRET_ID
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.secretIdKey }}}
{{- else if eq $v.auth "token" }}
- name: ATP_VAULT_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $v.tokenKey }}}
{{- else }}
{{- fail (printf "vault.auth must be kubernetes, approle or token, not %q" $v.auth) }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
The probe of a gRPC service: kubelet's native gRPC probe, or, with mTLS (which kubelet's gRPC probe cannot
speak), the image's probe CLI with the service's own certificate. `service` names the health service to ask:
"" (readiness, NOT_SERVING from the start of a drain) or "liveness" (SERVING until the process exits, so a
draining pod is not restarted before its in-flight calls finish).
*/}}
{{- define "atp.grpcProbe" -}}
{{- if .root.Values.tls.enabled -}}
exec:
  command:
    - python
    - -m
    - atp_tools.probe
    - 127.0.0.1:{{ .svc.port }}
    - --timeout={{ .root.Values.probes.timeoutSeconds }}
    {{- with .service }}
    - --service={{ . }}
    {{- end }}
    - --ca=/etc/atp/tls/ca.crt
    - --cert=/etc/atp/tls/tls.crt
    - --key=/etc/atp/tls/tls.key
    {{- with .root.Values.tls.serverName }}
    - --server-name={{ . }}
    {{- end }}
{{- else -}}
grpc:
  port: {{ .svc.port }}
  {{- with .service }}
  service: {{ . }}
  {{- end }}
{{- end -}}
{{- end -}}
