{{/*
Names. They reproduce those of the chart Harvester ships, so a release keeps its objects when it
switches charts: name = chart name (or nameOverride); full name = the release name when it
already contains the name, else "<release>-<name>" (or fullnameOverride).
*/}}
{{- define "vmdhcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vmdhcp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "vmdhcp.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The webhook's name: its Deployment, its Service, its `--name` (which names its Secrets
<name>-ca and <name>-tls and its webhook configurations), all the same string. Cut so that the
Service name stays a DNS label.
*/}}
{{- define "vmdhcp.webhookName" -}}
{{- printf "%s-webhook" (include "vmdhcp.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
ServiceAccounts: <base> for the controller, <base>-agent for the agent Pods, <base>-webhook.
*/}}
{{- define "vmdhcp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vmdhcp.fullname" .) .Values.serviceAccount.name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vmdhcp.agentServiceAccountName" -}}
{{- printf "%s-agent" (include "vmdhcp.serviceAccountName" .) }}
{{- end }}

{{- define "vmdhcp.webhookServiceAccountName" -}}
{{- printf "%s-webhook" (include "vmdhcp.serviceAccountName" .) }}
{{- end }}

{{- define "vmdhcp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. A Deployment's selector cannot change, so these are exactly those of the chart
Harvester ships: a `helm upgrade` from it keeps the Deployments.
*/}}
{{- define "vmdhcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vmdhcp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vmdhcp.webhookSelectorLabels" -}}
app.kubernetes.io/name: {{ include "vmdhcp.name" . }}-webhook
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vmdhcp.commonLabels" -}}
helm.sh/chart: {{ include "vmdhcp.chart" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vmdhcp
{{- end }}

{{- define "vmdhcp.labels" -}}
{{ include "vmdhcp.selectorLabels" . }}
{{ include "vmdhcp.commonLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "vmdhcp.webhookLabels" -}}
{{ include "vmdhcp.webhookSelectorLabels" . }}
{{ include "vmdhcp.commonLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{/*
An image reference from {repository, tag, digest}: "repository:tag[@digest]", the tag
defaulting to the chart's appVersion. Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "vmdhcp.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString }}
{{- $ref := printf "%s:%s" .image.repository $tag }}
{{- if .image.digest }}
{{- $ref = printf "%s@%s" $ref .image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The webhook's --service-cidr: the value as given, or for "auto" the IPv4 range of the cluster's
`kubernetes` ServiceCIDR object (networking.k8s.io/v1, Kubernetes 1.33+), falling back to
Harvester's 10.53.0.0/16 when it cannot be read (e.g. under `helm template`).
*/}}
{{- define "vmdhcp.serviceCIDR" -}}
{{- $value := .Values.serviceCIDR | toString }}
{{- if eq $value "auto" }}
{{- $found := "" }}
{{- $object := lookup "networking.k8s.io/v1" "ServiceCIDR" "" "kubernetes" }}
{{- range (dig "spec" "cidrs" (list) $object) }}
{{- if and (not $found) (not (contains ":" .)) }}
{{- $found = . }}
{{- end }}
{{- end }}
{{- $found | default "10.53.0.0/16" }}
{{- else }}
{{- $value }}
{{- end }}
{{- end }}

{{/*
Scheduling shared by the controller and webhook Pods.
*/}}
{{- define "vmdhcp.scheduling" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The agents' network set-up (`agent.networkSetup`), checked: the controller would refuse
anything else at start, after the release was installed.
*/}}
{{- define "vmdhcp.agentNetworkSetup" -}}
{{- $setup := .Values.agent.networkSetup | default "init-container" }}
{{- if not (has $setup (list "init-container" "static-ipam")) }}
{{- fail (printf "agent.networkSetup must be init-container or static-ipam, not %q" $setup) }}
{{- end }}
{{- $setup }}
{{- end }}
