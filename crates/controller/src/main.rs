//! `fledge`: the controller and its command-line tools.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fledge",
    version,
    about = "fledge: progressive delivery for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Check Canary, MetricTemplate and AlertProvider manifests before they merge (exit 0 all
    /// valid, 1 some invalid, 2 unreadable input). `-` reads standard input.
    Validate {
        /// YAML files (multi-document), directories (every `.yaml` and `.yml` file under them),
        /// or `-` for standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// DORA metrics from the Git ledger: deployment frequency, lead time for changes, change
    /// failure rate and time to restore, per Canary and overall, with their performance bands.
    Dora {
        /// The repository holding the ledger: a local working tree or a URL to clone.
        #[arg(long)]
        repo: String,
        /// The window, e.g. `30d`, `12h`.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Only the Canaries of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// The ledger directory in the repository.
        #[arg(long, default_value = fledge_api::gitops::DEFAULT_LEDGER_PATH)]
        ledger_path: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replay a Canary's analysis over a past window of its metrics: what it would have
    /// decided at each step and why. Reads the Canary, its MetricTemplates and their Secrets;
    /// changes nothing. Exit 0: would have promoted, 1: rolled back, 3: undecided, 4: paused
    /// (inconclusiveLimit), 2: error.
    Replay {
        /// The Canary.
        name: String,
        /// Its namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// The window's start: a time (RFC 3339, e.g. 2026-12-01T14:00:00Z) or how long ago
        /// (e.g. 2h).
        #[arg(long)]
        from: String,
        /// The window's end, the same way. Default: now.
        #[arg(long)]
        to: Option<String>,
        /// Another workload name for the templates' {{ target }} (a past release's).
        #[arg(long)]
        target: Option<String>,
        /// Where the queries go, as for `fledge run`.
        #[command(flatten)]
        analysis: AnalysisArgs,
    },
    /// Print the fledge CustomResourceDefinitions as one multi-document YAML stream.
    Crds {
        /// Write one file per CRD into this directory instead (as kept in `config/crd/`).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

/// Where metric queries go: `fledge run`'s and `fledge replay`'s flags.
#[derive(clap::Args)]
struct AnalysisArgs {
    /// The Prometheus server for the builtin metrics and for MetricTemplates without an address,
    /// when a Canary sets no `spec.metricsServer` (e.g. `http://prometheus.monitoring:9090`).
    #[arg(long)]
    metrics_server: Option<String>,
    /// Whose metrics the builtin checks of `gatewayapi` Canaries read: `app` (the application's
    /// `http_request_duration_seconds` by pod, as Flagger does) or `traefik` (Traefik's
    /// per-service metrics, when Traefik serves the Gateway).
    #[arg(long, default_value_t = fledge_controller::analysis::GatewayMetrics::App)]
    gateway_metrics: fledge_controller::analysis::GatewayMetrics,
    /// Seconds before a metric query (or a Prometheus online check) gives up.
    #[arg(long, default_value_t = 10)]
    metrics_query_timeout: u64,
}

impl AnalysisArgs {
    fn settings(&self) -> fledge_controller::analysis::AnalysisSettings {
        fledge_controller::analysis::AnalysisSettings {
            metrics_server: self.metrics_server.clone(),
            gateway_metrics: self.gateway_metrics,
            query_timeout: std::time::Duration::from_secs(self.metrics_query_timeout.max(1)),
            api_server: String::new(),
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// At most this many rollouts in progress at once, cluster-wide; others wait in `Waiting`
    /// (default: no limit).
    #[arg(long)]
    max_concurrent_rollouts: Option<usize>,
    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, default_value = "127.0.0.1:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Serve the web dashboard read-only on this address (no actions: those are
    /// `kubectl fledge dashboard`'s, as the user); off by default. It shows what the
    /// controller's ServiceAccount may read: put your own authentication in front of it.
    #[arg(long)]
    ui_addr: Option<std::net::SocketAddr>,
    /// Elect a leader through a `coordination.k8s.io` Lease, so that only one replica acts.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader-election Lease (with `--shard`, the shard's name is appended:
    /// `fledge-leader-a`).
    #[arg(long, default_value = "fledge-leader")]
    lease_name: String,
    /// Handle only the Canaries labelled `fledge.dev/shard=<SHARD>`: one of several
    /// controllers sharing the cluster, each with its own leader election.
    #[arg(long, value_name = "SHARD")]
    shard: Option<String>,
    /// With `--shard`: also handle every Canary without a `fledge.dev/shard` label. Exactly one
    /// shard should be the default, or unlabelled Canaries are handled by none.
    #[arg(long, requires = "shard")]
    default_shard: bool,
    /// Namespace of the leader-election Lease (default: the client's namespace).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Identity of this replica in the Lease (default: host name and process id).
    #[arg(long)]
    identity: Option<String>,
    /// Log format: `json` or `text`.
    #[arg(long, default_value = "json")]
    log_format: String,
    /// At most this many requests to the Kubernetes API server in flight at once; the others
    /// wait their turn (a watch counts until its response starts). The client opens one
    /// connection per request in flight, so this bounds the connections and their buffers when
    /// hundreds of Canaries act at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    kube_api_concurrency: u16,
    /// At most this many Canaries reconciled at once; the others wait their turn (0: no limit).
    /// Each reconcile in flight holds its request bodies and state (tens of KiB), so without a
    /// limit a thousand Canaries acting at once cost some 30 MiB more. A slow analysis (webhooks,
    /// metric queries) holds its slot while it runs: raise this when many Canaries have slow
    /// analyses and steps start late.
    #[arg(long, default_value_t = 128)]
    max_concurrent_reconciles: u16,
    /// Where the metric queries go.
    #[command(flatten)]
    analysis: AnalysisArgs,
    /// Author and committer name of fledge's commits (the Git ledger and reverts).
    #[arg(long, default_value = "fledge")]
    git_author_name: String,
    /// Author and committer email of fledge's commits.
    #[arg(long, default_value = "fledge@localhost")]
    git_author_email: String,
    /// Where fledge keeps its Git working copies (default: a directory in the system's temp
    /// directory); only a cache, the queue of records lives in the cluster.
    #[arg(long)]
    git_workdir: Option<std::path::PathBuf>,
    /// Seconds a ledger record or revert may wait for Git before an alert says so.
    #[arg(long, default_value_t = 900)]
    git_queue_alert_after: u64,
    /// A network the controller may connect to for webhooks, metrics providers and alerts even
    /// where its default refuses (link-local and cloud metadata addresses, and for webhooks the
    /// API server's own addresses), e.g. `169.254.169.254/32`; repeatable.
    #[arg(long = "allow-destination", value_name = "CIDR")]
    allow_destination: Vec<fledge_core::egress::Cidr>,
    /// A preset for clusters whose namespaces belong to different teams: a Canary may use only
    /// the MetricTemplates and AlertProviders (and so the Secrets) of its own namespace, as with
    /// `--no-cross-namespace-refs`.
    #[arg(long)]
    multi_tenant: bool,
    #[command(flatten)]
    gitops: GitOpsArgs,
    #[command(flatten)]
    alerts: AlertArgs,
    #[command(flatten)]
    compat: CompatArgs,
}

/// Flagger's controller flags, with Flagger's meaning, so that a Flagger installation's settings
/// carry over.
#[derive(clap::Args)]
struct CompatArgs {
    /// The traffic provider of Canaries that set no `spec.provider` (Flagger's
    /// `-mesh-provider`); without it, `gatewayapi:v1`.
    #[arg(long, value_name = "PROVIDER")]
    mesh_provider: Option<String>,
    /// The labels looked up, in this order, in a target's `spec.selector.matchLabels`; the first
    /// found is rewritten to `<value>-primary` on the primary (Flagger's `-selector-labels`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "app,name,app.kubernetes.io/name"
    )]
    selector_labels: Vec<String>,
    /// Prefixes of the target's labels copied to the primary, `*` for all (Flagger's
    /// `-include-label-prefix`; Flagger copies none by default, fledge all). An empty value copies
    /// none. Labels of Flux's `toolkit.fluxcd.io` are never copied.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    include_label_prefix: Vec<String>,
    /// Refuse MetricTemplate and AlertProvider references to another namespace than the
    /// Canary's (Flagger's `-no-cross-namespace-refs`): such a Canary gets `SpecValid=False` and
    /// a warning Event naming the reference.
    #[arg(long)]
    no_cross_namespace_refs: bool,
    /// The cluster's name, given in every alert (Flagger's `-cluster-name`).
    #[arg(long)]
    cluster_name: Option<String>,
    /// Every Event of every Canary is also posted to this URL with Flagger's event payload,
    /// unless the Canary has `event` webhooks of its own (Flagger's `-event-webhook`). A secret:
    /// prefer the environment variable `EVENT_WEBHOOK_URL` (Flagger's) to the flag.
    #[arg(long, env = "EVENT_WEBHOOK_URL", hide_env_values = true)]
    event_webhook: Option<String>,
    /// At most this long between two looks at a Canary when nothing changes (Flagger's
    /// `-control-loop-interval`, e.g. `10s`). Changes to Canaries and their workloads are seen
    /// at once through watches, and analysis steps run on `analysis.interval` in any case;
    /// without it an idle Canary is looked at again every `analysis.interval`.
    #[arg(long, value_name = "DURATION")]
    control_loop_interval: Option<String>,
    /// Least severe log level written: trace, debug, info, warn or error (Flagger's
    /// `-log-level`; `RUST_LOG`, when set, wins).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// A kubeconfig file to use instead of the in-cluster configuration (or `KUBECONFIG`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// At most this many requests a second to the Kubernetes API server, on average (Flagger's
    /// `-kube-api-qps`; 0: no limit, which is the default). `--kube-api-concurrency` caps the
    /// requests in flight in any case.
    #[arg(long, default_value_t = 0.0)]
    kube_api_qps: f64,
    /// How many requests may go at once above `--kube-api-qps` after a quiet spell (Flagger's
    /// `-kube-api-burst`; default: the QPS rounded up).
    #[arg(long)]
    kube_api_burst: Option<u32>,
}

impl CompatArgs {
    /// The provider default, checked against the providers fledge routes with.
    fn mesh_provider(&self) -> anyhow::Result<Option<String>> {
        let Some(p) = self.mesh_provider.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if p.is_empty() {
            return Ok(None);
        }
        use fledge_api::validate::{SUPPORTED_PROVIDERS, UNSUPPORTED_FLAGGER_PROVIDERS};
        if SUPPORTED_PROVIDERS.contains(&p) {
            return Ok(Some(p.to_string()));
        }
        let why = if UNSUPPORTED_FLAGGER_PROVIDERS.contains(&p) {
            "is a Flagger provider fledge does not route with yet"
        } else {
            "is not a traffic provider"
        };
        anyhow::bail!(
            "--mesh-provider: {p:?} {why}; use one of {}",
            SUPPORTED_PROVIDERS.join(", ")
        )
    }

    fn workload(&self) -> anyhow::Result<fledge_controller::workload::PrimaryOptions> {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let selector_labels = clean(&self.selector_labels);
        if selector_labels.is_empty() {
            anyhow::bail!(
                "--selector-labels: name at least one label, e.g. app,name,app.kubernetes.io/name"
            );
        }
        Ok(fledge_controller::workload::PrimaryOptions {
            selector_labels,
            include_label_prefixes: clean(&self.include_label_prefix),
        })
    }

    fn control_loop_interval(&self) -> anyhow::Result<Option<std::time::Duration>> {
        let Some(text) = self.control_loop_interval.as_deref() else {
            return Ok(None);
        };
        let d = fledge_api::parse_duration(text)
            .map_err(|e| anyhow::anyhow!("--control-loop-interval: {e}"))?;
        if d < std::time::Duration::from_secs(1) {
            anyhow::bail!("--control-loop-interval: must be at least 1s");
        }
        Ok(Some(d))
    }

    fn event_webhook(&self) -> anyhow::Result<Option<String>> {
        match self.event_webhook.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(url) => {
                let parsed = url::Url::parse(url).map_err(|e| {
                    anyhow::anyhow!("--event-webhook (or EVENT_WEBHOOK_URL): not a URL: {e}")
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    anyhow::bail!(
                        "--event-webhook (or EVENT_WEBHOOK_URL): use an http:// or https:// URL"
                    );
                }
                Ok(Some(url.to_string()))
            }
        }
    }

    /// The client-side rate limit, when one is set.
    fn rate_limit(&self) -> anyhow::Result<Option<fledge_controller::kube_client::RateLimit>> {
        if !self.kube_api_qps.is_finite() || self.kube_api_qps < 0.0 {
            anyhow::bail!("--kube-api-qps: must be a number of requests a second, 0 for no limit");
        }
        if self.kube_api_qps == 0.0 {
            if self.kube_api_burst.is_some() {
                anyhow::bail!("--kube-api-burst: set --kube-api-qps too");
            }
            return Ok(None);
        }
        let burst = self
            .kube_api_burst
            .unwrap_or_else(|| self.kube_api_qps.ceil().max(1.0) as u32);
        if burst == 0 {
            anyhow::bail!("--kube-api-burst: must be at least 1");
        }
        Ok(Some(fledge_controller::kube_client::RateLimit {
            qps: self.kube_api_qps,
            burst,
        }))
    }
}

/// The log filter of `--log-level` (Flagger's names; `fatal` and `panic` are `error`).
fn log_filter(level: &str) -> Result<&'static str, String> {
    Ok(match level.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "fatal" | "panic" => "error",
        other => {
            return Err(format!(
                "--log-level: {other:?} is not a level; use trace, debug, info, warn or error"
            ));
        }
    })
}

/// Cluster-wide defaults of `spec.gitops`: a Canary's own fields win.
#[derive(clap::Args)]
struct GitOpsArgs {
    /// The ledger repository of Canaries without `spec.gitops` (ssh://, https://, http://,
    /// git:// or file://): every rollout is recorded there; nothing is reverted (no `path`).
    #[arg(long, value_name = "URL")]
    gitops_repository: Option<String>,
    /// The branch of `--gitops-repository` (default `main`).
    #[arg(long, requires = "gitops_repository")]
    gitops_branch: Option<String>,
    /// The Secret, in each Canary's namespace, with the credentials of `--gitops-repository`
    /// (as `spec.gitops.repository.secretRef`).
    #[arg(long, value_name = "NAME", requires = "gitops_repository")]
    gitops_secret: Option<String>,
    /// `spec.gitops.ledger.path` of Canaries that set none.
    #[arg(long, value_name = "PATH")]
    gitops_ledger_path: Option<String>,
    /// `spec.gitops.revertOnRollback` of Canaries that set none.
    #[arg(long, value_name = "BOOL")]
    gitops_revert_on_rollback: Option<bool>,
    /// `spec.gitops.fastRollback` of Canaries that set none.
    #[arg(long, value_name = "BOOL")]
    gitops_fast_rollback: Option<bool>,
    /// `spec.gitops.mode` of Canaries that set none: `push` or `branch`.
    #[arg(long, value_name = "MODE")]
    gitops_mode: Option<String>,
}

impl GitOpsArgs {
    /// The defaults, checked as `spec.gitops` is.
    fn defaults(&self) -> anyhow::Result<fledge_api::gitops::GitOpsDefaults> {
        use fledge_api::gitops::{GitOps, GitOpsDefaults, GitRepository, LedgerSpec};
        let d = GitOpsDefaults {
            repository: self.gitops_repository.as_ref().map(|url| GitRepository {
                url: url.clone(),
                branch: self.gitops_branch.clone(),
                secret_ref: self.gitops_secret.as_ref().map(|name| {
                    fledge_api::metric_template::SecretReference { name: name.clone() }
                }),
            }),
            ledger_path: self.gitops_ledger_path.clone(),
            revert_on_rollback: self.gitops_revert_on_rollback,
            fast_rollback: self.gitops_fast_rollback,
            mode: self.gitops_mode.clone(),
        };
        let probe = d.apply(None).unwrap_or(GitOps {
            repository: GitRepository {
                url: "git://127.0.0.1/probe.git".into(),
                ..Default::default()
            },
            ledger: d.ledger_path.as_ref().map(|p| LedgerSpec {
                path: Some(p.clone()),
                repository: None,
            }),
            mode: d.mode.clone(),
            ..Default::default()
        });
        let problems: Vec<String> = fledge_api::gitops::problems(&probe)
            .into_iter()
            .map(|(field, message)| {
                let flag = match field.as_str() {
                    "spec.gitops.repository.url" => "--gitops-repository",
                    "spec.gitops.repository.branch" => "--gitops-branch",
                    "spec.gitops.repository.secretRef.name" => "--gitops-secret",
                    "spec.gitops.ledger.path" => "--gitops-ledger-path",
                    "spec.gitops.mode" => "--gitops-mode",
                    other => other,
                };
                format!("{flag}: {message}")
            })
            .collect();
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("\n"));
        }
        Ok(d)
    }
}

