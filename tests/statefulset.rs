//! End-to-end: a StatefulSet rolled out through its partition on the local control plane.
//! kube-controller-manager's StatefulSet controller replaces the pods, kube-controller-manager's
//! volume binder binds each ordinal's PersistentVolumeClaim, kwok marks the pods Ready, and a
//! podinfo process per pod answers real requests through Traefik and is scraped by the data
//! plane's Prometheus, labelled as the pod, so that `{{ canary_pods }}` selects the canary's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::analysis::{Load, start_controller};
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, PodinfoOpts, Tally, httproutes, wait_routed,
};
use fledge_e2e::statefulset::{LocalStatefulSet, revision_of};
use fledge_e2e::{TestNs, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const SLOW: &str = "ghcr.io/stefanprodan/podinfo:6.0.2-slow";
const V3: &str = "ghcr.io/stefanprodan/podinfo:6.0.3";
const REPLICAS: i32 = 5;
const ROLLOUT: Duration = Duration::from_secs(240);

/// The PersistentVolumes the ordinals' claims bind to (cluster-scoped: deleted when dropped).
struct Volumes {
    api: Api<PersistentVolume>,
    names: Vec<String>,
}

impl Drop for Volumes {
    fn drop(&mut self) {
        let (api, names) = (self.api.clone(), self.names.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    for n in names {
                        let _ = api.delete(&n, &DeleteParams::default()).await;
                    }
                })
        })
        .join();
    }
}

async fn volumes(ns: &TestNs) -> Volumes {
    let api: Api<PersistentVolume> = Api::all(ns.client.clone());
    let mut names = Vec::new();
    for i in 0..REPLICAS {
        let name = format!("{}-pv-{i}", ns.name);
        let pv: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": ns.name,
                     "hostPath": {"path": format!("/tmp/fledge-e2e/{}/{i}", ns.name)}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &pv).await.unwrap();
        names.push(name);
    }
    Volumes { api, names }
}

fn statefulset(ns: &TestNs) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": REPLICAS,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "podinfod", "image": V1,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": ns.name,
                         "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    })
}

fn canary() -> serde_json::Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "db"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": {
                "interval": "8s", "threshold": 2, "stepReplicas": 1,
                "metrics": [
                    {"name": "request-success-rate", "interval": "15s", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "interval": "15s", "thresholdRange": {"max": 500}}
                ]
            }
        }
    })
}

/// Which ordinals run which revision (`controller-revision-hash`), read from the pods.
async fn revisions(ns: &TestNs) -> BTreeMap<i32, String> {
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    pods.list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let ordinal = p.name_any().rsplit('-').next()?.parse().ok()?;
            Some((ordinal, revision_of(p)))
        })
        .collect()
}

async fn sts(ns: &TestNs) -> StatefulSet {
    Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name)
        .get("db")
        .await
        .unwrap()
}

fn partition(s: &StatefulSet) -> i32 {
    s.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

async fn set_image(ns: &TestNs, image: &str) -> String {
    let api: Api<StatefulSet> = Api::namespaced(ns.client.clone(), &ns.name);
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "podinfod", "image": image}]}}}});
    api.patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    // The update revision the StatefulSet controller names for it.
    eventually(
        Duration::from_secs(30),
        "the new update revision",
        || async {
            let s = sts(ns).await;
            let st = s.status.unwrap_or_default();
            st.observed_generation >= s.metadata.generation
                && st.update_revision != st.current_revision
        },
    )
    .await
    .unwrap();
    sts(ns).await.status.unwrap().update_revision.unwrap()
}

/// Watches the pods until the Canary ends (Succeeded or Failed): the order in which ordinals
/// moved to `revision` and back, and the ordinals on it at each weight the Canary reported
/// (as the next step found them).
#[derive(Debug, Default)]
struct Watched {
    moved: Vec<i32>,
    back: Vec<i32>,
    at_weight: BTreeMap<i32, Vec<i32>>,
    /// At each weight, the share (percent) of the requests the new image's pods answered,
    /// and how many requests were counted.
    shares: BTreeMap<i32, (f64, u64)>,
}

