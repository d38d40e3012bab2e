//! The `skipper` provider: Skipper's weighted backends on a canary Ingress. The Ingress
//! `spec.ingressRef` names (the user's, routing to the apex Service) is copied into
//! `<ingressRef>-canary`, in which every path to the apex Service goes to `<svc>-primary`
//! instead, and a copy of it to `<svc>-canary` follows the rule's paths; two annotations
//! steer Skipper:
//!
//! - `zalando.org/backend-weights`: `{"<svc>-canary": c, "<svc>-primary": p}`, the split
//!   between the two backends of each path.
//! - `zalando.org/skipper-predicate`: `Weight(100)` first, so that the copy's routes win over
//!   the apex Ingress's for the same host and path; while the canary gets nothing, `False()`
//!   instead, which switches the copy's routes off and leaves the apex Ingress serving (the
//!   apex Service selects the primary's pods). The apex Ingress's own predicates follow.
//!
//! A/B testing (`analysis.match`, one entry): the copy sends every path to the apex Service to
//! `<svc>-canary` alone, and the match, as Skipper predicates (`Header`, `HeaderRegexp`,
//! `QueryParam`, `Method`: [`fledge_api::validate::skipper_canary_predicates`]), follows
//! `Weight(100)` in its predicate: matching requests take the copy's routes, the others the
//! apex Ingress's. Flagger's skipper router has no A/B testing.
//!
//! Skipper's Ingress routes cannot mirror or keep sessions: mirroring and session affinity are
//! refused.

use std::collections::BTreeMap;

use fledge_api::Canary;
use fledge_api::validate::skipper_canary_predicates;
use fledge_core::Routes;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;

use crate::ingress::{self, IngressRouter};
use crate::{Capabilities, Error, ServiceNames, cannot};

/// The provider name.
pub const PROVIDER: &str = "skipper";

/// Skipper's weights of the backends of an Ingress.
pub const BACKEND_WEIGHTS: &str = "zalando.org/backend-weights";
/// Skipper's extra route predicates of an Ingress.
pub const PREDICATE: &str = "zalando.org/skipper-predicate";
const ROUTE_WEIGHT: &str = "Weight(100)";
const ROUTE_OFF: &str = "False()";

/// `insert` followed by the predicates of `raw` (`&&`-separated) but fledge's own.
pub fn insert_predicate(raw: &str, insert: &str) -> String {
    let mut out = vec![insert];
    out.extend(
        raw.split("&&")
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != ROUTE_WEIGHT && *p != ROUTE_OFF),
    );
    out.join(" && ")
}

/// The canary Ingress for `routes`, copied from the apex Ingress, as JSON for server-side
/// apply; an error for what Skipper cannot do.
pub fn build_canary_ingress(
    canary: &Canary,
    apex: &Ingress,
    routes: Routes,
) -> Result<serde_json::Value, Error> {
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            PROVIDER,
            "Skipper's canary Ingress cannot mirror traffic (spec.analysis.mirror); remove \
             analysis.mirror, or use istio or gatewayapi:v1",
        ));
    }
    let names = ServiceNames::of(canary);
    let apex_name = ingress::apex_ingress_name(canary, PROVIDER)?;
    let apex_spec = apex.spec.clone().unwrap_or_default();
    let mut annotations =
        ingress::copied_annotations(&apex.metadata, |k| k == BACKEND_WEIGHTS || k == PREDICATE);
    let own = apex
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PREDICATE))
        .map_or("", String::as_str);
    if routes.ab_match {
        let matches = crate::analysis_match(canary);
        let predicates = skipper_canary_predicates("spec.analysis.match", &matches)
            .map_err(|problems| crate::refused(PROVIDER, &problems))?;
        if predicates.is_empty() {
            return Err(cannot(
                PROVIDER,
                "A/B routing asked, but spec.analysis.match has no condition: add a header, \
                 query parameter or method to match",
            ));
        }
        // Matching requests to the canary alone; the others find no route of the copy and
        // take the apex Ingress's, to the primary.
        let spec = ingress::replace_backends(
            &apex_spec,
            &names.apex,
            &names.canary,
            None,
            apex_name,
            PROVIDER,
        )?;
        let weights = BTreeMap::from([(names.canary.as_str(), 100)]);
        annotations.insert(BACKEND_WEIGHTS.into(), serde_json::to_string(&weights)?);
        let first = std::iter::once(ROUTE_WEIGHT.to_string())
            .chain(predicates)
            .collect::<Vec<_>>()
            .join(" && ");
        annotations.insert(PREDICATE.into(), insert_predicate(own, &first));
        return ingress::canary_ingress(canary, apex, annotations, spec);
    }
    let spec = ingress::replace_backends(
        &apex_spec,
        &names.apex,
        &names.primary,
        Some(&names.canary),
        apex_name,
        PROVIDER,
    )?;
    let weights = BTreeMap::from([
        (names.canary.as_str(), routes.canary),
        (names.primary.as_str(), routes.primary),
    ]);
    annotations.insert(BACKEND_WEIGHTS.into(), serde_json::to_string(&weights)?);
    let first = if routes.canary > 0 {
        ROUTE_WEIGHT
    } else {
        ROUTE_OFF
    };
    annotations.insert(PREDICATE.into(), insert_predicate(own, first));
    ingress::canary_ingress(canary, apex, annotations, spec)
}

