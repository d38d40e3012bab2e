// Pinned upstream modules that ship the peer CRDs `cargo xtask cluster up` installs
// (xtask/src/cluster/peers.rs): only their YAML files are used, nothing is built from them.
//
// A module of its own, apart from ../go.mod: adding these requires to the control plane's module
// would let their dependencies raise versions in the Kubernetes build graph. Do not `go mod tidy`
// here (nothing imports these modules, so tidy would drop them); bump a version with
// `go get <module>@<version>`, which also updates go.sum.
module fledge.dev/xtask/peer-crds

go 1.26.0

require (
	// Gateway API: config/crd/{standard,experimental}/, one channel installed.
	sigs.k8s.io/gateway-api v1.6.3
	// Istio: kubernetes/customresourcedefinitions.gen.yaml (VirtualService, DestinationRule, ...).
	istio.io/api v1.31.4
	// SMI TrafficSplit: cmd/osm-bootstrap/crds/smi_traffic_split.yaml, the SMI SDK's CRD in
	// apiextensions.k8s.io/v1 form (the SMI SDK module itself ships only the removed v1beta1).
	github.com/openservicemesh/osm v1.2.4
	// KEDA: config/crd/bases/keda.sh_scaledobjects.yaml (the ScaledObject of autoscalerRef).
	// v2.20.2 is the newest that Go 1.26 downloads (v2.21 requires Go 1.27).
	github.com/kedacore/keda/v2 v2.20.2
	// Contour: examples/contour/01-crds.yaml (HTTPProxy), at the version Flagger v1.36.1's
	// end-to-end tests install (test/contour/install.sh).
	github.com/projectcontour/contour v1.23.0
	// Kuma: deployments/charts/kuma/crds/kuma.io_trafficroutes.yaml (TrafficRoute). Flagger
	// v1.36.1's end-to-end tests install Kuma 2.1.0, whose tag ("2.1.0", no v) is no Go module
	// version; v2.7.20 is the oldest release published as github.com/kumahq/kuma/v2, and its
	// TrafficRoute CRD has 2.1.0's schema (only descriptions reworded).
	github.com/kumahq/kuma/v2 v2.7.20
	// APISIX ingress controller: samples/deploy/crd/v1/ApisixRoute.yaml (ApisixRoute, served at
	// v2). Flagger v1.36.1's end-to-end tests install APISIX from its Helm chart 0.11.3 (APISIX
	// 2.15.1); v1.7.1 is the oldest release of the controller's module the Go module proxy
	// serves here (v1.5 and v1.6 are refused), and its CRD serves apisix.apache.org/v2.
	github.com/apache/apisix-ingress-controller v1.7.1
	// Knative Serving: config/core/300-resources/{service,revision}.yaml (the Knative Service
	// of the `knative` provider and its Revisions), plain apiextensions.k8s.io/v1 CRDs.
	knative.dev/serving v0.51.0
	// Traefik v2: docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml,
	// of which only the TraefikService of traefik.containo.us (the group Flagger v1.36.1's
	// traefik router writes, which Traefik v3 no longer serves) is installed, for the Flagger
	// comparison. The module lists no versions here; v2.11.24 is served.
	github.com/traefik/traefik/v2 v2.11.24
)
