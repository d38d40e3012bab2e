//! fledge extension: `spec.gitops`, the Git record of rollouts and rollback through Git.
//!
//! With a repository set, fledge commits a ledger file per rollout (when it starts and when it
//! ends) and, when `path` is set and a rollout is rolled back, a commit that puts the last
//! promoted image back into the GitOps source, so that Flux or Argo CD never re-applies the
//! version that failed. Rollouts never wait for Git: records are queued durably while the remote
//! is unreachable.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// The default ledger directory in the repository.
pub const DEFAULT_LEDGER_PATH: &str = ".fledge/ledger";

/// `spec.gitops`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitOps {
    /// The GitOps source repository (the one Flux or Argo CD applies).
    pub repository: GitRepository,
    /// The file in that repository that sets the target's image: a Deployment manifest, a
    /// `kustomization.yaml` with `images:`, or a Flux HelmRelease (then set `imagePath`).
    /// Without it, fledge records the ledger only and reverts nothing.
    pub path: Option<String>,
    /// For a HelmRelease (or any YAML values file): the dotted path of the image value in
    /// `path`, e.g. `spec.values.image.tag` (a tag) or `spec.values.image` (a whole
    /// `repository:tag` reference, or a map with `repository` and `tag`).
    pub image_path: Option<String>,
    /// Commit a revert of the image in `path` when a rollout is rolled back. Default: true when
    /// `path` is set.
    pub revert_on_rollback: Option<bool>,
    /// A new revision equal to one promoted before (a revert in Git) is promoted at once,
    /// without analysis, as an emergency rollback. Default: true.
    pub fast_rollback: Option<bool>,
    /// `push` (the default): commit to the branch. `branch`: push reverts to a
    /// `fledge/revert-<canary>-<revision>` branch for a pull request instead.
    pub mode: Option<String>,
    /// Where the ledger goes.
    pub ledger: Option<LedgerSpec>,
}

/// A Git repository and how to reach it.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepository {
    /// `ssh://`, `https://`, `http://`, `git://` or `file://` URL.
    pub url: String,
    /// The branch. Default `main`.
    pub branch: Option<String>,
    /// A Secret in the Canary's namespace with `identity` (an SSH private key) and
    /// `known_hosts`, or `username` and `password` (a token) for HTTPS.
    pub secret_ref: Option<crate::metric_template::SecretReference>,
}

/// `spec.gitops.ledger`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSpec {
    /// The directory of ledger files in the repository. Default `.fledge/ledger`.
    pub path: Option<String>,
    /// Another repository for the ledger (default: `spec.gitops.repository`).
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

/// Cluster-wide defaults for `spec.gitops`, from the controller's flags: a Canary's own
/// fields win; a Canary without `spec.gitops` records to the default repository's ledger
/// when one is set (it reverts nothing: it names no `path`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitOpsDefaults {
    /// The ledger repository of Canaries without `spec.gitops`.
    pub repository: Option<GitRepository>,
    /// `ledger.path` when a Canary sets none.
    pub ledger_path: Option<String>,
    /// `revertOnRollback` when a Canary sets none.
    pub revert_on_rollback: Option<bool>,
    /// `fastRollback` when a Canary sets none.
    pub fast_rollback: Option<bool>,
    /// `mode` when a Canary sets none.
    pub mode: Option<String>,
}

impl GitOpsDefaults {
    /// `spec.gitops` with the defaults filled in.
    pub fn apply(&self, own: Option<&GitOps>) -> Option<GitOps> {
        let mut g = match own {
            Some(g) => g.clone(),
            None => GitOps {
                repository: self.repository.clone()?,
                ..Default::default()
            },
        };
        g.revert_on_rollback = g.revert_on_rollback.or(self.revert_on_rollback);
        g.fast_rollback = g.fast_rollback.or(self.fast_rollback);
        if g.mode.is_none() {
            g.mode.clone_from(&self.mode);
        }
        if let Some(path) = &self.ledger_path {
            let ledger = g.ledger.get_or_insert_with(Default::default);
            if ledger.path.is_none() {
                ledger.path = Some(path.clone());
            }
        }
        Some(g)
    }
}