/// Whether some path of `ing` sends to Service `service`.
fn sends_to(ing: &Ingress, service: &str) -> bool {
    ing.spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| r.http.iter())
        .flat_map(|h| h.paths.iter())
        .any(|p| {
            p.backend
                .service
                .as_ref()
                .is_some_and(|s| s.name == service)
        })
}

/// The routes a canary Ingress gives: the primary's and the canary's shares of the backend
/// weights, nothing to the canary while its routes are off.
pub fn routes_of(ing: &Ingress, names: &ServiceNames) -> Routes {
    let annotations = ing.metadata.annotations.clone().unwrap_or_default();
    let off = annotations
        .get(PREDICATE)
        .is_some_and(|p| p.split("&&").any(|x| x.trim() == ROUTE_OFF));
    let weights: BTreeMap<String, f64> = annotations
        .get(BACKEND_WEIGHTS)
        .and_then(|w| serde_json::from_str(w).ok())
        .unwrap_or_default();
    let weight = |n: &str| weights.get(n).copied().filter(|w| *w > 0.0).unwrap_or(0.0);
    let (p, c) = (weight(&names.primary), weight(&names.canary));
    if off || p + c <= 0.0 {
        return Routes::PRIMARY;
    }
    if sends_to(ing, &names.canary) && !sends_to(ing, &names.primary) {
        // A/B: the copy's routes, to the canary alone, take the matching requests only.
        return Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
    }
    // A percent: the cast cannot overflow.
    Routes::weighted((c * 100.0 / (p + c)).round() as i32)
}

