//! The fledge controller: the Kubernetes adapter of the rollout engine, and the `fledge` CLI.
#![forbid(unsafe_code)]

pub mod adopt;
pub mod analysis;
pub mod autoscaler;
pub mod configs;
pub mod controller;
pub mod crds;
pub mod dora;
pub mod drift;
mod error;
pub mod events;
pub mod git;
pub mod kube_client;
pub mod metrics;
pub mod notify;
pub mod routers;
pub mod server;
pub mod services;
pub mod slots;
pub mod validate_cmd;
pub mod webhooks;
pub mod workload;

pub use error::{Error, Result};
