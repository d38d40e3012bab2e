//! Metrics providers behind the [`MetricsProvider`] seam: one query in, one finite number or a
//! typed failure out ([`MetricOutcome`]). One file per provider; [`provider_for`] picks one by
//! the MetricTemplate's `spec.provider.type`.
//!
//! Adding a provider: one file with a type implementing [`MetricsProvider`] and a constructor
//! from [`ProviderConfig`], one line in [`PROVIDERS`], and one line in the conformance suite
//! (`tests/conformance.rs`) saying how its server answers each case.
#![forbid(unsafe_code)]

pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod egress;
pub mod externalmetrics;
pub mod graphite;
mod http;
pub mod influxdb;
pub mod keptn;
mod kubeapi;
pub mod newrelic;
pub mod prometheus;
pub mod splunk;
pub mod stackdriver;

use std::collections::BTreeMap;
use std::time::Duration;

use fledge_core::MetricOutcome;
use url::Url;

/// Where and how to reach one metrics server, as a MetricTemplate's `spec.provider` (and its
/// Secret) say. Equal configurations share one client and one online check.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProviderConfig {
    /// `spec.provider.type`, e.g. `prometheus`.
    pub kind: String,
    /// The server's base URL (`spec.provider.address`, the Canary's `spec.metricsServer` or the
    /// controller's `--metrics-server`); a provider may also read one from its Secret.
    pub address: String,
    /// Extra request headers (`spec.provider.headers`).
    pub headers: Vec<(String, String)>,
    /// The provider's Secret (`spec.provider.secretRef`), when it has one.
    pub secret: Option<SecretData>,
    /// Skip TLS certificate verification (`spec.provider.insecureSkipVerify`).
    pub insecure_skip_verify: bool,
    /// The cloud region of the provider's API (`spec.provider.region`, for CloudWatch).
    pub region: Option<String>,
}

/// The data of a provider's Secret: each provider reads the keys Flagger's documentation names
/// for it. Never printed.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SecretData {
    /// `namespace/name` of the Secret, for messages.
    pub name: String,
    /// Its keys and values.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl SecretData {
    /// The value of `key` as trimmed text, when it is there and not empty.
    pub fn text(&self, key: &str) -> Option<String> {
        self.data
            .get(key)
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The values of `keys`, each required: the error names the Secret and the missing keys
    /// (never a value) and says what `provider` needs.
    pub fn required(&self, provider: &str, keys: &[&str]) -> Result<Vec<String>, String> {
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| self.text(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "Secret {} (spec.provider.secretRef) has no {}; the {provider} provider reads {}",
                self.name,
                missing.join(" and no "),
                keys.join(", ")
            ));
        }
        Ok(keys.iter().filter_map(|k| self.text(k)).collect())
    }

    /// The raw value of `key`.
    pub fn bytes(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }
}

impl ProviderConfig {
    /// The values of `keys` in the provider's Secret, each required (see
    /// [`SecretData::required`]); without a Secret, the error says to name one.
    pub fn credentials(&self, provider: &str, keys: &[&str]) -> Result<Vec<String>, String> {
        match &self.secret {
            Some(s) => s.required(provider, keys),
            None => Err(format!(
                "the {provider} provider needs spec.provider.secretRef naming a Secret with the keys {}",
                keys.join(", ")
            )),
        }
    }
}

impl std::fmt::Debug for ProviderConfig {
    // Never prints credentials or header values (they often carry tokens).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("address", &shown(&self.address))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("secret", &self.secret.as_ref().map(|s| &s.name))
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("region", &self.region)
            .finish()
    }
}

/// One metrics server, ready to query.
#[async_trait::async_trait]
pub trait MetricsProvider: Send + Sync {
    /// Whether the server answers at all; `Err` says why not, without secrets. Checked once per
    /// server before its queries run, so that a server that is down fails each of its metrics
    /// with that reason.
    async fn online(&self) -> Result<(), String> {
        Ok(())
    }

    /// Runs one query: exactly one finite number, or a typed failure that says which (no data,
    /// several series, a refused query, unreachable, denied, timed out).
    async fn query(&self, query: &str) -> MetricOutcome;