/// The default chat alert provider (Canaries without `analysis.alerts` use it, as Flagger's
/// `-slack-url` does) and alert delivery.
#[derive(clap::Args)]
struct AlertArgs {
    /// Webhook URL of the default alert provider; none when unset. A secret: prefer the
    /// environment variable to the flag (flags show in the process list).
    #[arg(long, env = "FLEDGE_ALERT_URL", hide_env_values = true)]
    alert_url: Option<String>,
    /// Type of the default alert provider: slack, msteams, discord, gchat, rocket or webhook.
    #[arg(long, default_value = "slack")]
    alert_type: String,
    /// HTTP(S) proxy for the default alert provider.
    #[arg(long)]
    alert_proxy: Option<String>,
    /// Channel of the default alert provider (Slack, Rocket.Chat).
    #[arg(long)]
    alert_channel: Option<String>,
    /// User name the default alert provider posts as (default: fledge).
    #[arg(long)]
    alert_username: Option<String>,
    /// Lowest severity the default alert provider sends: info, warn or error.
    #[arg(long, default_value = "info")]
    alert_severity: String,
    /// Link each default-provider message carries (`{namespace}` and `{name}` replaced);
    /// default: the kubectl command.
    #[arg(long)]
    alert_link_template: Option<String>,
    /// Also send traffic steps to the default provider.
    #[arg(long)]
    alert_traffic_steps: bool,
    /// The web dashboard's URL (`kubectl fledge dashboard` behind your own auth, or any
    /// address people reach it at): alerts link to the Canary's page there, unless their
    /// provider has a linkTemplate of its own.
    #[arg(long)]
    dashboard_url: Option<String>,
    /// Timeout of each attempt to deliver an alert, e.g. 10s.
    #[arg(long, default_value = "10s")]
    alert_timeout: String,
    /// Retries of an alert a provider answered with 5xx or 429 (or could not be reached).
    #[arg(long, default_value_t = 3)]
    alert_retries: usize,
}

