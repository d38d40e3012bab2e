//! Sharding across controllers: two shards of two replicas each (`--shard a --default-shard`
//! and `--shard b`, each with its own leader-election Lease) share 200 Canaries: 100 labelled
//! `fledge.dev/shard: b`, 50 labelled `a` and 50 without the label, which the default shard
//! `a` takes. Every Canary is initialized, and the API server's audit log (by user agent) shows
//! each shard touching only its own Canaries, Deployments and Services. Then ten Canaries of
//! each shard roll out, and shard `a`'s leader is killed while they do: every rollout of shard
//! `b` is promoted by the leader it had, and shard `a`'s standby takes its Lease and promotes
//! shard `a`'s own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fledge_api::CanaryPhase;
use fledge_e2e::{TestNs, image_of};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const CANARIES: usize = 200;
const ROLLED_OUT_PER_SHARD: usize = 10;
const DEADLINE: Duration = Duration::from_secs(300);

fn name(i: usize) -> String {
    format!("app-{i:03}")
}

/// The shard label of Canary `i` (`None`: unlabelled, the default shard's).
fn label(i: usize) -> Option<&'static str> {
    match i % 4 {
        0 => None,
        1 => Some("a"),
        _ => Some("b"),
    }
}

/// The shard that should handle Canary `i`.
fn shard_of(i: usize) -> &'static str {
    label(i).unwrap_or("a")
}

/// The Canary an object of the rollout belongs to (`app-007-primary` → `app-007`).
fn canary_of(object: &str) -> &str {
    ["-primary", "-canary"]
        .iter()
        .find_map(|s| object.strip_suffix(s))
        .unwrap_or(object)
}

async fn holder(ns: &TestNs, lease: &str) -> Option<String> {
    let lease = ns.api::<Lease>().get_opt(lease).await.ok()??;
    lease.spec?.holder_identity
}

