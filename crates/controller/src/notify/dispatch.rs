//! [`Alerts`]: from the engine's `Notify` actions to messages in background queues.
//!
//! The engine decides where each alert goes and drops repeats ([`fledge_core::alerts`]); the
//! reconcile only builds the message and puts it on a bounded queue: it never waits for the API
//! server or a provider. One dispatcher task resolves the AlertProviders (cached for a
//! short while) in the order the messages came, and hands each body to the queue of its
//! destination; one worker per destination posts them in order. A provider that hangs holds up
//! only its own queue; a full queue drops the message, logged and counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use fledge_api::{AlertProviderSpec, Canary, CanaryStatus};
use fledge_core::alerts::AlertTarget;
use fledge_core::egress::Purpose;
use fledge_core::{NotifyKind, Severity};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, Resource, ResourceExt};
use reqwest::Url;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::resolve::{self, ResolveError, Resolved};
use super::{DeliveryPolicy, Message, deliver, redact_url};
use crate::events::Recorder;
use crate::metrics::Metrics;

/// How long a resolved AlertProvider is reused before it is read again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);
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
    /// The dashboard's base URL (`--dashboard-url`): messages of providers without a
    /// `linkTemplate` of their own link to the Canary's page there.
    pub dashboard_url: Option<String>,
}

