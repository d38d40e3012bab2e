//! [`Alerts`]: from the engine's `Notify` actions to messages in background queues.
//!
//! The reconcile only builds the message, drops it when the Canary sent the same one lately,
//! picks the alerts whose severity it meets, and puts it on a bounded queue: it never waits for
//! the API server or a provider. One dispatcher task resolves the AlertProviders (cached for a
//! short while) in the order the messages came, and hands each body to the queue of its
//! destination; one worker per destination posts them in order. A provider that hangs holds up
//! only its own queue; a full queue drops the message, logged and counted.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fledge_api::{AlertProviderSpec, Canary, CanaryStatus};
use fledge_core::{NotifyKind, Severity};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, Resource, ResourceExt};
use reqwest::Url;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::resolve::{self, ResolveError, Resolved};
use super::{DeliveryPolicy, Message, deliver, redact_url};
use crate::events::Recorder;
use crate::metrics::Metrics;

/// How long a resolved AlertProvider is reused before it is read again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
/// How long a message sent for a Canary suppresses the same message.
const REPEAT_WINDOW: Duration = Duration::from_secs(3600);
/// How many recent messages are remembered per Canary.
const RECENT_PER_CANARY: usize = 16;
/// Messages waiting for the dispatcher.
const DISPATCH_QUEUE: usize = 4096;
/// Messages waiting per destination.
const DESTINATION_QUEUE: usize = 256;

/// The controller-wide provider used by Canaries that declare no alerts (Flagger's
/// `-slack-url` and friends). The address is a secret: `Debug` shows scheme and host only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DefaultProvider {
    /// Provider type.
    pub kind: String,
    /// Webhook URL.
    pub address: String,
    /// Proxy URL.
    pub proxy: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Sender name.
    pub username: Option<String>,
    /// Lowest severity sent.
    pub severity: Option<Severity>,
    /// Link template (`{namespace}`, `{name}`).
    pub link_template: Option<String>,
    /// Whether traffic steps are sent (default: only for `webhook`).
    pub traffic_steps: Option<bool>,
}

impl std::fmt::Debug for DefaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultProvider")
            .field("kind", &self.kind)
            .field("address", &redact_url(&self.address))
            .field("severity", &self.severity)
            .finish_non_exhaustive()
    }
}

impl DefaultProvider {
    fn spec(&self) -> AlertProviderSpec {
        AlertProviderSpec {
            r#type: self.kind.clone(),
            channel: self.channel.clone(),
            username: self.username.clone(),
            address: Some(self.address.clone()),
            proxy: self.proxy.clone(),
            secret_ref: None,
            link_template: self.link_template.clone(),
            traffic_steps: self.traffic_steps,
        }
    }

    /// Checks the flags at start: the error names the flag and shows no secret.
    pub fn check(&self) -> Result<(), String> {
        resolve::from_spec("default", &self.spec(), None)
            .map(|_| ())
            .map_err(|e| match e {
                ResolveError::Invalid { field, message, .. } => {
                    let flag = match field.as_str() {
                        "spec.type" => "--alert-type",
                        "spec.address" => "--alert-url",
                        "spec.proxy" => "--alert-proxy",
                        "spec.linkTemplate" => "--alert-link-template",
                        other => other,
                    };
                    format!("{flag}: {message}")
                }
                other => other.to_string(),
            })
    }
}

/// Settings of chat alerts.
#[derive(Clone, Debug, Default)]
pub struct AlertSettings {
    /// The provider of Canaries without alerts.
    pub default: Option<DefaultProvider>,
    /// Delivery timeouts and retries.
    pub policy: DeliveryPolicy,
    /// The cluster's name, given in every alert (`--cluster-name`).
    pub cluster: Option<String>,
    /// Send nothing through AlertProviders in another namespace than the Canary's
    /// (`--no-cross-namespace-refs`; the engine also reports such a reference as invalid).
    pub no_cross_namespace_refs: bool,
}

/// Where one message goes: an AlertProvider with the alert's name, or the default.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Provider {
        alert: String,
        namespace: String,
        name: String,
    },
    Default,
}

struct Job {
    message: Message,
    targets: Vec<Target>,
    regarding: ObjectReference,
}

