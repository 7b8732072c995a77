{{/* Name and labels shared by every object. */}}
{{- define "goldproxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "goldproxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "goldproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "goldproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "goldproxy.labels" -}}
{{ include "goldproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "goldproxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "goldproxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "goldproxy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The config file: values.config with the keys the chart owns. */}}
{{- define "goldproxy.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf ":%d" (int .Values.service.port)) -}}
{{- $_ := set $cfg "data_dir" "/data" -}}
{{- $_ := set $cfg "policy" "/etc/goldproxy/policy.yaml" -}}
{{- $_ := set $cfg "metrics" (dict "listen" (printf ":%d" (int .Values.service.metricsPort))) -}}
{{- $auth := default (dict) $cfg.auth -}}
{{- if .Values.htpasswd.secretName -}}
{{- $_ := set $auth "htpasswd" (printf "/run/secrets/htpasswd/%s" .Values.htpasswd.key) -}}
{{- end -}}
{{- if .Values.tokenKey.secretName -}}
{{- $_ := set $auth "token_key_file" (printf "/run/secrets/token-key/%s" .Values.tokenKey.key) -}}
{{- end -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $cfg "tls" (dict "cert" "/run/secrets/tls/tls.crt" "key" "/run/secrets/tls/tls.key") -}}
{{- end -}}
{{- if $auth -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The egress ports of the configured upstreams' URLs, deduplicated. */}}
{{- define "goldproxy.upstreamPorts" -}}
{{- $ports := list -}}
{{- range .Values.config.upstreams -}}
{{- $u := urlParse .url -}}
{{- $hostport := splitList ":" $u.host -}}
{{- $port := "" -}}
{{- if gt (len $hostport) 1 -}}{{- $port = last $hostport -}}
{{- else if eq $u.scheme "http" -}}{{- $port = "80" -}}
{{- else -}}{{- $port = "443" -}}{{- end -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- $ports | uniq | sortAlpha | join "," -}}
{{- end -}}
