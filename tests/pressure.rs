//! The controller under memory pressure: a hundred Canaries initialized by a controller whose
//! peak memory is measured in a cgroup of its own; then a new controller, held by a cgroup
//! limit a quarter above that peak, takes them over and rolls ten of them out. It is never
//! OOM-killed and every rollout is promoted. (Figures, not timings: how long it takes belongs
//! to `cargo xtask bench scale`.)

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::cgroup::MemoryCgroup;
use fledge_e2e::{TestNs, deployment_json};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const CANARIES: usize = 100;
const ROLLED_OUT: usize = 10;
const DEADLINE: Duration = Duration::from_secs(300);

fn name(i: usize) -> String {
    format!("app-{i:03}")
}

/// How many of the Canaries are in `phase`.
async fn count_in(ns: &TestNs, phase: CanaryPhase, of: usize) -> usize {
    let list = ns.api::<Canary>().list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| (0..of).any(|i| name(i) == n))
        })
        .filter(|c| c.status.as_ref().is_some_and(|s| s.phase == phase))
        .count()
}

async fn wait_count(ns: &TestNs, phase: CanaryPhase, of: usize, want: usize, idx: usize) {
    let start = Instant::now();
    loop {
        let n = count_in(ns, phase, of).await;
        if n >= want {
            return;
        }
        assert!(
            ns.controller_exit(idx).is_none(),
            "the controller ended ({:?}) with {n} of {want} Canaries {phase:?}:\n{}",
            ns.controller_exit(idx),
            ns.controller_log(idx)
        );
        assert!(
            start.elapsed() < DEADLINE,
            "{n} of {want} Canaries {phase:?} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_memory_limit_near_its_peak_the_controller_runs_a_hundred_canaries() {
    let ns = TestNs::new("pressure").await;
    let pid = std::process::id();
    let measured = MemoryCgroup::create(&format!("fledge-e2e-{pid}-measured"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    futures::stream::iter(0..CANARIES)
        .for_each_concurrent(8, |i| {
            let ns = &ns;
            async move {
                ns.create::<Deployment>(deployment_json(&name(i), V1, 1))
                    .await;
                ns.create::<Canary>(json!({
                    "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                    "metadata": {"name": name(i)},
                    "spec": {
                        "provider": "kubernetes",
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": name(i)},
                        "service": {"port": 9898},
                        "analysis": {"interval": "1s", "threshold": 2, "iterations": 2}
                    }
                }))
                .await;
            }
        })
        .await;

    // 1. The peak of a controller initializing all of them, with no limit.
    let first = ns.start_controller(&[]);
    measured.add(ns.controller_pid(first)).unwrap();
    wait_count(&ns, CanaryPhase::Initialized, CANARIES, CANARIES, first).await;
    let peak = measured.peak().unwrap();
    ns.kill_controller(first);

    // 2. A new controller held a quarter above that peak takes them over and rolls ten out.
    let limit = peak + peak / 4;
    let held = MemoryCgroup::create(&format!("fledge-e2e-{pid}-held")).unwrap();
    held.limit(limit).unwrap();
    let second = ns.start_controller(&[]);
    held.add(ns.controller_pid(second)).unwrap();
    for i in 0..ROLLED_OUT {
        ns.set_image(&name(i), V2).await;
    }
    wait_count(&ns, CanaryPhase::Succeeded, ROLLED_OUT, ROLLED_OUT, second).await;
    for i in 0..ROLLED_OUT {
        let primary = ns.deployment(&format!("{}-primary", name(i))).await;
        let image = primary.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some(V2), "{} promoted", name(i));
    }
    assert_eq!(
        held.oom_kills().unwrap(),
        0,
        "the controller was OOM-killed"
    );
    assert!(
        ns.controller_exit(second).is_none(),
        "the controller ended: {:?}",
        ns.controller_exit(second)
    );
    let held_peak = held.peak().unwrap();
    ns.kill_controller(second);
    eprintln!(
        "{CANARIES} Canaries: the controller's peak while initializing them was {:.1} MiB; held \
         to {:.1} MiB, a new controller took them over and promoted {ROLLED_OUT} rollouts with \
         a peak of {:.1} MiB and no OOM kill",
        peak as f64 / 1048576.0,
        limit as f64 / 1048576.0,
        held_peak as f64 / 1048576.0
    );
}
