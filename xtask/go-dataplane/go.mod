// Pinned versions of the local data plane started by `cargo xtask dataplane up`.
//
// This module is never built. It names the versions (xtask/src/dataplane/build.rs reads them from
// here) and go.sum holds their checksums, so `go mod download` here fetches exactly these
// modules and verifies them. Each program is then built inside its own module, with that
// module's own go.mod and go.sum: Traefik's and podinfo's dependencies never meet each other or
// the Kubernetes 1.37 libraries of xtask/go.
module fledge.dev/xtask/dataplane-tools

go 1.25.0

require (
	// podinfo 6.9.2 (commit e86405a8674e). podinfo's v6 tags lack the /v6 module suffix, so the
	// proxy serves its commits as pseudo-versions of github.com/stefanprodan/podinfo.
	github.com/stefanprodan/podinfo v1.8.1-0.20250910200901-e86405a8674e
	// The newest Traefik the proxy serves that builds from its module: v3.7 replaces a nested
	// module (github.com/traefik/traefik/dynamic/ext) by a local path the module zip omits.
	github.com/traefik/traefik/v3 v3.6.12
	// The Gateway API CRDs (standard channel) installed when the cluster has none; the version
	// xtask/go/peers/go.mod pins for `cluster up`, so whichever installs first installs the same.
	// Traefik v3.6.12 is built against v1.4.0 and reads the v1 and v1beta1 APIs these still serve.
	sigs.k8s.io/gateway-api v1.6.3
	// VictoriaMetrics, a second real metrics server for the providers' tests: its
	// Prometheus-compatible query API, and Graphite's carbon plaintext protocol and render API.
	// v1.151.0 is the newest the proxy serves that builds with this machine's Go 1.26.
	github.com/VictoriaMetrics/VictoriaMetrics v1.151.0
	// InfluxDB 1.8.10, a real server of the v2 query API with Flux for the influxdb provider's
	// tests (1.8 serves /api/v2/query beside its 1.x API). It is the last InfluxDB whose Flux
	// engine is pure Go (flux v0.65); later ones link Flux's Rust library through cgo.
	github.com/influxdata/influxdb v1.8.10
	// Skipper, an HTTP router that reads Ingresses from the API server, for the skipper router's
	// real-traffic test (canary weights and header matches). The newest the proxy serves.
	github.com/zalando/skipper v0.23.0
)
