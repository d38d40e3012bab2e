//! The CRDs' own rules (`x-kubernetes-validations`, `crates/api/src/cel.rs`) as the real
//! kube-apiserver of the local control plane applies them: a table of bad Canaries, each refused
//! with a message that names the field, and the good ones: every Flagger example that
//! `fledge validate` accepts, with its `apiVersion` changed, is accepted.
//!
//! The CRDs are installed under a group of this test's own (`cel-e2e.fledge.dev`), copies of
//! `config/crd/` with only the group changed, so that these tests never change the CRDs other
//! tests on the same control plane run with (the CRDs are cluster-wide). Objects are created
//! with a server-side dry run: the API server runs every validation and stores nothing.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fledge_e2e::{admin_kubeconfig, client, fledge_binary, root};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

/// The group the copies of the CRDs are served under.
const GROUP: &str = "cel-e2e.fledge.dev";
const VERSION: &str = "v1beta1";

/// Installs the three CRDs under [`GROUP`] and waits until they are served.
async fn install_test_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "canaries.yaml",
        "metrictemplates.yaml",
        "alertproviders.yaml",
    ] {
        let text =
            std::fs::read_to_string(root().join("config/crd").join(file)).expect("read config/crd");
        let mut crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("CRD YAML");
        crd.spec.group = GROUP.to_string();
        // A second CRD with the same short names or categories would make them ambiguous.
        crd.spec.names.short_names = None;
        crd.spec.names.categories = None;
        let name = format!("{}.{GROUP}", crd.spec.names.plural);
        crd.metadata.name = Some(name.clone());
        api.patch(
            &name,
            &PatchParams::apply("fledge-e2e-cel").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| {
            panic!("the API server refused the CRD {file} (its rules must compile and fit the cost budget): {e}")
        });
    }
    for kind in ["Canary", "MetricTemplate", "AlertProvider"] {
        let api = dynamic_all(client, kind);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match api.list(&kube::api::ListParams::default().limit(1)).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "{kind} of {GROUP} not served in 30s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "Canary" => "canaries",
        "MetricTemplate" => "metrictemplates",
        "AlertProvider" => "alertproviders",
        other => panic!("no CRD for kind {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

fn dynamic_all(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource(kind))
}

/// A namespace of the test's own, deleted when dropped (in the background).
struct Ns {
    client: Client,
    name: String,
}

impl Ns {
    async fn new(prefix: &str) -> Ns {
        let client = client().await;
        install_test_crds(&client).await;
        let name = format!("e2e-cel-{prefix}-{}", std::process::id() % 100000);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Ns { client, name }
    }

    /// Creates `obj` with a server-side dry run: the API server's answer, nothing stored.
    async fn dry_run_create(&self, obj: &Value) -> Result<(), kube::Error> {
        let kind = obj["kind"].as_str().expect("kind");
        let mut obj = obj.clone();
        obj["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
        obj["metadata"]["namespace"] = json!(self.name);
        let dynamic: DynamicObject = serde_json::from_value(obj).expect("object JSON");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.name, &resource(kind));
        let pp = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        api.create(&pp, &dynamic).await.map(|_| ())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        // Deleting the namespace needs no answer; the runtime may be shutting down.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let api: Api<Namespace> = Api::all(client);
                let _ = api.delete(&name, &DeleteParams::background()).await;
            });
        }
    }
}

/// A Canary `fledge validate` accepts: a progressive canary with a metric and a webhook.
fn good_canary() -> Value {
    json!({
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m",
                "threshold": 5,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [{
                    "name": "request-success-rate",
                    "interval": "1m",
                    "thresholdRange": {"min": 99}
                }],
                "webhooks": [{
                    "name": "load-test",
                    "url": "http://fledge-loadtester.test/",
                    "timeout": "5s",
                    "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"}
                }]
            }
        }
    })
}

