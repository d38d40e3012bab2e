// The pinned Flagger release that fledge's cut-over test runs as the reference.
//
// This module is never built. It names the version (xtask/src/flagger.rs reads it from here) and
// go.sum holds its checksums, so `go mod download` here fetches exactly this module and verifies
// it. Flagger is then built inside its own module (package ./cmd/flagger), with that module's own
// go.mod and go.sum; its CRDs are read from the same module (artifacts/flagger/crd.yaml).
module fledge.dev/xtask/flagger

go 1.25.0

require github.com/fluxcd/flagger v1.36.1
