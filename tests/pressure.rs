//! The controller under memory pressure: a hundred Canaries initialized by a controller whose
//! peak memory is measured in a cgroup of its own; then a new controller, held by a cgroup
//! limit a quarter above that peak, takes them over and rolls ten of them out. It is never
//! OOM-killed and every rollout is promoted. (Figures, not timings: how long it takes belongs
//! to `cargo xtask bench scale`.)

use std::collections::BTreeSet;
use std::time::Duration;

use fledge_api::CanaryPhase;
use fledge_e2e::TestNs;
use fledge_e2e::cgroup::MemoryCgroup;
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const CANARIES: usize = 100;
const ROLLED_OUT: usize = 10;
const DEADLINE: Duration = Duration::from_secs(300);

fn name(i: usize) -> String {
    format!("app-{i:03}")
}

#[tokio::test(flavor = "multi_thread")]
async fn under_a_memory_limit_near_its_peak_the_controller_runs_a_hundred_canaries() {
    let ns = TestNs::new("pressure").await;
    let pid = std::process::id();
    let measured = MemoryCgroup::create(&format!("fledge-e2e-{pid}-measured"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let analysis = json!({"interval": "1s", "threshold": 2, "iterations": 2});
    ns.create_canaries(CANARIES, name, |_| json!({}), V1, &analysis)
        .await;

    // 1. The peak of a controller initializing all of them, with no limit.
    let first = ns.start_controller(&[]);
    measured.add(ns.controller_pid(first)).unwrap();
    let all: BTreeSet<String> = (0..CANARIES).map(name).collect();
    ns.wait_all_in(&all, CanaryPhase::Initialized, &[first], DEADLINE)
        .await;
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
    let rolled: BTreeSet<String> = (0..ROLLED_OUT).map(name).collect();
    ns.wait_all_in(&rolled, CanaryPhase::Succeeded, &[second], DEADLINE)
        .await;
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