struct Delivery {
    body: serde_json::Value,
    destination: super::Destination,
    http: reqwest::Client,
    provider: String,
    kind: &'static str,
    canary: String,
    message_kind: NotifyKind,
}

/// Sends chat alerts for the controller.
pub struct Alerts {
    tx: mpsc::Sender<Job>,
    recent: Mutex<Recent>,
    has_default: Option<Severity>,
    metrics: Arc<Metrics>,
    cluster: Option<String>,
    no_cross_namespace_refs: bool,
}

impl Alerts {
    /// Starts the dispatcher (needs a Tokio runtime).
    pub fn start(
        client: Client,
        reporter: Reporter,
        settings: AlertSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Alerts> {
        let (tx, rx) = mpsc::channel(DISPATCH_QUEUE);
        let has_default = settings
            .default
            .as_ref()
            .map(|d| d.severity.unwrap_or(Severity::Info));
        let cluster = settings.cluster.clone();
        let no_cross_namespace_refs = settings.no_cross_namespace_refs;
        let dispatcher = Dispatcher {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics: metrics.clone(),
            cache: HashMap::new(),
            clients: HashMap::new(),
            queues: HashMap::new(),
        };
        tokio::spawn(dispatcher.run(rx));
        Arc::new(Alerts {
            tx,
            recent: Mutex::new(Recent::default()),
            has_default,
            metrics,
            cluster,
            no_cross_namespace_refs,
        })
    }

    /// Sends `message` about `canary` through its alerts (or the default provider). Returns at
    /// once; delivery happens in the background.
    pub fn send(&self, canary: &Canary, mut message: Message) {
        message.cluster.clone_from(&self.cluster);
        let mut targets = targets(canary, message.severity, self.has_default);
        if self.no_cross_namespace_refs {
            confine(&mut targets, &canary.namespace().unwrap_or_default());
        }
        if targets.is_empty() {
            return;
        }
        let key = repeat_key(canary, &message);
        let fresh = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first_time(&canary.uid().unwrap_or_default(), key, Instant::now());
        if !fresh {
            debug!(kind = ?message.kind, "alert already sent for this state; not repeated");
            return;
        }
        let job = Job {
            regarding: canary.object_ref(&()),
            message,
            targets,
        };
        if let Err(e) = self.tx.try_send(job) {
            let kind = match &e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "stopped",
            };
            warn!(
                reason = kind,
                "alert dropped: the alert dispatcher cannot take it"
            );
            self.metrics.alert_failed("any", kind);
        }
    }
}

/// The alerts of `canary` that a message of `severity` reaches, or the default provider when
/// the Canary declares none (`default`: its lowest severity).
fn targets(canary: &Canary, severity: Severity, default: Option<Severity>) -> Vec<Target> {
    let alerts = canary
        .spec
        .analysis
        .as_ref()
        .and_then(|a| a.alerts.as_ref())
        .filter(|a| !a.is_empty());
    let ns = canary.namespace().unwrap_or_default();
    match alerts {
        None => match default {
            Some(min) if severity >= min => vec![Target::Default],
            _ => Vec::new(),
        },
        Some(alerts) => alerts
            .iter()
            .filter(|a| {
                // An unknown severity is reported by validation; until fixed it sends all.
                let min = Severity::parse(a.severity.as_deref().unwrap_or_default())
                    .unwrap_or(Severity::Info);
                severity >= min
            })
            .map(|a| Target::Provider {
                alert: a.name.clone(),
                namespace: a
                    .provider_ref
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| ns.clone()),
                name: a.provider_ref.name.clone(),
            })
            .collect(),
    }
}

/// Drops the AlertProviders of other namespaces than `ns`.
fn confine(targets: &mut Vec<Target>, ns: &str) {
    targets.retain(|t| match t {
        Target::Provider { namespace, .. } => namespace == ns,
        Target::Default => true,
    });
}

/// What makes two messages "the same" for a Canary: kind, severity, text, and the revision and
/// rollout they are about.
fn repeat_key(canary: &Canary, m: &Message) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.kind.hash(&mut h);
    m.severity.hash(&mut h);
    m.text.hash(&mut h);
    m.revision.hash(&mut h);
    canary
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.start_time.as_ref())
        .map(|t| t.0.as_second())
        .hash(&mut h);
    h.finish()
}

