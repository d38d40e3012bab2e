//! Git as the record of rollouts: the ledger (one file per rollout, committed when it starts and
//! when it ends), written from a durable queue so that a rollout never waits for Git.
//!
//! The reconciler only enqueues: each record is a ConfigMap labelled
//! `fledge.dev/git-queue=true` in the Canary's namespace, named after the Canary, the event and
//! the revision (so a plan executed twice queues it once). ConfigMaps because they outlive the
//! controller process and the Canary (they have no owner), need no volume, are visible with
//! `kubectl get cm -l fledge.dev/git-queue`, and hold no secret: credentials are read from the
//! Canary's Secret when the record is written. A background worker writes the queue to Git in
//! order, one repository branch at a time, and deletes each entry once it is pushed; when the
//! remote is unreachable the entries stay and are retried with backoff.

pub use fledge_git::{ledger, record, repo, revert};

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fledge_api::gitops::GitRepository;
use fledge_api::{Canary, LedgerRevision};
use fledge_core::{LedgerEntry, LedgerEvent, LedgerView};
use fledge_git::{DoraFigure, GitLedger, Ledger, QueuedRecord, RevertWork, short_hash};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use ledger::{RecordedEvent, RolloutRecord};
use repo::{GitAuth, GitError, Identity};

/// The label of queue entries.
pub const QUEUE_LABEL: &str = "fledge.dev/git-queue";
/// The key of the record in a queue entry.
const DATA_KEY: &str = "record.json";

/// Settings of the Git worker.
#[derive(Clone)]
pub struct GitSettings {
    /// The Git record: where queued records are written and the ledger is read.
    pub ledger: Arc<dyn Ledger>,
    /// How often the queue is looked at when idle.
    pub poll: Duration,
    /// Records waiting longer than this raise an alert.
    pub alert_after: Duration,
    /// Cluster-wide defaults of `spec.gitops`.
    pub defaults: fledge_api::gitops::GitOpsDefaults,
    /// The controller's shard (`--shard`): its records carry the shard label, and its worker
    /// takes only those, so two shards never push one record.
    pub shard: Option<String>,
}

impl GitSettings {
    /// Settings writing to real Git repositories as `identity`, with working copies under
    /// `workdir`.
    pub fn new(identity: Identity, workdir: PathBuf) -> GitSettings {
        GitSettings {
            ledger: Arc::new(GitLedger::new(identity, workdir)),
            poll: Duration::from_secs(2),
            alert_after: Duration::from_secs(900),
            defaults: Default::default(),
            shard: None,
        }
    }
}

impl std::fmt::Debug for GitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSettings")
            .field("poll", &self.poll)
            .field("alert_after", &self.alert_after)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings::new(Identity::default(), std::env::temp_dir().join("fledge-git"))
    }
}

/// The queue entry's name: the same record always gets the same name, however often and
/// whenever it is decided. It names the rollout's record file (its start and revision) or the
/// reverted source file, the event and the revision, never the time of the decision: a decision
/// taken again a second later (its status write was cut on the way) queues the record once.
fn entry_name(r: &QueuedRecord) -> String {
    let hex = short_hash(&[
        &r.namespace,
        &r.canary,
        &r.file,
        &r.event.event,
        &r.seed.revision,
    ]);
    format!(
        "fledge-git-{}-{hex}",
        ledger::file_time(&r.seed.start_time).to_lowercase()
    )
}

