//! The demo (`cargo xtask demo`) end to end: its story, told in a namespace of the test's own
//! with the manifests of `examples/demo/` applied from a GitOps repository on a local Git
//! server, real traffic through the Gateway and fledge-loadgen, goes as the README says. The
//! healthy version is promoted through the weights 10% to 60% with the canary's measured share
//! of the requests rising at each; the faulty version is rolled back on its errors with the
//! primary still on the healthy version; both rollouts are in the Git ledger, fledge's revert
//! commit puts the healthy image back in Git and so on the Deployment, the chat receiver got
//! messages of both, and fledge-loadgen counted the load it sent.

use fledge_api::CanaryPhase;
use fledge_e2e::TestNs;
use fledge_e2e::demo::{self, FAULTY, HEALTHY, failed_on_errors};

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
}
