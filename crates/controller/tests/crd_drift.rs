//! `config/crd/` must hold exactly what the API types generate. Regenerate with
//! `cargo xtask crds` after changing a type.

use std::path::Path;

#[test]
fn config_crd_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    let mut drifted = Vec::new();
    for (file, generated) in fledge_controller::crds::crds() {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run `cargo xtask crds`",
                path.display()
            )
        });
        if on_disk != generated {
            drifted.push(file);
        }
    }
    assert!(
        drifted.is_empty(),
        "config/crd/ differs from the API types for {drifted:?}; run `cargo xtask crds` and commit"
    );
}

#[test]
fn fledge_crds_prints_the_three_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .arg("crds")
        .output()
        .expect("run fledge crds");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  name: "))
        .collect();
    assert_eq!(
        names,
        [
            "canaries.fledge.dev",
            "metrictemplates.fledge.dev",
            "alertproviders.fledge.dev"
        ]
    );
    let expected: String = fledge_controller::crds::crds()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect();
    assert_eq!(text, expected);
}

#[test]
fn every_crd_is_namespaced_with_status_and_the_all_category() {
    for (file, yaml) in fledge_controller::crds::crds() {
        assert!(yaml.contains("scope: Namespaced"), "{file}");
        assert!(
            yaml.contains("    subresources:\n      status: {}"),
            "{file}: {yaml}"
        );
        assert!(yaml.contains("categories:\n    - all"), "{file}");
        assert!(yaml.contains("  group: fledge.dev"), "{file}");
        assert!(
            yaml.contains("  - name: v1beta1") || yaml.contains("    name: v1beta1"),
            "{file}"
        );
    }
}

#[test]
fn printer_columns_match_flagger() {
    use fledge_api::{AlertProvider, Canary, MetricTemplate};
    use kube::CustomResourceExt;
    let columns = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.json_path))
            .collect::<Vec<_>>()
    };
    let canary: Vec<(String, String)> = columns(Canary::crd());
    let expected = [
        ("Status", ".status.phase"),
        ("Weight", ".status.canaryWeight"),
        ("Suspended", ".spec.suspend"),
        ("FailedChecks", ".status.failedChecks"),
        ("Interval", ".spec.analysis.interval"),
        ("Mirror", ".spec.analysis.mirror"),
        ("StepWeight", ".spec.analysis.stepWeight"),
        ("StepWeights", ".spec.analysis.stepWeights"),
        ("MaxWeight", ".spec.analysis.maxWeight"),
        ("LastTransitionTime", ".status.lastTransitionTime"),
    ]
    .map(|(n, p)| (n.to_string(), p.to_string()));
    assert_eq!(canary, expected);
    assert_eq!(
        columns(MetricTemplate::crd()),
        [("Provider".to_string(), ".spec.provider.type".to_string())]
    );
    assert_eq!(
        columns(AlertProvider::crd()),
        [("Type".to_string(), ".spec.type".to_string())]
    );
}
