{{/* The name of every object of the release (the webhook configuration is cluster-scoped). */}}
{{- define "deputy.fullname" -}}
{{- default "deputy-webhook" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: the kustomize base's, and Helm's own. */}}
{{- define "deputy.labels" -}}
app.kubernetes.io/part-of: k8s-deputy
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The selector of the webhook's Pods. */}}
{{- define "deputy.selector" -}}
app.kubernetes.io/name: deputy-webhook
{{- end -}}

{{- define "deputy.webhookImage" -}}
{{- printf "%s:%s" .Values.image.webhook.repository (default .Chart.AppVersion .Values.image.webhook.tag) -}}
{{- end -}}

{{- define "deputy.agentImage" -}}
{{- printf "%s:%s" .Values.image.agent.repository (default .Chart.AppVersion .Values.image.agent.tag) -}}
{{- end -}}

{{/* The namespaces never injected. */}}
{{- define "deputy.excludedNamespaces" -}}
{{- $names := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- toJson (concat $names .Values.optIn.excludedNamespaces | uniq) -}}
{{- end -}}

{{/* The Secret of the serving certificate is mounted (cert-manager, secret), not read through the API. */}}
{{- define "deputy.mountsTls" -}}
{{- if ne .Values.tls.mode "self-signed" }}true{{ end -}}
{{- end -}}
