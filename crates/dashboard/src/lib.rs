//! fledge's web dashboard: every Canary the user can list, live; one Canary's rollout as
//! charts (the canary weight over time, each metric against its passing band, the judgement
//! score), its gates, webhooks, transitions and Events; past rollouts from the Git ledger; and
//! `kubectl fledge`'s actions.
//!
//! [`view`] turns Canaries into what the pages show, [`chart`] draws the charts (plotters'
//! SVG backend), [`pages`] renders the HTML (askama), all pure; [`server`] is the axum server:
//! a watch of Canaries feeding server-sent events that swap the fragments in place.
//!
//! The crate talks to the API server with the client it is given (the user's, for `kubectl
//! fledge dashboard`), so the user's RBAC applies; the actions are whatever [`Actions`] the
//! caller passes, and none when it passes none (read-only: the action endpoint is not even
//! mounted).
#![forbid(unsafe_code)]

pub mod chart;
pub mod ledger;
pub mod pages;
pub mod server;
pub mod view;

use std::future::Future;
use std::pin::Pin;

pub use server::{Bound, Options, bind};

/// The path of a Canary's page.
pub fn canary_path(namespace: &str, name: &str) -> String {
    format!("/canaries/{namespace}/{name}")
}

/// The URL of a Canary's page under a dashboard's base URL (what chat alerts link to).
pub fn canary_url(base: &str, namespace: &str, name: &str) -> String {
    format!(
        "{}{}",
        base.trim_end_matches('/'),
        canary_path(namespace, name)
    )
}

/// A short digest of a fragment's HTML: the page marks each fragment with it, and the live
/// updates leave a fragment alone when its digest did not change (a button being pressed is
/// never replaced by an identical one).
pub fn digest(html: &str) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same HTML gives the same digest in every process.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    html.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// An action asked for on a Canary's page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRequest {
    /// The Canary's namespace.
    pub namespace: String,
    /// The Canary's name.
    pub name: String,
    /// What to do.
    pub action: fledge_api::RequestAction,
    /// For approve: the gate.
    pub gate: Option<fledge_api::Gate>,
}

/// What an action returns: a sentence saying what happened, or why it was refused.
pub type ActionFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Carries out the actions of the page (`kubectl fledge` passes its own requests).
pub trait Actions: Send + Sync + 'static {
    /// Carries out one action as the user.
    fn act(&self, request: ActionRequest) -> ActionFuture;
}

/// An error starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped.
    #[error("the dashboard's server stopped: {0}")]
    Serve(std::io::Error),
}
