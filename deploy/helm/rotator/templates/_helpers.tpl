{{/* Chart name, or nameOverride. */}}
{{- define "rotator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every resource: fullnameOverride, else the release name if it
contains the chart name, else "<release>-<chart>". With release name
"rotator" the names match deploy/.
*/}}
{{- define "rotator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rotator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rotator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rotator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rotator.labels" -}}
helm.sh/chart: {{ include "rotator.chart" . }}
{{ include "rotator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The rotator's ServiceAccount, the subject of every binding. */}}
{{- define "rotator.serviceAccountName" -}}
{{- include "rotator.fullname" . }}
{{- end }}

{{/* The Secret that holds the GitLab API token. */}}
{{- define "rotator.tokenSecretName" -}}
{{- if .Values.gitlabToken.existingSecret }}
{{- .Values.gitlabToken.existingSecret }}
{{- else }}
{{- printf "%s-gitlab-token" (include "rotator.fullname" .) }}
{{- end }}
{{- end }}

{{- define "rotator.tokenDir" -}}/var/run/secrets/rotator/gitlab{{- end }}

{{- define "rotator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The rotator's config.yaml, as YAML, built from the values. Keys left empty
in values are left out, so the rotator's own defaults apply; with default
values it has the same content as deploy/base/config.yaml.
*/}}
{{- define "rotator.config" -}}
{{- if not (has .Values.mode (list "daemon" "cronjob")) }}
{{- fail (printf "mode must be daemon or cronjob, got %q" (toString .Values.mode)) }}
{{- end }}
{{- range $k := list "gitlab" "daemon" "token" "verify" "log" }}
{{- if and (hasKey $.Values.config $k) (not (kindIs "map" (get $.Values.config $k))) }}
{{- fail (printf "config.%s: must be a mapping of settings, got %s" $k (kindOf (get $.Values.config $k))) }}
{{- end }}
{{- end }}
{{- if dig "gitlab" "tokenFile" "" .Values.config }}
{{- fail "config.gitlab.tokenFile: the chart sets it to the mounted token; use gitlabToken" }}
{{- end }}
{{- /* Anything else under config.gitlab would land in a ConfigMap in clear
text, including a token pasted in the wrong place. */}}
{{- range $k, $_ := (get .Values.config "gitlab" | default dict) }}
{{- if not (has $k (list "url" "project" "group" "registryHost" "caFile" "timeout" "allowInsecureHTTP")) }}
{{- fail (printf "config.gitlab.%s: not a setting the chart passes on (the API token goes in gitlabToken)" $k) }}
{{- end }}
{{- end }}
{{- with .Values.cronjob.pushgateway.url }}
{{- if not (regexMatch "^https?://[^/@?#[:space:]]+(/[^@?#[:space:]]*)?$" .) }}
{{- fail "cronjob.pushgateway.url: must be an http(s) base URL with a host and no user, query or fragment, such as http://prometheus-pushgateway.monitoring.svc:9091" }}
{{- end }}
{{- end }}
{{- if eq .Values.mode "daemon" }}
{{- with dig "daemon" "listen" "" .Values.config }}
{{- if not (has . (list ":8080" "0.0.0.0:8080" "[::]:8080")) }}
{{- fail (printf "config.daemon.listen: %q; the chart's container port, probes and Service use :8080 on every address" .) }}
{{- end }}
{{- end }}
{{- if and (eq (toString (dig "daemon" "leaderElection" true .Values.config)) "false") (gt (int .Values.replicas) 1) }}
{{- fail "config.daemon.leaderElection: false with replicas > 1 would let every replica act; set replicas: 1" }}
{{- end }}
{{- end }}
{{- $gitlab := dict "url" .Values.gitlab.url "tokenFile" (printf "%s/%s" (include "rotator.tokenDir" .) .Values.gitlabToken.key) }}
{{- range $k := list "project" "group" "registryHost" }}
{{- with get $.Values.gitlab $k }}
{{- $_ := set $gitlab $k . }}
{{- end }}
{{- end }}
{{- $token := dict }}
{{- range $k := list "prefix" "lifetime" }}
{{- with get $.Values.token $k }}
{{- $_ := set $token $k . }}
{{- end }}
{{- end }}
{{- $c := dict "gitlab" $gitlab "targets" .Values.targets }}
{{- if $token }}
{{- $_ := set $c "token" $token }}
{{- end }}
{{- with .Values.secretName }}
{{- $_ := set $c "secretName" . }}
{{- end }}
{{- if kindIs "slice" .Values.serviceAccounts }}
{{- $_ := set $c "serviceAccounts" .Values.serviceAccounts }}
{{- end }}
{{- /* Two releases in one namespace get a Lease each. */}}
{{- $fullname := include "rotator.fullname" . }}
{{- if ne $fullname "rotator" }}
{{- $_ := set $c "daemon" (dict "leaseName" $fullname) }}
{{- end }}
{{- $c = mergeOverwrite $c (deepCopy .Values.config) }}
{{- toYaml $c }}
{{- end }}

{{/*
What RBAC must allow, read from the config: per target namespace the Secret
and ServiceAccount names, the same for all selector targets together (for
the ClusterRole), and the Lease name. As YAML.
*/}}
{{- define "rotator.access" -}}
{{- $cfg := include "rotator.config" . | fromYaml }}
{{- $defSecret := get $cfg "secretName" | default "gitlab" }}
{{- $defSAs := list "default" "agones-sdk" }}
{{- /* null means unset to the rotator, as it does here. */}}
{{- if kindIs "slice" (get $cfg "serviceAccounts") }}
{{- $defSAs = $cfg.serviceAccounts }}
{{- end }}
{{- $ns := dict }}
{{- $sel := dict "secrets" list "serviceAccounts" list }}
{{- $anySel := false }}
{{- if not (get $cfg "targets") }}
{{- fail "targets: at least one namespace or namespaceSelector is required" }}
{{- end }}
{{- range $i, $t := $cfg.targets }}
{{- $secret := get $t "secretName" | default $defSecret }}
{{- $sas := $defSAs }}
{{- if kindIs "slice" (get $t "serviceAccounts") }}
{{- $sas = $t.serviceAccounts }}
{{- end }}
{{- $e := $sel }}
{{- $name := get $t "namespace" }}
{{- $selector := get $t "namespaceSelector" }}
{{- if and $name $selector }}
{{- fail (printf "targets[%d]: set namespace or namespaceSelector, not both" $i) }}
{{- else if $name }}
{{- $e = get $ns $name | default (dict "secrets" list "serviceAccounts" list) }}
{{- $_ := set $ns $name $e }}
{{- else if $selector }}
{{- $anySel = true }}
{{- else }}
{{- fail (printf "targets[%d]: set namespace or namespaceSelector" $i) }}
{{- end }}
{{- $_ := set $e "secrets" (append $e.secrets $secret | uniq) }}
{{- $_ := set $e "serviceAccounts" (concat $e.serviceAccounts $sas | uniq) }}
{{- end }}
{{- $out := dict "namespaces" $ns "leaseName" (dig "daemon" "leaseName" "rotator" $cfg) }}
{{- if $anySel }}
{{- $_ := set $out "selector" $sel }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The rules a target needs, given a dict with "secrets" and "serviceAccounts"
(names). Secrets need create (the first run), which resourceNames cannot
limit. An empty resourceNames would mean every name, so the ServiceAccount
rule is left out when there are none to patch.
*/}}
{{- define "rotator.targetRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson .secrets }}
  verbs: [get, list, watch, update]
{{- if .serviceAccounts }}
- apiGroups: [""]
  resources: [serviceaccounts]
  resourceNames: {{ toJson .serviceAccounts }}
  verbs: [get, list, watch, update]
{{- end }}
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- define "rotator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "rotator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The rotator container and pod settings both modes share. Call with a dict:
"root" (the top context), "args", "resources", "daemon" (bool).
*/}}
{{- define "rotator.podSpec" -}}
{{- $r := .root -}}
serviceAccountName: {{ include "rotator.serviceAccountName" $r }}
{{- if .daemon }}
{{- /* SIGTERM lets the cycle in flight (at most 5 minutes) finish. */}}
terminationGracePeriodSeconds: 330
{{- else }}
restartPolicy: Never
{{- end }}
{{- with $r.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
  runAsNonRoot: true
  seccompProfile: {type: RuntimeDefault}
containers:
  - name: rotator
    image: {{ include "rotator.image" $r }}
    {{- with $r.Values.image.pullPolicy }}
    imagePullPolicy: {{ . }}
    {{- end }}
    args: {{ toJson .args }}
    env:
      - name: ROTATOR_LEASE_NAMESPACE
        valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
      {{- if and (not .daemon) $r.Values.cronjob.pushgateway.url }}
      - name: ROTATOR_PUSHGATEWAY
        value: {{ $r.Values.cronjob.pushgateway.url | quote }}
      {{- end }}
    {{- if .daemon }}
    ports:
      - {name: metrics, containerPort: 8080}
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 30
    readinessProbe:
      httpGet: {path: /readyz, port: metrics}
      periodSeconds: 10
    {{- end }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - {name: config, mountPath: /etc/rotator, readOnly: true}
      - {name: gitlab-token, mountPath: {{ include "rotator.tokenDir" $r }}, readOnly: true}
volumes:
  - name: config
    configMap: {name: {{ include "rotator.fullname" $r }}-config}
  - name: gitlab-token
    secret: {secretName: {{ include "rotator.tokenSecretName" $r }}}
{{- with $r.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $r.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $r.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