/// The Canary's page on the dashboard at `base` (the path `kubectl fledge dashboard` serves).
pub fn dashboard_link(base: &str, namespace: &str, name: &str) -> String {
    format!("{}/canaries/{namespace}/{name}", base.trim_end_matches('/'))
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
    has_default: Option<Severity>,
    metrics: Arc<Metrics>,
    cluster: Option<String>,
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
            has_default,
            metrics,
            cluster,
        })
    }

    /// The lowest severity of the default provider, if there is one (an observation for the
    /// engine, which decides where alerts go).
    pub fn default_severity(&self) -> Option<Severity> {
        self.has_default
    }

    /// Sends `message` about `canary` to `to`, as the engine decided. Returns at once; delivery
    /// happens in the background.
    pub fn send(&self, canary: &Canary, mut message: Message, to: &[AlertTarget]) {
        message.cluster.clone_from(&self.cluster);
        let ns = canary.namespace().unwrap_or_default();
        let targets: Vec<Target> = to.iter().map(|t| target(t, &ns)).collect();
        if targets.is_empty() {
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

/// Where an engine's alert target is delivered (an AlertProvider without a namespace is in
/// the Canary's).
fn target(t: &AlertTarget, canary_ns: &str) -> Target {
    match t {
        AlertTarget::Provider {
            alert,
            namespace,
            name,
        } => Target::Provider {
            alert: alert.clone(),
            namespace: namespace.clone().unwrap_or_else(|| canary_ns.to_string()),
            name: name.clone(),
        },
        AlertTarget::Default => Target::Default,
    }
}

/// Builds the message of a `Notify` action.
pub fn message(
    canary: &Canary,
    target: Option<&crate::workload::Workload>,
    status: &CanaryStatus,
    checksum: String,
    severity: Severity,
    kind: NotifyKind,
    text: &str,
) -> Message {
    let containers = target.map(|d| d.containers.as_slice()).unwrap_or_default();
    let images = match containers {
        [(_, image)] => image.iter().cloned().collect(),
        many => many
            .iter()
            .map(|(name, image)| format!("{name}={}", image.as_deref().unwrap_or("")))
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

/// Reads of an AlertProvider that did not reach the API server: four more, from 200 ms apart
/// (about 6 s in all; the dispatcher handles one alert at a time).
fn unavailable_retries() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(4)
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
        let policy = fledge_metrics_providers::egress::policy();
        // A read cut on the way (a dropped connection, an API server restarting) is tried
        // again: without it the alert would be lost.
        let fetch = || resolve::fetch(&self.client, &key.0, &key.1, &policy);
        let fetched = fetch
            .retry(unavailable_retries())
            .when(|e: &ResolveError| !e.is_user_error())
            .await;
        match fetched {
            Ok(r) => {
                let r = Arc::new(r);
                self.cache.insert(key, (Instant::now(), r.clone()));
                Ok(r)
            }
            // Still out of reach: the provider as last read, however old, rather than no alert.
            Err(e) if !e.is_user_error() && self.cache.contains_key(&key) => {
                warn!(error = %e, "the AlertProvider as last read is used");
                Ok(self.cache[&key].1.clone())
            }
            Err(e) => Err(e),
        }
    }

    fn enqueue(&mut self, r: &Resolved, message: &Message) {
        if !r.wants(message.kind) {
            return;
        }
        let mut options = r.options(message);
        if options.link.is_none()
            && let Some(base) = &self.settings.dashboard_url
        {
            options.link = Some(dashboard_link(base, &message.namespace, &message.name));
        }
        let body = r.notifier.payload(message, &options);
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
        let mut b = fledge_metrics_providers::egress::guard(
            reqwest::Client::builder(),
            fledge_metrics_providers::egress::policy(),
            Purpose::Alert,
        )
        .user_agent("fledge");
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

    fn canary() -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("shop".into());
        c.spec.target_ref.name = "podinfo".into();
        c
    }

    #[test]
    fn the_dashboard_link_is_the_canarys_page() {
        assert_eq!(
            dashboard_link("https://fledge.example.com/", "shop", "podinfo"),
            "https://fledge.example.com/canaries/shop/podinfo"
        );
        assert_eq!(
            dashboard_link("http://127.0.0.1:7979", "a", "b"),
            "http://127.0.0.1:7979/canaries/a/b"
        );
    }

    #[test]
    fn engine_targets_name_the_canarys_namespace_when_they_name_none() {
        let own = AlertTarget::Provider {
            alert: "a".into(),
            namespace: None,
            name: "p".into(),
        };
        assert_eq!(
            target(&own, "shop"),
            Target::Provider {
                alert: "a".into(),
                namespace: "shop".into(),
                name: "p".into()
            }
        );
        assert_eq!(target(&AlertTarget::Default, "shop"), Target::Default);
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
        let mut c = canary();
        c.spec.target_ref.kind = Some("Deployment".into());
        let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
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
            Some(&crate::workload::Workload::from_deployment(d.clone())),
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

    /// A stand-in API server whose first `cut` requests fail on the way, then serves the
    /// AlertProvider `shop/chat` for every request (its status write included).
    fn flaky_api(cut: usize) -> Client {
        use http_body_util::Full;
        use hyper::body::Bytes;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let seen = Arc::new(AtomicUsize::new(0));
        crate::test_support::stand_in_api(move |_req: hyper::Request<kube::client::Body>| {
            let n = seen.fetch_add(1, SeqCst);
            async move {
                if n < cut {
                    return Err("connection closed before message completed".into());
                }
                let provider = serde_json::json!({
                    "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
                    "metadata": {"name": "chat", "namespace": "shop"},
                    "spec": {"type": "slack", "address": "https://chat.example.com/hook"}
                });
                Ok(hyper::Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from(provider.to_string())))?)
            }
        })
    }

    fn dispatcher(client: Client) -> Dispatcher {
        let reporter = Reporter {
            controller: "fledge".into(),
            instance: None,
        };
        Dispatcher {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings: AlertSettings::default(),
            metrics: Arc::new(Metrics::new()),
            cache: HashMap::new(),
            clients: HashMap::new(),
            queues: HashMap::new(),
        }
    }

    fn chat() -> Target {
        Target::Provider {
            alert: "chat".into(),
            namespace: "shop".into(),
            name: "chat".into(),
        }
    }

    #[tokio::test]
    async fn an_alert_provider_read_cut_on_the_way_is_read_again() {
        let mut d = dispatcher(flaky_api(2));
        let r = d
            .resolve(&chat())
            .await
            .expect("resolved after two cut reads");
        assert_eq!(r.provider, "shop/chat");
    }

    #[tokio::test]
    async fn an_alert_provider_out_of_reach_is_used_as_last_read() {
        let mut d = dispatcher(flaky_api(0));
        d.resolve(&chat()).await.unwrap();
        // The cached reading expires, and the API server is out of reach from then on.
        d.client = flaky_api(usize::MAX);
        let (_, r) = d.cache.values_mut().next().unwrap();
        let r = r.clone();
        let key = ("shop".to_string(), "chat".to_string());
        let old = Instant::now().checked_sub(RESOLVE_TTL * 2).unwrap();
        d.cache.insert(key, (old, r));
        let r = d.resolve(&chat()).await.expect("the provider as last read");
        assert_eq!(r.provider, "shop/chat");
        // Without a reading to fall back on, the error says the API server is out of reach.
        d.cache.clear();
        let e = d.resolve(&chat()).await.err().unwrap();
        assert!(!e.is_user_error(), "{e}");
    }
}
