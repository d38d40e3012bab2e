//! fledge's `flagger_*` metric families against Flagger's own: Flagger v1.36.1 and `fledge run`
//! each promote a new revision of a Canary with a metric check, in one namespace; then every
//! `flagger_*` family Flagger's `/metrics` shows must be on fledge's with the same type and the
//! same label names, so that dashboards and alert rules written for Flagger keep working.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase, MetricTemplate};
use fledge_e2e::dataplane::dataplane;
use fledge_e2e::flagger::{self, Flagger};
use fledge_e2e::{TestNs, deployment_json};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

/// Flagger's families, each shown once a Canary has been through a rollout with a metric.
const FAMILIES: [&str; 6] = [
    "flagger_info",
    "flagger_canary_total",
    "flagger_canary_status",
    "flagger_canary_weight",
    "flagger_canary_duration_seconds",
    "flagger_canary_metric_analysis",
];

/// A family of the Prometheus text format: its type and the label names of its samples
/// (without a histogram's `le`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The `flagger_*` families of a `/metrics` text (Prometheus' text format or OpenMetrics).
fn flagger_families(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (words.next(), words.next())
                && name.starts_with("flagger_")
            {
                families.insert(
                    name.to_string(),
                    Family {
                        kind: kind.to_string(),
                        labels: BTreeSet::new(),
                    },
                );
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..name_end];
        let family = ["_bucket", "_sum", "_count", "_created"]
            .iter()
            .filter_map(|s| sample.strip_suffix(s))
            .find(|f| families.contains_key(*f))
            .unwrap_or(sample);
        let Some(f) = families.get_mut(family) else {
            continue;
        };
        if let Some(labels) = line[name_end..]
            .strip_prefix('{')
            .and_then(|l| l.split_once('}'))
            .map(|(l, _)| l)
        {
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let name = pair.split('=').next().unwrap_or_default().trim();
                if name != "le" {
                    f.labels.insert(name.to_string());
                }
            }
        }
    }
    families
}

#[test]
fn families_are_read_from_both_formats() {
    let go = "# HELP flagger_canary_duration_seconds d\n# TYPE flagger_canary_duration_seconds histogram\n\
              flagger_canary_duration_seconds_bucket{name=\"a\",namespace=\"b\",le=\"0.1\"} 1\n\
              flagger_canary_duration_seconds_sum{name=\"a\",namespace=\"b\"} 1\n\
              # TYPE flagger_info gauge\nflagger_info{mesh_provider=\"x\",version=\"1\"} 1\n\
              # TYPE go_goroutines gauge\ngo_goroutines 9\n";
    let f = flagger_families(go);
    assert_eq!(f.len(), 2);
    assert_eq!(f["flagger_canary_duration_seconds"].kind, "histogram");
    assert_eq!(
        f["flagger_canary_duration_seconds"].labels,
        BTreeSet::from(["name".to_string(), "namespace".to_string()])
    );
    assert_eq!(
        f["flagger_info"].labels,
        BTreeSet::from(["mesh_provider".to_string(), "version".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fledge_exports_flagger_s_families_with_flagger_s_types_and_labels() {
    let ns = TestNs::new("flagger-metrics").await;
    ns.create::<Deployment>(deployment_json("theirs", V1, 1))
        .await;
    ns.create::<Deployment>(deployment_json("ours", V1, 1))
        .await;
    // A metric both analyse: a MetricTemplate on the data plane's Prometheus that is always 1.
    let prometheus = dataplane().prometheus_url.clone();
    let template = |api_version: &str| {
        json!({
            "apiVersion": api_version, "kind": "MetricTemplate",
            "metadata": {"name": "always-one"},
            "spec": {
                "provider": {"type": "prometheus", "address": prometheus},
                "query": "vector(1)",
            }
        })
    };
    let canary = |api_version: &str, name: &str| {
        json!({
            "apiVersion": api_version, "kind": "Canary",
            "metadata": {"name": name},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 9898},
                "analysis": {
                    "interval": "3s", "threshold": 2, "iterations": 2,
                    "metrics": [{"name": "always-one", "interval": "1m",
                        "templateRef": {"name": "always-one"}, "thresholdRange": {"min": 0}}],
                },
            }
        })
    };
    let reference = Flagger::start(&ns, &[]).await.unwrap();
    flagger::api(&ns.client, &ns.name, "MetricTemplate", "metrictemplates")
        .create(
            &PostParams::default(),
            &serde_json::from_value(template("flagger.app/v1beta1")).unwrap(),
        )
        .await
        .unwrap();
    flagger::canaries(&ns.client, &ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(canary("flagger.app/v1beta1", "theirs")).unwrap(),
        )
        .await
        .unwrap();
    ns.create::<MetricTemplate>(template("fledge.dev/v1beta1"))
        .await;
    ns.create::<Canary>(canary("fledge.dev/v1beta1", "ours"))
        .await;
    let idx = ns.start_controller(&[]);
    let deadline = Duration::from_secs(120);
    reference
        .wait_phase(&ns, "theirs", "Initialized", deadline)
        .await
        .unwrap();
    ns.wait_phase("ours", CanaryPhase::Initialized, deadline)
        .await;
    // A rollout each: weights, analysis and durations are reported while one runs.
    ns.set_image("theirs", V2).await;
    ns.set_image("ours", V2).await;
    reference
        .wait_phase(&ns, "theirs", "Succeeded", deadline)
        .await
        .unwrap();
    ns.wait_phase("ours", CanaryPhase::Succeeded, deadline)
        .await;

    let read = |url: String| async move {
        reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .unwrap()
    };
    let theirs_url = format!("http://{}/metrics", reference.addr);
    let ours_url = format!("http://{}/metrics", ns.controller_metrics(idx));
    // Each reports a Canary at its next look at it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (theirs, ours) = loop {
        let theirs = flagger_families(&read(theirs_url.clone()).await);
        let ours = flagger_families(&read(ours_url.clone()).await);
        let ready =
            |f: &BTreeMap<String, Family>| FAMILIES.iter().all(|name| f.contains_key(*name));
        if (ready(&theirs) && ready(&ours)) || std::time::Instant::now() > deadline {
            break (theirs, ours);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("Flagger {}: {theirs:#?}", flagger::build().binary.display());
    println!("fledge: {ours:#?}");
    for required in FAMILIES {
        assert!(theirs.contains_key(required), "Flagger shows no {required}");
    }
    for (name, family) in &theirs {
        assert_eq!(
            ours.get(name),
            Some(family),
            "fledge's {name} differs from Flagger's"
        );
    }
}