/// The record of a ledger entry of `canary`, or `None` when the Canary has no `spec.gitops`
/// or the event is not one the ledger keeps.
pub fn record_for(
    canary: &Canary,
    entry: &LedgerEntry,
    status: &fledge_api::CanaryStatus,
    old_images: Vec<String>,
    new_images: Vec<String>,
) -> Option<QueuedRecord> {
    let gitops = canary.spec.gitops.as_ref()?;
    let (event, rank) = match entry.event {
        LedgerEvent::Started => ("Started", 0),
        LedgerEvent::Promoted => ("Promoted", 1),
        LedgerEvent::RolledBack => ("RolledBack", 1),
        LedgerEvent::Superseded => ("Superseded", 1),
        LedgerEvent::Aborted => ("Aborted", 1),
        LedgerEvent::Initialized => return None,
    };
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let rollout = status.rollout.clone().unwrap_or_default();
    let at = entry.at.to_string();
    let start = rollout
        .start_time
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| at.clone());
    let kind = canary
        .spec
        .target_ref
        .kind
        .clone()
        .unwrap_or_else(|| "Deployment".into());
    let seed = RolloutRecord {
        api_version: fledge_api::API_VERSION.into(),
        kind: ledger::KIND.into(),
        canary: format!("{ns}/{name}"),
        target: format!("{kind}/{}", canary.spec.target_ref.name),
        revision: entry.revision.clone(),
        primary_revision: entry.primary_revision.clone(),
        old_images,
        new_images,
        trigger: None,
        start_time: start.clone(),
        ..Default::default()
    };
    Some(QueuedRecord {
        namespace: ns.clone(),
        canary: name.clone(),
        repository: gitops.ledger_repository().clone(),
        at,
        rank,
        file: ledger::file_path(gitops.ledger_path(), &ns, &name, &start, &entry.revision),
        seed,
        event: RecordedEvent {
            time: entry.at.to_string(),
            event: event.into(),
            phase: entry.phase.to_string(),
            canary_weight: entry.canary_weight,
            failed_checks: entry.failed_checks,
            reasons: entry.reasons.clone(),
        },
        ending: if rank == 1 {
            ledger::Ending {
                first_failure: rollout.first_failure_time.as_ref().map(|t| t.0.to_string()),
                analysis: rollout.history,
                transitions: rollout.transitions,
                checks: rollout.checks,
            }
        } else {
            ledger::Ending::default()
        },
        source_path: gitops.path.clone(),
        revert: None,
    })
}

/// The revert of a rolled-back revision of `canary`, or `None` when the Canary does not revert
/// through Git (no `spec.gitops.path`, or `revertOnRollback: false`) or no image differs.
/// `images` pairs each container's failed image with the primary's (promoted) one and
/// `push_branch` is the branch of `mode: branch`, both as the engine decided.
pub fn revert_for(
    canary: &Canary,
    status: &fledge_api::CanaryStatus,
    revision: &str,
    reason: &str,
    images: Vec<(String, String)>,
    push_branch: Option<String>,
) -> Option<QueuedRecord> {
    let gitops = canary.spec.gitops.as_ref()?;
    if !gitops.reverts() {
        return None;
    }
    let images: Vec<(String, String)> = images.into_iter().filter(|(a, b)| a != b).collect();
    if images.is_empty() {
        return None;
    }
    let path = gitops.path.clone()?;
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let at = status
        .last_transition_time
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| jiff::Timestamp::now().to_string());
    // The rollout's start, like its ledger record's: the entry's name begins with it.
    let start = status
        .rollout
        .as_ref()
        .and_then(|r| r.start_time.as_ref())
        .map_or_else(|| at.clone(), |t| t.0.to_string());
    Some(QueuedRecord {
        namespace: ns.clone(),
        canary: name.clone(),
        repository: gitops.repository.clone(),
        at: at.clone(),
        rank: 2,
        file: path.clone(),
        seed: RolloutRecord {
            revision: revision.to_string(),
            new_images: images.iter().map(|(f, _)| f.clone()).collect(),
            old_images: images.iter().map(|(_, t)| t.clone()).collect(),
            start_time: start,
            ..Default::default()
        },
        event: RecordedEvent {
            time: at,
            event: "Revert".into(),
            ..Default::default()
        },
        ending: ledger::Ending::default(),
        source_path: None,
        revert: Some(RevertWork {
            path,
            image_path: gitops.image_path.clone(),
            images,
            push_branch,
            reason: reason.to_string(),
        }),
    })
}

/// Puts a record in the queue (a second time is a no-op).
pub async fn enqueue(
    client: &Client,
    record: &QueuedRecord,
    shard: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &record.namespace);
    let mut labels = BTreeMap::from([
        (QUEUE_LABEL.to_string(), "true".to_string()),
        ("fledge.dev/canary".to_string(), record.canary.clone()),
    ]);
    if let Some(shard) = shard {
        labels.insert(
            fledge_core::shard::SHARD_LABEL.to_string(),
            shard.to_string(),
        );
    }
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(entry_name(record)),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            DATA_KEY.to_string(),
            serde_json::to_string(record).unwrap_or_default(),
        )])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the worker reports about the queue.
#[derive(Clone, Debug, Default)]
pub struct QueueState {
    /// Entries waiting.
    pub depth: usize,
    /// Age of the oldest entry, in seconds.
    pub oldest_seconds: f64,
    /// Per Canary (`namespace/name`): its records waiting, since when, and the last error.
    pub canaries: BTreeMap<String, CanaryQueue>,
}

