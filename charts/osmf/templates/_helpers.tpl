{{/* Names and labels shared by the templates. */}}
{{- define "osmf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osmf.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "osmf.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "osmf.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "osmf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "osmf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "osmf.labels" -}}
{{ include "osmf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "osmf.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "osmf.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "osmf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The operator settings as the operator reads them: values' settings plus the operator image. */}}
{{- define "osmf.settings" -}}
{{- $settings := deepCopy .Values.settings -}}
{{- $images := default (dict) $settings.images -}}
{{- $_ := set $images "operator" (include "osmf.image" .) -}}
{{- $_ := set $settings "images" $images -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* The peering object's name: kopf replicas with the same name see each other. */}}
{{- define "osmf.peeringName" -}}
{{- default (include "osmf.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
The operator pod's securityContext. Non-root always; a UID only when settings.runAsUser sets one
(the Jobs get the same from the operator), so OpenShift's restricted SCC can assign its own.
*/}}
{{- define "osmf.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.settings.runAsUser }}
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}
