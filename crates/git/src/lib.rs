//! Git as fledge's record of rollouts, behind the [`Ledger`] seam.
//!
//! - [`ledger`]: the ledger file of one rollout (YAML, one per rollout) and how events complete it;
//! - [`revert`]: the edit that puts the promoted image back in the GitOps source;
//! - [`record`]: what the controller queues (a ledger event or a revert) and its commit message;
//! - [`repo`]: a working copy driven through the `git` command (clone, commit, push with
//!   retries on a moved branch), with credentials that never reach logs or the remote URL;
//! - [`GitLedger`]: the [`Ledger`] that writes records to their repositories.
//!
//! The controller keeps the durable queue (ConfigMaps) and reads credentials from Secrets; this
//! crate only talks to Git.
#![forbid(unsafe_code)]

pub mod ledger;
pub mod record;
pub mod repo;
pub mod revert;

use std::path::PathBuf;
use std::time::Duration;

use fledge_api::LedgerRevision;
use fledge_api::gitops::GitRepository;

pub use record::{QueuedRecord, RevertWork, short_hash};
pub use repo::{Committed, GitAuth, GitError, Identity, Remote, Workdir};

use ledger::RolloutRecord;

/// A DORA figure a written record completes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DoraFigure {
    /// A promotion ended: seconds from the source commit that introduced the image.
    LeadTime(f64),
    /// A rollback ended: seconds from the first failed check.
    TimeToRestore(f64),
}

/// What writing one record did.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The commit, or why none was needed.
    pub committed: Committed,
    /// The DORA figure the record completes, when it ends a rollout and was pushed.
    pub dora: Option<DoraFigure>,
}

/// The Git record of rollouts: the seam between the controller's queue and a Git server.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Appends one record to its repository: a ledger event (the rollout's file created or
    /// completed) or a revert of the GitOps source. Writing the same record twice commits once.
    async fn write(&self, record: &QueuedRecord, auth: GitAuth) -> Result<Written, GitError>;

    /// The revisions the ledger of one Canary records as promoted (`dir` is the Canary's folder
    /// in the ledger), in no particular order.
    async fn promoted(
        &self,
        repository: &GitRepository,
        auth: GitAuth,
        dir: &str,
    ) -> Result<Vec<LedgerRevision>, GitError>;
}

/// How long each git command of a ledger read may take: the read holds up the Canary's
/// initialization, which never waits long for Git.
const LEDGER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// The [`Ledger`] on real Git repositories, with working copies kept under one directory.
#[derive(Debug)]
pub struct GitLedger {
    /// Author and committer of fledge's commits.
    pub identity: Identity,
    /// Where working copies are kept.
    pub workdir: PathBuf,
    /// Ledger reads share working copies; one at a time (they happen only while a Canary
    /// initializes without its primary, e.g. on a rebuilt cluster).
    reads: tokio::sync::Mutex<()>,
}

impl GitLedger {
    /// A ledger writing as `identity`, keeping working copies under `workdir`.
    pub fn new(identity: Identity, workdir: PathBuf) -> GitLedger {
        GitLedger {
            identity,
            workdir,
            reads: tokio::sync::Mutex::new(()),
        }
    }

    fn remote(repository: &GitRepository, auth: GitAuth) -> (Remote, String) {
        let branch = repository.branch.clone().unwrap_or_else(|| "main".into());
        let key = short_hash(&[&repository.url, &branch]);
        (
            Remote {
                url: repository.url.clone(),
                branch,
                auth,
            },
            key,
        )
    }
}

