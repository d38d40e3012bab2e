//! What a router's failure is, and whether retrying can help.

/// Every failure of a router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed: transient unless it refused the request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The spec asks for something no router can do with it; the user must change it.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// An API the router writes is not served by the cluster (its CRD is missing, or that
    /// version is off); someone must install it.
    #[error("router {provider}: {message}")]
    NotServed {
        /// The provider (`spec.provider`).
        provider: String,
        /// Which API, and how to get it.
        message: String,
    },
    /// The provider cannot do what is asked (routes it does not support, a field it cannot
    /// use); the user must change the spec.
    #[error("router {provider}: {message}")]
    Router {
        /// The provider (`spec.provider`).
        provider: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// The provider's own controller has not done its part yet (e.g. Knative has created no
    /// Revision of the Service yet); a retry later may pass.
    #[error("router {provider}: {message}")]
    Waiting {
        /// The provider (`spec.provider`).
        provider: String,
        /// What it waits for.
        message: String,
    },
    /// A routing object could not be (de)serialized.
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// Whether the failure will not go away by itself: the spec or the cluster must change
    /// (an API that is not served, routes the provider cannot do, a request the API server
    /// refuses as invalid or forbidden). Everything else may pass on a retry.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => matches!(s.code, 400 | 403 | 404 | 422),
            Error::Kube(_) | Error::Waiting { .. } => false,
            Error::InvalidSpec(_)
            | Error::NotServed { .. }
            | Error::Router { .. }
            | Error::Serde(_) => true,
        }
    }
}
