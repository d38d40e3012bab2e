//! The live cut-over from Flagger to fledge, against the real thing: Flagger v1.36.1 (built from
//! its Go module by `cargo xtask flagger`) initializes a `kubernetes` Canary and a
//! `gatewayapi:v1` Canary on the local control plane, with real requests flowing through
//! Traefik to podinfo; then Flagger is stopped, its Canaries are moved over with
//! `kubectl fledge import --from-cluster` and applied, and `fledge run` starts.
//!
//! Checked: no Pod or ReplicaSet of the primaries is replaced (same UIDs), the Services'
//! selectors and the HTTPRoute's weights never change during the hand-over (sampled every
//! 100 ms), no request fails during it, both Canaries become `Initialized` under fledge, the
//! primaries, Services and route are fledge's afterwards (deleting Flagger's Canaries leaves
//! them in place, while the garbage collector does delete what still named them), and fledge
//! promotes the next revision of both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::analysis::Load;
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, LocalWorkload, Tally, dataplane, httproutes,
    only_local_endpoints, wait_route_accepted, wait_routed,
};
use fledge_e2e::flagger::{self, Flagger};
use fledge_e2e::{TestNs, admin_kubeconfig, deployment_json, eventually, image_of, root};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
/// The blue/green Canary on the `kubernetes` provider.
const KUBE: &str = "blue";
/// The weighted Canary on the `gatewayapi:v1` provider.
const GW: &str = "web";
/// Requests per second through the Gateway to each app during the hand-over.
const RATE: u32 = 20;

/// A Canary as Flagger's users write it, with `spec` merged in.
fn flagger_canary(name: &str, provider: &str, spec: Value) -> Value {
    let mut c = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
        }
    });
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        match (&mut c["spec"][&k], v) {
            (Value::Object(into), Value::Object(from)) => into.extend(from),
            (slot, v) => *slot = v,
        }
    }
    c
}

/// The two Canaries Flagger runs: blue/green on `kubernetes`, and weighted on `gatewayapi:v1`
/// answering for `gw_host` on the data plane's Gateway.
fn flagger_canaries(gw_host: &str) -> [Value; 2] {
    [
        flagger_canary(
            KUBE,
            "kubernetes",
            json!({"analysis": {"interval": "3s", "threshold": 2, "iterations": 2}}),
        ),
        flagger_canary(
            GW,
            "gatewayapi:v1",
            json!({
                "service": {
                    "hosts": [gw_host],
                    "gatewayRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
                },
                "analysis": {"interval": "3s", "threshold": 2, "stepWeight": 25, "maxWeight": 50},
            }),
        ),
    ]
}

/// UIDs of the Pods and ReplicaSets of a primary, by name.
async fn primary_uids(ns: &TestNs, target: &str) -> BTreeMap<String, String> {
    let sel = ListParams::default().labels(&format!("app={target}-primary"));
    let mut out = BTreeMap::new();
    for p in ns.api::<Pod>().list(&sel).await.unwrap().items {
        out.insert(format!("Pod {}", p.name_any()), p.uid().unwrap_or_default());
    }
    for rs in ns.api::<ReplicaSet>().list(&sel).await.unwrap().items {
        out.insert(
            format!("ReplicaSet {}", rs.name_any()),
            rs.uid().unwrap_or_default(),
        );
    }
    let d = ns.deployment(&format!("{target}-primary")).await;
    out.insert(
        format!("Deployment {}", d.name_any()),
        d.uid().unwrap_or_default(),
    );
    out
}

/// What traffic depends on: the selectors of both Canaries' Services and the backends and
/// weights of the Gateway API Canary's HTTPRoute.
async fn routing_snapshot(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    for target in [KUBE, GW] {
        for svc in [
            target.to_string(),
            format!("{target}-primary"),
            format!("{target}-canary"),
        ] {
            let s = services.get(&svc).await?;
            let sel = s.spec.and_then(|s| s.selector).unwrap_or_default();
            out.insert(format!("Service {svc} selector"), format!("{sel:?}"));
        }
    }
    let route = httproutes(client, ns).get(GW).await?;
    let backends: Vec<String> = route
        .data
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| r["backendRefs"].as_array().cloned().unwrap_or_default())
        .map(|b| format!("{}={}", b["name"].as_str().unwrap_or("?"), b["weight"]))
        .collect();
    out.insert(format!("HTTPRoute {GW} weights"), backends.join(","));
    Ok(out)
}

