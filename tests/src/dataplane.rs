//! The local data plane for end-to-end tests: Traefik serving the Gateway
//! `fledge-system/gateway` on loopback (started once per run by `cargo xtask dataplane up`),
//! podinfo processes owned by the test (killed when dropped), EndpointSlices that point
//! Services at them, and a client that sends requests through the Gateway and counts the
//! answers by version.
//!
//! Local-mode wiring: kwok Pods serve no traffic, so a Service reaches podinfo through
//! EndpointSlices written by [`attach_endpoints`]. The API server refuses loopback addresses in
//! `IPv4` slices, so these slices are of type `FQDN` with the address `127.0.0.1` (a valid DNS
//! name that Traefik dials as an IP). Traefik keys a Service's endpoints by address, so several
//! backends of one Service need distinct loopback addresses (127.0.0.2, …).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::root;

/// The Gateway routes attach to.
pub const GATEWAY_NAMESPACE: &str = "fledge-system";
/// The Gateway routes attach to.
pub const GATEWAY_NAME: &str = "gateway";
/// `endpointslice.kubernetes.io/managed-by` of the slices written here (the same value
/// `cargo xtask dataplane endpoints` uses, so either can replace the other's slices).
pub const MANAGED_BY: &str = "fledge-dataplane";
/// The field manager of the objects written here.
const FIELD_MANAGER: &str = "fledge-e2e";

/// Where the running data plane is.
#[derive(Clone, Debug)]
pub struct Dataplane {
    /// The Gateway's HTTP listener, `127.0.0.1:<port>`.
    pub gateway: SocketAddr,
    /// Traefik's Prometheus metrics.
    pub metrics_url: String,
    /// Traefik's read-only API (`…/api/http/services`, …).
    pub api_url: String,
    /// The podinfo binary.
    pub podinfo: PathBuf,
    /// The pinned Traefik version.
    pub traefik_version: String,
    /// Prometheus, `http://127.0.0.1:<port>`, scraping Traefik and the registered targets.
    pub prometheus_url: String,
    /// Prometheus's file service discovery directory (see [`crate::analysis::ScrapeTarget`]).
    pub prometheus_sd: PathBuf,
    /// The Prometheus binary and its configuration, for tests that run their own.
    pub prometheus_binary: PathBuf,
    /// See [`Dataplane::prometheus_binary`].
    pub prometheus_config: PathBuf,
    /// The VictoriaMetrics binary (not running), for the metrics providers' real-server tests.
    pub victoria_metrics: PathBuf,
    /// The InfluxDB binary (not running), for the influxdb provider's real-server tests.
    pub influxd: PathBuf,
    /// The Skipper binary (not running), for the skipper provider's real-traffic test.
    pub skipper: PathBuf,
}

static DATAPLANE: OnceLock<Result<Dataplane, String>> = OnceLock::new();