/// The problems of `spec.gitops`, as `(field, message)`.
pub fn problems(g: &GitOps) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut repo = |base: &str, r: &GitRepository| {
        let url = r.url.trim();
        if url.is_empty() {
            out.push((
                format!("{base}.url"),
                "is empty; write the repository's ssh://, https://, git:// or file:// URL".into(),
            ));
        } else if !["ssh://", "https://", "http://", "git://", "file://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            out.push((
                format!("{base}.url"),
                "must start with ssh://, https://, http://, git:// or file:// (scp-like user@host:path is not accepted; write ssh://user@host/path)".into(),
            ));
        } else if let Some(rest) = url.split_once("://").map(|(_, r)| r)
            && rest.split('/').next().is_some_and(|h| {
                h.contains(':')
                    && h.contains('@')
                    && h.split('@').next().is_some_and(|u| u.contains(':'))
            })
        {
            out.push((
                format!("{base}.url"),
                "carries a password; put credentials in the Secret of secretRef (username, password) instead".into(),
            ));
        }
        if let Some(b) = &r.branch
            && (b.is_empty() || b.starts_with('-') || b.contains("..") || b.contains(' '))
        {
            out.push((
                format!("{base}.branch"),
                format!("{b:?} is not a branch name"),
            ));
        }
        if let Some(s) = &r.secret_ref
            && s.name.is_empty()
        {
            out.push((
                format!("{base}.secretRef.name"),
                "is empty; name the Secret".into(),
            ));
        }
    };
    repo("spec.gitops.repository", &g.repository);
    if let Some(r) = g.ledger.as_ref().and_then(|l| l.repository.as_ref()) {
        repo("spec.gitops.ledger.repository", r);
    }
    let relative = |field: &str, p: &str, out: &mut Vec<(String, String)>| {
        if p.is_empty() || p.starts_with('/') || p.split('/').any(|s| s == "..") {
            out.push((
                field.to_string(),
                format!("{p:?} must be a path inside the repository, e.g. deploy/app.yaml"),
            ));
        }
    };
    if let Some(p) = &g.path {
        relative("spec.gitops.path", p, &mut out);
    }
    if let Some(p) = g.ledger.as_ref().and_then(|l| l.path.as_deref()) {
        relative("spec.gitops.ledger.path", p, &mut out);
    }
    if let Some(ip) = &g.image_path {
        if g.path.is_none() {
            out.push((
                "spec.gitops.imagePath".into(),
                "needs spec.gitops.path, the file it points into".into(),
            ));
        }
        if ip.is_empty() || ip.split('.').any(str::is_empty) {
            out.push((
                "spec.gitops.imagePath".into(),
                format!("{ip:?} is not a dotted path; write e.g. spec.values.image.tag"),
            ));
        }
    }
    if let Some(m) = &g.mode
        && m != "push"
        && m != "branch"
    {
        out.push((
            "spec.gitops.mode".into(),
            format!("{m:?} is not a mode; use push (commit to the branch) or branch (a branch for a pull request)"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(url: &str) -> GitOps {
        GitOps {
            repository: GitRepository {
                url: url.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_good_spec_has_no_problem_and_bad_ones_say_what_to_do() {
        let mut ok = g("ssh://git@github.com/org/app.git");
        ok.path = Some("deploy/app.yaml".into());
        ok.image_path = Some("spec.values.image.tag".into());
        ok.mode = Some("branch".into());
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        let cases: Vec<(GitOps, &str, &str)> = vec![
            (g(""), "spec.gitops.repository.url", "is empty"),
            (
                g("git@github.com:org/app.git"),
                "spec.gitops.repository.url",
                "scp-like",
            ),
            (
                g("https://bot:tok@h/app.git"),
                "spec.gitops.repository.url",
                "carries a password",
            ),
            (
                GitOps {
                    path: Some("../x.yaml".into()),
                    ..g("git://h/a")
                },
                "spec.gitops.path",
                "inside the repository",
            ),
            (
                GitOps {
                    image_path: Some("spec..tag".into()),
                    path: Some("a.yaml".into()),
                    ..g("git://h/a")
                },
                "spec.gitops.imagePath",
                "dotted path",
            ),
            (
                GitOps {
                    image_path: Some("spec.values.image".into()),
                    ..g("git://h/a")
                },
                "spec.gitops.imagePath",
                "needs spec.gitops.path",
            ),
            (
                GitOps {
                    mode: Some("pr".into()),
                    ..g("git://h/a")
                },
                "spec.gitops.mode",
                "push",
            ),
        ];
        for (spec, field, words) in cases {
            let p = problems(&spec);
            assert!(
                p.iter().any(|(f, m)| f == field && m.contains(words)),
                "{field}: {p:?}"
            );
        }
    }

    #[test]
    fn cluster_defaults_fill_what_a_canary_leaves_unset() {
        let defaults = GitOpsDefaults {
            repository: Some(GitRepository {
                url: "ssh://git@git.example.com/platform/ledger.git".into(),
                ..Default::default()
            }),
            ledger_path: Some("ledger".into()),
            revert_on_rollback: Some(false),
            fast_rollback: Some(false),
            mode: Some("branch".into()),
        };
        // No spec.gitops: the default repository's ledger, nothing to revert.
        let g = defaults.apply(None).unwrap();
        assert_eq!(
            g.repository.url,
            "ssh://git@git.example.com/platform/ledger.git"
        );
        assert_eq!(g.ledger_path(), "ledger");
        assert!(!g.reverts() && g.path.is_none());
        // A Canary's own fields win; the rest come from the defaults.
        let mut own = super::tests::g("git://127.0.0.1/app.git");
        own.path = Some("deploy/app.yaml".into());
        own.fast_rollback = Some(true);
        let g = defaults.apply(Some(&own)).unwrap();
        assert_eq!(g.repository.url, "git://127.0.0.1/app.git");
        assert_eq!(g.fast_rollback, Some(true));
        assert_eq!(g.revert_on_rollback, Some(false));
        assert_eq!(g.mode.as_deref(), Some("branch"));
        assert_eq!(g.ledger_path(), "ledger");
        // No defaults: unchanged.
        assert_eq!(GitOpsDefaults::default().apply(Some(&own)), Some(own));
        assert_eq!(GitOpsDefaults::default().apply(None), None);
    }
}
