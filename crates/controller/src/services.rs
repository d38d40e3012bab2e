//! Pure builders for the Services fledge generates from `spec.service`: the apex `<svc>`, which
//! clients call, and `<svc>-primary` and `<svc>-canary`, which select one side each.

use std::collections::BTreeMap;

use fledge_api::{Canary, CustomMetadata};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::workload::primary_name;

pub use fledge_core::ApexSelects;

/// The three Services of a Canary, in the order apex, primary, canary.
pub fn build_services(
    canary: &Canary,
    owner: &OwnerReference,
    selector: (&str, &str),
    apex_selects: ApexSelects,
) -> [Service; 3] {
    let spec = &canary.spec;
    let apex = spec.apex_service_name().to_string();
    let (label, value) = selector;
    let primary_sel = BTreeMap::from([(label.to_string(), primary_name(value))]);
    let canary_sel = BTreeMap::from([(label.to_string(), value.to_string())]);
    let headless = spec.service.headless.unwrap_or(false);
    let apex_sel = match apex_selects {
        ApexSelects::Primary => primary_sel.clone(),
        ApexSelects::Canary => canary_sel.clone(),
    };
    [
        service(
            canary,
            owner,
            &apex,
            apex_sel,
            spec.service.apex.as_deref(),
            false,
        ),
        service(
            canary,
            owner,
            &primary_name(&apex),
            primary_sel,
            spec.service.primary.as_deref(),
            headless,
        ),
        service(
            canary,
            owner,
            &format!("{apex}-canary"),
            canary_sel,
            spec.service.canary.as_deref(),
            headless,
        ),
    ]
}

fn service(
    canary: &Canary,
    owner: &OwnerReference,
    name: &str,
    selector: BTreeMap<String, String>,
    meta: Option<&CustomMetadata>,
    headless: bool,
) -> Service {
    let svc = &canary.spec.service;
    let mut labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert("app.kubernetes.io/managed-by".into(), "fledge".into());
    let port = ServicePort {
        name: Some(
            svc.port_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| fledge_api::defaults::SERVICE_PORT_NAME.into()),
        ),
        port: svc.port,
        target_port: Some(
            svc.target_port
                .clone()
                .unwrap_or(IntOrString::Int(svc.port)),
        ),
        app_protocol: svc.app_protocol.clone(),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.and_then(|m| m.annotations.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: headless.then(|| "None".to_string()),
            selector: Some(selector),
            ports: Some(vec![port]),
            traffic_distribution: svc.traffic_distribution.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::owner;

    fn canary() -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "targetPort": "http",
                    "primary": {"labels": {"tier": "stable"}},
                    "canary": {"annotations": {"note": "new"}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn builds_apex_primary_and_canary_services() {
        let [apex, primary, canary_svc] = build_services(
            &canary(),
            &owner(),
            ("app", "podinfo"),
            ApexSelects::Primary,
        );
        let sel = |s: &Service| s.spec.as_ref().unwrap().selector.clone().unwrap();
        assert_eq!(apex.metadata.name.as_deref(), Some("podinfo"));
        assert_eq!(sel(&apex)["app"], "podinfo-primary");
        assert_eq!(primary.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(sel(&primary)["app"], "podinfo-primary");
        assert_eq!(primary.metadata.labels.as_ref().unwrap()["tier"], "stable");
        assert_eq!(canary_svc.metadata.name.as_deref(), Some("podinfo-canary"));
        assert_eq!(sel(&canary_svc)["app"], "podinfo");
        assert_eq!(
            canary_svc.metadata.annotations.as_ref().unwrap()["note"],
            "new"
        );
        let port = &apex.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(port.port, 9898);
        assert_eq!(port.name.as_deref(), Some("http"));
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        for s in [&apex, &primary, &canary_svc] {
            assert_eq!(s.metadata.namespace.as_deref(), Some("test"));
            assert_eq!(
                s.metadata.owner_references.as_ref().unwrap()[0].uid,
                "uid-1"
            );
        }
    }

    #[test]
    fn the_apex_follows_the_blue_green_switch() {
        let [apex, ..] =
            build_services(&canary(), &owner(), ("app", "podinfo"), ApexSelects::Canary);
        assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], "podinfo");
    }

    #[test]
    fn a_named_service_and_headless_sides() {
        let mut c = canary();
        c.spec.service.name = Some("web".into());
        c.spec.service.headless = Some(true);
        let [apex, primary, canary_svc] =
            build_services(&c, &owner(), ("app", "podinfo"), ApexSelects::Primary);
        assert_eq!(apex.metadata.name.as_deref(), Some("web"));
        assert_eq!(primary.metadata.name.as_deref(), Some("web-primary"));
        assert_eq!(canary_svc.metadata.name.as_deref(), Some("web-canary"));
        assert_eq!(apex.spec.unwrap().cluster_ip, None);
        assert_eq!(primary.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    }
}
