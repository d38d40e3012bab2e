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
pub mod knative;
pub mod kube_client;
pub mod metrics;
pub mod notify;
pub mod replay;
pub mod retry;
pub mod route_watch;
pub mod said;
pub mod server;
pub mod services;
pub mod statefulset;
pub mod target_index;
pub mod validate_cmd;
pub mod watch;
pub mod webhooks;
pub mod workload;

pub use error::{Error, Result};
/// The traffic routers (the `fledge-routers` crate).
pub use fledge_routers as routers;

/// A 64-bit hash of `value`, for caches that only ask whether two uids, names or versions are
/// the same: 8 bytes and no allocation instead of the strings. Two different values hash alike
/// once in 2^64 comparisons.
pub(crate) fn hash64<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Fixtures shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    /// The owner reference of a Canary `podinfo`, as fledge puts it on what it creates.
    pub fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "fledge.dev/v1beta1".into(),
            kind: "Canary".into(),
            name: "podinfo".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// What a stand-in API server answers: a response, or an error that stands for a request
    /// cut on the way.
    pub type StandInAnswer = Result<
        hyper::Response<http_body_util::Full<hyper::body::Bytes>>,
        Box<dyn std::error::Error + Send + Sync>,
    >;

    /// A client of a stand-in API server: every request the client makes is answered by
    /// `answer`, in the test's process.
    pub fn stand_in_api<F, Fut>(answer: F) -> kube::Client
    where
        F: Fn(hyper::Request<kube::client::Body>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = StandInAnswer> + Send + 'static,
    {
        kube::Client::new(tower::service_fn(answer), "default")
    }
}
