//! The `nginx` provider: ingress-nginx's canary Ingress. The Ingress `spec.ingressRef` names
//! (the user's, routing to the apex Service) is copied into `<ingressRef>-canary`, whose paths
//! send to `<svc>-canary` instead, and ingress-nginx's `nginx.ingress.kubernetes.io/canary*`
//! annotations on the copy say how much of the traffic it takes:
//!
//! - `canary: "true"` always (the copy is a canary Ingress from the start, as Flagger makes it),
//!   `canary-weight`: the canary's percent (`"0"` while the primary takes everything).
//! - A/B testing (`analysis.match`): `canary-by-header` with `canary-by-header-value` (exact)
//!   or `canary-by-header-pattern` (regex), and `canary-by-cookie` (a cookie's name; ingress-nginx
//!   sends requests whose cookie of that name is `always` to the canary). Only one header and
//!   one cookie, as alternatives: `fledge validate` refuses the rest
//!   ([`fledge_api::validate::nginx_canary_match`]).
//! - Mirroring and session affinity: ingress-nginx has no canary form of either; refused.
//!
//! The apex Ingress and everything else in it (hosts, TLS, other annotations) stay the user's;
//! the copy follows it on every reconcile.

use std::collections::BTreeMap;

use fledge_api::Canary;
use fledge_api::validate::{NginxCanaryMatch, nginx_canary_match};
use fledge_core::Routes;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;

use crate::ingress::{self, IngressRouter};
use crate::{Capabilities, Error, ServiceNames, cannot};

/// The provider name.
pub const PROVIDER: &str = "nginx";

/// The annotation prefix of ingress-nginx (Flagger's `-ingress-annotations-prefix` default).
pub const PREFIX: &str = "nginx.ingress.kubernetes.io";

fn key(suffix: &str) -> String {
    format!("{PREFIX}/{suffix}")
}

/// The canary annotations for `routes`: `canary`, `canary-weight` and, with A/B matching, the
/// `canary-by-*` ones.
pub fn canary_annotations(
    canary: &Canary,
    routes: Routes,
) -> Result<BTreeMap<String, String>, Error> {
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            PROVIDER,
            "ingress-nginx cannot mirror traffic to a canary Ingress (spec.analysis.mirror); \
             remove analysis.mirror, or use istio or gatewayapi:v1",
        ));
    }
    let mut out = BTreeMap::from([
        (key("canary"), "true".to_string()),
        (key("canary-weight"), routes.canary.to_string()),
    ]);
    if routes.ab_match {
        let matches = crate::analysis_match(canary);
        if matches.is_empty() {
            return Err(cannot(
                PROVIDER,
                "A/B routing asked, but spec.analysis.match is empty: add a header or cookie \
                 condition",
            ));
        }
        let m: NginxCanaryMatch = nginx_canary_match("spec.analysis.match", &matches)
            .map_err(|problems| crate::refused(PROVIDER, &problems))?;
        for (suffix, value) in [
            ("canary-by-header", m.header),
            ("canary-by-header-value", m.header_value),
            ("canary-by-header-pattern", m.header_pattern),
            ("canary-by-cookie", m.cookie),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.insert(key(suffix), v);
            }
        }
    }
    Ok(out)
}

/// The canary Ingress for `routes`, copied from the apex Ingress, as JSON for server-side
/// apply.
pub fn build_canary_ingress(
    canary: &Canary,
    apex: &Ingress,
    routes: Routes,
) -> Result<serde_json::Value, Error> {
    let names = ServiceNames::of(canary);
    let apex_name = ingress::apex_ingress_name(canary, PROVIDER)?;
    let spec = apex.spec.clone().unwrap_or_default();
    let spec =
        ingress::replace_backends(&spec, &names.apex, &names.canary, None, apex_name, PROVIDER)?;
    let canary_prefix = key("canary");
    let mut annotations =
        ingress::copied_annotations(&apex.metadata, |k| k.contains(&canary_prefix));
    annotations.extend(canary_annotations(canary, routes)?);
    ingress::canary_ingress(canary, apex, annotations, spec)
}

/// The routes a canary Ingress gives: its weight (none unless `canary` is `"true"`), and A/B
/// matching when it routes by header or cookie.
pub fn routes_of(ing: &Ingress, _: &ServiceNames) -> Routes {
    let annotations = ing.metadata.annotations.clone().unwrap_or_default();
    let get = |s: &str| annotations.get(&key(s)).map(String::as_str);
    if get("canary") != Some("true") {
        return Routes::PRIMARY;
    }
    let weight = get("canary-weight")
        .and_then(|w| w.trim().parse::<i32>().ok())
        .unwrap_or(0);
    Routes {
        ab_match: get("canary-by-header").is_some() || get("canary-by-cookie").is_some(),
        ..Routes::weighted(weight)
    }
}

