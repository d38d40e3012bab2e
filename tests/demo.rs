//! The demo (`cargo xtask demo`) end to end: its story, told in a namespace of the test's own
//! with the manifests of `examples/demo/` applied from a GitOps repository on a local Git
//! server, real traffic through the Gateway and fledge-loadgen, goes as the README says. The
//! healthy version is promoted through the weights 10% to 60% with the canary's measured share
//! of the requests rising at each; the faulty version is rolled back on its errors with the
//! primary still on the healthy version; both rollouts are in the Git ledger, fledge's revert
//! commit puts the healthy image back in Git and so on the Deployment, the chat receiver got
//! messages of both, and fledge-loadgen counted the load it sent. `kubectl fledge dashboard
//! --ledger` over a clone of that repository lists both rollouts and shows each from its ledger
//! file: the healthy one's passed steps, the faulty one's failed checks and its rollback.

use fledge_api::CanaryPhase;
use fledge_e2e::TestNs;
use fledge_e2e::browser::Dashboard;
use fledge_e2e::demo::{self, FAULTY, HEALTHY, failed_on_errors};

/// The text of an HTML page: tags dropped, whitespace collapsed.
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The page at `path` of `dashboard`.
async fn page(dashboard: &Dashboard, path: &str) -> String {
    let r = reqwest::get(format!("{}{path}", dashboard.url))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_promotes_the_healthy_version_and_rolls_the_faulty_one_back() {
    let ns = TestNs::new("demo").await;
    // A host of its own, so that the test can run beside a demo on the same Gateway.
    let host = format!("{}.fledge.test", ns.name);
    let report = demo::run(&ns, Some(&host)).await.unwrap();
    assert_eq!(report.problems(), Vec::<String>::new(), "{report:#?}");

    let h = &report.healthy;
    assert_eq!(h.phase, CanaryPhase::Succeeded);
    assert_eq!(h.primary_image, HEALTHY);
    let shares = h.shares();
    assert_eq!(report.weights, [10, 20, 30, 40, 50, 60]);
    assert_eq!(
        shares.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        report.weights,
        "{shares:?}"
    );
    assert!(
        shares.windows(2).all(|w| w[1].1 > w[0].1) && shares[0].1 > 0.0,
        "the canary's share did not rise: {shares:?}"
    );
    // Each analysis of the healthy version passed, with values from Prometheus.
    for step in &h.steps {
        for m in step.checks.iter().flat_map(|r| &r.metrics) {
            assert!(m.passed && m.value.is_some(), "{step:#?}");
        }
    }
    assert!(h.steps.iter().any(|s| !s.checks.is_empty()), "{h:#?}");

    let f = &report.faulty;
    assert_eq!(f.image, FAULTY);
    assert_eq!(f.phase, CanaryPhase::Failed);
    assert_eq!(
        f.primary_image, HEALTHY,
        "the primary stays on the healthy version"
    );
    let rolled_back = f.rolled_back.clone().unwrap_or_default();
    assert!(
        rolled_back.contains("failed checks threshold reached 2"),
        "RolledBack Event: {rolled_back:?}"
    );
    assert!(
        f.failures.iter().any(|r| failed_on_errors(r)),
        "{:?}",
        f.failures
    );
    // Users met the faulty version's errors, and only while it got traffic: after the
    // rollback every answer comes from the primary.
    assert!(f.answers.unsuccessful() > 0, "{:?}", f.answers);
    assert_eq!(
        report.after_rollback.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.1"],
        "{:?}",
        report.after_rollback
    );

    // Git: one ledger file per rollout, fledge's revert, and the healthy image back in the
    // source and, applied from it, on the Deployment.
    let g = &report.git;
    assert_eq!(g.ledger_files.len(), 2, "{g:#?}");
    let revert = g.revert.clone().unwrap_or_default();
    assert!(
        revert.contains(&format!("{FAULTY} -> {HEALTHY}"))
            && revert.contains("Fledge-Result: rolled-back")
            && revert.contains(&format!("Fledge-Canary: {}/podinfo", ns.name)),
        "{revert}"
    );
    assert!(g.image_line_released.contains(FAULTY), "{g:#?}");
    assert!(
        g.image_line_now.contains(HEALTHY) && g.image_line_now.contains("$imagepolicy"),
        "{g:#?}"
    );
    assert_eq!(report.target_image, HEALTHY);
    // Chat: messages of both rollouts, the rollback among them.
    assert!(!report.chat_of(h).is_empty(), "{:#?}", report.feed);
    let faulty_chat = report.chat_of(f);
    assert!(
        faulty_chat.iter().any(|l| l.text.contains("Rolled back")),
        "{faulty_chat:#?}"
    );
    // fledge-loadgen sent the Canary load, answered.
    let (sent, failed) = report.loadgen_requests;
    assert!(sent > 0 && failed < sent, "{sent} sent, {failed} failed");
    assert!(
        report.dora.contains(&format!("{}/podinfo", ns.name)),
        "{}",
        report.dora
    );
    assert!(report.tree.contains("Revisions:"), "{}", report.tree);

    // The dashboard over a clone of the repository: both rollouts from the ledger, each opening
    // its own chart and table.
    let checkout = g.checkout.to_str().unwrap();
    let dashboard = Dashboard::start(&ns, &["--ledger", checkout])
        .await
        .unwrap();
    let canary_page = page(&dashboard, &format!("/canaries/{}/podinfo", ns.name)).await;
    let prefix = format!("/canaries/{}/podinfo/rollouts/", ns.name);
    let mut links: Vec<&str> = canary_page
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with(&prefix))
        .collect();
    links.dedup();
    assert_eq!(links.len(), 2, "{}", text_of(&canary_page));
    let mut past = Vec::new();
    for link in links {
        past.push(page(&dashboard, link).await);
    }
    let (faulty, healthy): (Vec<&String>, Vec<&String>) =
        past.iter().partition(|p| p.contains(FAULTY));
    let (faulty, healthy) = (faulty[0], healthy[0]);
    eprintln!(
        "the dashboard's page of the faulty rollout, from the ledger:\n{}",
        text_of(faulty)
    );
    // The healthy rollout: promoted, every step's checks passed, the weights 10% to 60%.
    assert!(healthy.contains(HEALTHY), "{}", text_of(healthy));
    assert!(healthy.contains("<svg"), "a chart");
    assert!(!healthy.contains("verdict-fail"), "{}", text_of(healthy));
    for w in &report.weights {
        assert!(
            healthy.contains(&format!("data-weight=\"{w}\"")),
            "{w}%: {}",
            text_of(healthy)
        );
    }
    // The faulty rollout: its failed success-rate checks marked in the steps and listed with
    // their reasons, the rollback among the phase transitions.
    let text = text_of(faulty);
    assert!(faulty.contains("<svg"), "a chart");
    assert!(
        faulty.contains("verdict-fail") && faulty.contains("data-metric=\"request-success-rate\""),
        "{text}"
    );
    assert!(faulty.contains("id=\"failures\""), "{text}");
    assert!(
        faulty.contains("<dd id=\"failed\">2</dd>"),
        "two failed checks: {text}"
    );
    assert!(
        f.failures.iter().any(|r| text.contains(r.as_str())),
        "none of {:?} in {text}",
        f.failures
    );
    assert!(text.contains("Failed"), "{text}");
}