#[async_trait::async_trait]
impl Ledger for GitLedger {
    async fn write(&self, record: &QueuedRecord, auth: GitAuth) -> Result<Written, GitError> {
        let (remote, key) = GitLedger::remote(&record.repository, auth);
        let wd = Workdir::new(
            self.workdir.join(&key).join("tree"),
            self.workdir.join(&key).join("keys"),
            remote,
            self.identity.clone(),
        );
        if let Some(r) = &record.revert {
            let work = r.clone();
            let change = move |dir: &std::path::Path| -> Result<bool, String> {
                let path = dir.join(&work.path);
                let mut text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "cannot read spec.gitops.path {} in the repository: {e}",
                        work.path
                    )
                })?;
                let mut changed = false;
                for (from, to) in &work.images {
                    match revert::revert(&text, from, to, work.image_path.as_deref())? {
                        revert::Reverted::Changed(next) => {
                            text = next;
                            changed = true;
                        }
                        revert::Reverted::AlreadyThere => {}
                    }
                }
                if changed {
                    std::fs::write(&path, text).map_err(|e| e.to_string())?;
                }
                Ok(changed)
            };
            let committed = wd
                .commit_to(&record.message(), 8, r.push_branch.as_deref(), &change)
                .await?;
            return Ok(Written {
                committed,
                dora: None,
            });
        }
        // The source commit that introduced the new image, for a record that starts a rollout.
        let mut seed = record.seed.clone();
        if record.event.event == "Started"
            && let (Some(path), Some(image)) = (&record.source_path, record.seed.new_images.first())
        {
            wd.sync().await?;
            if let Some(commit) = wd.commit_introducing(path, image).await {
                seed.trigger = Some(ledger::Trigger {
                    commit,
                    path: path.clone(),
                });
            }
        }
        let file = record.file.clone();
        let event = record.event.clone();
        let ending = record.ending.clone();
        let change = move |dir: &std::path::Path| -> Result<bool, String> {
            let path = dir.join(&file);
            let mut current = match std::fs::read_to_string(&path) {
                Ok(text) => RolloutRecord::from_yaml(&text)?,
                Err(_) => seed.clone(),
            };
            if !current.apply(event.clone(), &ending) {
                return Ok(false);
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&path, current.to_yaml()?).map_err(|e| e.to_string())?;
            Ok(true)
        };
        let committed = wd.commit(&record.message(), 8, &change).await?;
        let dora = if matches!(committed, Committed::Pushed(_)) {
            dora_figure(&wd, &record.file).await
        } else {
            None
        };
        Ok(Written { committed, dora })
    }

    async fn promoted(
        &self,
        repository: &GitRepository,
        auth: GitAuth,
        dir: &str,
    ) -> Result<Vec<LedgerRevision>, GitError> {
        let (remote, key) = GitLedger::remote(repository, auth);
        let _one_at_a_time = self.reads.lock().await;
        let wd = Workdir::new(
            self.workdir.join(&key).join("read"),
            self.workdir.join(&key).join("read-keys"),
            remote,
            self.identity.clone(),
        )
        .with_timeout(LEDGER_READ_TIMEOUT);
        wd.sync().await?;
        let dir = wd.path().join(dir);
        Ok(std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                // An unreadable file is left out: one hand-edited record must not hide the rest.
                match RolloutRecord::from_yaml(&text) {
                    Ok(r) => Some(r),
                    Err(err) => {
                        tracing::warn!(file = %e.path().display(), error = %err, "unreadable ledger file left out");
                        None
                    }
                }
            })
            .filter(|r| r.result.as_deref() == Some("promoted"))
            .map(|r| LedgerRevision {
                revision: r.revision,
                images: r.new_images,
                promoted_at: r.end_time,
            })
            .collect())
    }
}

/// The DORA figure of a rollout whose ledger record just ended, if it has one.
async fn dora_figure(wd: &Workdir, file: &str) -> Option<DoraFigure> {
    let r = wd
        .read(file)
        .and_then(|t| RolloutRecord::from_yaml(&t).ok())?;
    let end = r
        .end_time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())?;
    match r.result.as_deref() {
        Some("promoted") => {
            let t = r.trigger.as_ref()?;
            let at = wd.commit_time(&t.commit).await?;
            Some(DoraFigure::LeadTime((end - at).get_seconds() as f64))
        }
        Some("rolled-back") => {
            let first = r
                .first_failure_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())?;
            Some(DoraFigure::TimeToRestore((end - first).get_seconds() as f64))
        }
        _ => None,
    }
}
