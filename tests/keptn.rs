//! The keptn metrics provider against the real API server: a KeptnMetric's value read through
//! the controller's kind of client, and an Analysis created, answered and deleted. The test
//! plays Keptn's metrics operator (it writes the status Keptn would write), so only the kinds
//! (`metrics.keptn.sh/v1beta1`) are needed on the local control plane.
//!
//! Keptn's own CRDs cannot be pinned here: the Go module proxy refuses every module of
//! `github.com/keptn/lifecycle-toolkit` (403). So the test serves the two kinds from stand-in
//! CRDs of its own (the group, version, names, scope and status subresource of Keptn's, with
//! schemas that keep every field): what the provider relies on, the API server's paths, verbs
//! and status writes, is real; Keptn's field validation is not.

use std::time::Duration;

use fledge_core::MetricOutcome;
use fledge_e2e::TestNs;
use fledge_metrics_providers::{Cluster, Context, ProviderConfig, provider_for};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
        plural,
    )
}

fn keptn(ns: &TestNs) -> Box<dyn fledge_metrics_providers::MetricsProvider> {
    let cfg = ProviderConfig {
        kind: "keptn".into(),
        address: String::new(),
        headers: Vec::new(),
        secret: None,
        insecure_skip_verify: false,
        region: None,
    };
    let ctx = Context {
        timeout: Duration::from_secs(15),
        cluster: Some(Cluster {
            client: ns.client.clone(),
            shown: String::new(),
        }),
    };
    match provider_for(&cfg, ctx) {
        Ok(p) => p,
        Err(e) => panic!("the keptn provider: {e:?}"),
    }
}

/// Serves KeptnMetric and Analysis (`metrics.keptn.sh/v1beta1`, namespaced, with a status
/// subresource) from stand-in CRDs.
async fn serve_keptn_kinds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, plural, singular) in [
        ("KeptnMetric", "keptnmetrics", "keptnmetric"),
        ("Analysis", "analyses", "analysis"),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.metrics.keptn.sh")},
            "spec": {
                "group": "metrics.keptn.sh",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": singular,
                          "listKind": format!("{kind}List")},
                "versions": [{
                    "name": "v1beta1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                    }},
                }],
            },
        }))
        .unwrap();
        api.patch(
            &format!("{plural}.metrics.keptn.sh"),
            &PatchParams::apply("fledge-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying the stand-in CRD of {kind}: {e}"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client
        .list_api_group_resources("metrics.keptn.sh/v1beta1")
        .await
        .map_or(true, |r| r.resources.len() < 2)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in Keptn CRDs were not served in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn keptn_metrics_and_analyses_on_the_real_api_server() {
    let ns = TestNs::new("keptn").await;
    serve_keptn_kinds(&ns.client).await;
    ns.client
        .list_api_group_resources("metrics.keptn.sh/v1beta1")
        .await
        .expect("the Keptn CRDs (metrics.keptn.sh/v1beta1) are served on the local control plane");
    let p = keptn(&ns);
    p.online().await.expect("online");

    // A KeptnMetric, its value written as Keptn's metrics operator writes it.
    let metrics: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &resource("KeptnMetric", "keptnmetrics"),
    );
    let mut metric = DynamicObject::new("latency", &resource("KeptnMetric", "keptnmetrics"));
    metric.data = json!({"spec": {
        "provider": {"name": "prometheus"},
        "query": "histogram_quantile(0.95, sum by(le) (rate(http_server_request_latency_seconds_bucket[1m])))",
        "fetchIntervalSeconds": 10,
    }});
    metrics
        .create(&PostParams::default(), &metric)
        .await
        .expect("create the KeptnMetric");
    let query = format!("keptnmetric/{}/latency", ns.name);
    assert_eq!(format!("{:?}", p.query(&query).await), "NoData");
    metrics
        .patch_status(
            "latency",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "value": "42.5",
                "rawValue": "NDIuNQ==",
                "lastUpdated": "2026-01-01T00:00:00Z",
            }})),
        )
        .await
        .expect("write the KeptnMetric's status");
    let got = p.query(&query).await;
    assert!(
        matches!(got, MetricOutcome::Value(v) if v == 42.5),
        "{got:?}"
    );
    let missing = p.query(&format!("keptnmetric/{}/nothing", ns.name)).await;
    assert!(
        matches!(&missing, MetricOutcome::Error(m) if m.contains("does not exist")),
        "{missing:?}"
    );

    // An Analysis: the provider creates it; playing Keptn, the test completes it.
    let analyses: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &resource("Analysis", "analyses"),
    );
    let operator = {
        let analyses = analyses.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Ok(list) = analyses.list(&ListParams::default()).await else {
                    continue;
                };
                for a in list.items {
                    let spec = &a.data["spec"];
                    if a.data["status"]["state"] == "Completed"
                        || spec["analysisDefinition"]["name"] != "error-budget"
                        || spec["timeframe"]["recent"] != "5m"
                        || spec["args"]["workload"] != "podinfo"
                    {
                        continue;
                    }
                    let name = a.metadata.name.clone().unwrap_or_default();
                    let _ = analyses
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {
                                "state": "Completed",
                                "pass": true,
                                "warning": false,
                                "raw": "{}",
                                "timeframe": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:05:00Z"},
                            }})),
                        )
                        .await;
                }
            }
        })
    };
    let got = p
        .query(&format!(
            "analysis/{}/error-budget/5m/workload=podinfo",
            ns.name
        ))
        .await;
    operator.abort();
    assert!(
        matches!(got, MetricOutcome::Value(v) if v == 1.0),
        "{got:?}"
    );
    let left = analyses.list(&ListParams::default()).await.expect("list");
    assert!(
        left.items
            .iter()
            .all(|a| a.metadata.deletion_timestamp.is_some()),
        "the provider deletes the Analysis it created: {:?}",
        left.items
            .iter()
            .map(|a| &a.metadata.name)
            .collect::<Vec<_>>()
    );
}
