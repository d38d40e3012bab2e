//! End-to-end tests of the web dashboard (`kubectl fledge dashboard`) in a real browser:
//! headless Chromium from Debian's packages driven over WebDriver, against rollouts that
//! `fledge run` carries out on the local control plane, with metrics answered by the data
//! plane's Prometheus. `cargo xtask browser` installs Chromium, its driver and axe-core.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::key::Key;
use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use fledge_e2e::browser::{Browser, Dashboard};
use fledge_e2e::dataplane::{GATEWAY_NAME, GATEWAY_NAMESPACE, dataplane};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(180);
/// How soon the page must show a status change.
const LIVE: Duration = Duration::from_secs(2);

/// A MetricTemplate whose query is a PromQL expression given by the metric's variables, so the
/// test decides what each metric measures.
async fn constant_template(ns: &TestNs) {
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "expression"},
        "spec": {
            "provider": {"type": "prometheus", "address": dataplane().prometheus_url},
            "query": "vector({{ variables.expr }})",
        },
    }))
    .await;
}

/// A weighted canary (20, 40, 60) on the Gateway API, judged by two metrics.
fn canary(ns: &TestNs, name: &str, latency: &str, webhooks: Value) -> Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {
                "port": 9898,
                "hosts": [format!("{name}.{}.fledge.test", ns.name)],
                "gatewayRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            },
            "analysis": {
                "interval": "4s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                "metrics": [
                    {"name": "success-rate", "interval": "1m",
                     "templateRef": {"name": "expression"},
                     "templateVariables": {"expr": "99 + (time() % 10) / 10"},
                     "thresholdRange": {"min": 99}},
                    {"name": "latency-ms", "interval": "1m",
                     "templateRef": {"name": "expression"},
                     "templateVariables": {"expr": latency},
                     "thresholdRange": {"max": 500}},
                ],
                "webhooks": webhooks,
            },
        },
    })
}

async fn set_up(ns: &TestNs, canaries: &[Value], controller_flags: &[&str]) {
    fledge_e2e::plugin::binary();
    constant_template(ns).await;
    for c in canaries {
        let name = c["metadata"]["name"].as_str().unwrap();
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        ns.create::<Canary>(c.clone()).await;
    }
    ns.start_controller(controller_flags);
    for c in canaries {
        let name = c["metadata"]["name"].as_str().unwrap();
        ns.wait_phase(name, CanaryPhase::Initialized, INIT).await;
    }
}

fn status(c: &Canary) -> CanaryStatus {
    c.status.clone().unwrap_or_default()
}

/// One analysis step as compared: step, canary weight, and each metric's exact value.
type StepShown = (i64, i64, Vec<(String, Option<f64>)>);

/// What a Canary's page shows, read from the page itself.
#[derive(Debug, PartialEq, Clone)]
struct Shown {
    phase: String,
    weight: i64,
    /// Per analysis step: step, weight, and each metric's exact value.
    steps: Vec<StepShown>,
    charts: Vec<String>,
}

async fn shown(b: &Browser) -> anyhow::Result<Shown> {
    let v = b
        .client
        .execute(
            "const q = (s) => document.querySelector(s);
             if (!q('#phase')) { return null; }
             return {
               phase: q('#phase').textContent.trim(),
               weight: Number(q('#weight').dataset.weight),
               steps: Array.from(document.querySelectorAll('#steps tbody tr')).map(tr => [
                 Number(tr.dataset.step),
                 Number(tr.querySelector('td[data-weight]').dataset.weight),
                 Array.from(tr.querySelectorAll('td[data-metric]')).map(td =>
                   [td.dataset.metric, td.dataset.value === '' ? null : Number(td.dataset.value)])
               ]),
               charts: Array.from(document.querySelectorAll('figure.chart')).map(f => f.id),
             };",
            vec![],
        )
        .await?;
    if v.is_null() {
        anyhow::bail!("the page shows no Canary");
    }
    Ok(Shown {
        phase: v["phase"].as_str().unwrap_or_default().into(),
        weight: v["weight"].as_i64().unwrap_or(-1),
        steps: serde_json::from_value(v["steps"].clone())?,
        charts: serde_json::from_value(v["charts"].clone())?,
    })
}