impl AlertArgs {
    fn settings(&self) -> anyhow::Result<fledge_controller::notify::AlertSettings> {
        use fledge_controller::notify::{AlertSettings, DefaultProvider, DeliveryPolicy};
        let severity = fledge_core::Severity::parse(&self.alert_severity).ok_or_else(|| {
            anyhow::anyhow!(
                "--alert-severity: {:?} is not a severity; use info, warn or error",
                self.alert_severity
            )
        })?;
        let timeout = fledge_api::parse_duration(&self.alert_timeout)
            .map_err(|e| anyhow::anyhow!("--alert-timeout: {e}"))?;
        if timeout.is_zero() {
            anyhow::bail!("--alert-timeout: must be greater than zero");
        }
        let default = match self.alert_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                let d = DefaultProvider {
                    kind: self.alert_type.clone(),
                    address: url.to_string(),
                    proxy: self.alert_proxy.clone(),
                    channel: self.alert_channel.clone(),
                    username: self.alert_username.clone(),
                    severity: Some(severity),
                    link_template: self.alert_link_template.clone(),
                    traffic_steps: self.alert_traffic_steps.then_some(true),
                };
                d.check().map_err(|e| anyhow::anyhow!("{e}"))?;
                Some(d)
            }
        };
        let dashboard_url = match self.dashboard_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                let url = url::Url::parse(u).map_err(|e| {
                    anyhow::anyhow!("--dashboard-url: {u:?} is not a URL ({e}); give e.g. https://fledge.example.com")
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    anyhow::bail!("--dashboard-url: {u:?} is not an http or https URL with a host");
                }
                if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                    anyhow::bail!(
                        "--dashboard-url: give the dashboard's address without user info or query \
                         (it is shown in every alert)"
                    );
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };
        Ok(AlertSettings {
            dashboard_url,
            default,
            policy: DeliveryPolicy {
                timeout,
                retries: self.alert_retries.min(10),
                ..DeliveryPolicy::default()
            },
            cluster: None,
            no_cross_namespace_refs: false,
        })
    }
}