/// Starts the cluster and the data plane (once per run) and says where it is. Fails the test
/// with what went wrong, never skips.
pub fn dataplane() -> &'static Dataplane {
    let res = DATAPLANE.get_or_init(|| {
        if crate::planes_up() {
            return read_info().map_err(|e| {
                format!(
                    "{e:#} (the data plane was said to be up: {})",
                    crate::PLANES_UP_ENV
                )
            });
        }
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["run", "--quiet", "-p", "xtask", "--", "dataplane", "up"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `cargo xtask dataplane up`: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            return Err(format!(
                "the data plane did not start (`cargo xtask dataplane up` failed; it needs Go \
                 on PATH to build Traefik and podinfo once):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        read_info().map_err(|e| format!("{e:#}"))
    });
    match res {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn read_info() -> anyhow::Result<Dataplane> {
    let path = root().join("target/dataplane/dataplane.json");
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let s = |ptr: &str| -> anyhow::Result<String> {
        info.pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{} has no {ptr}", path.display()))
    };
    let url = s("/gateway/url")?;
    Ok(Dataplane {
        gateway: url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("gateway url {url}"))?,
        metrics_url: s("/traefik/metrics_url")?,
        api_url: s("/traefik/api_url")?,
        podinfo: PathBuf::from(s("/podinfo/binary")?),
        traefik_version: s("/traefik/version")?,
        prometheus_url: s("/prometheus/url")?,
        prometheus_sd: PathBuf::from(s("/prometheus/sd_dir")?),
        prometheus_binary: PathBuf::from(s("/prometheus/binary")?),
        prometheus_config: PathBuf::from(s("/prometheus/config")?),
        victoria_metrics: PathBuf::from(s("/victoria_metrics/binary")?),
        influxd: PathBuf::from(s("/influxdb/binary")?),
        skipper: PathBuf::from(s("/skipper/binary")?),
    })
}

/// Knobs of one podinfo process.
#[derive(Clone, Debug)]
pub struct PodinfoOpts {
    /// The loopback address to bind.
    pub ip: Ipv4Addr,
    /// One answer in three is an error (500, 400 or 409).
    pub random_error: bool,
    /// A random delay of every answer, in milliseconds (min, max).
    pub delay_ms: Option<(u32, u32)>,
}

impl Default for PodinfoOpts {
    fn default() -> Self {
        PodinfoOpts {
            ip: Ipv4Addr::LOCALHOST,
            random_error: false,
            delay_ms: None,
        }
    }
}

/// One podinfo process, killed when dropped. It reports `version` as the `message` of its
/// JSON answer at `/`.
pub struct Podinfo {
    /// Where it listens.
    pub addr: SocketAddrV4,
    /// The version it reports.
    pub version: String,
    child: Child,
    dir: PathBuf,
}

impl Podinfo {
    /// Starts podinfo on a free port of `opts.ip` and waits until it is ready.
    pub async fn start(version: &str, opts: PodinfoOpts) -> anyhow::Result<Podinfo> {
        let dp = dataplane();
        if !opts.ip.is_loopback() {
            bail!("{} is not a loopback address", opts.ip);
        }
        let port = std::net::TcpListener::bind((opts.ip, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddrV4::new(opts.ip, port);
        let dir = root().join("target/e2e-logs/podinfo").join(format!(
            "{}-{}-{port}",
            std::process::id(),
            opts.ip
        ));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("podinfo.log"))?;
        let mut cmd = Command::new(&dp.podinfo);
        cmd.arg(format!("--host={}", opts.ip))
            .arg(format!("--port={port}"))
            .args(["--port-metrics=0", "--grpc-port=0", "--level=warn"])
            .arg(format!("--ui-message={version}"))
            .arg(format!("--data-path={}", dir.display()))
            .arg(format!("--config-path={}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if opts.random_error {
            cmd.arg("--random-error");
        }
        if let Some((min, max)) = opts.delay_ms {
            cmd.args(["--random-delay", "--random-delay-unit=ms"])
                .arg(format!("--random-delay-min={min}"))
                .arg(format!("--random-delay-max={max}"));
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", dp.podinfo.display()))?;
        let mut p = Podinfo {
            addr,
            version: version.to_string(),
            child,
            dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "podinfo exited ({status}): {}",
                    std::fs::read_to_string(p.dir.join("podinfo.log")).unwrap_or_default()
                );
            }
            let ready = http
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("podinfo {version} on {addr} was not ready in 20s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// podinfo's own count of the requests it answered (`http_requests_total`, all statuses),
    /// read from its `/metrics`; the reading itself is not counted.
    pub async fn requests_total(&self) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }
}

impl Podinfo {
    /// How many requests podinfo answered on one route, by its metrics' `path` label (`root` is
    /// `/`), read from its `/metrics`.
    pub async fn requests_to(&self, path_label: &str) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await?
            .text()
            .await?;
        let label = format!("path=\"{path_label}\"");
        Ok(text
            .lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_count{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }
}

impl Drop for Podinfo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Service without a selector, port `port` named `http`: its endpoints come only from
/// [`attach_endpoints`].
pub async fn selectorless_service(
    client: &Client,
    namespace: &str,
    name: &str,
    port: u16,
) -> anyhow::Result<Service> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }))?;
    Ok(Api::<Service>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&svc),
        )
        .await?)
}

/// The EndpointSlices that point `service` at `backends`, one per distinct port; the slice
/// port carries the Service port's name (Traefik matches them by name). No backends give one
/// slice without endpoints, as the endpointslice controller writes for a Service whose Pods
/// are all gone: Traefik then counts the Service as resolved with no servers (503 for its share)
/// instead of reporting the route's references unresolved.
pub fn endpoint_slices(
    namespace: &str,
    service: &str,
    port_name: &str,
    backends: &[SocketAddrV4],
) -> anyhow::Result<Vec<EndpointSlice>> {
    let mut by_port: BTreeMap<u16, Vec<Ipv4Addr>> = BTreeMap::new();
    for b in backends {
        if !b.ip().is_loopback() {
            bail!("{b} is not on loopback");
        }
        if backends.iter().filter(|o| o.ip() == b.ip()).count() > 1 {
            bail!(
                "two backends of Service {service} share the address {}; Traefik keys endpoints \
                 by address, so give each its own (127.0.0.1, 127.0.0.2, …)",
                b.ip()
            );
        }
        by_port.entry(b.port()).or_default().push(*b.ip());
    }
    let labels = json!({
        "kubernetes.io/service-name": service,
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    });
    if backends.is_empty() {
        return Ok(vec![serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{service}-local"), "namespace": namespace, "labels": labels},
            "addressType": "FQDN",
            "endpoints": [],
        }))?]);
    }
    by_port
        .into_iter()
        .map(|(port, ips)| {
            Ok(serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{service}-local-{port}"),
                    "namespace": namespace,
                    "labels": labels,
                },
                // IPv4 slices refuse 127.0.0.0/8; an FQDN slice takes the IP literal.
                "addressType": "FQDN",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": ips.iter()
                    .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
                    .collect::<Vec<_>>(),
            }))?)
        })
        .collect()
}