/// The queue as one Canary sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanaryQueue {
    /// Records waiting.
    pub pending: usize,
    /// When the oldest waiting record happened (RFC 3339).
    pub oldest: String,
    /// Why the last write failed: a condition reason and a message.
    pub error: Option<(String, String)>,
}

impl QueueState {
    /// What the engine sees of `canary`'s (`namespace/name`) records: nothing waiting when the
    /// worker holds none of them. `alert_after` is `--git-queue-alert-after`.
    pub fn observe(&self, canary: &str, alert_after: Duration) -> fledge_core::GitQueue {
        let Some(q) = self.canaries.get(canary) else {
            return fledge_core::GitQueue {
                alert_after,
                ..Default::default()
            };
        };
        fledge_core::GitQueue {
            pending: q.pending,
            oldest: q.oldest.parse().ok(),
            error: q
                .error
                .as_ref()
                .map(|(reason, message)| fledge_core::GitWriteError {
                    reason: reason.clone(),
                    message: message.clone(),
                }),
            alert_after,
        }
    }
}

/// The condition reason of a Git failure.
fn reason_of(e: &GitError) -> &'static str {
    match e {
        GitError::Unreachable(_) => "GitUnreachable",
        GitError::Auth(_) => "GitAuthFailed",
        GitError::Rejected(_) => "GitRejected",
        GitError::Other(_) => "GitWriteFailed",
    }
}

/// Writes the queue to Git, forever (records of one Canary in order).
///
/// It looks at the queue at start, whenever `wake` is notified (a record was queued), and, while
/// entries remain, again after a backoff (from `settings.poll` doubling up to 30 s). An empty
/// queue costs no API request.
pub async fn run_worker(
    client: Client,
    namespace: Option<String>,
    settings: GitSettings,
    state: Arc<std::sync::Mutex<QueueState>>,
    wake: Arc<tokio::sync::Notify>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut backoff = settings.poll;
    loop {
        let done = flush(&client, namespace.as_deref(), &settings, &state, &metrics).await;
        let (pending, oldest) = state
            .lock()
            .map(|s| (s.depth, s.oldest_seconds))
            .unwrap_or((0, 0.0));
        metrics.git_queue(pending, oldest);
        if done && pending == 0 {
            backoff = settings.poll;
            wake.notified().await;
        } else {
            if done {
                backoff = settings.poll;
            } else {
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            let _ = tokio::time::timeout(backoff, wake.notified()).await;
        }
    }
}

/// One pass over the queue. Returns whether every entry went through (or there was none).
pub async fn flush(
    client: &Client,
    namespace: Option<&str>,
    settings: &GitSettings,
    state: &std::sync::Mutex<QueueState>,
    metrics: &crate::metrics::Metrics,
) -> bool {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = match &settings.shard {
        Some(shard) => format!(
            "{QUEUE_LABEL}=true,{}={shard}",
            fledge_core::shard::SHARD_LABEL
        ),
        None => format!("{QUEUE_LABEL}=true"),
    };
    let list = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l.items,
        Err(e) => {
            warn!(error = %e, "cannot list the Git queue");
            return false;
        }
    };
    let mut entries: Vec<(ConfigMap, QueuedRecord)> = list
        .into_iter()
        .filter_map(|cm| {
            let text = cm.data.as_ref()?.get(DATA_KEY)?.clone();
            match serde_json::from_str::<QueuedRecord>(&text) {
                Ok(r) => Some((cm, r)),
                Err(e) => {
                    warn!(entry = %cm.name_any(), error = %e, "unreadable Git queue entry left alone");
                    None
                }
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        (&a.1.at, a.1.rank, a.0.name_any()).cmp(&(&b.1.at, b.1.rank, b.0.name_any()))
    });
    let now = jiff::Timestamp::now();
    let oldest = entries
        .first()
        .and_then(|(_, r)| r.at.parse::<jiff::Timestamp>().ok())
        .map(|t| (now - t).get_seconds() as f64)
        .unwrap_or(0.0);
    if let Ok(mut s) = state.lock() {
        s.depth = entries.len();
        s.oldest_seconds = oldest.max(0.0);
        let mut canaries: BTreeMap<String, CanaryQueue> = BTreeMap::new();
        for (_, r) in &entries {
            let who = format!("{}/{}", r.namespace, r.canary);
            let q = canaries.entry(who.clone()).or_default();
            q.pending += 1;
            if q.oldest.is_empty() || r.at < q.oldest {
                q.oldest = r.at.clone();
            }
            q.error = s.canaries.get(&who).and_then(|old| old.error.clone());
        }
        s.canaries = canaries;
    }
    let mut blocked: HashSet<(String, String)> = HashSet::new();
    let mut all_done = true;
    for (cm, record) in entries {
        // Order is kept per Canary and branch: a Canary's records never overtake each other,
        // and one Canary's failing credentials do not hold back another's records.
        let key = (
            format!("{}/{}", record.namespace, record.canary),
            format!(
                "{}#{}",
                record.repository.url,
                record.repository.branch.clone().unwrap_or_default()
            ),
        );
        if blocked.contains(&key) {
            all_done = false;
            continue;
        }
        let who = format!("{}/{}", record.namespace, record.canary);
        let written = match credentials(client, &record.namespace, &record.repository).await {
            Ok(auth) => settings.ledger.write(&record, auth).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(fledge_git::Written {
                committed: outcome,
                dora,
            }) => {
                match dora {
                    Some(DoraFigure::LeadTime(s)) => metrics.lead_time(s),
                    Some(DoraFigure::TimeToRestore(s)) => metrics.time_to_restore(s),
                    None => {}
                }
                info!(canary = %who, file = %record.file, event = %record.event.event, ?outcome, "ledger record written to Git");
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), &record.namespace);
                if let Err(e) = api.delete(&cm.name_any(), &DeleteParams::default()).await {
                    warn!(error = %e, "cannot remove a written Git queue entry");
                }
                if let Ok(mut s) = state.lock() {
                    s.depth = s.depth.saturating_sub(1);
                    if let Some(q) = s.canaries.get_mut(&who) {
                        q.pending = q.pending.saturating_sub(1);
                        q.error = None;
                        if q.pending == 0 {
                            s.canaries.remove(&who);
                        }
                    }
                }
            }
            Err(e) => {
                warn!(canary = %who, error = %e, "ledger record queued: Git write failed");
                if let Ok(mut s) = state.lock()
                    && let Some(q) = s.canaries.get_mut(&who)
                {
                    q.error = Some((reason_of(&e).to_string(), e.to_string()));
                }
                // Keep the order: nothing later for this branch goes before this one.
                blocked.insert(key);
                all_done = false;
            }
        }
    }
    all_done
}

