// Pinned versions of the tools `cargo xtask bench loadgen` compares fledge-loadgen with.
//
// This module is never built. It names the versions (xtask/src/bench/loadgen.rs reads them from
// here) and go.sum holds their checksums, so `go mod download` here fetches exactly these
// modules and verifies them; each program is then built inside its own module, with that
// module's own go.mod and go.sum.
module fledge.dev/xtask/bench-tools

go 1.25.0

// hey, the load generator Flagger's load tester shells out to.
require github.com/rakyll/hey v0.1.5