async fn watch_rollout(
    ns: &TestNs,
    revision: &str,
    load: &Load,
    tag: &str,
    stop_at: impl Fn(&Canary) -> bool,
) -> (Watched, Canary) {
    let mut w = Watched::default();
    let mut on: Vec<i32> = Vec::new();
    let mut step: Option<(i32, Tally)> = None;
    let suffix = format!(" {tag}");
    let close = |w: &mut Watched, step: &Option<(i32, Tally)>| {
        if let Some((weight, since)) = step {
            let t = load.tally().since(since);
            let new: u64 = t
                .by_version
                .iter()
                .filter(|(v, _)| v.ends_with(&suffix))
                .map(|(_, n)| n)
                .sum();
            let share = 100.0 * new as f64 / t.total().max(1) as f64;
            w.shares.insert(*weight, (share, t.total()));
        }
    };
    let deadline = tokio::time::Instant::now() + ROLLOUT;
    loop {
        let now: Vec<i32> = revisions(ns)
            .await
            .into_iter()
            .filter(|(_, r)| r == revision)
            .map(|(o, _)| o)
            .collect();
        for o in &now {
            if !on.contains(o) && !w.moved.contains(o) {
                w.moved.push(*o);
            }
        }
        for o in &on {
            if !now.contains(o) && !w.back.contains(o) {
                w.back.push(*o);
            }
        }
        on = now;
        let c: Canary = ns.api::<Canary>().get("db").await.unwrap();
        let s = c.status.clone().unwrap_or_default();
        // The pods at a weight as the step's analysis finds them: the last look before the
        // next step (the partition is lowered in the reconcile that reports the weight, and
        // the StatefulSet controller moves the pod a moment later).
        if s.phase == CanaryPhase::Progressing && s.canary_weight > 0 {
            w.at_weight.insert(s.canary_weight, on.clone());
        }
        // Traffic is counted at a weight once its pods have all moved, until the next step.
        let moved_all =
            on.len() as i32 == fledge_api::statefulset::pods_for_weight(s.canary_weight, REPLICAS);
        let current = step.as_ref().map(|(wt, _)| *wt);
        if s.phase != CanaryPhase::Progressing || current.is_some_and(|wt| wt != s.canary_weight) {
            close(&mut w, &step);
            step = None;
        }
        if s.phase == CanaryPhase::Progressing
            && s.canary_weight > 0
            && step.is_none()
            && moved_all
            && !w.shares.contains_key(&s.canary_weight)
        {
            step = Some((s.canary_weight, load.tally()));
        }
        if stop_at(&c) {
            close(&mut w, &step);
            return (w, c);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollout did not end: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(c: &Canary) -> bool {
    c.status
        .as_ref()
        .is_some_and(|s| matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed))
}

async fn claims(ns: &TestNs) -> BTreeMap<String, (String, String)> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ns.client.clone(), &ns.name);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| {
            let volume = c.spec.and_then(|s| s.volume_name).unwrap_or_default();
            let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
            (c.metadata.name.unwrap_or_default(), (volume, phase))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_moves_pod_by_pod_from_the_highest_ordinal_and_rolls_back_in_place() {
    let ns = TestNs::new("sts").await;
    let _volumes = volumes(&ns).await;
    // The slow revision is slow (600-900 ms an answer) on every pod but the highest ordinal: it
    // passes its first step and is rolled back once it runs on two pods.
    let opts: fledge_e2e::dataplane::OptsFor = Arc::new(|pod: &str, tag: &str| PodinfoOpts {
        delay_ms: (tag.contains("slow") && pod != "db-4").then_some((600, 900)),
        ..PodinfoOpts::default()
    });
    let _pods = LocalStatefulSet::start(&ns.client, &ns.name, "db", "db", opts);
    ns.create::<StatefulSet>(statefulset(&ns)).await;
    let host = format!("db.{}.test", ns.name);
    let route: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "db"},
        "spec": {"parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
                 "hostnames": [host],
                 "rules": [{"backendRefs": [{"name": "db", "port": 9898}]}]}
    }))
    .unwrap();
    httproutes(&ns.client, &ns.name)
        .create(&PostParams::default(), &route)
        .await
        .unwrap();
    ns.create::<Canary>(canary()).await;
    let mut controller = start_controller(&ns);
    ns.wait_phase("db", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    assert_eq!(
        partition(&sts(&ns).await),
        REPLICAS,
        "held at the replica count"
    );
    eventually(
        Duration::from_secs(60),
        "every ordinal's claim bound",
        || async {
            let c = claims(&ns).await;
            c.len() == REPLICAS as usize && c.values().all(|(v, p)| !v.is_empty() && p == "Bound")
        },
    )
    .await
    .unwrap();
    let volumes_before = claims(&ns).await;
    wait_routed(&host, Duration::from_secs(30)).await.unwrap();
    let load = Load::start(&host, 30, Duration::from_secs(600));

    // 1. A good revision: ordinals 4, 3, 2, 1 one per step, 0 at promotion.
    let v2 = set_image(&ns, V2).await;
    let (w, c) = watch_rollout(&ns, &v2, &load, "6.0.1", ended).await;
    eprintln!("statefulset rollout of {V2}: {w:?}");
    assert_eq!(
        c.status.as_ref().unwrap().phase,
        CanaryPhase::Succeeded,
        "{:?}",
        c.status
    );
    assert_eq!(w.moved, vec![4, 3, 2, 1, 0], "ordinals moved highest first");
    assert_eq!(
        w.at_weight,
        BTreeMap::from([
            (20, vec![4]),
            (40, vec![3, 4]),
            (60, vec![2, 3, 4]),
            (80, vec![1, 2, 3, 4]),
        ]),
        "each step's pods, as the analysis judged them"
    );
    // Traffic follows the pods: each pod's share is its share of the Service's endpoints.
    for (weight, (share, n)) in &w.shares {
        assert!(*n >= 100, "too few requests at weight {weight}: {n}");
        assert!(
            (share - f64::from(*weight)).abs() <= 12.0,
            "at {weight}% of the pods the new revision answered {share:.1}% of {n} requests"
        );
    }
    assert_eq!(w.shares.len(), 4, "{:?}", w.shares);
    eventually(
        Duration::from_secs(30),
        "the partition held again",
        || async { partition(&sts(&ns).await) == REPLICAS },
    )
    .await
    .unwrap();

    // 2. A slow revision: judged on ordinal 4, then on 3 and 4, where it fails; the template
    // goes back and the two pods with it, their volumes untouched.
    let slow = set_image(&ns, SLOW).await;
    let (w, c) = watch_rollout(&ns, &slow, &load, "6.0.2-slow", ended).await;
    eprintln!("statefulset rollout of {SLOW}: {w:?}");
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:?}");
    assert_eq!(w.moved, vec![4, 3], "it reached two pods");
    eventually(
        Duration::from_secs(60),
        "ordinals 3 and 4 back on the promoted revision",
        || async {
            revisions(&ns).await.values().all(|r| *r == v2) && revisions(&ns).await.len() == 5
        },
    )
    .await
    .unwrap();
    let image = sts(&ns)
        .await
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some(V2),
        "the template is the promoted one again"
    );
    eventually(
        Duration::from_secs(30),
        "the partition held again",
        || async { partition(&sts(&ns).await) == REPLICAS },
    )
    .await
    .unwrap();
    assert_eq!(
        claims(&ns).await,
        volumes_before,
        "every ordinal keeps its volume"
    );

    // A pod keeps its name across revisions, so a metric window still holding the rolled-back
    // revision's samples would judge the next one by them: let the 15 s window pass.
    tokio::time::sleep(Duration::from_secs(16)).await;

    // 3. The controller killed mid-rollout: the partition stays, and the rollout goes on from it.
    let v3 = set_image(&ns, V3).await;
    let (w, _) = watch_rollout(&ns, &v3, &load, "6.0.3", |c| {
        c.status.as_ref().is_some_and(|s| s.canary_weight == 40)
    })
    .await;
    ns.kill_controller(controller.idx);
    eventually(
        Duration::from_secs(30),
        "ordinals 3 and 4 on the new revision",
        || async {
            revisions(&ns)
                .await
                .iter()
                .filter(|(_, r)| **r == v3)
                .count()
                == 2
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        partition(&sts(&ns).await),
        3,
        "nothing moved while fledge was down"
    );
    // What `kubectl fledge get` shows of it (kept for the README).
    let shown = fledge_e2e::plugin::run(&ns, &["get", "db"]).await.ok();
    eprintln!("kubectl fledge get db at partition 3:\n{shown}");
    for line in [
        "partition 3 of 5 replicas".to_string(),
        format!("ordinals 3-4 on {v3} (under test), 0-2 on {v2} (promoted)"),
        "Strategy:  StatefulSet partition, pods 1 (20%) 2 (40%) 3 (60%) 4 (80%)".to_string(),
    ] {
        assert!(shown.contains(&line), "no {line:?} in\n{shown}");
    }
    let logs = fledge_e2e::root().join("target/e2e-logs");
    let _ = std::fs::create_dir_all(&logs);
    let _ = std::fs::write(logs.join("statefulset-get.txt"), &shown);
    controller = start_controller(&ns);
    let (rest, c) = watch_rollout(&ns, &v3, &load, "6.0.3", ended).await;
    eprintln!("statefulset rollout of {V3} across a restart: before {w:?}, after {rest:?}");
    assert_eq!(
        c.status.as_ref().unwrap().phase,
        CanaryPhase::Succeeded,
        "{:?}",
        c.status
    );
    let mut order = w.moved.clone();
    order.extend(rest.moved.iter().filter(|o| !w.moved.contains(o)));
    assert_eq!(
        order,
        vec![4, 3, 2, 1, 0],
        "resumed at the partition it stopped at"
    );
    assert!(rest.back.is_empty(), "no pod went back: {rest:?}");
    eprintln!("requests during the rollouts: {:?}", load.tally());
    drop(controller);
}