/// The API server's addresses and port, which webhooks may not call: its URL's address, or
/// every address its name resolves to now (none when it does not resolve: the client fails
/// then).
async fn api_server_addresses(url: &hyper::Uri) -> Vec<std::net::SocketAddr> {
    let Some(host) = url.host() else {
        return Vec::new();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(443);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![std::net::SocketAddr::new(ip, port)];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the API server's name does not resolve; webhooks are not kept from it by address");
            Vec::new()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let level = match log_filter(&args.compat.log_level) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fledge run: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(&args.log_format, level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fledge run: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "fledge run failed");
                    ExitCode::from(1)
                }
            }
        }
        Command::Validate { files } => {
            let code = fledge_controller::validate_cmd::run(
                &files,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            ExitCode::from(u8::try_from(code).unwrap_or(2))
        }
        Command::Dora {
            repo,
            since,
            namespace,
            ledger_path,
            json,
        } => {
            let code = fledge_controller::dora::run(
                &repo,
                &ledger_path,
                &since,
                namespace.as_deref(),
                json,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            ExitCode::from(u8::try_from(code).unwrap_or(2))
        }
        Command::Replay {
            name,
            namespace,
            from,
            to,
            target,
            analysis,
        } => {
            let now = jiff::Timestamp::now();
            let (from, to) = match (
                replay_time(&from, now),
                to.as_deref().map_or(Ok(now), |t| replay_time(t, now)),
            ) {
                (Ok(f), Ok(t)) => (f, t),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("fledge replay: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fledge replay: cannot start the runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            let code = rt.block_on(async {
                let client = match kube::Client::try_default().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("fledge replay: cannot reach the cluster: {e}");
                        return 2;
                    }
                };
                let args = fledge_controller::replay::ReplayArgs {
                    name,
                    namespace,
                    from,
                    to,
                    target,
                    settings: analysis.settings(),
                };
                fledge_controller::replay::run(
                    client,
                    args,
                    &mut std::io::stdout().lock(),
                    &mut std::io::stderr().lock(),
                )
                .await
            });
            ExitCode::from(u8::try_from(code).unwrap_or(2))
        }
        Command::Crds { out_dir: Some(dir) } => {
            for (file, yaml) in fledge_controller::crds::crds() {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("fledge crds: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Crds { out_dir: None } => {
            let mut out = std::io::stdout().lock();
            match out.write_all(fledge_controller::crds::crds_yaml().as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fledge crds: cannot write: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// A time for `fledge replay`: RFC 3339, or a duration meaning that long before `now`.
fn replay_time(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    match fledge_api::parse_duration(text) {
        Ok(d) => now
            .checked_sub(d)
            .map_err(|e| format!("{text:?} reaches before the start of time: {e}")),
        Err(_) => Err(format!(
            "{text:?} is neither a time (2026-12-01T14:00:00Z) nor a duration ago (2h, 90m)"
        )),
    }
}

fn init_logs(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use anyhow::Context as _;
    use fledge_controller::{controller, metrics::Metrics, server};

    let mut alerts = args.alerts.settings()?;
    alerts.cluster = args
        .compat
        .cluster_name
        .clone()
        .filter(|c| !c.trim().is_empty());
    let confined = args.compat.no_cross_namespace_refs || args.multi_tenant;
    alerts.no_cross_namespace_refs = confined;
    let gitops_defaults = args.gitops.defaults()?;
    let mesh_provider = args.compat.mesh_provider()?;
    let workload = args.compat.workload()?;
    let control_loop_interval = args.compat.control_loop_interval()?;
    let event_webhook = args.compat.event_webhook()?;
    let rate_limit = args.compat.rate_limit()?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_info(
        env!("CARGO_PKG_VERSION"),
        mesh_provider
            .as_deref()
            .unwrap_or(fledge_api::defaults::PROVIDER),
    );
    let config = match &args.compat.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig: cannot read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig: cannot use {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("cannot build a Kubernetes client (KUBECONFIG or in-cluster config)")?,
    };
    let api_server = fledge_metrics_providers::shown(config.cluster_url.to_string().as_str());
    let destinations = fledge_core::egress::DestinationPolicy {
        allowed: args.allow_destination.clone(),
        api_server: api_server_addresses(&config.cluster_url).await,
    };
    // The metrics providers and alert clients take the same policy.
    fledge_metrics_providers::egress::set_policy(destinations.clone());
    let shard = args
        .shard
        .as_deref()
        .map(|name| fledge_core::shard::Shard::new(name, args.default_shard))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // The API server's audit log tells the shards apart by their user agent.
    let user_agent = match &shard {
        Some(s) => format!("fledge/{} (shard {})", env!("CARGO_PKG_VERSION"), s.name()),
        None => format!("fledge/{}", env!("CARGO_PKG_VERSION")),
    };
    // Leader election has a client of its own, outside the limits on requests in flight and
    // per second: a Lease renewal queued behind the requests of a hundred busy reconciles let
    // the Lease lapse under load, and the leader stepped down in the middle of its work.
    let lease_client = fledge_controller::kube_client::build(
        config.clone(),
        &user_agent,
        metrics.clone(),
        u16::MAX,
        None,
    )?;
    let client = fledge_controller::kube_client::build(
        config,
        &user_agent,
        metrics.clone(),
        args.kube_api_concurrency,
        rate_limit,
    )?;
    let health = Arc::new(server::Health::default());
    let listener_metrics = metrics.clone();
    let listener_health = health.clone();
    let addr = args.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = server::serve(addr, listener_metrics, listener_health).await {
            tracing::error!(error = %e, %addr, "metrics endpoint stopped");
        }
    });

    if let Some(addr) = args.ui_addr {
        let options = fledge_dashboard::Options {
            addr,
            namespace: args.namespace.clone(),
            context: "fledge run".into(),
            ledger: None,
        };
        let ui = fledge_dashboard::bind(client.clone(), options, None)
            .await
            .with_context(|| format!("--ui-addr {addr}"))?;
        tracing::info!(url = %ui.url(), "serving the dashboard read-only (--ui-addr)");
        tokio::spawn(async move {
            if let Err(e) = ui.serve().await {
                tracing::error!(error = %e, %addr, "the dashboard stopped");
            }
        });
    }

    let lease_name = match &shard {
        Some(s) => s.lease_name(&args.lease_name),
        None => args.lease_name.clone(),
    };
    if let Some(s) = &shard {
        tracing::info!(
            shard = s.name(),
            default = s.is_default(),
            "handling the Canaries labelled {}={}{}",
            fledge_core::shard::SHARD_LABEL,
            s.name(),
            if s.is_default() {
                " and those without that label"
            } else {
                ""
            }
        );
    }
    let settings = controller::Settings {
        shard: shard.clone(),
        namespace: args.namespace.clone(),
        max_concurrent_rollouts: args.max_concurrent_rollouts,
        reporter: "fledge".into(),
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        alerts,
        analysis: fledge_controller::analysis::AnalysisSettings {
            api_server,
            ..args.analysis.settings()
        },
        git: fledge_controller::git::GitSettings {
            alert_after: std::time::Duration::from_secs(args.git_queue_alert_after),
            defaults: gitops_defaults,
            shard: shard.as_ref().map(|s| s.name().to_string()),
            ..fledge_controller::git::GitSettings::new(
                fledge_controller::git::repo::Identity {
                    name: args.git_author_name.clone(),
                    email: args.git_author_email.clone(),
                },
                args.git_workdir
                    .clone()
                    .unwrap_or_else(|| std::env::temp_dir().join("fledge-git")),
            )
        },
        mesh_provider: mesh_provider.clone(),
        workload,
        no_cross_namespace_refs: confined,
        destinations,
        event_webhook,
        control_loop_interval,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    if !args.leader_elect {
        health.ready.store(true, Ordering::Relaxed);
        health.leader.store(true, Ordering::Relaxed);
        tracing::info!("starting without leader election");
        return controller::run(client, settings, metrics, stopped()).await;
    }

    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "fledge".into());
        format!("{host}-{}", std::process::id())
    });
    let mut builder = kube_lease_manager::LeaseManagerBuilder::new(lease_client, &lease_name)
        .with_identity(identity.clone())
        .with_duration(args.lease_duration.max(2))
        .with_grace((args.lease_duration / 3).max(1));
    if let Some(ns) = &args.lease_namespace {
        builder = builder.with_namespace(ns.clone());
    }
    let manager = builder
        .build()
        .await
        .context("cannot set up leader election")?;
    let (mut leader_rx, _task) = manager.watch().await;
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, lease = %lease_name, "waiting to become leader");
    let mut stop = stop_rx.clone();
    loop {
        if *leader_rx.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leader_rx.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped");
                }
            }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    health.leader.store(true, Ordering::Relaxed);
    tracing::info!(%identity, "became leader");
    let lost = async move {
        let _ = leader_rx.wait_for(|l| !*l).await;
    };
    let stop = stopped();
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        lost.await;
        let _ = lost_tx.send(true);
    });
    let lost_flag = {
        let mut rx = lost_rx.clone();
        async move {
            let _ = rx.wait_for(|l| *l).await;
        }
    };
    let trigger = async move {
        tokio::select! {
            _ = stop => {}
            _ = lost_flag => {}
        }
    };
    controller::run(client, settings, metrics, trigger).await?;
    if *lost_rx.borrow_and_update() {
        anyhow::bail!("lost leadership; exiting so that a fresh replica can stand by");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_destination_takes_networks_and_says_what_to_write() {
        let cli = Cli::try_parse_from([
            "fledge",
            "run",
            "--allow-destination",
            "169.254.169.254/32",
            "--allow-destination",
            "fd00:ec2::254",
        ])
        .expect("two networks");
        let Command::Run(args) = cli.command else {
            panic!("not the run command");
        };
        let shown: Vec<String> = args
            .allow_destination
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shown, ["169.254.169.254/32", "fd00:ec2::254/128"]);
        let err = Cli::try_parse_from(["fledge", "run", "--allow-destination", "metadata/8"])
            .err()
            .expect("not a network")
            .to_string();
        assert!(err.contains("--allow-destination"), "{err}");
        assert!(err.contains("is not a network"), "{err}");
    }

    #[tokio::test]
    async fn the_api_server_address_comes_from_its_url() {
        let ip: hyper::Uri = "https://10.96.0.1".parse().unwrap();
        assert_eq!(
            api_server_addresses(&ip).await,
            [std::net::SocketAddr::from(([10, 96, 0, 1], 443))]
        );
        let v6: hyper::Uri = "https://[fd00::1]:6443".parse().unwrap();
        assert_eq!(
            api_server_addresses(&v6).await,
            ["[fd00::1]:6443".parse::<std::net::SocketAddr>().unwrap()]
        );
        let name: hyper::Uri = "https://localhost:6443".parse().unwrap();
        assert!(
            api_server_addresses(&name)
                .await
                .contains(&std::net::SocketAddr::from(([127, 0, 0, 1], 6443)))
        );
    }
}
