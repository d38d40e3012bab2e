// Pinned versions of the tools `cargo xtask charts` checks the Helm chart and the kustomize base
// with, and of the CRDs it checks the rendered ServiceMonitor and PodMonitor against.
//
// This module is never built. It names the versions (xtask/src/charts.rs reads them from here)
// and go.sum holds their checksums, so `go mod download` here fetches exactly these modules and
// verifies them; each program is then built inside its own module, with that module's own
// go.mod and go.sum (as xtask/src/dataplane/build.rs builds Traefik).
module fledge.dev/xtask/chart-tools

go 1.25.0

require (
	// Helm 4: `helm lint` and `helm template` of charts/fledge.
	helm.sh/helm/v4 v4.3.2
	// kubeconform: every rendered manifest checked with -strict against JSON schemas generated
	// locally (it cannot download its schemas here).
	github.com/yannh/kubeconform v0.8.0
	// kustomize: `kustomize build config/default`. The version kubectl embeds (xtask/go/go.mod
	// pins it for kubectl's build; a test keeps the two equal), so this is `kubectl kustomize`
	// without building the whole control plane.
	sigs.k8s.io/kustomize/kustomize/v5 v5.8.1
	// The monitoring.coreos.com CRDs (ServiceMonitor, PodMonitor) under
	// example/prometheus-operator-crd/: the newest version the module proxy serves.
	github.com/prometheus-operator/prometheus-operator v0.85.0
)
