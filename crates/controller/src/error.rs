//! The controller's errors, classified: what the user must fix, what to retry, what is a bug.

use fledge_core::{Blocker, BlockerKind};

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
    /// A router could not apply a routing change: its API is not served, it cannot do what
    /// the spec asks, or the API server refused or failed a request.
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
            Error::Router(fledge_routers::Error::NotServed { .. }) => "not_served",
            Error::Router(_) => "router",
            Error::Serde(_) => "serde",
        }
    }

    /// Whether the API server refused a write made over an older version of its object (409
    /// Conflict): nothing failed, the reconcile is simply to be made again on the newer one.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Kube(kube::Error::Api(s))
                | Error::Router(fledge_routers::Error::Kube(kube::Error::Api(s)))
                if s.code == 409
        )
    }

    /// Whether retrying may help: API errors other than refusals (400, 403, 404, 422). A
    /// router's refusal, a missing CRD, an invalid target or spec, and a serialization bug
    /// stay until someone changes something.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => !matches!(s.code, 400 | 403 | 404 | 422),
            Error::Router(e) => !e.is_permanent(),
            Error::Kube(_) => true,
            Error::InvalidTarget(_) | Error::InvalidSpec(_) | Error::Serde(_) => false,
        }
    }

    /// What this failure blocks on, for the engine to report (`Ready=False` and one warning
    /// Event naming the fix); `None` for failures that retrying may cure, and for bugs.
    pub fn blocker(&self) -> Option<Blocker> {
        use fledge_routers::Error as RouterError;
        let api = |s: &kube::core::Status| match s.code {
            403 => Some(BlockerKind::Forbidden),
            404 => Some(BlockerKind::ApiNotServed),
            400 | 422 => Some(BlockerKind::Refused),
            _ => None,
        };
        let kind = match self {
            Error::Kube(kube::Error::Api(s))
            | Error::Router(RouterError::Kube(kube::Error::Api(s))) => api(s)?,
            Error::Kube(_) | Error::Serde(_) => return None,
            Error::Router(
                RouterError::Kube(_) | RouterError::Serde(_) | RouterError::Waiting { .. },
            ) => return None,
            Error::InvalidTarget(_) => BlockerKind::InvalidTarget,
            Error::InvalidSpec(_)
            | Error::Router(RouterError::InvalidSpec(_) | RouterError::Router { .. }) => {
                BlockerKind::InvalidSpec
            }
            Error::Router(RouterError::NotServed { .. }) => BlockerKind::ApiNotServed,
        };
        Some(Blocker {
            kind,
            message: self.to_string(),
        })
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure(&format!("refused with {code}"), "Refused")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn refusals_and_missing_apis_are_permanent_and_block() {
        for (e, kind) in [
            (api(403), Some(BlockerKind::Forbidden)),
            (api(404), Some(BlockerKind::ApiNotServed)),
            (api(400), Some(BlockerKind::Refused)),
            (api(422), Some(BlockerKind::Refused)),
            (
                Error::Router(fledge_routers::Error::NotServed {
                    provider: "traefik".into(),
                    message: "TraefikService traefik.io/v1alpha1 is not served".into(),
                }),
                Some(BlockerKind::ApiNotServed),
            ),
            (
                Error::Router(fledge_routers::Error::Router {
                    provider: "kubernetes".into(),
                    message: "cannot route 20% to the canary".into(),
                }),
                Some(BlockerKind::InvalidSpec),
            ),
            (
                Error::InvalidTarget("no selector".into()),
                Some(BlockerKind::InvalidTarget),
            ),
        ] {
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.blocker().map(|b| b.kind), kind, "{e}");
        }
        let b = api(403).blocker().unwrap();
        assert!(b.message.contains("refused with 403"), "{}", b.message);
    }

    #[test]
    fn other_api_errors_are_transient_and_block_nothing() {
        for code in [409, 429, 500, 503] {
            assert!(api(code).is_transient());
            assert_eq!(api(code).blocker(), None);
            assert_eq!(api(code).is_conflict(), code == 409);
        }
    }
}
