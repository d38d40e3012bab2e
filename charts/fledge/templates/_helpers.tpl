{{/* The chart's name. */}}
{{- define "fledge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name, prefixed by the chart's unless it holds it. */}}
{{- define "fledge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The load generator's full name. */}}
{{- define "fledge.loadgen.fullname" -}}
{{- printf "%s-loadgen" (include "fledge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "fledge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: fledge
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The controller's selector labels. */}}
{{- define "fledge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fledge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The load generator's selector labels. */}}
{{- define "fledge.loadgen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fledge.name" . }}-loadgen
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "fledge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fledge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace of the leader-election Lease. */}}
{{- define "fledge.leaseNamespace" -}}
{{- if .Values.rbac.namespaced -}}
{{- .Values.watchNamespace -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The pod security context and container security context of both components. */}}
{{- define "fledge.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "fledge.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The rules of config/rbac/cluster-role.yaml (namespaced=false) or config/rbac/namespaced/role.yaml
(namespaced=true): charts/fledge/rbac/ holds copies of those files (`cargo xtask crds` makes them),
so the chart grants exactly what config/rbac/ grants (`cargo xtask charts` checks the copies and
the rendered rules against them).
*/}}
{{- define "fledge.rbacRules" -}}
{{- $file := ternary "rbac/role.yaml" "rbac/cluster-role.yaml" .namespaced -}}
{{- $rules := (.files.Get $file | fromYaml).rules -}}
{{- if not $rules -}}
{{- fail (printf "charts/fledge/%s holds no RBAC rules; it is a copy of config/rbac/'s (cargo xtask crds)" $file) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
The arguments of `fledge run`, as a YAML list: a flag only when its value is set, so that an
unset value keeps the binary's default.
*/}}
{{- define "fledge.args" -}}
{{- $v := .Values -}}
{{- $args := list "run" "--metrics-addr=0.0.0.0:8080" -}}
{{- with $v.watchNamespace }}{{ $args = append $args (printf "--namespace=%s" .) }}{{ end -}}
{{- with .shard }}{{ with .name }}{{ $args = append $args (printf "--shard=%s" .) }}{{ end }}{{ end -}}
{{- with .shard }}{{ if .default }}{{ $args = append $args "--default-shard" }}{{ end }}{{ end -}}
{{- if $v.leaderElection.enabled -}}
{{- $args = append $args "--leader-elect" -}}
{{- $args = append $args (printf "--lease-namespace=%s" (include "fledge.leaseNamespace" .)) -}}
{{- $args = append $args "--identity=$(POD_NAME)" -}}
{{- with $v.leaderElection.leaseName }}{{ $args = append $args (printf "--lease-name=%s" .) }}{{ end -}}
{{- if not (kindIs "invalid" $v.leaderElection.leaseDuration) }}{{ $args = append $args (printf "--lease-duration=%d" (int64 $v.leaderElection.leaseDuration)) }}{{ end -}}
{{- end -}}
{{- $strings := list
  (list "log-format" $v.logFormat)
  (list "log-level" $v.logLevel)
  (list "mesh-provider" $v.meshProvider)
  (list "selector-labels" (join "," $v.selectorLabels))
  (list "include-label-prefix" (join "," $v.includeLabelPrefix))
  (list "cluster-name" $v.clusterName)
  (list "dashboard-url" $v.dashboardUrl)
  (list "control-loop-interval" $v.controlLoopInterval)
  (list "event-webhook" $v.eventWebhook.url)
  (list "metrics-server" $v.metricsServer)
  (list "gateway-metrics" $v.gatewayMetrics)
  (list "git-author-name" $v.git.authorName)
  (list "git-author-email" $v.git.authorEmail)
  (list "git-workdir" $v.git.workdir)
  (list "gitops-repository" $v.gitops.repository)
  (list "gitops-branch" $v.gitops.branch)
  (list "gitops-secret" $v.gitops.secret)
  (list "gitops-ledger-path" $v.gitops.ledgerPath)
  (list "gitops-mode" $v.gitops.mode)
  (list "alert-type" $v.alerts.type)
  (list "alert-channel" $v.alerts.channel)
  (list "alert-username" $v.alerts.username)
  (list "alert-proxy" $v.alerts.proxy)
  (list "alert-severity" $v.alerts.severity)
  (list "alert-link-template" $v.alerts.linkTemplate)
  (list "alert-timeout" $v.alerts.timeout)
-}}
{{- range $strings -}}
{{- if index . 1 }}{{ $args = append $args (printf "--%s=%s" (index . 0) (index . 1)) }}{{ end -}}
{{- end -}}
{{- $numbers := list
  (list "max-concurrent-rollouts" $v.maxConcurrentRollouts)
  (list "max-concurrent-reconciles" $v.maxConcurrentReconciles)
  (list "kube-api-concurrency" $v.kubeApiConcurrency)
  (list "kube-api-burst" $v.kubeApiBurst)
  (list "metrics-query-timeout" $v.metricsQueryTimeout)
  (list "git-queue-alert-after" $v.git.queueAlertAfter)
  (list "alert-retries" $v.alerts.retries)
-}}
{{- range $numbers -}}
{{- if not (kindIs "invalid" (index . 1)) }}{{ $args = append $args (printf "--%s=%d" (index . 0) (int64 (index . 1))) }}{{ end -}}
{{- end -}}
{{- if not (kindIs "invalid" $v.kubeApiQps) }}{{ $args = append $args (printf "--kube-api-qps=%v" (float64 $v.kubeApiQps)) }}{{ end -}}
{{- $bools := list
  (list "gitops-revert-on-rollback" $v.gitops.revertOnRollback)
  (list "gitops-fast-rollback" $v.gitops.fastRollback)
-}}
{{- range $bools -}}
{{- if not (kindIs "invalid" (index . 1)) }}{{ $args = append $args (printf "--%s=%t" (index . 0) (index . 1)) }}{{ end -}}
{{- end -}}
{{- if $v.noCrossNamespaceRefs }}{{ $args = append $args "--no-cross-namespace-refs" }}{{ end -}}
{{- if $v.multiTenant }}{{ $args = append $args "--multi-tenant" }}{{ end -}}
{{- range $v.allowDestinations }}{{ $args = append $args (printf "--allow-destination=%s" .) }}{{ end -}}
{{- if $v.alerts.trafficSteps }}{{ $args = append $args "--alert-traffic-steps" }}{{ end -}}
{{- range $v.extraArgs }}{{ $args = append $args . }}{{ end -}}
{{- toYaml $args -}}
{{- end -}}
