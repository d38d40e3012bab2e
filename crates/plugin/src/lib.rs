//! `kubectl fledge`: watch and steer fledge rollouts from kubectl.
//!
//! [`render`] draws tables, trees and watch lines from recorded objects (pure); [`ops`] talks to
//! the API server: reading Canaries, their workloads and Events, and writing requests to
//! `.status.request` after checking who the user is and what RBAC lets them do; [`import`]
//! moves Flagger's objects to `fledge.dev/v1beta1`; [`dashboard`] gives the web dashboard
//! (`fledge-dashboard`) these same requests as its actions.
#![forbid(unsafe_code)]

pub mod dashboard;
pub mod import;
pub mod ops;
pub mod render;

/// An error for people: what went wrong and, where it helps, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Canary does not exist.
    #[error("no Canary {name:?} in namespace {namespace:?}")]
    NotFound {
        /// Namespace looked in.
        namespace: String,
        /// Name looked for.
        name: String,
    },
    /// RBAC refuses a verb on a resource.
    #[error(
        "{user} may not {what}: RBAC does not allow the verb {verb:?} on {resource:?} (API group \
         fledge.dev) in namespace {namespace:?}"
    )]
    Forbidden {
        /// Who asked.
        user: String,
        /// What they tried, for people.
        what: String,
        /// The verb missing.
        verb: String,
        /// The resource (with subresource) missing.
        resource: String,
        /// The namespace.
        namespace: String,
    },
    /// The request does not fit the Canary as it is.
    #[error("cannot {action} {namespace}/{name}: {why}")]
    DoesNotFit {
        /// The request.
        action: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why not.
        why: String,
    },
    /// The controller refused the request.
    #[error("the controller refused to {action} {namespace}/{name}: {why}")]
    Refused {
        /// The request.
        action: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        why: String,
    },
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// The controller did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Talking to the API server failed.
    #[error("{0}")]
    Kube(String),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(describe_kube_error(&e))
    }
}

/// A kube error in a line: the API server's message when it sent one.
pub fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the API server answered {}: {}", s.code, s.message),
        other => format!("cannot reach the API server: {other}"),
    }
}
