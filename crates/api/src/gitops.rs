//! fledge extension: `spec.gitops`, the Git record of rollouts and rollback through Git.
//!
//! With a repository set, fledge commits a ledger file per rollout (when it starts and when it
//! ends) and, when `path` is set and a rollout is rolled back, a commit that puts the last
//! promoted image back into the GitOps source, so that Flux or Argo CD never re-applies the
//! version that failed. Rollouts never wait for Git: records are queued durably while the remote
//! is unreachable.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default ledger directory in the repository.
pub const DEFAULT_LEDGER_PATH: &str = ".fledge/ledger";

/// `spec.gitops`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitOps {
    /// The GitOps source repository (the one Flux or Argo CD applies).
    pub repository: GitRepository,
    /// The file in that repository that sets the target's image: a Deployment manifest, a
    /// `kustomization.yaml` with `images:`, or a Flux HelmRelease (then set `imagePath`).
    /// Without it, fledge records the ledger only and reverts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a HelmRelease (or any YAML values file): the dotted path of the image value in
    /// `path`, e.g. `spec.values.image.tag` (a tag) or `spec.values.image` (a whole
    /// `repository:tag` reference, or a map with `repository` and `tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// Commit a revert of the image in `path` when a rollout is rolled back. Default: true when
    /// `path` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_on_rollback: Option<bool>,
    /// A new revision equal to one promoted before (a revert in Git) is promoted at once,
    /// without analysis, as an emergency rollback. Default: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_rollback: Option<bool>,
    /// `push` (the default): commit to the branch. `branch`: push reverts to a
    /// `fledge/revert-<canary>-<revision>` branch for a pull request instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Where the ledger goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSpec>,
}

/// A Git repository and how to reach it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepository {
    /// `ssh://`, `https://`, `http://`, `git://` or `file://` URL.
    pub url: String,
    /// The branch. Default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A Secret in the Canary's namespace with `identity` (an SSH private key) and
    /// `known_hosts`, or `username` and `password` (a token) for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<crate::metric_template::SecretReference>,
}

/// `spec.gitops.ledger`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSpec {
    /// The directory of ledger files in the repository. Default `.fledge/ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Another repository for the ledger (default: `spec.gitops.repository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<GitRepository>,
}

impl GitOps {
    /// The branch of the source repository.
    pub fn branch(&self) -> &str {
        self.repository.branch.as_deref().unwrap_or("main")
    }

    /// Whether a rollback commits a revert.
    pub fn reverts(&self) -> bool {
        self.path.is_some() && self.revert_on_rollback.unwrap_or(true)
    }

    /// The ledger's repository.
    pub fn ledger_repository(&self) -> &GitRepository {
        self.ledger
            .as_ref()
            .and_then(|l| l.repository.as_ref())
            .unwrap_or(&self.repository)
    }

    /// The ledger's directory.
    pub fn ledger_path(&self) -> &str {
        self.ledger
            .as_ref()
            .and_then(|l| l.path.as_deref())
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_LEDGER_PATH)
    }
}