/// The messages each Canary sent lately.
#[derive(Default)]
pub(crate) struct Recent {
    by_canary: HashMap<String, VecDeque<(u64, Instant)>>,
    calls: u64,
}

impl Recent {
    /// Whether `key` is new for `canary`; a repeat within the window is not, and refreshes it
    /// (a Canary stuck in one state stays quiet for as long as it repeats itself).
    pub(crate) fn first_time(&mut self, canary: &str, key: u64, now: Instant) -> bool {
        self.calls += 1;
        if self.calls.is_multiple_of(1024) {
            self.by_canary.retain(|_, q| {
                q.retain(|(_, t)| now.duration_since(*t) < REPEAT_WINDOW);
                !q.is_empty()
            });
        }
        let q = self.by_canary.entry(canary.to_string()).or_default();
        q.retain(|(_, t)| now.duration_since(*t) < REPEAT_WINDOW);
        if let Some(entry) = q.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = now;
            return false;
        }
        if q.len() >= RECENT_PER_CANARY {
            q.pop_front();
        }
        q.push_back((key, now));
        true
    }
}

/// Builds the message of a `Notify` action.
pub fn message(
    canary: &Canary,
    target: Option<&Deployment>,
    status: &CanaryStatus,
    checksum: String,
    severity: Severity,
    kind: NotifyKind,
    text: &str,
) -> Message {
    let containers = target
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.clone())
        .unwrap_or_default();
    let images = match containers.as_slice() {
        [one] => one.image.iter().cloned().collect(),
        many => many
            .iter()
            .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("")))
            .collect(),
    };
    let kind_of_target = canary
        .spec
        .target_ref
        .kind
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| fledge_api::defaults::TARGET_KIND.to_string());
    Message {
        namespace: canary.namespace().unwrap_or_default(),
        name: canary.name_any(),
        severity,
        kind,
        text: text.to_string(),
        phase: status.phase,
        target: format!("{kind_of_target}/{}", canary.spec.target_ref.name),
        images,
        revision: status.last_applied_spec.clone(),
        checksum,
        canary_weight: status.canary_weight,
        failed_checks: status.failed_checks,
        at: jiff::Timestamp::now(),
        cluster: None,
    }
}

