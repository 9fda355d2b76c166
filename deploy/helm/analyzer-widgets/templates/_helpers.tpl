{{/* The release's name, cut to the 63 characters a label value may hold. */}}
{{- define "aw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aw.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The results PVC: the user's, or the one this chart makes. */}}
{{- define "aw.resultsClaim" -}}
{{- .Values.results.existingClaim | default (printf "%s-results" (include "aw.fullname" .)) -}}
{{- end -}}

{{/* nvidia.com/gpu added to a container's resources when gpus > 0. */}}
{{- define "aw.resources" -}}
{{- $res := deepCopy (.resources | default dict) -}}
{{- if gt (int .gpus) 0 -}}
{{- $limits := get $res "limits" | default dict -}}
{{- $_ := set $limits "nvidia.com/gpu" (int .gpus) -}}
{{- $_ := set $res "limits" $limits -}}
{{- $requests := get $res "requests" | default dict -}}
{{- $_ := set $requests "nvidia.com/gpu" (int .gpus) -}}
{{- $_ := set $res "requests" $requests -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{/* The RayCluster's name; KubeRay names its head's Service after it, with -head-svc. */}}
{{- define "aw.rayCluster" -}}
{{- printf "%s-ray" (include "aw.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{/* A RayCluster pod template: the analyzer's image, its user and security context, the
model repository read-only where the Job sees it, and shared memory for the Python backend. */}}
{{- define "aw.rayPod" -}}
{{- $root := .root -}}
{{- $models := $root.Values.modelRepository -}}
metadata:
  labels:
    {{- include "aw.labels" $root | nindent 4 }}
spec:
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- if .selected }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  containers:
    - name: {{ .name }}
      image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        - name: HOME
          value: /home/analyzer
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      resources:
        {{- include "aw.resources" (dict "resources" .resources "gpus" .gpus) | nindent 8 }}
      volumeMounts:
        - name: models
          mountPath: {{ $models.mountPath | quote }}
          readOnly: true
          {{- with $models.subPath }}
          subPath: {{ . | quote }}
          {{- end }}
        - name: dshm
          mountPath: /dev/shm
  volumes:
    - name: models
      {{- if $models.hostPath }}
      hostPath:
        path: {{ $models.hostPath | quote }}
        type: Directory
      {{- else }}
      persistentVolumeClaim:
        claimName: {{ $models.existingClaim | quote }}
        readOnly: true
      {{- end }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $root.Values.shmSize }}
{{- end -}}
