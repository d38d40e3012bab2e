//! Local-mode wiring: EndpointSlices that point a Service at podinfo processes on loopback.
//!
//! The kwok Pods of the local cluster serve no traffic, so a Service reaches its app through
//! EndpointSlices written here, labelled `kubernetes.io/service-name: <service>` (what Traefik's
//! Gateway provider looks Services' endpoints up by) and managed by [`MANAGED_BY`] (so the
//! controller manager's endpointslice controller, which only touches slices it manages, leaves
//! them alone).
//!
//! The API server refuses loopback addresses in `IPv4` slices ("may not be in the loopback
//! range"), so the slices have address type `FQDN`, whose addresses only have to look like DNS
//! names: the IP literal `127.0.0.1` does, and Traefik dials it as it is. Kubernetes marks the
//! FQDN type deprecated (a warning on every write) but serves it.
//!
//! Traefik keys a Service's endpoints by address alone, so two backends of one Service need two
//! addresses (127.0.0.1, 127.0.0.2, …: all of 127.0.0.0/8 is loopback on Linux); the same
//! address twice is refused here rather than silently dropped there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::kubectl::Kubectl;

/// `endpointslice.kubernetes.io/managed-by` of the slices written here.
pub const MANAGED_BY: &str = "fledge-dataplane";
/// The address type of the slices written here.
pub const ADDRESS_TYPE: &str = "FQDN";

/// Arguments of `cargo xtask dataplane endpoints`.
#[derive(clap::Args, Debug)]
pub struct EndpointsArgs {
    /// The Service's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// The Service.
    #[arg(long)]
    service: String,
    /// The name of the Service port the backends serve; needed only when it has several.
    #[arg(long)]
    port_name: Option<String>,
    /// Backends as `127.0.0.x:port`; none leaves one slice without endpoints.
    backends: Vec<SocketAddrV4>,
}

pub fn run(kubectl: &Kubectl, args: EndpointsArgs) -> Result<()> {
    let service = kubectl
        .get_json(&["service", &args.service, "-n", &args.namespace])?
        .with_context(|| format!("Service {}/{} not found", args.namespace, args.service))?;
    let port_name = match args.port_name {
        Some(p) => p,
        None => service_port_name(&service)?,
    };
    attach(
        kubectl,
        &args.namespace,
        &args.service,
        &port_name,
        &args.backends,
    )?;
    println!(
        "{}/{} -> {}",
        args.namespace,
        args.service,
        args.backends
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// The name of the Service's only port ("" when unnamed).
fn service_port_name(service: &Value) -> Result<String> {
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match ports.as_slice() {
        [one] => Ok(one
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()),
        [] => bail!("the Service has no ports"),
        _ => bail!("the Service has several ports; say which with --port-name"),
    }
}

/// The slices that point `service` (port `port_name`) at `backends`: one per distinct port.
pub fn slices(
    namespace: &str,
    service: &str,
    port_name: &str,
    backends: &[SocketAddrV4],
) -> Result<Vec<Value>> {
    let mut seen = BTreeSet::new();
    for b in backends {
        if !b.ip().is_loopback() {
            bail!("{b} is not on loopback (127.0.0.0/8)");
        }
        if !seen.insert(*b.ip()) {
            bail!(
                "two backends of Service {service} share the address {}; Traefik keys endpoints \
                 by address, so give each backend its own (127.0.0.1, 127.0.0.2, …)",
                b.ip()
            );
        }
    }
    let labels = json!({
        "kubernetes.io/service-name": service,
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    });
    if backends.is_empty() {
        // What the endpointslice controller writes for a Service without ready Pods: Traefik
        // then serves 503 for the Service's share rather than calling the route unresolved.
        return Ok(vec![json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": format!("{service}-local"), "namespace": namespace, "labels": labels},
            "addressType": ADDRESS_TYPE,
            "endpoints": [],
        })]);
    }
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for b in backends {
        by_port
            .entry(b.port())
            .or_default()
            .push(b.ip().to_string());
    }
    Ok(by_port
        .into_iter()
        .map(|(port, addresses)| {
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name(service, port),
                    "namespace": namespace,
                    "labels": labels,
                },
                "addressType": ADDRESS_TYPE,
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": addresses
                    .into_iter()
                    .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect())
}

fn slice_name(service: &str, port: u16) -> String {
    format!("{service}-local-{port}")
}

/// Applies [`slices`] and deletes the slices written here before that are no longer wanted.
pub fn attach(
    kubectl: &Kubectl,
    namespace: &str,
    service: &str,
    port_name: &str,
    backends: &[SocketAddrV4],
) -> Result<()> {
    let wanted = slices(namespace, service, port_name, backends)?;
    let keep: BTreeSet<String> = wanted
        .iter()
        .filter_map(|s| s.pointer("/metadata/name")?.as_str().map(str::to_string))
        .collect();
    kubectl.apply(&json!({"apiVersion": "v1", "kind": "List", "items": wanted}))?;
    let selector = format!(
        "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
    );
    let existing = kubectl
        .get_json(&["endpointslices", "-n", namespace, "-l", &selector])?
        .unwrap_or_default();
    for name in existing
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.pointer("/metadata/name")?.as_str())
        .filter(|n| !keep.contains(*n))
    {
        kubectl.run(&[
            "delete",
            "endpointslice",
            name,
            "-n",
            namespace,
            "--ignore-not-found",
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn one_slice_per_port_with_ready_loopback_endpoints() {
        let s = slices(
            "test",
            "podinfo-primary",
            "http",
            &[
                addr("127.0.0.1:9001"),
                addr("127.0.0.2:9001"),
                addr("127.0.0.3:9002"),
            ],
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["metadata"]["name"], "podinfo-primary-local-9001");
        assert_eq!(
            s[0]["metadata"]["labels"]["kubernetes.io/service-name"],
            "podinfo-primary"
        );
        assert_eq!(
            s[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            MANAGED_BY
        );
        assert_eq!(s[0]["addressType"], "FQDN");
        assert_eq!(s[0]["ports"][0]["name"], "http");
        assert_eq!(s[0]["endpoints"].as_array().unwrap().len(), 2);
        assert_eq!(s[0]["endpoints"][1]["addresses"][0], "127.0.0.2");
        assert_eq!(s[0]["endpoints"][1]["conditions"]["ready"], true);
        assert_eq!(s[1]["ports"][0]["port"], 9002);
    }

    #[test]
    fn refuses_shared_and_non_loopback_addresses() {
        let shared = slices(
            "t",
            "svc",
            "http",
            &[addr("127.0.0.1:9001"), addr("127.0.0.1:9002")],
        );
        assert!(
            shared
                .unwrap_err()
                .to_string()
                .contains("share the address")
        );
        assert!(slices("t", "svc", "http", &[addr("10.0.0.1:80")]).is_err());
        let empty = slices("t", "svc", "http", &[]).unwrap();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0]["endpoints"], json!([]));
        assert_eq!(empty[0]["metadata"]["name"], "svc-local");
    }

    #[test]
    fn takes_the_name_of_a_single_service_port() {
        let svc = json!({"spec": {"ports": [{"name": "http", "port": 9898}]}});
        assert_eq!(service_port_name(&svc).unwrap(), "http");
        let unnamed = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(service_port_name(&unnamed).unwrap(), "");
        let two = json!({"spec": {"ports": [{"name": "a"}, {"name": "b"}]}});
        assert!(service_port_name(&two).is_err());
    }
}