struct Dispatcher {
    client: Client,
    recorder: Recorder,
    settings: AlertSettings,
    metrics: Arc<Metrics>,
    cache: HashMap<(String, String), (Instant, Arc<Resolved>)>,
    clients: HashMap<Option<Url>, reqwest::Client>,
    queues: HashMap<String, mpsc::Sender<Delivery>>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            for target in &job.targets {
                match self.resolve(target).await {
                    Ok(r) => self.enqueue(&r, &job.message),
                    Err(e) => self.report(&job, target, &e).await,
                }
            }
        }
    }

    async fn resolve(&mut self, target: &Target) -> Result<Arc<Resolved>, ResolveError> {
        let (namespace, name) = match target {
            Target::Default => {
                let Some(d) = &self.settings.default else {
                    return Err(ResolveError::NotFound("default".into()));
                };
                return resolve::from_spec("default", &d.spec(), None).map(Arc::new);
            }
            Target::Provider {
                namespace, name, ..
            } => (namespace.clone(), name.clone()),
        };
        let key = (namespace, name);
        if let Some((at, r)) = self.cache.get(&key)
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(r.clone());
        }
        let r = Arc::new(resolve::fetch(&self.client, &key.0, &key.1).await?);
        self.cache.insert(key, (Instant::now(), r.clone()));
        Ok(r)
    }

    fn enqueue(&mut self, r: &Resolved, message: &Message) {
        if !r.wants(message.kind) {
            return;
        }
        let body = r.notifier.payload(message, &r.options(message));
        let http = match self.http(r.destination.proxy.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                warn!(provider = %r.provider, error = %e, "alert not sent: cannot build an HTTP client for the proxy");
                self.metrics.alert_failed(r.notifier.kind(), "other");
                return;
            }
        };
        let delivery = Delivery {
            body,
            destination: r.destination.clone(),
            http,
            provider: r.provider.clone(),
            kind: r.notifier.kind(),
            canary: message.canary(),
            message_kind: message.kind,
        };
        let key = r.queue_key();
        let metrics = self.metrics.clone();
        let policy = self.settings.policy;
        let tx = self.queues.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(DESTINATION_QUEUE);
            tokio::spawn(worker(rx, policy, metrics));
            tx
        });
        if tx.try_send(delivery).is_err() {
            warn!(provider = %r.provider, "alert dropped: the provider's queue is full (it is slow or down)");
            self.metrics.alert_failed(r.notifier.kind(), "queue_full");
        }
    }

    fn http(&mut self, proxy: Option<&Url>) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(c) = self.clients.get(&proxy.cloned()) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder().user_agent("fledge");
        if let Some(p) = proxy {
            b = b.proxy(reqwest::Proxy::all(p.clone())?);
        }
        let c = b.build()?;
        self.clients.insert(proxy.cloned(), c.clone());
        Ok(c)
    }

    /// A provider that cannot be used: a warning Event on the Canary naming the AlertProvider
    /// and the field, a log line, and the counter.
    async fn report(&self, job: &Job, target: &Target, e: &ResolveError) {
        let alert = match target {
            Target::Provider { alert, .. } => format!("alert {alert}: "),
            Target::Default => "default alert provider: ".into(),
        };
        self.metrics.alert_failed("any", "invalid_provider");
        warn!(canary = %job.message.canary(), error = %e, "{alert}alert not sent");
        if !e.is_user_error() {
            return;
        }
        let reason = match e {
            ResolveError::NotFound(_) => "AlertProviderNotFound",
            _ => "AlertProviderInvalid",
        };
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(format!("{alert}{e}").chars().take(1000).collect()),
            action: "Notify".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&ev, &job.regarding).await {
            warn!(error = %err, "cannot record Event");
        }
    }
}

