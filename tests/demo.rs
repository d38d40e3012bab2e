//! The demo (`cargo xtask demo`) end to end: its story, told in a namespace of the test's own
//! with the manifests of `examples/demo/` and real traffic through the Gateway, goes as the
//! README says. The healthy version is promoted through the weights 10% to 60% with the
//! canary's measured share of the answers rising at each, and the faulty version is rolled back
//! on its success rate with the primary still on the healthy version.

use fledge_api::CanaryPhase;
use fledge_e2e::TestNs;
use fledge_e2e::demo::{self, FAULTY, HEALTHY};

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
        f.failures
            .iter()
            .any(|r| r.contains("request-success-rate")),
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
    assert_eq!(report.target_image, FAULTY);
}
