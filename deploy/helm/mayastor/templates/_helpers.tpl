{{/*
Shared helpers of the mayastor chart: images, labels, endpoints and the
per-component fall-back to the global tolerations and priority class.
*/}}

{{/* Tag of our images: image.tag, else the chart's appVersion. */}}
{{- define "mayastor.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* Image of one of our components: (dict "root" $ "component" "io-engine"). */}}
{{- define "mayastor.image" -}}
{{- $v := .root.Values.image -}}
{{- printf "%s/%s/%s:%s" $v.registry $v.repo .component (include "mayastor.tag" .root) -}}
{{- end -}}

{{/* Image of a CSI sidecar: (dict "root" $ "name" "csi-provisioner" "tag" "v5.3.0"). */}}
{{- define "mayastor.csiSidecarImage" -}}
{{- $v := .root.Values.csi.image -}}
{{- printf "%s/%s/%s:%s" $v.registry $v.repo .name .tag -}}
{{- end -}}

{{/* Image of etcd: etcd.image, its empty fields taken from image.*. */}}
{{- define "mayastor.etcdImage" -}}
{{- $e := .Values.etcd.image -}}
{{- printf "%s/%s:%s" (default .Values.image.registry $e.registry) $e.repository (default (include "mayastor.tag" .) $e.tag) -}}
{{- end -}}

{{/* Labels of every object of a component: (dict "root" $ "component" "api-rest"). */}}
{{- define "mayastor.labels" -}}
{{ include "mayastor.selectorLabels" . }}
app.kubernetes.io/part-of: mayastor
app.kubernetes.io/version: {{ include "mayastor.tag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels that select a component's pods. */}}
{{- define "mayastor.selectorLabels" -}}
app: {{ .component }}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Name of a cluster-scoped object of a component (ClusterRole, ...). */}}
{{- define "mayastor.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Name .root.Release.Namespace .component -}}
{{- end -}}

{{/* The store's client endpoint (HOST:PORT or http://HOST:PORT). */}}
{{- define "mayastor.etcdEndpoint" -}}
{{- if .Values.etcd.enabled -}}
{{- printf "etcd.%s.svc.%s:%d" .Release.Namespace .Values.etcd.clusterDomain (int .Values.etcd.service.port) -}}
{{- else if .Values.etcd.externalUrl -}}
{{- .Values.etcd.externalUrl -}}
{{- else -}}
{{- fail "etcd.enabled is false: set etcd.externalUrl to the external etcd (HOST:PORT)" -}}
{{- end -}}
{{- end -}}

{{/* The core agent's endpoint (engine registration and its HTTP API). */}}
{{- define "mayastor.coreEndpoint" -}}
{{- printf "http://agent-core.%s.svc.%s:50051" .Release.Namespace .Values.etcd.clusterDomain -}}
{{- end -}}

{{/* The REST API's endpoint inside the cluster. */}}
{{- define "mayastor.restEndpoint" -}}
{{- printf "http://api-rest.%s.svc.%s:8081" .Release.Namespace .Values.etcd.clusterDomain -}}
{{- end -}}

{{/* Tolerations of a component: (dict "root" $ "own" .Values.x.tolerations). */}}
{{- define "mayastor.tolerations" -}}
{{- $t := .own | default .root.Values.tolerations -}}
{{- with $t }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* PriorityClass of a component: (dict "root" $ "own" .Values.x.priorityClassName). */}}
{{- define "mayastor.priorityClassName" -}}
{{- $p := .own | default .root.Values.priorityClassName -}}
{{- with $p }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* imagePullSecrets of our pods. */}}
{{- define "mayastor.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The global nodeSelector of every pod but the io-engine's. */}}
{{- define "mayastor.nodeSelector" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Resources of a container: the non-empty fields of a resources value. */}}
{{- define "mayastor.resources" -}}
{{- $out := dict }}
{{- range $kind := list "limits" "requests" }}
{{- $r := get $ $kind }}
{{- $set := dict }}
{{- with $r.cpu }}{{ $_ := set $set "cpu" . }}{{ end }}
{{- with $r.memory }}{{ $_ := set $set "memory" . }}{{ end }}
{{- if $set }}{{ $_ := set $out $kind $set }}{{ end }}
{{- end }}
{{- if $out }}
resources:
{{- toYaml $out | nindent 2 }}
{{- else }}
resources: {}
{{- end }}
{{- end -}}

{{/* Environment every component gets: its node, its pod IP and RUST_LOG. */}}
{{- define "mayastor.env" -}}
- name: MY_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: MY_POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: RUST_LOG
  value: {{ . | quote }}
{{- end -}}
