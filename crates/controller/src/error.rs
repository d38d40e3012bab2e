//! The controller's errors, classified: what the user must fix, what to retry, what is a bug.

/// Every failure of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed (often transient: retried with backoff).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The target workload cannot be used as it is; the user must change it.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The spec cannot be acted on; the user must change it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A router could not apply a routing change.
    #[error(transparent)]
    Router(#[from] fledge_routers::Error),
    /// A value could not be (de)serialized; a bug.
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// A short label for the `/metrics` counter of reconcile errors.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::InvalidTarget(_) => "invalid_target",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Router(_) => "router",
            Error::Serde(_) => "serde",
        }
    }

    /// Whether retrying may help (API errors other than invalid requests, router errors).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => !matches!(s.code, 400 | 403 | 404 | 422),
            Error::Router(e) => !e.is_permanent(),
            Error::Kube(_) => true,
            Error::InvalidTarget(_) | Error::InvalidSpec(_) | Error::Serde(_) => false,
        }
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