/// The objects of `ns` each shard touched by name (audit records by user agent): `(shard,
/// resource, name)`.
fn touched_in(records: &[Value], ns: &str) -> Vec<(String, String, String)> {
    records
        .iter()
        .filter(|r| r["objectRef"]["namespace"] == ns)
        .filter_map(|r| {
            let agent = r["userAgent"].as_str()?;
            let shard = agent
                .split_once("(shard ")?
                .1
                .trim_end_matches(')')
                .to_string();
            let object = &r["objectRef"];
            let name = object["name"].as_str()?.to_string();
            let resource = object["resource"].as_str()?.to_string();
            if !["canaries", "deployments", "services"].contains(&resource.as_str()) {
                return None;
            }
            Some((shard, resource, name))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_shards_split_two_hundred_canaries_and_outlive_each_others_leader() {
    let ns = TestNs::new("shards").await;
    let labels = |i| match label(i) {
        Some(l) => json!({"fledge.dev/shard": l}),
        None => json!({}),
    };
    let analysis = json!({"interval": "2s", "threshold": 2, "iterations": 3});
    ns.create_canaries(CANARIES, name, labels, V1, &analysis)
        .await;

    // Two replicas per shard; the Leases live in the test's namespace.
    let replica = |shard: &str, id: &str, default: bool| {
        let mut args = vec![
            "--shard",
            shard,
            "--leader-elect",
            "--lease-namespace",
            &ns.name,
            "--lease-duration",
            "6",
            "--identity",
            id,
        ];
        if default {
            args.push("--default-shard");
        }
        ns.start_controller(&args)
    };
    let a = [replica("a", "a0", true), replica("a", "a1", true)];
    let b = [replica("b", "b0", false), replica("b", "b1", false)];
    let all: BTreeSet<String> = (0..CANARIES).map(name).collect();
    let started = Instant::now();
    ns.wait_all_in(
        &all,
        CanaryPhase::Initialized,
        &[a[0], a[1], b[0], b[1]],
        DEADLINE,
    )
    .await;
    let initialized_in = started.elapsed();

    // Each shard touched its own objects and no other shard's.
    let records = fledge_e2e::audit_records();
    let touched = touched_in(&records, &ns.name);
    let mut own: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
    for (shard, resource, object) in &touched {
        let canary = canary_of(object);
        let i: usize = canary
            .strip_prefix("app-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("shard {shard} touched {resource}/{object}"));
        assert_eq!(
            shard,
            shard_of(i),
            "shard {shard} touched {resource}/{object}, a Canary of shard {}",
            shard_of(i)
        );
        own.entry(shard_of(i))
            .or_default()
            .insert(canary.to_string());
    }
    for (shard, want) in [("a", 100), ("b", 100)] {
        let n = own.get(shard).map_or(0, BTreeSet::len);
        assert_eq!(
            n, want,
            "shard {shard} touched the objects of {n} Canaries, not {want}"
        );
    }

    // Ten rollouts per shard (five of them unlabelled, for shard a); shard a's leader is killed
    // as soon as its rollouts are under way.
    let rolled = |shard: &str| -> BTreeSet<String> {
        (0..CANARIES)
            .filter(|&i| shard_of(i) == shard)
            .take(ROLLED_OUT_PER_SHARD)
            .map(name)
            .collect()
    };
    let (rolled_a, rolled_b) = (rolled("a"), rolled("b"));
    assert!(
        rolled_a.iter().any(|n| n == "app-000"),
        "unlabelled among a's"
    );
    let leader_b = holder(&ns, "fledge-leader-b")
        .await
        .expect("shard b's leader");
    for n in rolled_a.iter().chain(&rolled_b) {
        ns.set_image(n, V2).await;
    }
    let leader_a = holder(&ns, "fledge-leader-a")
        .await
        .expect("shard a's leader");
    let (killed, standby) = if leader_a == "a0" {
        (a[0], a[1])
    } else {
        (a[1], a[0])
    };
    fledge_e2e::eventually(DEADLINE, "a rollout of shard a under way", || async {
        ns.phases()
            .await
            .iter()
            .any(|(n, p)| rolled_a.contains(n) && *p == CanaryPhase::Progressing)
    })
    .await
    .unwrap();
    ns.kill_controller(killed);
    let killed_at = Instant::now();

    ns.wait_all_in(&rolled_b, CanaryPhase::Succeeded, &[b[0], b[1]], DEADLINE)
        .await;
    let b_done = killed_at.elapsed();
    ns.wait_all_in(&rolled_a, CanaryPhase::Succeeded, &[standby], DEADLINE)
        .await;
    let a_done = killed_at.elapsed();
    for n in rolled_a.iter().chain(&rolled_b) {
        assert_eq!(
            image_of(&ns.deployment(&format!("{n}-primary")).await),
            V2,
            "{n} promoted"
        );
    }
    let new_leader_a = holder(&ns, "fledge-leader-a").await;
    assert_ne!(
        new_leader_a.as_deref(),
        Some(leader_a.as_str()),
        "shard a's standby took the Lease"
    );
    assert_eq!(
        holder(&ns, "fledge-leader-b").await.as_deref(),
        Some(leader_b.as_str()),
        "shard b kept its leader"
    );
    let others_untouched: Vec<_> = ns
        .phases()
        .await
        .into_iter()
        .filter(|(n, _)| !rolled_a.contains(n) && !rolled_b.contains(n))
        .filter(|(_, p)| *p != CanaryPhase::Initialized)
        .collect();
    assert!(
        others_untouched.is_empty(),
        "Canaries not rolled out moved: {others_untouched:?}"
    );
    // Through the whole test, still no shard touched another's objects.
    let touched = touched_in(&fledge_e2e::audit_records(), &ns.name);
    for (shard, resource, object) in &touched {
        let i: usize = canary_of(object)
            .strip_prefix("app-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        assert!(
            i < CANARIES && shard == shard_of(i),
            "shard {shard} touched {resource}/{object}"
        );
    }
    eprintln!(
        "{CANARIES} Canaries initialized by two shards in {:.1} s; {} requests by name, each \
         shard's to its own objects only; shard a's leader {leader_a} killed: shard b promoted \
         its {ROLLED_OUT_PER_SHARD} rollouts {:.1} s later with its leader {leader_b}, shard \
         a's standby ({}) promoted its {ROLLED_OUT_PER_SHARD} {:.1} s later",
        initialized_in.as_secs_f64(),
        touched.len(),
        b_done.as_secs_f64(),
        new_leader_a.unwrap_or_default(),
        a_done.as_secs_f64()
    );
}