    /// Runs one query over the last `interval` (the metric's `interval`), for the providers whose
    /// API takes the time range apart from the query (Datadog, New Relic, Dynatrace, Splunk, as
    /// in Flagger). The others have the range in the query itself and run [`Self::query`].
    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let _ = interval;
        self.query(query).await
    }

    /// Runs one query as a range query over the `range` up to `end` (seconds since the Unix
    /// epoch, or now) and gives every value of every series it returned (none when it returned
    /// no series), for a statistical judgement, which compares the canary's values with a
    /// baseline's. A provider without range queries says so.
    async fn samples(
        &self,
        query: &str,
        range: Duration,
        end: Option<i64>,
    ) -> Result<Vec<f64>, MetricOutcome> {
        let _ = (query, range, end);
        Err(MetricOutcome::Error(
            "this metrics provider has no range query in fledge yet, and a statistical judgement \
             (a metric with judge) needs one; use a prometheus MetricTemplate"
                .into(),
        ))
    }

    /// Runs one query as it would have answered at a past time (seconds since the Unix epoch),
    /// for `fledge replay`. A provider that cannot look back says so.
    async fn query_at(&self, query: &str, unix_seconds: i64) -> MetricOutcome {
        let _ = (query, unix_seconds);
        MetricOutcome::Error(
            "this metrics provider cannot evaluate a query at a past time, so fledge replay cannot use it".into(),
        )
    }
}

/// What a provider is built with besides its configuration.
#[derive(Clone)]
pub struct Context {
    /// Every request of the provider gives up after this long.
    pub timeout: Duration,
    /// The cluster the controller works on, for the providers that read it (`keptn`).
    pub cluster: Option<Cluster>,
}

/// The controller's own Kubernetes client, and how messages name its API server.
#[derive(Clone)]
pub struct Cluster {
    /// The client (with the controller's identity, rate limits and timeouts).
    pub client: kube::Client,
    /// The API server's address as messages show it (see [`shown`]); empty when unknown.
    pub shown: String,
}

impl From<Duration> for Context {
    fn from(timeout: Duration) -> Context {
        Context {
            timeout,
            cluster: None,
        }
    }
}

/// Builds a provider from its configuration; the error is for people and holds no secret.
pub type Constructor = fn(&ProviderConfig, &Context) -> Result<Box<dyn MetricsProvider>, String>;

/// The providers this build has, by `spec.provider.type`.
pub const PROVIDERS: &[(&str, Constructor)] = &[
    ("prometheus", prometheus::Prometheus::boxed),
    ("datadog", datadog::Datadog::boxed),
    ("newrelic", newrelic::NewRelic::boxed),
    ("dynatrace", dynatrace::Dynatrace::boxed),
    ("graphite", graphite::Graphite::boxed),
    ("influxdb", influxdb::InfluxDb::boxed),
    ("splunk", splunk::Splunk::boxed),
    ("cloudwatch", cloudwatch::CloudWatch::boxed),
    ("stackdriver", stackdriver::Stackdriver::boxed),
    ("keptn", keptn::Keptn::boxed),
    ("externalmetrics", externalmetrics::ExternalMetrics::boxed),
];

/// The names of the providers this build has.
pub fn provider_names() -> Vec<&'static str> {
    PROVIDERS.iter().map(|(name, _)| *name).collect()
}

/// The provider for `cfg`, whose every request gives up after the context's timeout (a
/// [`Duration`] is a context without a cluster). A type this build does not have is a
/// [`MetricOutcome::Error`] naming the ones it has; a configuration the provider cannot use (a
/// bad address, incomplete credentials) is one too.
pub fn provider_for(
    cfg: &ProviderConfig,
    ctx: impl Into<Context>,
) -> Result<Box<dyn MetricsProvider>, MetricOutcome> {
    let ctx = ctx.into();
    let Some((_, build)) = PROVIDERS.iter().find(|(name, _)| *name == cfg.kind) else {
        return Err(MetricOutcome::Error(format!(
            "spec.provider.type {:?} is not supported by fledge yet; the metrics providers available are: {}",
            cfg.kind,
            provider_names().join(", ")
        )));
    };
    build(cfg, &ctx).map_err(MetricOutcome::Error)
}

/// The address as it may appear in Events and logs: scheme, host and port only (no user
/// information, path or query, which can carry secrets).
pub fn shown(address: &str) -> String {
    match Url::parse(address) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => format!("{}://", u.scheme()),
        },
        Err(_) => "an unparsable address".into(),
    }
}
