//! A stand-in kubelet for a StatefulSet's pods on the local control plane: kube-controller-
//! manager's StatefulSet controller creates and replaces the pods, kwok marks them Ready, and
//! this runs one podinfo process per Ready pod, of the pod's image tag, on an address of its
//! own (`127.0.0.<20 + ordinal>`), publishes each as an endpoint of the Services whose selector
//! its pod matches (the apex over every pod; behind a router, the primary and canary Services
//! by `controller-revision-hash`), and has Prometheus scrape each labelled as the pod.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::analysis::ScrapeTarget;
use crate::dataplane::{OptsFor, Podinfo, PodinfoOpts, attach_endpoints};

/// Runs the pods of a StatefulSet until dropped.
pub struct LocalStatefulSet {
    task: tokio::task::JoinHandle<()>,
}

/// One pod's process.
struct PodProcess {
    /// `controller-revision-hash` of the pod it serves.
    revision: String,
    /// The pod's labels.
    labels: BTreeMap<String, String>,
    uid: String,
    process: Podinfo,
    _scrape: ScrapeTarget,
}

impl LocalStatefulSet {
    /// Follows the pods labelled `app=<name>` in `namespace`; each of `services` (those that
    /// exist) gets the endpoints of the pods its selector matches.
    /// Each process reports `"<pod> <image tag>"`; `opts` is asked with the pod's name and its
    /// image tag.
    pub fn start(
        client: &Client,
        namespace: &str,
        name: &str,
        services: &[&str],
        opts: OptsFor,
    ) -> LocalStatefulSet {
        let mut pods = Pods {
            client: client.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            services: services.iter().map(|s| s.to_string()).collect(),
            opts,
            procs: BTreeMap::new(),
            draining: Vec::new(),
            published: BTreeMap::new(),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = pods.sync().await {
                    eprintln!("local statefulset {}: {e:#}", pods.name);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        LocalStatefulSet { task }
    }
}

impl Drop for LocalStatefulSet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The revision label of a pod.
pub fn revision_of(pod: &Pod) -> String {
    pod.labels()
        .get("controller-revision-hash")
        .cloned()
        .unwrap_or_default()
}

/// The pods followed, their processes, and the endpoints last published.
struct Pods {
    client: Client,
    namespace: String,
    name: String,
    services: Vec<String>,
    opts: OptsFor,
    procs: BTreeMap<String, PodProcess>,
    /// Processes of pods gone or replaced, serving until the instant given.
    draining: Vec<(Instant, PodProcess)>,
    /// By Service, the endpoints last published.
    published: BTreeMap<String, Vec<SocketAddrV4>>,
}

impl Pods {
    async fn sync(&mut self) -> anyhow::Result<()> {
        let Pods {
            client,
            namespace,
            name,
            services,
            opts,
            procs,
            draining,
            published,
        } = self;
        let (client, namespace, name) = (&*client, namespace.as_str(), name.as_str());
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let list = api
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await?;
        let live: BTreeMap<String, &Pod> = list
            .items
            .iter()
            .filter(|p| ready(p))
            .map(|p| (p.name_any(), p))
            .collect();
        // A pod that is gone or replaced leaves the endpoints first and keeps serving a few
        // seconds (like a preStop sleep), so that requests Traefik already sent it are answered.
        let gone: Vec<String> = procs
            .iter()
            .filter(|(pod, proc)| {
                !live.get(*pod).is_some_and(|p| {
                    revision_of(p) == proc.revision && p.uid().unwrap_or_default() == proc.uid
                })
            })
            .map(|(pod, _)| pod.clone())
            .collect();
        for pod in gone {
            if let Some(p) = procs.remove(&pod) {
                draining.push((Instant::now() + Duration::from_secs(3), p));
            }
        }
        draining.retain(|(until, _)| Instant::now() < *until);
        for (pod, p) in &live {
            if procs.contains_key(pod) {
                continue;
            }
            let ordinal: u8 = pod
                .rsplit('-')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let tag = image.rsplit(':').next().unwrap_or(&image).to_string();
            let process = Podinfo::start(
                &format!("{pod} {tag}"),
                PodinfoOpts {
                    ip: Ipv4Addr::new(127, 0, 0, 20u8.saturating_add(ordinal)),
                    ..opts(pod, &tag)
                },
            )
            .await?;
            let scrape = ScrapeTarget::register(
                // Per process: a draining one's registration goes with it, not the new one's.
                &format!("{namespace}-{pod}-{}", process.addr.port()),
                SocketAddr::V4(process.addr),
                &[
                    ("kubernetes_namespace", namespace),
                    ("kubernetes_pod_name", pod),
                ],
            );
            procs.insert(
                pod.clone(),
                PodProcess {
                    revision: revision_of(p),
                    labels: p.labels().clone(),
                    uid: p.uid().unwrap_or_default(),
                    process,
                    _scrape: scrape,
                },
            );
        }
        let svc_api: Api<Service> = Api::namespaced(client.clone(), namespace);
        for service in services.iter() {
            let Some(svc) = svc_api.get_opt(service).await? else {
                continue;
            };
            let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
            let backends: Vec<SocketAddrV4> = procs
                .values()
                .filter(|p| {
                    !selector.is_empty() && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .map(|p| p.process.addr)
                .collect();
            if published.get(service) != Some(&backends) {
                attach_endpoints(client, namespace, service, "http", &backends).await?;
                published.insert(service.clone(), backends);
            }
        }
        Ok(())
    }
}