/// Points `service` (its port named `port_name`) at `backends` through the EndpointSlices of
/// [`endpoint_slices`], and deletes the slices written here before that are no longer wanted.
pub async fn attach_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
    port_name: &str,
    backends: &[SocketAddrV4],
) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let wanted = endpoint_slices(namespace, service, port_name, backends)?;
    for slice in &wanted {
        api.patch(
            &slice.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(slice),
        )
        .await
        .with_context(|| format!("applying EndpointSlice {}", slice.name_any()))?;
    }
    let mine = api
        .list(&ListParams::default().labels(&format!(
            "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
        )))
        .await?;
    for old in mine.items {
        let name = old.name_any();
        if !wanted.iter().any(|w| w.name_any() == name) {
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// Fails when EndpointSlices other than the harness's point at `service`: a control plane
/// that still runs the endpointslice controller publishes the kwok Pods' made-up IPs for
/// Services with selectors, and Traefik would send part of the traffic there.
pub async fn only_local_endpoints(
    client: &Client,
    namespace: &str,
    service: &str,
) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let foreign: Vec<String> = api
        .list(&ListParams::default().labels(&format!(
            "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by!={MANAGED_BY}"
        )))
        .await?
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    if !foreign.is_empty() {
        bail!(
            "Service {namespace}/{service} has EndpointSlices the harness did not write \
             ({foreign:?}): the control plane runs the endpointslice controller, which publishes \
             kwok Pod IPs; restart it without: cargo xtask cluster down && cargo xtask cluster up"
        );
    }
    Ok(())
}

/// The `gateway.networking.k8s.io/v1` HTTPRoute API of a namespace.
pub fn httproutes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Waits until Traefik reports the HTTPRoute Accepted with its references resolved on the
/// Gateway; fails with the route's status otherwise.
pub async fn wait_route_accepted(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = httproutes(client, namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let route = api.get(name).await?;
        let status = route.data.get("status").cloned().unwrap_or(Value::Null);
        let parent = status
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.pointer("/parentRef/name").and_then(Value::as_str) == Some(GATEWAY_NAME));
        let cond = |t: &str| {
            parent
                .and_then(|p| p.get("conditions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        if cond("Accepted") && cond("ResolvedRefs") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "HTTPRoute {namespace}/{name} not Accepted/ResolvedRefs in {timeout:?}: {status}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What answered a batch of requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Successful answers by the version podinfo reported.
    pub by_version: BTreeMap<String, u64>,
    /// Answers with another status, by status code.
    pub errors: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub failed: u64,
}

impl Tally {
    /// Every request sent.
    pub fn total(&self) -> u64 {
        self.by_version.values().sum::<u64>() + self.errors.values().sum::<u64>() + self.failed
    }

    /// The share of `version` among all requests, in percent.
    pub fn percent(&self, version: &str) -> f64 {
        let n = self.by_version.get(version).copied().unwrap_or(0);
        100.0 * n as f64 / (self.total().max(1)) as f64
    }

    /// The share of the answers of one role's processes among all requests, in percent: the
    /// versions [`LocalWorkload`] reports start with the role (`canary 6.0.1`).
    pub fn role_percent(&self, role: &str) -> f64 {
        let prefix = format!("{role} ");
        let n: u64 = self
            .by_version
            .iter()
            .filter(|(v, _)| v.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum();
        100.0 * n as f64 / (self.total().max(1)) as f64
    }

    /// Requests answered with an error status or not at all.
    pub fn unsuccessful(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.failed
    }

    /// What was counted since `earlier`, a reading of the same growing tally.
    pub fn since(&self, earlier: &Tally) -> Tally {
        fn minus<K: Ord + Clone>(
            now: &BTreeMap<K, u64>,
            then: &BTreeMap<K, u64>,
        ) -> BTreeMap<K, u64> {
            now.iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n.saturating_sub(then.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        }
        Tally {
            by_version: minus(&self.by_version, &earlier.by_version),
            errors: minus(&self.errors, &earlier.errors),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}

/// Sends `n` GET requests for `path` to the Gateway with `Host: host` and extra `headers`,
/// `concurrency` at a time over kept-alive connections, and counts the answers by the version
/// podinfo reports. Each request times out after 5 s.
pub async fn send(
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
    concurrency: usize,
) -> Tally {
    send_to(dataplane().gateway, host, path, headers, n, concurrency).await
}

/// [`send`] to the HTTP router at `router` instead of the Gateway.
pub async fn send_to(
    router: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
    concurrency: usize,
) -> Tally {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("HTTP client");
    let url = format!("http://{router}{path}");
    let results: Vec<Result<(u16, Option<String>), ()>> = futures::stream::iter(0..n)
        .map(|_| {
            let mut req = http.get(&url).header("Host", host);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            async move {
                let resp = req.send().await.map_err(drop)?;
                let code = resp.status().as_u16();
                let body: Option<Value> = resp.json().await.ok();
                let version = body
                    .as_ref()
                    .and_then(|b| b.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok((code, version))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut tally = Tally::default();
    for r in results {
        match r {
            Ok((200, Some(v))) => *tally.by_version.entry(v).or_default() += 1,
            Ok((code, _)) => *tally.errors.entry(code).or_default() += 1,
            Err(()) => tally.failed += 1,
        }
    }
    tally
}

/// Waits until the Canary `name` of `ns` (on the Gateway API router, its Services and HTTPRoute
/// named after it) is Initialized, only the harness's EndpointSlices point at its Services, its
/// HTTPRoute is Accepted with resolved references, and a request for `host` through the Gateway
/// reaches podinfo.
pub async fn wait_canary_routed(ns: &crate::TestNs, name: &str, host: &str) -> anyhow::Result<()> {
    ns.wait_phase(
        name,
        fledge_api::CanaryPhase::Initialized,
        Duration::from_secs(90),
    )
    .await;
    for svc in [
        name.to_string(),
        format!("{name}-primary"),
        format!("{name}-canary"),
    ] {
        only_local_endpoints(&ns.client, &ns.name, &svc).await?;
    }
    wait_route_accepted(&ns.client, &ns.name, name, Duration::from_secs(30)).await?;
    wait_routed(host, Duration::from_secs(30)).await
}

/// Waits until a request for `host` through the Gateway is answered by podinfo (Traefik applies
/// route changes a moment after the API server has them).
pub async fn wait_routed(host: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let t = send(host, "/", &[], 1, 1).await;
        if !t.by_version.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no request for {host} reached podinfo through the Gateway in {timeout:?}: {t:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The weights Traefik applies now to `<service>-primary` and `<service>-canary` (port `port`)
/// of a namespace, read from its API: `(primary, canary)`, `None` while it has no such
/// weighted service.
pub async fn traefik_weights(namespace: &str, service: &str, port: u16) -> Option<(i64, i64)> {
    // Traefik's API pages its lists (100 a page): ask for this namespace's services only.
    let services: Value = reqwest::get(format!(
        "{}/http/services?search={namespace}&per_page=1000",
        dataplane().api_url
    ))
    .await
    .ok()?
    .json()
    .await
    .ok()?;
    let backend = |role: &str| format!("{namespace}-{service}-{role}-http-{port}");
    services.as_array()?.iter().find_map(|s| {
        let children = s.pointer("/weighted/services")?.as_array()?;
        let weight = |role: &str| {
            children
                .iter()
                .find(|c| {
                    c.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.split('@').next() == Some(backend(role).as_str()))
                })
                .map(|c| c.get("weight").and_then(Value::as_i64).unwrap_or(1))
        };
        Some((weight("primary")?, weight("canary")?))
    })
}

/// Waits until Traefik gives `canary` percent of `<service>`'s route to `<service>-canary`
/// (it applies a route change a moment after the API server has it).
pub async fn wait_traefik_canary_weight(
    namespace: &str,
    service: &str,
    port: u16,
    canary: i64,
) -> anyhow::Result<()> {
    crate::eventually(
        Duration::from_secs(30),
        &format!("Traefik to route {canary}% of {namespace}/{service} to the canary"),
        || async {
            traefik_weights(namespace, service, port)
                .await
                .is_some_and(|(p, c)| c * 100 == canary * (p + c))
        },
    )
    .await
}

/// The server URLs Traefik load-balances a Service's port over, from its API.
pub async fn traefik_servers(namespace: &str, service: &str, port: u16) -> Vec<String> {
    let name = format!("{namespace}-{service}-http-{port}@kubernetesgateway");
    let Ok(resp) = reqwest::get(format!("{}/http/services/{name}", dataplane().api_url)).await
    else {
        return Vec::new();
    };
    let body: Value = resp.json().await.unwrap_or_default();
    body.pointer("/loadBalancer/servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("url")?.as_str().map(str::to_string))
        .collect()
}

/// Stands in for the kubelet and the endpointslice controller in local mode, for one Canary:
/// while `<target>-primary` has ready replicas a podinfo process runs for it and
/// `<service>` and `<service>-primary` point at it; while `<target>` (the canary) has ready
/// replicas another process runs and `<service>-canary` points at it; while a statistical
/// judgement's `<target>-baseline` has ready replicas a third process runs on 127.0.0.3 and the
/// primary's Services point at it too (its pods carry the primary's labels). Each process
/// reports `"<role> <image tag>"` (`primary 6.0.0`, `canary 6.0.1`), and is replaced (new one
/// first) when its Deployment's image changes. Runs in the background until dropped.
pub struct LocalWorkload {
    task: tokio::task::JoinHandle<()>,
}

/// The podinfo knobs for a role (`primary`, `canary`) and image tag.
pub type OptsFor = Arc<dyn Fn(&str, &str) -> PodinfoOpts + Send + Sync>;

/// podinfo's fault injection by image tag: a tag with `faulty` starts podinfo with
/// `--random-error` (in one second out of three it answers 500, 400 or 409; podinfo seeds its
/// generator once a second, so errors come in whole seconds), one with `slow` adds 600-900 ms
/// to every answer, one with `lagging` 20-60 ms (well under the usual 500 ms threshold).
pub fn faults_by_tag() -> OptsFor {
    Arc::new(|_role: &str, tag: &str| PodinfoOpts {
        random_error: tag.contains("faulty"),
        delay_ms: if tag.contains("slow") {
            Some((600, 900))
        } else if tag.contains("lagging") {
            Some((20, 60))
        } else {
            None
        },
        ..PodinfoOpts::default()
    })
}

impl LocalWorkload {
    /// Starts following the Deployments of `target` in `namespace`.
    pub fn start(client: &Client, namespace: &str, target: &str, service: &str) -> LocalWorkload {
        Self::start_with(
            client,
            namespace,
            target,
            service,
            Arc::new(|_, _| PodinfoOpts::default()),
        )
    }

    /// Like [`LocalWorkload::start`], with podinfo's knobs chosen by role and image tag (a
    /// "faulty" tag can answer errors, a "slow" one late). Each process is registered with
    /// the data plane's Prometheus, labelled like a Pod of its Deployment
    /// (`kubernetes_namespace`, `kubernetes_pod_name`).
    pub fn start_with(
        client: &Client,
        namespace: &str,
        target: &str,
        service: &str,
        opts: OptsFor,
    ) -> LocalWorkload {
        let mut state = Follower {
            client: client.clone(),
            namespace: namespace.to_string(),
            target: target.to_string(),
            service: service.to_string(),
            opts,
            primary: Slot::default(),
            canary: Slot::default(),
            baseline: Slot::default(),
            primary_backends: Vec::new(),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = state.sync().await {
                    eprintln!("local workload {}: {e:#}", state.target);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        LocalWorkload { task }
    }
}

impl Drop for LocalWorkload {
    fn drop(&mut self) {
        // Dropping the task's state kills its podinfo processes.
        self.task.abort();
    }
}

struct Follower {
    client: Client,
    namespace: String,
    target: String,
    service: String,
    opts: OptsFor,
    primary: Slot,
    canary: Slot,
    baseline: Slot,
    /// The backends the primary's Services were last pointed at (primary and baseline).
    primary_backends: Vec<SocketAddrV4>,
}

/// One role's process, and whether its Services' slices have been written yet.
#[derive(Default)]
struct Slot {
    attached: bool,
    process: Option<Podinfo>,
    scrape: Option<crate::analysis::ScrapeTarget>,
    /// Scaled to zero, serving until then.
    draining: Option<Instant>,
}

impl Follower {
    /// The image tag of a Deployment with ready replicas, or `None`.
    async fn serving(&self, deployment: &str) -> anyhow::Result<Option<String>> {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let Some(d) = api.get_opt(deployment).await? else {
            return Ok(None);
        };
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if wanted == 0 || ready == 0 {
            return Ok(None);
        }
        let image = crate::image_of(&d);
        Ok(Some(image.rsplit(':').next().unwrap_or(&image).to_string()))
    }

    async fn sync(&mut self) -> anyhow::Result<()> {
        let primary = self.serving(&format!("{}-primary", self.target)).await?;
        let canary = self.serving(&self.target).await?;
        let apex = self.service.clone();
        let primary_svcs = [apex.clone(), format!("{apex}-primary")];
        let canary_svcs = [format!("{apex}-canary")];
        let (client, ns) = (self.client.clone(), self.namespace.clone());
        let primary_pod = format!("{}-primary", self.target);
        follow(
            &client,
            &ns,
            ("primary", &primary_pod),
            primary,
            &mut self.primary,
            &primary_svcs,
            &self.opts,
        )
        .await?;
        follow(
            &client,
            &ns,
            ("canary", &self.target),
            canary,
            &mut self.canary,
            &canary_svcs,
            &self.opts,
        )
        .await?;
        let baseline_pod = format!("{}-baseline", self.target);
        let baseline = self.serving(&baseline_pod).await?;
        let opts = self.opts.clone();
        let on_its_own_address: OptsFor = Arc::new(move |role, tag| PodinfoOpts {
            ip: Ipv4Addr::new(127, 0, 0, 3),
            ..opts(role, tag)
        });
        follow(
            &client,
            &ns,
            ("baseline", &baseline_pod),
            baseline,
            &mut self.baseline,
            &[],
            &on_its_own_address,
        )
        .await?;
        // The primary's Services serve the primary's process and the baseline's.
        let backends: Vec<SocketAddrV4> = [&self.primary, &self.baseline]
            .iter()
            .filter_map(|s| s.process.as_ref().map(|p| p.addr))
            .collect();
        if self.primary.process.is_some() && backends != self.primary_backends {
            for svc in &primary_svcs {
                attach_endpoints(&client, &ns, svc, "http", &backends).await?;
            }
            self.primary_backends = backends;
        }
        Ok(())
    }
}

/// Brings one role's process in line with `tag` (the image tag its Deployment serves).
async fn follow(
    client: &Client,
    namespace: &str,
    (role, deployment): (&str, &str),
    tag: Option<String>,
    slot: &mut Slot,
    services: &[String],
    opts: &OptsFor,
) -> anyhow::Result<()> {
    let want = tag.as_ref().map(|t| format!("{role} {t}"));
    if slot.attached && slot.process.as_ref().map(|p| &p.version) == want.as_ref() {
        slot.draining = None;
        return Ok(());
    }
    // Scaled to zero: like a Pod with a preStop sleep, the process keeps serving (and stays in
    // the slices) for a few seconds, so that the gateway applies the route change first.
    if want.is_none() && slot.process.is_some() {
        let until = *slot
            .draining
            .get_or_insert_with(|| Instant::now() + Duration::from_secs(3));
        if Instant::now() < until {
            return Ok(());
        }
    }
    slot.draining = None;
    let next = match (&want, &tag) {
        (Some(version), Some(tag)) => Some(Podinfo::start(version, opts(role, tag)).await?),
        _ => None,
    };
    let scrape = next.as_ref().map(|p| {
        // A name like a Pod of the Deployment: <deployment>-<template hash>-<suffix>.
        let pod = format!("{deployment}-{:08x}-{:05}", p.addr.port(), p.addr.port());
        crate::analysis::ScrapeTarget::register(
            &format!("{namespace}-{pod}"),
            SocketAddr::V4(p.addr),
            &[
                ("kubernetes_namespace", namespace),
                ("kubernetes_pod_name", &pod),
                ("role", role),
            ],
        )
    });
    let backends: Vec<SocketAddrV4> = next.iter().map(|p| p.addr).collect();
    for svc in services {
        attach_endpoints(client, namespace, svc, "http", &backends).await?;
    }
    // The old process goes only after the slices point at the new one, and a few seconds
    // later, once Traefik has the new endpoints (requests in flight to it would fail).
    let old = std::mem::replace(&mut slot.process, next);
    let old_scrape = std::mem::replace(&mut slot.scrape, scrape);
    if old.is_some() {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop((old, old_scrape));
        });
    }
    slot.attached = true;
    Ok(())
}

/// Traefik's Prometheus metrics as text.
pub async fn traefik_metrics() -> anyhow::Result<String> {
    Ok(reqwest::get(&dataplane().metrics_url).await?.text().await?)
}

/// Requests Traefik forwarded to a backend Service (port 9898, named `http`) of the namespace,
/// from its metrics.
pub async fn traefik_forwarded(ns: &str, service: &str) -> anyhow::Result<u64> {
    Ok(forwarded_in(&traefik_metrics().await?, ns, service))
}

/// [`traefik_forwarded`] read from one scrape of Traefik's metrics, `metrics`.
pub fn forwarded_in(metrics: &str, ns: &str, service: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("traefik_service_requests_total{"))
        .filter(|l| l.contains(&format!("service=\"{ns}-{service}-http-9898@")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the canary's podinfo (of the Service `podinfo-canary` of `ns`) serves a new
/// revision and its EndpointSlice names it (the canary Service has endpoints only once the new
/// revision is up); its address.
pub async fn canary_endpoint(ns: &crate::TestNs) -> SocketAddrV4 {
    let slices: Api<EndpointSlice> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=podinfo-canary"))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let found = list.iter().find_map(|s| {
            let port = u16::try_from(s.ports.as_ref()?.first()?.port?).ok()?;
            let ip = s.endpoints.first()?.addresses.first()?.parse().ok()?;
            Some(SocketAddrV4::new(ip, port))
        });
        // The endpoint of the new revision's process: a process scaled down a moment ago
        // still serves (and stays in the slice) for a few seconds, as a Pod with a preStop
        // sleep would.
        if let Some(addr) = found
            && serves_canary(addr).await
        {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no endpoint for podinfo-canary in 60s: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the podinfo at `addr` reports a canary revision other than the initial one.
async fn serves_canary(addr: SocketAddrV4) -> bool {
    let Ok(resp) = reqwest::get(format!("http://{addr}/")).await else {
        return false;
    };
    let body: Value = resp.json().await.unwrap_or_default();
    body["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("canary ") && !m.ends_with(" 6.0.0"))
}

/// Waits until the status of the Canary `name` of `ns` shows `weight`.
pub async fn wait_status_weight(ns: &crate::TestNs, name: &str, weight: i32) {
    ns.wait_canary(
        name,
        Duration::from_secs(60),
        &format!("canary weight {weight}"),
        |c| c.status.as_ref().is_some_and(|s| s.canary_weight == weight),
    )
    .await;
}

/// The Deployment `podinfo` at `image`, the local stand-in for its Pods, a Canary `podinfo`
/// on it (`spec` holds the provider, analysis and the like, over the target, a 120 s progress
/// deadline and service port 9898), and `fledge run`; returns once the Canary is Initialized
/// and only the harness's EndpointSlices point at its Services.
pub async fn local_podinfo_canary(ns: &crate::TestNs, image: &str, spec: Value) -> LocalWorkload {
    dataplane();
    ns.create::<k8s_openapi::api::apps::v1::Deployment>(crate::deployment_json(
        "podinfo", image, 1,
    ))
    .await;
    let workload = LocalWorkload::start(&ns.client, &ns.name, "podinfo", "podinfo");
    let mut full = json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "progressDeadlineSeconds": 120,
        "service": {"port": 9898},
    });
    if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), spec) {
        full.extend(extra);
    }
    ns.create::<fledge_api::Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": full,
    }))
    .await;
    ns.start_controller(&[]);
    ns.wait_phase(
        "podinfo",
        fledge_api::CanaryPhase::Initialized,
        Duration::from_secs(90),
    )
    .await;
    for svc in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        only_local_endpoints(&ns.client, &ns.name, svc)
            .await
            .unwrap();
    }
    workload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_group_backends_by_port_and_refuse_shared_addresses() {
        let a = |s: &str| s.parse::<SocketAddrV4>().unwrap();
        let s = endpoint_slices(
            "ns",
            "podinfo-canary",
            "http",
            &[a("127.0.0.1:9001"), a("127.0.0.2:9001")],
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].address_type, "FQDN");
        assert_eq!(s[0].endpoints.len(), 2);
        assert_eq!(
            s[0].labels()["endpointslice.kubernetes.io/managed-by"],
            MANAGED_BY
        );
        assert!(
            endpoint_slices(
                "ns",
                "x",
                "http",
                &[a("127.0.0.1:9001"), a("127.0.0.1:9002")]
            )
            .is_err()
        );
        let empty = endpoint_slices("ns", "x", "http", &[]).unwrap();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].endpoints.is_empty() && empty[0].ports.is_none());
    }

    #[test]
    fn tally_shares() {
        let mut t = Tally::default();
        t.by_version.insert("1".into(), 80);
        t.by_version.insert("2".into(), 19);
        t.failed = 1;
        assert_eq!(t.total(), 100);
        assert!((t.percent("2") - 19.0).abs() < 1e-9);
        assert_eq!(t.percent("3"), 0.0);
    }

    #[test]
    fn tally_roles_and_differences() {
        let mut before = Tally::default();
        before.by_version.insert("primary 6.0.0".into(), 70);
        before.by_version.insert("canary 6.0.1".into(), 10);
        before.errors.insert(503, 2);
        let mut now = before.clone();
        *now.by_version.get_mut("primary 6.0.0").unwrap() += 60;
        *now.by_version.get_mut("canary 6.0.1").unwrap() += 38;
        now.errors.insert(500, 1);
        now.failed = 1;
        let step = now.since(&before);
        assert_eq!(step.total(), 100);
        assert_eq!(step.errors, BTreeMap::from([(500, 1)]));
        assert_eq!(step.unsuccessful(), 2);
        assert!((step.role_percent("canary") - 38.0).abs() < 1e-9);
        assert!((step.role_percent("primary") - 60.0).abs() < 1e-9);
        assert_eq!(Tally::default().role_percent("canary"), 0.0);
    }
}