/// The router: Skipper's weighted canary Ingresses.
pub fn router(client: Client) -> IngressRouter {
    IngressRouter::new(
        client,
        PROVIDER,
        Capabilities {
            partial_weights: true,
            http_match: true,
            ..Capabilities::default()
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

    fn apex() -> Ingress {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo"},
                "annotations": {
                    "kubernetes.io/ingress.class": "skipper",
                    "zalando.org/skipper-predicate": "Method(\"GET\")&&False()"
                }
            },
            "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                {"path": "/other", "pathType": "Prefix",
                 "backend": {"service": {"name": "other", "port": {"name": "http"}}}}
            ]}}]}
        }))
        .unwrap()
    }

    fn skipper_canary() -> Canary {
        canary(
            PROVIDER,
            json!({"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "name": "podinfo"}}),
        )
    }

    /// What Flagger v1.36.1 (`pkg/router/skipper.go`) writes for weights `canary`/`primary`:
    /// the backend weights and the predicate.
    fn flagger_annotations(canary: i32, primary: i32, predicate: &str) -> serde_json::Value {
        json!({
            "kubernetes.io/ingress.class": "skipper",
            "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
            "helm.toolkit.fluxcd.io/driftDetection": "disabled",
            "zalando.org/backend-weights":
                format!(r#"{{"podinfo-canary":{canary},"podinfo-primary":{primary}}}"#),
            "zalando.org/skipper-predicate": predicate,
        })
    }

    #[test]
    fn copies_the_apex_with_primary_and_canary_backends_as_flagger_does() {
        let obj = build_canary_ingress(&skipper_canary(), &apex(), Routes::PRIMARY).unwrap();
        assert_eq!(obj["kind"], "Ingress");
        assert_eq!(obj["metadata"]["name"], "podinfo-canary");
        assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            obj["spec"],
            json!({"rules": [{"host": "app.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo-primary", "port": {"number": 80}}}},
                {"path": "/other", "pathType": "Prefix",
                 "backend": {"service": {"name": "other", "port": {"name": "http"}}}},
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo-canary", "port": {"number": 80}}}}
            ]}}]})
        );
        // Everything on the primary (initialization, promotion, rollback): the routes off.
        assert_eq!(
            obj["metadata"]["annotations"],
            flagger_annotations(0, 100, r#"False() && Method("GET")"#)
        );
    }

    #[test]
    fn each_weight() {
        let c = skipper_canary();
        let names = ServiceNames::of(&c);
        for w in [5, 10, 50, 100] {
            let obj = build_canary_ingress(&c, &apex(), Routes::weighted(w)).unwrap();
            assert_eq!(
                obj["metadata"]["annotations"],
                flagger_annotations(w, 100 - w, r#"Weight(100) && Method("GET")"#),
                "{w}"
            );
            let ing: Ingress = serde_json::from_value(obj).unwrap();
            assert_eq!(routes_of(&ing, &names), Routes::weighted(w));
        }
        let obj = build_canary_ingress(&c, &apex(), Routes::PRIMARY).unwrap();
        let ing: Ingress = serde_json::from_value(obj).unwrap();
        assert_eq!(routes_of(&ing, &names), Routes::PRIMARY);
    }

    #[test]
    fn predicates_as_flagger_inserts_them() {
        let host = r#"Host(/^my-host-header\.example\.org$/) && Method("GET") && Path("/hello")"#;
        assert_eq!(
            insert_predicate(host, ROUTE_WEIGHT),
            format!("Weight(100) && {host}")
        );
        assert_eq!(insert_predicate("", ROUTE_WEIGHT), "Weight(100)");
        assert_eq!(
            insert_predicate(&format!("Weight(100) && {host}"), ROUTE_WEIGHT),
            format!("Weight(100) && {host}")
        );
        assert_eq!(
            insert_predicate(
                r#"Host(/^my-host-header\.example\.org$/) && Method("GET") && Path("/hello")&&False()"#,
                ROUTE_OFF
            ),
            format!("False() && {host}")
        );
    }

    fn ab_canary(matches: serde_json::Value) -> Canary {
        canary(
            PROVIDER,
            json!({
                "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "name": "podinfo"},
                "analysis": {"iterations": 10, "match": matches},
            }),
        )
    }

    const AB: Routes = Routes {
        ab_match: true,
        ..Routes::PRIMARY
    };

    #[test]
    fn ab_testing_sends_the_matching_requests_to_the_canary_alone() {
        let c = ab_canary(json!([{
            "headers": {
                "x-canary": {"exact": "insider \"vip\""},
                "user-agent": {"regex": ".*Firefox.*"},
                "x-region": {"prefix": "eu.west"},
            },
            "queryParams": {"beta": {"exact": "1"}},
            "method": {"exact": "get"},
        }]));
        let obj = build_canary_ingress(&c, &apex(), AB).unwrap();
        assert_eq!(
            obj["spec"]["rules"][0]["http"]["paths"],
            json!([
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "podinfo-canary", "port": {"number": 80}}}},
                {"path": "/other", "pathType": "Prefix",
                 "backend": {"service": {"name": "other", "port": {"name": "http"}}}}
            ])
        );
        let annotations = &obj["metadata"]["annotations"];
        assert_eq!(annotations[BACKEND_WEIGHTS], r#"{"podinfo-canary":100}"#);
        assert_eq!(
            annotations[PREDICATE],
            concat!(
                r#"Weight(100) && HeaderRegexp("user-agent", ".*Firefox.*") && "#,
                r#"Header("x-canary", "insider \"vip\"") && "#,
                r#"HeaderRegexp("x-region", "^eu\\.west") && QueryParam("beta", "^1$") && "#,
                r#"Method("GET") && Method("GET")"#
            )
        );
        let ing: Ingress = serde_json::from_value(obj).unwrap();
        let names = ServiceNames::of(&c);
        assert_eq!(routes_of(&ing, &names), AB);
        // Promotion or rollback: the copy's routes off again.
        let obj = build_canary_ingress(&c, &apex(), Routes::PRIMARY).unwrap();
        let ing: Ingress = serde_json::from_value(obj).unwrap();
        assert_eq!(routes_of(&ing, &names), Routes::PRIMARY);
    }

    #[test]
    fn refuses_what_a_predicate_cannot_match_mirroring_and_a_missing_backend() {
        let e = build_canary_ingress(
            &ab_canary(json!([
                {"headers": {"x-canary": {"exact": "1"}}},
                {"uri": {"prefix": "/beta"}},
            ])),
            &apex(),
            AB,
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message } if provider == "skipper"
                && message.contains("give one match entry")
                && message.contains("spec.analysis.match[1].uri")),
            "{e}"
        );
        let e = build_canary_ingress(&ab_canary(json!([])), &apex(), AB).unwrap_err();
        assert!(e.to_string().contains("has no condition"), "{e}");
        let c = skipper_canary();
        let mirrored = Routes {
            mirror: Some(10),
            ..Routes::PRIMARY
        };
        let e = build_canary_ingress(&c, &apex(), mirrored).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.mirror"), "{e}");
        let web = canary(
            PROVIDER,
            json!({"ingressRef": {"name": "podinfo"}, "service": {"name": "web"}}),
        );
        let e = build_canary_ingress(&web, &apex(), Routes::PRIMARY).unwrap_err();
        assert!(e.to_string().contains("spec.ingressRef"), "{e}");
    }

    #[test]
    fn reads_back_fractional_and_missing_weights() {
        let names = ServiceNames::of(&skipper_canary());
        let with = |weights: &str, predicate: &str| {
            let mut ing = apex();
            ing.metadata.annotations = Some(BTreeMap::from([
                (BACKEND_WEIGHTS.to_string(), weights.to_string()),
                (PREDICATE.to_string(), predicate.to_string()),
            ]));
            routes_of(&ing, &names)
        };
        assert_eq!(
            with(
                r#"{"podinfo-primary": 1.5, "podinfo-canary": 0.5}"#,
                "Weight(100)"
            ),
            Routes::weighted(25)
        );
        assert_eq!(
            with(
                r#"{"podinfo-primary": 50, "podinfo-canary": 50}"#,
                "False()"
            ),
            Routes::PRIMARY
        );
        assert_eq!(with("not json", "Weight(100)"), Routes::PRIMARY);
    }
}