async fn worker(mut rx: mpsc::Receiver<Delivery>, policy: DeliveryPolicy, metrics: Arc<Metrics>) {
    while let Some(d) = rx.recv().await {
        let report = deliver(&d.http, &d.destination, &d.body, &policy).await;
        match report.result {
            Ok(()) => {
                metrics.alert_sent(d.kind);
                info!(canary = %d.canary, provider = %d.provider, kind = ?d.message_kind,
                      attempts = report.attempts, "alert sent");
            }
            Err(e) => {
                metrics.alert_failed(d.kind, e.label());
                warn!(canary = %d.canary, provider = %d.provider,
                      host = %redact_url(d.destination.url.as_str()), attempts = report.attempts,
                      error = %e, "alert not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::{CanaryAlert, CanaryAnalysis, CrossNamespaceObjectReference};

    fn canary(alerts: Vec<(&str, Option<&str>, Option<&str>)>) -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("shop".into());
        c.spec.target_ref.name = "podinfo".into();
        c.spec.analysis = Some(CanaryAnalysis {
            alerts: Some(
                alerts
                    .into_iter()
                    .map(|(name, severity, ns)| CanaryAlert {
                        name: name.into(),
                        severity: severity.map(str::to_string),
                        provider_ref: CrossNamespaceObjectReference {
                            name: format!("{name}-provider"),
                            namespace: ns.map(str::to_string),
                            ..Default::default()
                        },
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        c
    }

    fn names(t: &[Target]) -> Vec<String> {
        t.iter()
            .map(|t| match t {
                Target::Provider {
                    namespace, name, ..
                } => format!("{namespace}/{name}"),
                Target::Default => "default".into(),
            })
            .collect()
    }

    #[test]
    fn a_message_reaches_alerts_whose_severity_it_meets() {
        let c = canary(vec![
            ("all", None, None),
            ("warnings", Some("warn"), Some("ops")),
            ("errors", Some("error"), Some("")),
        ]);
        assert_eq!(
            names(&targets(&c, Severity::Info, Some(Severity::Info))),
            vec!["shop/all-provider"]
        );
        assert_eq!(
            names(&targets(&c, Severity::Warn, None)),
            vec!["shop/all-provider", "ops/warnings-provider"]
        );
        assert_eq!(
            names(&targets(&c, Severity::Error, None)),
            vec![
                "shop/all-provider",
                "ops/warnings-provider",
                "shop/errors-provider"
            ]
        );
    }

    #[test]
    fn confined_alerts_go_only_to_providers_of_the_canarys_namespace() {
        let c = canary(vec![
            ("all", None, None),
            ("warnings", Some("warn"), Some("ops")),
            ("errors", Some("error"), Some("")),
        ]);
        let mut t = targets(&c, Severity::Error, None);
        confine(&mut t, "shop");
        assert_eq!(names(&t), vec!["shop/all-provider", "shop/errors-provider"]);
    }

    #[test]
    fn the_default_provider_serves_canaries_without_alerts() {
        let c = canary(vec![]);
        assert_eq!(
            names(&targets(&c, Severity::Info, Some(Severity::Info))),
            vec!["default"]
        );
        assert!(targets(&c, Severity::Warn, Some(Severity::Error)).is_empty());
        assert!(targets(&c, Severity::Error, None).is_empty());
        let with_alerts = canary(vec![("all", None, None)]);
        assert_eq!(
            names(&targets(
                &with_alerts,
                Severity::Error,
                Some(Severity::Info)
            )),
            vec!["shop/all-provider"],
            "declared alerts replace the default"
        );
    }

    #[test]
    fn a_repeated_message_is_sent_once_while_it_repeats() {
        let mut r = Recent::default();
        let t0 = Instant::now();
        assert!(r.first_time("uid-1", 7, t0));
        for i in 1..100u64 {
            // The same state every interval for 100 intervals of a minute: quiet.
            assert!(!r.first_time("uid-1", 7, t0 + Duration::from_secs(60 * i)));
        }
        assert!(r.first_time("uid-2", 7, t0), "per Canary");
        assert!(r.first_time("uid-1", 8, t0), "another message");
        // After a quiet hour the same message is news again.
        assert!(r.first_time("uid-1", 8, t0 + REPEAT_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn the_same_text_in_another_rollout_or_revision_is_not_a_repeat() {
        let c = canary(vec![]);
        let m = crate::notify::fixture::message();
        let mut other_rev = m.clone();
        other_rev.revision = Some("ffff".into());
        assert_ne!(repeat_key(&c, &m), repeat_key(&c, &other_rev));
        let mut later = c.clone();
        later.status = Some(CanaryStatus {
            rollout: Some(fledge_api::RolloutProgress {
                start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_ne!(repeat_key(&c, &m), repeat_key(&later, &m));
        assert_eq!(repeat_key(&c, &m), repeat_key(&c, &m.clone()));
    }

    #[test]
    fn default_provider_flags_are_checked_without_showing_the_url() {
        let d = DefaultProvider {
            kind: "slack".into(),
            address: "hooks.slack.com/services/SECRET".into(),
            ..Default::default()
        };
        let e = d.check().unwrap_err();
        assert!(e.starts_with("--alert-url: "), "{e}");
        assert!(!e.contains("SECRET") && !format!("{d:?}").contains("SECRET"));
        let ok = DefaultProvider {
            kind: "msteams".into(),
            address: "https://example.webhook.office.com/webhookb2/x".into(),
            ..Default::default()
        };
        assert_eq!(ok.check(), Ok(()));
    }

    #[test]
    fn a_message_names_the_targets_images() {
        let mut c = canary(vec![]);
        c.spec.target_ref.kind = Some("Deployment".into());
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "podinfo"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}
        }))
        .unwrap();
        let status = CanaryStatus {
            last_applied_spec: Some("abc".into()),
            canary_weight: 20,
            ..Default::default()
        };
        let m = message(
            &c,
            Some(&d),
            &status,
            "sum".into(),
            Severity::Warn,
            NotifyKind::CheckFailed,
            "t",
        );
        assert_eq!(m.images, vec!["ghcr.io/stefanprodan/podinfo:6.0.1"]);
        assert_eq!(m.target, "Deployment/podinfo");
        assert_eq!(m.revision.as_deref(), Some("abc"));
        assert_eq!(m.canary(), "shop/podinfo");
    }
}
