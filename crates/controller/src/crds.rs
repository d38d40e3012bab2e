//! The CustomResourceDefinitions of fledge, generated from the API types.

use fledge_api::{AlertProvider, Canary, MetricTemplate};
use kube::CustomResourceExt;

/// Each CRD with the file name it has under `config/crd/`.
pub fn crds() -> Vec<(&'static str, String)> {
    [
        ("canaries.yaml", to_yaml(&Canary::crd())),
        ("metrictemplates.yaml", to_yaml(&MetricTemplate::crd())),
        ("alertproviders.yaml", to_yaml(&AlertProvider::crd())),
    ]
    .into_iter()
    .collect()
}

/// The three CRDs as one multi-document YAML stream, as `fledge crds` prints it.
pub fn crds_yaml() -> String {
    crds()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect()
}

fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    // The CRD types come from k8s-openapi and always serialize; a failure is a bug.
    serde_saphyr::to_string(value).expect("CRD serializes to YAML")
}
