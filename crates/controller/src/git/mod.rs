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

pub mod ledger;
pub mod repo;
pub mod revert;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fledge_api::gitops::GitRepository;
use fledge_api::{Canary, LedgerRevision};
use fledge_core::{LedgerEntry, LedgerEvent, LedgerView};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use ledger::{RecordedEvent, RolloutRecord};
use repo::{GitAuth, GitError, Identity, Remote, Workdir};

/// The label of queue entries.
pub const QUEUE_LABEL: &str = "fledge.dev/git-queue";
/// The key of the record in a queue entry.
const DATA_KEY: &str = "record.json";

/// Settings of the Git worker.
#[derive(Clone, Debug)]
pub struct GitSettings {
    /// Author and committer of fledge's commits.
    pub identity: Identity,
    /// Where working copies are kept.
    pub workdir: PathBuf,
    /// How often the queue is looked at when idle.
    pub poll: Duration,
    /// Records waiting longer than this raise an alert.
    pub alert_after: Duration,
    /// Cluster-wide defaults of `spec.gitops`.
    pub defaults: fledge_api::gitops::GitOpsDefaults,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            identity: Identity::default(),
            workdir: std::env::temp_dir().join("fledge-git"),
            poll: Duration::from_secs(2),
            alert_after: Duration::from_secs(900),
            defaults: Default::default(),
        }
    }
}

/// One queued write to Git.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRecord {
    /// The Canary's namespace (where its Secret is).
    pub namespace: String,
    /// The Canary's name.
    pub canary: String,
    /// Where to write.
    pub repository: GitRepository,
    /// When the event happened (RFC 3339), the queue's order.
    pub at: String,
    /// Order among records of the same second (start before end).
    pub rank: u8,
    /// The ledger file to create or complete.
    pub file: String,
    /// The record as it starts (used when the file does not exist yet).
    pub seed: RolloutRecord,
    /// The event to add.
    pub event: RecordedEvent,
    /// What an ending event adds to the file (analysis steps, transitions, gate answers).
    #[serde(default)]
    pub ending: ledger::Ending,
    /// The GitOps source file, to find the commit that introduced the new image.
    #[serde(default)]
    pub source_path: Option<String>,
    /// Instead of a ledger record: a revert of the GitOps source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertWork>,
}

/// A revert of the image in the GitOps source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevertWork {
    /// The source file (`spec.gitops.path`).
    pub path: String,
    /// `spec.gitops.imagePath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// `(failed image, promoted image)` pairs.
    pub images: Vec<(String, String)>,
    /// Push to this branch (mode `branch`) instead of the repository's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_branch: Option<String>,
    /// Why it was rolled back.
    pub reason: String,
}

impl QueuedRecord {
    /// The commit message, with trailers.
    fn message(&self) -> String {
        if let Some(r) = &self.revert {
            let short: String = self.seed.revision.chars().take(12).collect();
            let pairs: Vec<String> = r
                .images
                .iter()
                .map(|(from, to)| format!("{from} -> {to}"))
                .collect();
            return format!(
                "fledge: revert {}/{} to the last promoted image\n\nThe rollout of {} was rolled back: {}\n{}\n\nFledge-Canary: {}/{}\nFledge-Revision: {short}\nFledge-Result: rolled-back\n",
                self.namespace,
                self.canary,
                self.seed.new_images.join(", "),
                r.reason,
                pairs.join("\n"),
                self.namespace,
                self.canary
            );
        }
        let short: String = self.seed.revision.chars().take(12).collect();
        let what = match self.event.event.as_str() {
            "Started" => "rollout started".to_string(),
            "Promoted" => "promoted".to_string(),
            "RolledBack" => "rolled back".to_string(),
            other => other.to_lowercase(),
        };
        let mut m = format!(
            "fledge: {}/{} {what} ({})\n\n",
            self.namespace,
            self.canary,
            self.seed.new_images.join(", ")
        );
        for r in &self.event.reasons {
            m.push_str(&format!("- {r}\n"));
        }
        if !self.event.reasons.is_empty() {
            m.push('\n');
        }
        m.push_str(&format!(
            "Fledge-Canary: {}/{}\nFledge-Revision: {short}\n",
            self.namespace, self.canary
        ));
        if let Some(result) = RolloutRecord::result_of(&self.event.event) {
            m.push_str(&format!("Fledge-Result: {result}\n"));
        }
        m
    }
}