/// What the ledger says about `canary`: the revisions it records as promoted, newest first,
/// including promotions still waiting in the queue. [`LedgerView::Unreadable`] says why when
/// the repository cannot be read.
pub async fn read_ledger(client: &Client, settings: &GitSettings, canary: &Canary) -> LedgerView {
    let Some(gitops) = canary.spec.gitops.as_ref() else {
        return LedgerView::NotRead;
    };
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let repository = gitops.ledger_repository();
    let auth = match credentials(client, &ns, repository).await {
        Ok(a) => a,
        Err(e) => return LedgerView::Unreadable(e.to_string()),
    };
    let dir = format!("{}/{ns}/{name}", gitops.ledger_path().trim_end_matches('/'));
    let mut promoted = match settings.ledger.promoted(repository, auth, &dir).await {
        Ok(p) => p,
        Err(e) => return LedgerView::Unreadable(e.to_string()),
    };
    promoted.extend(queued_promotions(client, &ns, &name).await);
    // Newest first; a revision promoted twice counts at its latest promotion.
    promoted.sort_by(|a, b| b.promoted_at.cmp(&a.promoted_at));
    let mut seen = HashSet::new();
    promoted.retain(|p| seen.insert(p.revision.clone()));
    info!(canary = %format!("{ns}/{name}"), promoted = promoted.len(), "Git ledger read");
    LedgerView::Read(promoted)
}

/// Promotions of a Canary still waiting in the queue (Git was down when they happened).
async fn queued_promotions(client: &Client, ns: &str, canary: &str) -> Vec<LedgerRevision> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let selector = format!("{QUEUE_LABEL}=true,fledge.dev/canary={canary}");
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|cm| cm.data.as_ref()?.get(DATA_KEY))
        .filter_map(|text| serde_json::from_str::<QueuedRecord>(text).ok())
        .filter(|r| r.canary == canary && r.revert.is_none() && r.event.event == "Promoted")
        .map(|r| LedgerRevision {
            revision: r.seed.revision,
            images: r.seed.new_images,
            promoted_at: Some(r.event.time),
        })
        .collect()
}

