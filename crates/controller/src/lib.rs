//! The fledge controller: the Kubernetes adapter of the rollout engine, and the `fledge` CLI.
#![forbid(unsafe_code)]

pub mod crds;