/// 16 hex digits of the SHA-256 of `parts` (each followed by a NUL, so that no two lists of
/// parts run together the same way).
fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The queue entry's name: the same record always gets the same name.
fn entry_name(r: &QueuedRecord) -> String {
    let hex = short_hash(&[
        &r.namespace,
        &r.canary,
        &r.file,
        &r.event.event,
        &r.event.time,
    ]);
    format!("fledge-git-{}-{hex}", r.seed.start_time_key())
}

impl RolloutRecord {
    fn start_time_key(&self) -> String {
        ledger::file_time(&self.start_time).to_lowercase()
    }
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
            start_time: at.clone(),
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
pub async fn enqueue(client: &Client, record: &QueuedRecord) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &record.namespace);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(entry_name(record)),
            labels: Some(BTreeMap::from([
                (QUEUE_LABEL.to_string(), "true".to_string()),
                ("fledge.dev/canary".to_string(), record.canary.clone()),
            ])),
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
    let list = match api
        .list(&ListParams::default().labels(&format!("{QUEUE_LABEL}=true")))
        .await
    {
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
        match write(client, settings, &record, metrics).await {
            Ok(outcome) => {
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

/// Writes one record to its repository.
async fn write(
    client: &Client,
    settings: &GitSettings,
    record: &QueuedRecord,
    metrics: &crate::metrics::Metrics,
) -> Result<repo::Committed, GitError> {
    let auth = credentials(client, &record.namespace, &record.repository).await?;
    let branch = record
        .repository
        .branch
        .clone()
        .unwrap_or_else(|| "main".into());
    let remote = Remote {
        url: record.repository.url.clone(),
        branch: branch.clone(),
        auth,
    };
    let key = short_hash(&[&remote.url, &branch]);
    let wd = Workdir::new(
        settings.workdir.join(&key).join("tree"),
        settings.workdir.join(&key).join("keys"),
        remote,
        settings.identity.clone(),
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
        return wd
            .commit_to(&record.message(), 8, r.push_branch.as_deref(), &change)
            .await;
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
    let outcome = wd.commit(&record.message(), 8, &change).await?;
    if matches!(outcome, repo::Committed::Pushed(_)) {
        dora_figures(&wd, &record.file, metrics).await;
    }
    Ok(outcome)
}

/// Observes the DORA figures of a rollout whose ledger record just ended.
async fn dora_figures(wd: &Workdir, file: &str, metrics: &crate::metrics::Metrics) {
    let Some(r) = wd
        .read(file)
        .and_then(|t| RolloutRecord::from_yaml(&t).ok())
    else {
        return;
    };
    let Some(end) = r
        .end_time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return;
    };
    match r.result.as_deref() {
        Some("promoted") => {
            if let Some(t) = &r.trigger
                && let Some(at) = wd.commit_time(&t.commit).await
            {
                metrics.lead_time((end - at).get_seconds() as f64);
            }
        }
        Some("rolled-back") => {
            if let Some(first) = r
                .first_failure_time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            {
                metrics.time_to_restore((end - first).get_seconds() as f64);
            }
        }
        _ => {}
    }
}

/// How long each git command of a ledger read may take: the read holds up the Canary's
/// initialization, which never waits long for Git.
const LEDGER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Ledger reads share working copies; one at a time (they happen only while a Canary
/// initializes without its primary, e.g. on a rebuilt cluster).
static LEDGER_READS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let branch = repository.branch.clone().unwrap_or_else(|| "main".into());
    let key = short_hash(&[&repository.url, &branch]);
    let _one_at_a_time = LEDGER_READS.lock().await;
    let wd = Workdir::new(
        settings.workdir.join(&key).join("read"),
        settings.workdir.join(&key).join("read-keys"),
        Remote {
            url: repository.url.clone(),
            branch,
            auth,
        },
        settings.identity.clone(),
    )
    .with_timeout(LEDGER_READ_TIMEOUT);
    if let Err(e) = wd.sync().await {
        return LedgerView::Unreadable(e.to_string());
    }
    let dir = wd.path().join(gitops.ledger_path()).join(&ns).join(&name);
    let mut promoted: Vec<LedgerRevision> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            match RolloutRecord::from_yaml(&text) {
                Ok(r) => Some(r),
                Err(err) => {
                    warn!(file = %e.path().display(), error = %err, "unreadable ledger file left out");
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
        .collect();
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
