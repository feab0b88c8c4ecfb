{{/* Names and labels shared by the chart's templates. */}}

{{/* The chart's name, or nameOverride: app.kubernetes.io/name, and part of the full name. */}}
{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of the release's objects: fullnameOverride, or <release>-<name> (the release name alone
when it contains the name), cut to 63 characters, the longest name a label value or Service takes.
*/}}
{{- define "modelops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "modelops.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The full name with a suffix ("-operator"), still at most 63 characters: the full name is cut, the
suffix kept. Called with (list . "-suffix").
*/}}
{{- define "modelops.suffixedName" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s%s" (include "modelops.fullname" $root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "modelops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Kubernetes' recommended labels, on every object of the release. */}}
{{- define "modelops.commonLabels" -}}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modelops
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "modelops.labels" -}}
{{ include "modelops.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modelops.crdLabels" -}}
{{ include "modelops.commonLabels" . }}
app.kubernetes.io/component: crds
{{- end -}}

{{- define "modelops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelops.credentialsKeySecret" -}}
{{- .Values.credentials.existingSecret | default (include "modelops.suffixedName" (list . "-credentials-key")) }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a digest is set (the tag
is then ignored), else repository:tag, an empty tag meaning the chart's appVersion. Called with
(list . .Values.image).
*/}}
{{- define "modelops.imageRef" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "modelops.image" -}}
{{- include "modelops.imageRef" (list . .Values.image) -}}
{{- end -}}

{{- define "modelops.runtimeImage" -}}
{{- include "modelops.imageRef" (list . .Values.runtime.image) -}}
{{- end -}}

{{/*
The rules the operator needs in each namespace it serves. Every rule names the call that needs it
(operator/kube.py, operator/reconcile.py, operator/handlers.py, Kopf); docs/operations.md explains
them. Nothing here reads Secrets or touches RBAC.
*/}}
{{- define "modelops.namespacedRules" -}}
# Models: reconcile reads each one fresh (get); Kopf lists and watches them, and patches them with
# its progress annotations and finalizer (patch); the operator writes status (models/status).
- apiGroups: [modelops.dev]
  resources: [models]
  verbs: [get, list, watch, patch]
- apiGroups: [modelops.dev]
  resources: [models/status]
  verbs: [patch]
# ModelVersions: one per training (create, get after a conflict), listed per Model, pruned past the
# history limit (delete), watched by Kopf; their status records the training outcome.
- apiGroups: [modelops.dev]
  resources: [modelversions]
  verbs: [get, list, watch, create, delete]
- apiGroups: [modelops.dev]
  resources: [modelversions/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion to Models and ModelVersions; where the
# OwnerReferencesPermissionEnforcement admission plugin runs, that needs update on finalizers.
- apiGroups: [modelops.dev]
  resources: [models/finalizers, modelversions/finalizers]
  verbs: [update]
# Training Jobs: created per version, read to follow them, deleted when a newer spec supersedes
# them; Kopf watches the operator's own.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# The finished training Pod's termination message is the training result (training pods are
# watched); a serving Pod's address is where the operator reads a version's reference
# distributions (/metadata).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Serving children, written with server-side apply (patch; create when absent); Kopf watches them.
# The canary Deployment is also read and removed when its canary is promoted or rolled back.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The tracks' Services of the Gateway API router are removed when a Model leaves it.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
# Each Model's serving credentials: written with server-side apply, never read (not even listed).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, patch]
# Each Model's NetworkPolicy (its pods reachable on the serving port only).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, patch]
# The optional autoscaler and disruption budget are also read and removed when no longer wanted.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# The HTTPRoute of a Model with spec.serving.traffic (the Gateway API router): written with
# server-side apply, removed when the Model leaves the router; not watched (the operator keeps what
# it wrote), so a cluster without the Gateway API CRDs costs nothing. Read when a promotion hands
# over and the operator has not written the route since it started.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, create, patch, delete]
# The operator and Kopf post Events (core v1) about the Models they handle.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- define "modelops.crdRules" -}}
# Kopf's resource discovery: it lists the CRDs once and watches them for changes. Read-only;
# cluster-scoped because CRDs are.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}

{{- define "modelops.namespaceRules" -}}
# Namespaced mode only: Kopf lists and watches Namespaces to learn which of the namespaces it
# serves exist (names only; nothing inside them).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}