/// The credentials of a repository, from its Secret in `namespace`.
async fn credentials(
    client: &Client,
    namespace: &str,
    repo: &GitRepository,
) -> Result<GitAuth, GitError> {
    let Some(secret_ref) = &repo.secret_ref else {
        return Ok(GitAuth::None);
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(GitError::Auth(format!(
                "spec.gitops.repository.secretRef names Secret {namespace}/{}, which does not exist",
                secret_ref.name
            )));
        }
        Err(e) => {
            return Err(GitError::Unreachable(format!(
                "cannot read Secret {namespace}/{}: {e}",
                secret_ref.name
            )));
        }
    };
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| data.get(k).map(|b| b.0.clone()).filter(|b| !b.is_empty());
    match (
        get("identity"),
        get("known_hosts"),
        get("username"),
        get("password"),
    ) {
        (Some(identity), Some(known_hosts), _, _) => Ok(GitAuth::Ssh {
            identity,
            known_hosts,
        }),
        (Some(_), None, _, _) => Err(GitError::Auth(format!(
            "Secret {namespace}/{} has an SSH identity but no known_hosts; add the server's host key line",
            secret_ref.name
        ))),
        (None, _, Some(u), Some(p)) => Ok(GitAuth::Basic {
            username: String::from_utf8_lossy(&u).trim().to_string(),
            password: String::from_utf8_lossy(&p).trim().to_string(),
        }),
        _ => Err(GitError::Auth(format!(
            "Secret {namespace}/{} has neither identity and known_hosts (SSH) nor username and password (HTTPS)",
            secret_ref.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::CanaryPhase;
    use serde_json::json;

    fn canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "10s", "threshold": 2},
                "gitops": {"repository": {"url": "http://127.0.0.1:1/r.git", "branch": "main"},
                           "path": "deploy/podinfo.yaml"},
            },
        }))
        .unwrap()
    }

    /// A status of the rollout of `rev` started at `start`, its last transition at `at`.
    fn status(start: &str, at: &str) -> fledge_api::CanaryStatus {
        serde_json::from_value(json!({
            "phase": "Failed",
            "lastTransitionTime": at,
            "rollout": {"startTime": start},
        }))
        .unwrap()
    }

    fn entry(event: LedgerEvent, revision: &str, at: &str) -> LedgerEntry {
        LedgerEntry {
            event,
            revision: revision.into(),
            primary_revision: Some("rev-1".into()),
            at: at.parse().unwrap(),
            phase: CanaryPhase::Failed,
            canary_weight: 0,
            failed_checks: 2,
            reasons: vec!["check failed".into()],
        }
    }

    fn ledger_name(event: LedgerEvent, revision: &str, start: &str, at: &str) -> String {
        let c = canary();
        let r = record_for(
            &c,
            &entry(event, revision, at),
            &status(start, at),
            vec![],
            vec![],
        );
        entry_name(&r.unwrap())
    }

    fn revert_name(revision: &str, start: &str, at: &str) -> String {
        let images = vec![("podinfo:6.0.1".to_string(), "podinfo:6.0.0".to_string())];
        let r = revert_for(
            &canary(),
            &status(start, at),
            revision,
            "failed",
            images,
            None,
        );
        entry_name(&r.unwrap())
    }

    #[test]
    fn a_decision_taken_again_later_queues_the_same_record() {
        let start = "2026-12-06T10:00:00Z";
        let (first, again) = ("2026-12-06T10:00:30Z", "2026-12-06T10:00:31Z");
        for event in [LedgerEvent::Started, LedgerEvent::RolledBack] {
            assert_eq!(
                ledger_name(event, "rev-2", start, first),
                ledger_name(event, "rev-2", start, again),
                "{event:?}"
            );
        }
        assert_eq!(
            revert_name("rev-2", start, first),
            revert_name("rev-2", start, again)
        );
        assert!(
            ledger_name(LedgerEvent::Started, "rev-2", start, first).starts_with("fledge-git-")
        );
    }

    #[test]
    fn other_events_revisions_and_rollouts_queue_records_of_their_own() {
        let (start, at) = ("2026-12-06T10:00:00Z", "2026-12-06T10:00:30Z");
        let base = ledger_name(LedgerEvent::Started, "rev-2", start, at);
        let others = [
            ledger_name(LedgerEvent::RolledBack, "rev-2", start, at),
            ledger_name(LedgerEvent::Started, "rev-3", start, at),
            ledger_name(LedgerEvent::Started, "rev-2", "2026-12-06T11:00:00Z", at),
            revert_name("rev-2", start, at),
        ];
        for other in &others {
            assert_ne!(&base, other);
        }
        assert_ne!(
            revert_name("rev-2", start, at),
            revert_name("rev-3", start, at)
        );
    }
}