/// The router: ingress-nginx canary Ingresses.
pub fn router(client: Client) -> IngressRouter {
    IngressRouter::new(
        client,
        PROVIDER,
        Capabilities {
            partial_weights: true,
            http_match: true,
            mirroring: false,
            session_affinity: false,
        },
        build_canary_ingress,
        routes_of,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;
    use serde_json::json;

    fn names() -> ServiceNames {
        ServiceNames::of(&spec(json!({})))
    }

    fn apex() -> Ingress {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "podinfo", "namespace": "test", "resourceVersion": "7",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "nginx.ingress.kubernetes.io/canary-weight": "30"
                }
            },
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                {"path": "/other", "pathType": "Prefix",
                 "backend": {"service": {"name": "other", "port": {"number": 80}}}}
            ]}}]}
        }))
        .unwrap()
    }

    fn spec(extra: serde_json::Value) -> Canary {
        let mut s = json!({"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "name": "podinfo"}});
        if let (Some(a), Some(b)) = (s.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        canary(PROVIDER, s)
    }

    /// The annotations Flagger v1.36.1 (`pkg/router/ingress.go`) leaves on the canary Ingress,
    /// with the apex's own ones copied.
    fn flagger_annotations(extra: &[(&str, &str)]) -> serde_json::Value {
        let mut a = json!({
            "kubernetes.io/ingress.class": "nginx",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
        });
        for (k, v) in extra {
            a[format!("{PREFIX}/{k}")] = json!(v);
        }
        a
    }

    #[test]
    fn copies_the_apex_with_the_canary_backend_as_flagger_does() {
        let obj = build_canary_ingress(&spec(json!({})), &apex(), Routes::PRIMARY).unwrap();
        assert_eq!(obj["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(obj["kind"], "Ingress");
        assert_eq!(obj["metadata"]["name"], "podinfo-canary");
        assert_eq!(obj["metadata"]["namespace"], "test");
        assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert!(obj["metadata"].get("resourceVersion").is_none());
        // Flagger copies every label; fledge leaves Flux's out and marks the copy as its own.
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"app": "podinfo", "app.kubernetes.io/managed-by": "fledge"})
        );
        // Initialization: canary "true" with weight "0".
        assert_eq!(
            obj["metadata"]["annotations"],
            flagger_annotations(&[("canary", "true"), ("canary-weight", "0")])
        );
        assert_eq!(
            obj["spec"],
            json!({"ingressClassName": "nginx", "rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo-canary", "port": {"number": 80}}}},
                {"path": "/other", "pathType": "Prefix",
                 "backend": {"service": {"name": "other", "port": {"number": 80}}}}
            ]}}]})
        );
    }

    #[test]
    fn each_weight_promotion_and_rollback() {
        let c = spec(json!({}));
        for w in [5, 10, 50, 100] {
            let obj = build_canary_ingress(&c, &apex(), Routes::weighted(w)).unwrap();
            let want = w.to_string();
            assert_eq!(
                obj["metadata"]["annotations"],
                flagger_annotations(&[("canary", "true"), ("canary-weight", &want)]),
                "{w}"
            );
        }
        // Promotion and rollback both end on the primary: Flagger's makeAnnotations state.
        let obj = build_canary_ingress(&c, &apex(), Routes::PRIMARY).unwrap();
        assert_eq!(
            obj["metadata"]["annotations"],
            flagger_annotations(&[("canary", "true"), ("canary-weight", "0")])
        );
    }

    #[test]
    fn ab_matching_by_header_and_cookie() {
        let c = spec(json!({"analysis": {"iterations": 10, "match": [
            {"headers": {"x-canary": {"exact": "always"}}},
            {"headers": {"cookie": {"exact": "canary"}}}
        ]}}));
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let obj = build_canary_ingress(&c, &apex(), ab).unwrap();
        assert_eq!(
            obj["metadata"]["annotations"],
            flagger_annotations(&[
                ("canary", "true"),
                ("canary-weight", "0"),
                ("canary-by-header", "x-canary"),
                ("canary-by-header-value", "always"),
                ("canary-by-cookie", "canary"),
            ])
        );
        let ing: Ingress = serde_json::from_value(obj).unwrap();
        assert_eq!(routes_of(&ing, &names()), ab);

        let c = spec(json!({"analysis": {"iterations": 10, "match": [
            {"headers": {"user-agent": {"regex": ".*Firefox.*"}}}
        ]}}));
        let obj = build_canary_ingress(&c, &apex(), ab).unwrap();
        assert_eq!(
            obj["metadata"]["annotations"][format!("{PREFIX}/canary-by-header-pattern")],
            ".*Firefox.*"
        );
        assert!(
            obj["metadata"]["annotations"]
                .get(format!("{PREFIX}/canary-by-header-value"))
                .is_none()
        );
    }

    #[test]
    fn refuses_what_ingress_nginx_cannot_do() {
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let c = spec(json!({"analysis": {"iterations": 10, "match": [
            {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "1"}}}
        ]}}));
        let e = build_canary_ingress(&c, &apex(), ab).unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message } if provider == "nginx"
                && message.contains("spec.analysis.match[0].uri")),
            "{e}"
        );
        let mirrored = Routes {
            mirror: Some(100),
            ..Routes::PRIMARY
        };
        let e = build_canary_ingress(&spec(json!({})), &apex(), mirrored).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.mirror"), "{e}");
        // No ingressRef, or an Ingress that does not route to the apex Service.
        let e = build_canary_ingress(&canary(PROVIDER, json!({})), &apex(), Routes::PRIMARY)
            .unwrap_err();
        assert!(e.to_string().contains("spec.ingressRef is required"), "{e}");
        let other = spec(json!({"service": {"name": "web", "port": 80}}));
        let e = build_canary_ingress(&other, &apex(), Routes::PRIMARY).unwrap_err();
        assert!(
            e.to_string()
                .contains("has no path whose backend is the Service web"),
            "{e}"
        );
    }

    #[test]
    fn reads_back_the_weight() {
        let c = spec(json!({}));
        for w in [0, 35, 100] {
            let obj = build_canary_ingress(&c, &apex(), Routes::weighted(w)).unwrap();
            let ing: Ingress = serde_json::from_value(obj).unwrap();
            assert_eq!(routes_of(&ing, &names()), Routes::weighted(w));
        }
        let mut ing = apex();
        ing.metadata.annotations = Some(BTreeMap::from([(key("canary-weight"), "40".into())]));
        // Not a canary Ingress: it takes nothing.
        assert_eq!(routes_of(&ing, &names()), Routes::PRIMARY);
    }
}