/// What the page should show for a status.
fn expected(s: &CanaryStatus) -> (String, i64, Vec<StepShown>) {
    let history = s
        .rollout
        .as_ref()
        .map(|r| r.history.clone())
        .unwrap_or_default();
    (
        s.phase.as_str().to_string(),
        s.canary_weight as i64,
        history
            .iter()
            .map(|h| {
                (
                    h.step as i64,
                    h.canary_weight as i64,
                    h.metrics
                        .iter()
                        .map(|m| (m.name.clone(), m.value))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn agrees(page: &Shown, s: &CanaryStatus) -> bool {
    let (phase, weight, steps) = expected(s);
    page.phase == phase && page.weight == weight && page.steps == steps
}

/// Waits until the page shows exactly what the Canary's status holds: phase, weight, and each
/// analysis step's weight and metric values.
async fn page_agrees_with_status(ns: &TestNs, b: &Browser, name: &str, within: Duration) -> Shown {
    let deadline = Instant::now() + within;
    loop {
        let c = ns.api::<Canary>().get(name).await.unwrap();
        let page = shown(b).await;
        if let Ok(p) = &page
            && agrees(p, &status(&c))
        {
            return p.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "the page does not show the status within {within:?}:\npage: {page:#?}\nstatus: {:#?}",
                expected(&status(&c))
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the next change of the Canary's status (phase, weight or analysis steps), then
/// measures how long the page takes to show it.
async fn next_change_shown(ns: &TestNs, b: &Browser, name: &str) -> Duration {
    let api = ns.api::<Canary>();
    let before = expected(&status(&api.get(name).await.unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let changed = loop {
        let c = api.get(name).await.unwrap();
        if expected(&status(&c)) != before {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the status of {name} did not change in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    page_agrees_with_status(ns, b, name, Duration::from_secs(10)).await;
    changed.elapsed()
}

/// Presses Tab until the focused element is the button of `action`, then presses Enter.
async fn press_with_keyboard(b: &Browser, action: &str) {
    for _ in 0..60 {
        let focused = b
            .client
            .execute(
                "const a = document.activeElement; return a ? (a.dataset.action || '') : '';",
                vec![],
            )
            .await
            .unwrap();
        if focused.as_str() == Some(action) {
            b.client
                .active_element()
                .await
                .unwrap()
                .send_keys(&Key::Enter.to_string())
                .await
                .unwrap();
            return;
        }
        b.client
            .active_element()
            .await
            .unwrap()
            .send_keys(&Key::Tab.to_string())
            .await
            .unwrap();
    }
    panic!("no {action} button reached with the Tab key");
}

/// The text of the first element matching `css`, read in one script so that a live update that
/// replaces the element between finding and reading it cannot make the read fail. Waits up to
/// `within` for the element to exist.
async fn text_at(b: &Browser, css: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = b
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![serde_json::Value::from(css)],
            )
            .await
            .unwrap();
        if let Some(t) = text.as_str() {
            return t.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no element {css} on the page within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn flash(b: &Browser) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // Role and text in one script: a live update may replace the element at any time.
        let v = b
            .client
            .execute(
                "const e = document.querySelector('#action-result'); \
                 return e ? [e.getAttribute('role') || '', e.innerText] : null;",
                vec![],
            )
            .await
            .unwrap();
        if let Some([role, text]) = v.as_array().map(Vec::as_slice) {
            return (
                role.as_str().unwrap_or_default().to_string(),
                text.as_str().unwrap_or_default().to_string(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "no action result on the page within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn no_serious_a11y_violations(b: &Browser, page: &str) {
    let bad = b.serious_a11y_violations().await.unwrap();
    assert!(
        bad.is_empty(),
        "axe-core finds serious or critical problems on {page}:\n{}",
        bad.join("\n")
    );
}

/// A rollout in progress: the page shows the weight steps and metric values `.status` holds,
/// follows each change within 2 s without a reload, and a `confirm-traffic-increase` gate
/// approved from the page (with the keyboard) lets the rollout go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_is_followed_live_and_its_gate_approved_from_the_page() {
    let ns = TestNs::new("dash-live").await;
    // The gate stays closed until the page approves it, or the hook says yes.
    let gate = Hook::start(403).await.unwrap();
    let webhooks = json!([{"name": "traffic-gate", "type": "confirm-traffic-increase",
                           "url": gate.url("/gate")}]);
    set_up(
        &ns,
        &[canary(&ns, "podinfo", "100 + (time() % 60)", webhooks)],
        &[],
    )
    .await;
    let dash = Dashboard::start(&ns, &[]).await.unwrap();
    let b = Browser::start().await.unwrap();

    // The overview lists the Canary.
    b.client.goto(&format!("{}/", dash.url)).await.unwrap();
    let row = text_at(
        &b,
        &format!("tr[data-canary=\"{}/podinfo\"]", ns.name),
        Duration::from_secs(10),
    )
    .await;
    assert!(row.contains("Initialized"), "{row}");
    no_serious_a11y_violations(&b, "the overview").await;

    ns.set_image("podinfo", V2).await;
    ns.wait_canary("podinfo", ROLLOUT, "the rollout to start", |c| {
        status(c).phase == CanaryPhase::Progressing
    })
    .await;
    b.client
        .goto(&format!("{}/canaries/{}/podinfo", dash.url, ns.name))
        .await
        .unwrap();
    // The gate holds the weight at 0 until someone approves it.
    b.client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("button[data-action=\"approve\"]"))
        .await
        .unwrap();
    let held = page_agrees_with_status(&ns, &b, "podinfo", Duration::from_secs(10)).await;
    assert_eq!(held.weight, 0);
    press_with_keyboard(&b, "approve").await;
    let (role, text) = flash(&b).await;
    assert_eq!(role, "status", "{text}");
    assert!(
        text.contains("approve confirm-traffic-increase requested by"),
        "{text}"
    );
    // The rollout goes on: one traffic step, analysed, then held by the gate again.
    let c = ns
        .wait_canary("podinfo", ROLLOUT, "the weight to rise to 20", |c| {
            status(c).canary_weight == 20
                && status(c)
                    .rollout
                    .is_some_and(|r| r.history.iter().any(|h| h.canary_weight == 20))
        })
        .await;
    assert!(!status(&c).rollout.unwrap().history.is_empty());
    // The gate's answers and who approved are on the page.
    let gates = text_at(&b, "#gates", Duration::from_secs(10)).await;
    assert!(gates.contains("confirm-traffic-increase"), "{gates}");
    page_agrees_with_status(&ns, &b, "podinfo", Duration::from_secs(5)).await;
    b.client.set_window_size(1280, 1900).await.unwrap();
    b.screenshot("canary-mid-rollout").await.unwrap();
    no_serious_a11y_violations(&b, "a Canary's page mid-rollout").await;

    // Opened for good, the gate lets the rollout go on. The page follows each change of the
    // status within 2 s, with no reload.
    b.client
        .execute("document.body.dataset.marker = 'same-page';", vec![])
        .await
        .unwrap();
    gate.set_status(200);
    for _ in 0..2 {
        let took = next_change_shown(&ns, &b, "podinfo").await;
        eprintln!("the page showed the status change {took:?} after it was written");
        assert!(
            took <= LIVE,
            "the page took {took:?} to show a status change"
        );
    }
    let marker = b
        .client
        .execute("return document.body.dataset.marker || '';", vec![])
        .await
        .unwrap();
    assert_eq!(marker, "same-page", "the page was reloaded");
    let page = page_agrees_with_status(&ns, &b, "podinfo", Duration::from_secs(5)).await;
    assert!(!page.steps.is_empty(), "{page:#?}");
    assert!(page.steps.iter().all(|s| s.2.len() == 2), "{page:#?}");
    assert_eq!(
        page.charts,
        [
            "chart-weight",
            "chart-metric-success-rate",
            "chart-metric-latency-ms"
        ]
    );

    // The rollout ends; the page says so without a reload.
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let done = page_agrees_with_status(&ns, &b, "podinfo", LIVE).await;
    assert_eq!(done.phase, "Succeeded");
    b.close().await;
}

/// A faulty rollout: the page shows its failed checks and the rollback, a user who may not
/// write `canaries/status` sees the API server's refusal, and the screenshots of the overview
/// and of the rolled-back Canary are saved.
#[tokio::test(flavor = "multi_thread")]
async fn a_faulty_rollout_shows_its_failures_and_a_refused_action() {
    let ns = TestNs::new("dash-fault").await;
    let ui_port = fledge_e2e::free_port();
    set_up(
        &ns,
        &[
            canary(&ns, "podinfo", "420 + (time() % 30) * 20", json!([])),
            canary(&ns, "backend", "80", json!([])),
        ],
        &["--ui-addr", &format!("127.0.0.1:{ui_port}")],
    )
    .await;
    // A ServiceAccount that may read Canaries, not write their status.
    ns.create::<ServiceAccount>(json!({"metadata": {"name": "viewer"}}))
        .await;
    ns.create::<Role>(json!({
        "metadata": {"name": "canary-viewer"},
        "rules": [{"apiGroups": ["fledge.dev"], "resources": ["canaries"],
                   "verbs": ["get", "list", "watch"]}]
    }))
    .await;
    ns.create::<RoleBinding>(json!({
        "metadata": {"name": "canary-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "canary-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns.name}]
    }))
    .await;
    let viewer = format!("system:serviceaccount:{}:viewer", ns.name);
    eventually(
        Duration::from_secs(30),
        "the viewer may list Canaries",
        || async {
            fledge_e2e::plugin::run(&ns, &["get", "--as", &viewer])
                .await
                .code
                == Some(0)
        },
    )
    .await
    .unwrap();

    let dash = Dashboard::start(&ns, &[]).await.unwrap();
    let b = Browser::start().await.unwrap();
    ns.set_image("podinfo", V2).await;
    let c = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    let s = status(&c);
    let failures = s.rollout.clone().unwrap().failures;
    assert!(!failures.is_empty());

    b.client
        .goto(&format!("{}/canaries/{}/podinfo", dash.url, ns.name))
        .await
        .unwrap();
    let page = page_agrees_with_status(&ns, &b, "podinfo", Duration::from_secs(10)).await;
    assert_eq!(page.phase, "Failed");
    assert_eq!(page.weight, 0);
    // Each failed check is listed, and the steps that failed are marked.
    let listed: Vec<String> = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#failures li')).map(li => li.textContent);",
            vec![],
        )
        .await
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap();
    assert_eq!(listed, failures);
    let failed_rows = b
        .client
        .execute(
            "return document.querySelectorAll('#steps tr.failed').length;",
            vec![],
        )
        .await
        .unwrap();
    let failed_steps = s
        .rollout
        .as_ref()
        .unwrap()
        .history
        .iter()
        .filter(|h| h.metrics.iter().any(|m| !m.passed))
        .count();
    assert_eq!(failed_rows.as_u64(), Some(failed_steps as u64));
    assert!(failed_steps >= 2, "{s:#?}");
    let transitions = text_at(&b, "#transitions", Duration::from_secs(10)).await;
    assert!(transitions.contains("Failed"), "{transitions}");
    b.client.set_window_size(1280, 1900).await.unwrap();
    b.screenshot("canary-rolled-back").await.unwrap();
    no_serious_a11y_violations(&b, "a rolled-back Canary's page").await;

    b.client.goto(&format!("{}/", dash.url)).await.unwrap();
    let row = text_at(
        &b,
        &format!("tr[data-canary=\"{}/podinfo\"]", ns.name),
        Duration::from_secs(10),
    )
    .await;
    assert!(row.contains("Failed"), "{row}");
    assert!(row.contains(failures.last().unwrap().as_str()), "{row}");
    // The filter narrows the rows as one types.
    b.client
        .find(Locator::Css("#filter"))
        .await
        .unwrap()
        .send_keys("backend")
        .await
        .unwrap();
    let visible = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-canary]')).filter(r => !r.hidden).map(r => r.dataset.canary);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(visible, json!([format!("{}/backend", ns.name)]));
    b.client
        .find(Locator::Css("#filter"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    b.client
        .execute(
            "document.getElementById('filter').dispatchEvent(new Event('input'));",
            vec![],
        )
        .await
        .unwrap();
    b.client.set_window_size(1280, 420).await.unwrap();
    b.screenshot("overview").await.unwrap();
    b.client.set_window_size(1280, 1000).await.unwrap();

    // The viewer's dashboard: Retry fits the Canary, RBAC refuses the write.
    let as_viewer = Dashboard::start(&ns, &["--as", &viewer]).await.unwrap();
    b.client
        .goto(&format!("{}/canaries/{}/podinfo", as_viewer.url, ns.name))
        .await
        .unwrap();
    b.client
        .find(Locator::Css("button[data-action=\"retry\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let (role, text) = flash(&b).await;
    assert_eq!(role, "alert", "{text}");
    assert_eq!(
        text,
        format!(
            "{viewer} may not retry Canary {0}/podinfo: RBAC does not allow the verb \"patch\" \
             on \"canaries/status\" (API group fledge.dev) in namespace \"{0}\"",
            ns.name
        )
    );
    assert_eq!(
        status(&ns.api::<Canary>().get("podinfo").await.unwrap()).request,
        None,
        "nothing was written"
    );
    no_serious_a11y_violations(&b, "a refused action's page").await;

    // The controller's own dashboard (--ui-addr) is read-only: the same page, no action.
    b.client
        .goto(&format!(
            "http://127.0.0.1:{ui_port}/canaries/{}/podinfo",
            ns.name
        ))
        .await
        .unwrap();
    let page = page_agrees_with_status(&ns, &b, "podinfo", Duration::from_secs(10)).await;
    assert_eq!(page.phase, "Failed");
    let header = text_at(&b, "header", Duration::from_secs(10)).await;
    assert!(header.contains("read-only"), "{header}");
    assert!(
        b.client
            .find_all(Locator::Css("button[data-action]"))
            .await
            .unwrap()
            .is_empty()
    );
    let post = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{ui_port}/canaries/{}/podinfo/actions",
            ns.name
        ))
        .form(&[("action", "retry")])
        .send()
        .await
        .unwrap();
    assert!(
        matches!(post.status().as_u16(), 404 | 405),
        "the read-only dashboard answered an action with {}",
        post.status()
    );
    b.close().await;
}