/// Samples [`routing_snapshot`] every 100 ms until stopped; returns the samples taken and every
/// difference from `expected` seen.
fn sample_routing(
    client: Client,
    ns: String,
    expected: BTreeMap<String, String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let mut samples = 0;
        let mut changes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match routing_snapshot(&client, &ns).await {
                Ok(now) => {
                    samples += 1;
                    for (k, v) in &now {
                        if expected.get(k) != Some(v) {
                            changes.push(format!("{k}: {:?} became {v}", expected.get(k)));
                        }
                    }
                }
                Err(e) => changes.push(format!("cannot read the routing objects: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (samples, changes)
    })
}

/// The Events about the fledge Canary `name` (not Flagger's of the same name), oldest first.
async fn fledge_events(ns: &TestNs, name: &str) -> Vec<String> {
    ns.events_where(name, |e| {
        e.involved_object
            .api_version
            .as_deref()
            .is_some_and(|v| v.starts_with("fledge.dev/"))
    })
    .await
}

fn print_tally(what: &str, t: &Tally) {
    println!(
        "{what}: {} requests sent, {} failed (error statuses {:?}, no answer {}); answered by {:?}",
        t.total(),
        t.unsuccessful(),
        t.errors,
        t.failed,
        t.by_version
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_flagger_installation_moves_to_fledge_without_touching_traffic() {
    dataplane();
    // Built now, so that the hand-over's timing does not count a build.
    fledge_e2e::plugin::binary();
    let ns = TestNs::new("cutover").await;
    let kube_host = format!("{KUBE}.{}.fledge.test", ns.name);
    let gw_host = format!("{GW}.{}.fledge.test", ns.name);

    // The apps, and the stand-in kubelet serving their primaries and canaries.
    ns.create::<Deployment>(deployment_json(KUBE, V1, 1)).await;
    ns.create::<Deployment>(deployment_json(GW, V1, 1)).await;
    let _kube_app = LocalWorkload::start(&ns.client, &ns.name, KUBE, KUBE);
    let _gw_app = LocalWorkload::start(&ns.client, &ns.name, GW, GW);

    // Flagger's Canaries, initialized by Flagger.
    let mut flagger_proc = Flagger::start(&ns, &[]).await.unwrap();
    let flagger_api = flagger::canaries(&ns.client, &ns.name);
    for c in flagger_canaries(&gw_host) {
        let obj = serde_json::from_value(c).unwrap();
        flagger_api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let init = Duration::from_secs(120);
    for name in [KUBE, GW] {
        flagger_proc
            .wait_phase(&ns, name, "Initialized", init)
            .await
            .unwrap();
    }
    // The kubernetes Canary has no route of its own: the app's users reach its apex Service
    // through a plain HTTPRoute.
    httproutes(&ns.client, &ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": format!("{KUBE}-users")},
                "spec": {
                    "parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
                    "hostnames": [kube_host],
                    "rules": [{"backendRefs": [{"name": KUBE, "port": 9898}]}],
                },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    for target in [KUBE, GW] {
        for svc in [
            target.to_string(),
            format!("{target}-primary"),
            format!("{target}-canary"),
        ] {
            only_local_endpoints(&ns.client, &ns.name, &svc)
                .await
                .unwrap();
        }
    }
    for route in [format!("{KUBE}-users"), GW.to_string()] {
        wait_route_accepted(&ns.client, &ns.name, &route, Duration::from_secs(30))
            .await
            .unwrap();
    }
    wait_routed(&kube_host, Duration::from_secs(30))
        .await
        .unwrap();
    wait_routed(&gw_host, Duration::from_secs(30))
        .await
        .unwrap();

    let uids_before: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([
        (KUBE.to_string(), primary_uids(&ns, KUBE).await),
        (GW.to_string(), primary_uids(&ns, GW).await),
    ]);
    let routing_before = routing_snapshot(&ns.client, &ns.name).await.unwrap();
    println!("routing under Flagger: {routing_before:#?}");

    // The hand-over, with traffic and the routing objects watched throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_routing(
        ns.client.clone(),
        ns.name.clone(),
        routing_before.clone(),
        stop.clone(),
    );
    let kube_load = Load::start(&kube_host, RATE, Duration::from_secs(180));
    let gw_load = Load::start(&gw_host, RATE, Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handover = Instant::now();

    // 1. Stop Flagger.
    flagger_proc.stop();
    // 2. Import its Canaries from the cluster, and apply them.
    let imported = fledge_e2e::plugin::run(&ns, &["import", "--from-cluster"])
        .await
        .ok();
    println!(
        "kubectl fledge import --from-cluster -n {}:\n{imported}",
        ns.name
    );
    assert_eq!(
        imported.matches("apiVersion: fledge.dev/v1beta1").count(),
        2
    );
    assert!(!imported.contains("flagger.app"), "{imported}");
    let kubectl = root().join("target/cluster/bin/kubectl");
    let mut apply = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(admin_kubeconfig())
        .args(["apply", "-n", &ns.name, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl apply");
    std::io::Write::write_all(apply.stdin.as_mut().unwrap(), imported.as_bytes()).unwrap();
    drop(apply.stdin.take());
    let applied = apply.wait_with_output().unwrap();
    assert!(applied.status.success(), "kubectl apply: {applied:?}");
    // 3. Start fledge.
    let fledge = ns.start_controller(&[]);
    for name in [KUBE, GW] {
        ns.wait_phase(name, CanaryPhase::Initialized, init).await;
    }
    let took = handover.elapsed();
    // Traffic goes on a little after fledge took over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (kube_tally, gw_tally) = (kube_load.tally(), gw_load.tally());
    drop((kube_load, gw_load));
    stop.store(true, Ordering::Relaxed);
    let (samples, changes) = sampler.await.unwrap();

    println!("hand-over: both Canaries Initialized under fledge {took:.1?} after Flagger stopped");
    print_tally(&format!("{KUBE} ({kube_host})"), &kube_tally);
    print_tally(&format!("{GW} ({gw_host})"), &gw_tally);
    println!("routing objects sampled {samples} times during the hand-over");
    assert!(samples > 10, "{samples} samples");
    assert!(
        changes.is_empty(),
        "the routing changed during the hand-over:\n{}",
        changes.join("\n")
    );
    for (what, t) in [(KUBE, &kube_tally), (GW, &gw_tally)] {
        assert!(t.total() > 50, "{what}: too few requests: {t:?}");
        assert_eq!(t.unsuccessful(), 0, "{what}: requests failed: {t:?}");
    }
    for (target, before) in &uids_before {
        assert_eq!(
            &primary_uids(&ns, target).await,
            before,
            "{target}: a primary Pod, ReplicaSet or Deployment was replaced"
        );
    }

    // fledge owns what Flagger made: deleting Flagger's Canaries leaves it in place, while the
    // garbage collector deletes what still names them (a ConfigMap made their dependant here).
    let mut witnesses = Vec::new();
    for name in [KUBE, GW] {
        let owner = flagger_api.get(name).await.unwrap();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-gc-witness"), "ownerReferences": [{
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": name,
                "uid": owner.uid().unwrap(),
            }]},
        }))
        .unwrap();
        ns.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        witnesses.push(cm.name_any());
        let primary = ns.deployment(&format!("{name}-primary")).await;
        let owners: Vec<String> = primary
            .owner_references()
            .iter()
            .map(|o| format!("{} {}", o.api_version, o.kind))
            .collect();
        assert_eq!(owners, ["fledge.dev/v1beta1 Canary"], "{name}-primary");
        flagger_api
            .delete(name, &DeleteParams::background())
            .await
            .unwrap();
    }
    let cms = ns.api::<ConfigMap>();
    eventually(
        Duration::from_secs(60),
        "the garbage collector to delete the dependants of Flagger's Canaries",
        || async {
            let mut gone = true;
            for w in &witnesses {
                gone &= matches!(cms.get_opt(w).await, Ok(None));
            }
            gone
        },
    )
    .await
    .unwrap();
    for (target, before) in &uids_before {
        assert_eq!(
            &primary_uids(&ns, target).await,
            before,
            "{target}: the primary did not survive the deletion of Flagger's Canary"
        );
    }
    assert_eq!(
        routing_snapshot(&ns.client, &ns.name).await.unwrap(),
        routing_before,
        "the routing objects did not survive the deletion of Flagger's Canaries"
    );

    // The next revision, promoted by fledge.
    for name in [KUBE, GW] {
        ns.set_image(name, V2).await;
    }
    for name in [KUBE, GW] {
        ns.wait_canary(
            name,
            Duration::from_secs(180),
            "the next revision promoted",
            |c: &Canary| {
                c.status.as_ref().is_some_and(|s| {
                    s.phase == CanaryPhase::Succeeded
                        && s.last_promoted_spec.is_some()
                        && s.last_promoted_spec == s.last_applied_spec
                })
            },
        )
        .await;
        assert_eq!(
            image_of(&ns.deployment(&format!("{name}-primary")).await),
            V2,
            "{name}"
        );
    }
    for name in [KUBE, GW] {
        println!("Events fledge emitted for Canary {}/{name}:", ns.name);
        for e in fledge_events(&ns, name).await {
            println!("  {e}");
        }
    }
    let adopted = fledge_events(&ns, GW).await;
    assert!(
        adopted.iter().any(|e| e.contains("AdoptedFromFlagger")),
        "{adopted:#?}"
    );

    // And back to Flagger: fledge stopped, its Canaries deleted leaving what they own in place
    // (their finalizer removed, `--cascade=orphan`), Flagger's Canaries applied again and
    // Flagger started; traffic and routing are watched again.
    // The stand-in kubelet's processes of the old revision drain for a few seconds after a
    // promotion (as Pods with a preStop sleep would); let them go first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let uids_promoted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([
        (KUBE.to_string(), primary_uids(&ns, KUBE).await),
        (GW.to_string(), primary_uids(&ns, GW).await),
    ]);
    let routing_promoted = routing_snapshot(&ns.client, &ns.name).await.unwrap();
    assert_eq!(routing_promoted, routing_before);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_routing(
        ns.client.clone(),
        ns.name.clone(),
        routing_promoted,
        stop.clone(),
    );
    let kube_load = Load::start(&kube_host, RATE, Duration::from_secs(180));
    let gw_load = Load::start(&gw_host, RATE, Duration::from_secs(180));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = Instant::now();
    ns.kill_controller(fledge);
    let ours = ns.api::<Canary>();
    for name in [KUBE, GW] {
        ours.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        let orphan = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        };
        ours.delete(name, &orphan).await.unwrap();
    }
    eventually(
        Duration::from_secs(60),
        "fledge's Canaries deleted",
        || async {
            let mut gone = true;
            for name in [KUBE, GW] {
                gone &= matches!(ours.get_opt(name).await, Ok(None));
            }
            gone
        },
    )
    .await
    .unwrap();
    for c in flagger_canaries(&gw_host) {
        let obj = serde_json::from_value(c).unwrap();
        flagger_api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let flagger_again = Flagger::start(&ns, &[]).await.unwrap();
    for name in [KUBE, GW] {
        flagger_again
            .wait_phase(&ns, name, "Initialized", init)
            .await
            .unwrap();
    }
    let took = back.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (kube_tally, gw_tally) = (kube_load.tally(), gw_load.tally());
    drop((kube_load, gw_load));
    stop.store(true, Ordering::Relaxed);
    let (samples, changes) = sampler.await.unwrap();
    println!(
        "back to Flagger: both Canaries Initialized under Flagger {took:.1?} after fledge stopped"
    );
    print_tally(&format!("{KUBE} ({kube_host})"), &kube_tally);
    print_tally(&format!("{GW} ({gw_host})"), &gw_tally);
    println!("routing objects sampled {samples} times on the way back");
    assert!(
        changes.is_empty(),
        "the routing changed on the way back:\n{}",
        changes.join("\n")
    );
    for (what, t) in [(KUBE, &kube_tally), (GW, &gw_tally)] {
        assert_eq!(
            t.unsuccessful(),
            0,
            "{what}: requests failed on the way back: {t:?}"
        );
    }
    for (target, before) in &uids_promoted {
        assert_eq!(
            &primary_uids(&ns, target).await,
            before,
            "{target}: a primary Pod, ReplicaSet or Deployment was replaced on the way back"
        );
    }
}
