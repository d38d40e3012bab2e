// The pinned controller-gen (sigs.k8s.io/controller-tools) that turns Flagger's own API types for
// Gloo and App Mesh into the CRDs `cargo xtask cluster up` installs (xtask/src/cluster/peers.rs).
//
// This module is never built. It names the version (peers.rs reads it from here) and go.sum holds
// its checksums, so `go mod download` here fetches exactly this module and verifies it.
// controller-gen is then built inside the downloaded module (its ./cmd/controller-gen), with that
// module's own go.mod and go.sum.
module fledge.dev/xtask/controller-gen

go 1.25.0

require sigs.k8s.io/controller-tools v0.23.0