/// RFC 7386 JSON merge patch: `null` removes a key.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn canary_with(patch: Value) -> Value {
    let mut c = good_canary();
    merge(&mut c, &json!({"spec": patch}));
    c
}

/// `(what, the spec patched, the field path the error must name, words of the message)`.
fn bad_canaries() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let metric = |patch: Value| {
        let mut m = good_canary()["spec"]["analysis"]["metrics"][0].clone();
        merge(&mut m, &patch);
        json!({"analysis": {"metrics": [m]}})
    };
    let webhook = |patch: Value| {
        let mut h = good_canary()["spec"]["analysis"]["webhooks"][0].clone();
        merge(&mut h, &patch);
        json!({"analysis": {"webhooks": [h]}})
    };
    vec![
        (
            "stepWeight above 100",
            json!({"analysis": {"stepWeight": 120, "maxWeight": 100}}),
            "spec.analysis.stepWeight",
            "must be a percentage between 0 and 100",
        ),
        (
            "negative maxWeight",
            json!({"analysis": {"maxWeight": -1, "stepWeight": null, "stepWeights": [10]}}),
            "spec.analysis.maxWeight",
            "must be a percentage between 0 and 100",
        ),
        (
            "a step of stepWeights above 100",
            json!({"analysis": {"stepWeight": null, "stepWeights": [10, 150]}}),
            "spec.analysis.stepWeights[1]",
            "each step must be a percentage between 0 and 100",
        ),
        (
            "stepWeights that go down",
            json!({"analysis": {"stepWeight": null, "stepWeights": [50, 10]}}),
            "spec.analysis.stepWeights",
            "must increase from step to step",
        ),
        (
            "stepWeights that repeat a step",
            json!({"analysis": {"stepWeight": null, "stepWeights": [10, 10, 20]}}),
            "spec.analysis.stepWeights",
            "must increase from step to step",
        ),
        (
            "mirrorWeight above 100",
            json!({"analysis": {"mirror": true, "mirrorWeight": 101}}),
            "spec.analysis.mirrorWeight",
            "must be a percentage between 0 and 100",
        ),
        (
            "stepWeightPromotion above 100",
            json!({"analysis": {"stepWeightPromotion": 200}}),
            "spec.analysis.stepWeightPromotion",
            "must be a percentage between 0 and 100",
        ),
        (
            "canaryReadyThreshold above 100",
            json!({"analysis": {"canaryReadyThreshold": 101}}),
            "spec.analysis.canaryReadyThreshold",
            "must be a percentage between 0 and 100",
        ),
        (
            "stepWeight and stepWeights both",
            json!({"analysis": {"stepWeights": [10, 20]}}),
            "spec.analysis.stepWeights",
            "spec.analysis.stepWeight and spec.analysis.stepWeights are both set; keep one",
        ),
        (
            "stepWeight above maxWeight",
            json!({"analysis": {"stepWeight": 60, "maxWeight": 50}}),
            "spec.analysis.stepWeight",
            "is greater than spec.analysis.maxWeight",
        ),
        (
            "threshold 0",
            json!({"analysis": {"threshold": 0}}),
            "spec.analysis.threshold",
            "must be 1 or more",
        ),
        (
            "negative iterations",
            json!({"analysis": {"iterations": -1}}),
            "spec.analysis.iterations",
            "must be 0 or more",
        ),
        (
            "inconclusiveLimit 0",
            json!({"analysis": {"inconclusiveLimit": 0}}),
            "spec.analysis.inconclusiveLimit",
            "must be 1 or more",
        ),
        (
            "an interval in days",
            json!({"analysis": {"interval": "1d"}}),
            "spec.analysis.interval",
            "must be a duration greater than 0 such as 30s",
        ),
        (
            "an interval without a unit",
            json!({"analysis": {"interval": "10"}}),
            "spec.analysis.interval",
            "must be a duration greater than 0",
        ),
        (
            "a zero interval",
            json!({"analysis": {"interval": "0s"}}),
            "spec.analysis.interval",
            "must be a duration greater than 0",
        ),
        (
            "a negative interval",
            json!({"analysis": {"interval": "-1m"}}),
            "spec.analysis.interval",
            "must be a duration greater than 0",
        ),
        (
            "A/B testing without iterations",
            json!({"analysis": {"stepWeight": null, "maxWeight": null,
                "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
            "spec.analysis.iterations",
            "is required with spec.analysis.match (A/B testing)",
        ),
        (
            "iterations with weights and no match",
            json!({"analysis": {"iterations": 10}}),
            "spec.analysis.iterations",
            "is set together with stepWeight/stepWeights",
        ),
        (
            "no traffic steps",
            json!({"analysis": {"stepWeight": null, "maxWeight": null}}),
            "spec.analysis",
            "has no traffic steps",
        ),
        (
            "no analysis at all",
            json!({"analysis": null}),
            "spec.analysis",
            "has no traffic steps",
        ),
        (
            "weights with the kubernetes provider",
            json!({"provider": "kubernetes"}),
            "spec.analysis",
            "provider kubernetes switches all traffic at once",
        ),
        (
            "progressDeadlineSeconds 0",
            json!({"progressDeadlineSeconds": 0}),
            "spec.progressDeadlineSeconds",
            "must be a number of seconds greater than 0",
        ),
        (
            "a metric interval with an unknown unit",
            metric(json!({"interval": "5x"})),
            "spec.analysis.metrics[0].interval",
            "must be a duration greater than 0",
        ),
        (
            "a threshold range no value passes",
            metric(json!({"thresholdRange": {"min": 99, "max": 1}})),
            "spec.analysis.metrics[0].thresholdRange",
            "min is greater than max",
        ),
        (
            "an empty threshold range",
            metric(json!({"thresholdRange": {"min": null}})),
            "spec.analysis.metrics[0].thresholdRange",
            "has neither min nor max",
        ),
        (
            "a negative webhook timeout",
            webhook(json!({"timeout": "-5s"})),
            "spec.analysis.webhooks[0].timeout",
            "must be a duration greater than 0",
        ),
        (
            "a webhook URL that is not http",
            webhook(json!({"url": "ftp://fledge-loadtester.test/"})),
            "spec.analysis.webhooks[0].url",
            "must be an absolute http or https URL",
        ),
        (
            "a webhook URL without a scheme",
            webhook(json!({"url": "fledge-loadtester.test/"})),
            "spec.analysis.webhooks[0].url",
            "must be an absolute http or https URL",
        ),
        (
            "negative webhook retries",
            webhook(json!({"retries": -1})),
            "spec.analysis.webhooks[0].retries",
            "must be 0 or more",
        ),
        (
            "more metrics than the bound",
            json!({"analysis": {"metrics": (0..=fledge_api::cel::MAX_METRICS)
                .map(|i| json!({"name": format!("m{i}"), "templateRef": {"name": "t"}}))
                .collect::<Vec<_>>()}}),
            "spec.analysis.metrics",
            "must have at most 100 items",
        ),
    ]
}

#[tokio::test]
async fn the_api_server_refuses_bad_canaries_naming_the_field() {
    let ns = Ns::new("bad").await;
    ns.dry_run_create(&good_canary())
        .await
        .expect("the good Canary the table starts from is accepted");
    let mut wrong = Vec::new();
    let cases = bad_canaries();
    for (what, patch, field, words) in &cases {
        let canary = canary_with(patch.clone());
        match ns.dry_run_create(&canary).await {
            Ok(()) => wrong.push(format!(
                "{what}: accepted, expected a refusal naming {field}"
            )),
            Err(kube::Error::Api(e)) => {
                let message = e.message.replace('\n', " ");
                let names_field = message.contains(&format!("{field}: "));
                if e.code != 422 || !names_field || !message.contains(words) {
                    wrong.push(format!(
                        "{what}: expected 422 naming `{field}` with \"{words}\", got {}: {message}",
                        e.code
                    ));
                }
            }
            Err(e) => panic!("{what}: the API server did not answer: {e}"),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} bad Canaries not refused as expected:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn explicit_nulls_and_edge_values_are_accepted() {
    let ns = Ns::new("edge").await;
    let cases = [
        (
            "nulls where a field may be left out",
            json!({"progressDeadlineSeconds": null, "analysis": {"stepWeights": null,
                "match": null, "iterations": null, "interval": null, "mirrorWeight": null}}),
        ),
        (
            "weights at the bounds",
            json!({"analysis": {"stepWeight": 100, "maxWeight": 100}}),
        ),
        (
            "stepWeights alone",
            json!({"analysis": {"stepWeight": null, "maxWeight": null, "stepWeights": [1, 2, 50, 100]}}),
        ),
        (
            "stepWeight 0 beside stepWeights, as Flagger's zero value",
            json!({"analysis": {"stepWeight": 0, "stepWeights": [5, 10]}}),
        ),
        (
            "durations in Go's grammar",
            json!({"analysis": {"interval": "1h30m", "metrics": [{"name": "request-success-rate",
                "interval": "1.5m", "thresholdRange": {"min": 99}}], "webhooks": [{"name": "w",
                "url": "HTTPS://hooks.test/x?y=1", "timeout": " 500ms "}]}}),
        ),
        (
            "A/B testing",
            json!({"analysis": {"stepWeight": null, "maxWeight": null, "iterations": 10,
                "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}}),
        ),
        (
            "blue/green with the kubernetes provider",
            json!({"provider": "kubernetes", "analysis": {"stepWeight": null, "maxWeight": null,
                "iterations": 5}}),
        ),
        (
            "no analysis with skipAnalysis",
            json!({"skipAnalysis": true, "analysis": null}),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, patch) in &cases {
        if let Err(e) = ns.dry_run_create(&canary_with(patch.clone())).await {
            wrong.push(format!("{what}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "refused:\n{}", wrong.join("\n"));
}

fn examples_dir() -> PathBuf {
    root().join("../shared/reference/flagger-examples")
}

/// Whether `fledge validate` finds `file` one valid `flagger.app/v1beta1` document.
fn fledge_validate_accepts(fledge: &Path, file: &Path) -> bool {
    let out = Command::new(fledge)
        .arg("validate")
        .arg(file)
        .env("KUBECONFIG", admin_kubeconfig())
        .output()
        .expect("run fledge validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    out.status.success() && stdout.contains(": 1 valid,")
}

#[tokio::test]
async fn every_flagger_example_fledge_validate_accepts_is_accepted_by_the_api_server() {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the Flagger examples are expected in {} (shared/reference/flagger-examples \
                 beside the repository): {e}",
                dir.display()
            )
        })
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected the whole corpus, found {}",
        files.len()
    );
    let ns = Ns::new("flagger").await;
    let fledge = fledge_binary();
    let (mut accepted, mut canaries) = (0, 0);
    let mut refused = Vec::new();
    for file in &files {
        if !fledge_validate_accepts(&fledge, file) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read example");
        let obj: Value = serde_saphyr::from_str(&text).expect("example YAML");
        accepted += 1;
        if obj["kind"] == "Canary" {
            canaries += 1;
        }
        if let Err(e) = ns.dry_run_create(&obj).await {
            refused.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(
        refused.is_empty(),
        "the API server refused {} of the {accepted} examples fledge validate accepts:\n{}",
        refused.len(),
        refused.join("\n")
    );
    // 49 of the 54 are accepted (see crates/controller/tests/validate_cli.rs), 24 Canaries.
    assert!(
        accepted >= 45 && canaries >= 20,
        "only {accepted} examples ({canaries} Canaries) were checked"
    );
}
