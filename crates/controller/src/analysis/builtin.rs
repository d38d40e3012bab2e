//! The builtin metrics `request-success-rate` (percent of requests not answered with a 5xx) and
//! `request-duration` (99th percentile, in milliseconds), as PromQL over the metric names each
//! data plane exports. The observer is chosen by `spec.provider`, as Flagger chooses it; a
//! MetricTemplate referenced by the metric overrides the builtin query.

use std::fmt;
use std::str::FromStr;

use fledge_api::template::{TemplateVars, render};

/// The builtin metric names.
pub const SUCCESS_RATE: &str = "request-success-rate";
/// See [`SUCCESS_RATE`].
pub const DURATION: &str = "request-duration";

/// Whose metrics the builtin queries read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    /// The application's own `http_request_duration_seconds` histogram (what podinfo and the
    /// Prometheus Go client's HTTP middleware export), by pod name: Flagger's choice for the
    /// `kubernetes` and `gatewayapi` providers.
    Http,
    /// Traefik's per-service metrics, for Gateway API routes served by Traefik
    /// (`<namespace>-<service>-canary-http-<port>@kubernetesgateway`).
    TraefikGateway,
    /// Traefik's per-service metrics for TraefikServices (`@kubernetescrd`), the `traefik`
    /// provider.
    TraefikCrd,
    /// Istio's `istio_requests_total` and `istio_request_duration_milliseconds`.
    Istio,
    /// Linkerd's `response_total` and `response_latency_ms`.
    Linkerd,
    /// Open Service Mesh's `osm_request_total` and `osm_request_duration_ms`.
    Osm,
    /// ingress-nginx's `nginx_ingress_controller_requests` and upstream latency, of the
    /// canary Ingress (`canary!=""`) of `spec.ingressRef`.
    Nginx,
    /// Skipper's route metrics of the canary Ingress's routes to `<svc>-canary`.
    Skipper,
    /// Envoy's cluster metrics of `<namespace>_<svc>-canary_<port>`, Contour's cluster names.
    Contour,
    /// Envoy's cluster metrics of `<svc>-canary_<namespace>_svc_<port>`, Kuma's service names.
    Kuma,
    /// Envoy's cluster metrics of `<namespace>-<svc>-canaryupstream-<port>_<gloo namespace>`,
    /// the cluster of Gloo's canary Upstream.
    Gloo,
    /// The Envoy sidecars' cluster metrics of the canary's pods (App Mesh).
    AppMesh,
    /// Envoy's cluster metrics of `<namespace>/<revision>`, the Knative ingress's (Kourier's)
    /// cluster of the latest Revision (`{{ route }}`).
    Knative,
    /// APISIX's `apisix_http_status` and `apisix_http_latency` of the canary ApisixRoute
    /// `<routeRef>-<svc>-canary` (APISIX's route label `<namespace>_<name>_<http route>`).
    Apisix,
}

/// Which observer the builtin queries of `gatewayapi:*` Canaries use (a controller flag):
/// the application's metrics or the gateway's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatewayMetrics {
    /// The application's own metrics, by pod ([`Observer::Http`]); Flagger's default.
    #[default]
    App,
    /// Traefik's metrics ([`Observer::TraefikGateway`]).
    Traefik,
}

impl FromStr for GatewayMetrics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "app" => Ok(GatewayMetrics::App),
            "traefik" => Ok(GatewayMetrics::Traefik),
            other => Err(format!("{other:?} is not one of: app, traefik")),
        }
    }
}

impl fmt::Display for GatewayMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayMetrics::App => "app",
            GatewayMetrics::Traefik => "traefik",
        })
    }
}

impl Observer {
    /// The observer for a Canary's `spec.provider` (empty: the default provider).
    pub fn for_provider(provider: &str, gateway: GatewayMetrics) -> Observer {
        match provider {
            "" => Observer::for_provider(fledge_api::defaults::PROVIDER, gateway),
            "linkerd" => Observer::Linkerd,
            "istio" => Observer::Istio,
            "traefik" => Observer::TraefikCrd,
            "osm" => Observer::Osm,
            "nginx" => Observer::Nginx,
            "skipper" => Observer::Skipper,
            "contour" => Observer::Contour,
            "kuma" => Observer::Kuma,
            "gloo" => Observer::Gloo,
            p if p.starts_with("appmesh") => Observer::AppMesh,
            "apisix" => Observer::Apisix,
            "knative" => Observer::Knative,
            p if p == "kubernetes" || p.starts_with("gatewayapi") => match gateway {
                GatewayMetrics::Traefik if p != "kubernetes" => Observer::TraefikGateway,
                _ => Observer::Http,
            },
            // Flagger's fallback for every other provider (the SMI ones among them).
            _ => Observer::Istio,
        }
    }

    /// The query template of a builtin metric, or `None` when `metric` is not builtin. The
    /// result is rendered like a MetricTemplate's query.
    pub fn query(self, metric: &str) -> Option<String> {
        let success = metric == SUCCESS_RATE;
        if !success && metric != DURATION {
            return None;
        }
        Some(match self {
            Observer::Http => {
                // The canary's pods: a Deployment's as Flagger selects them, or a StatefulSet's
                // at or above its partition.
                let sel = r#"kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ canary_pods }}""#;
                if success {
                    format!(
                        r#"sum(rate(http_request_duration_seconds_count{{{sel}, status!~"5.."}}[{{{{ interval }}}}])) / sum(rate(http_request_duration_seconds_count{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{{{sel}}}[{{{{ interval }}}}])) by (le)) * 1000"#
                    )
                }
            }
            Observer::TraefikGateway | Observer::TraefikCrd => {
                let sel = if self == Observer::TraefikGateway {
                    r#"service=~"{{ namespace }}-{{ service }}-canary-http-[0-9]+@kubernetesgateway""#
                } else {
                    r#"service=~"{{ namespace }}-{{ service }}-canary-[0-9a-zA-Z-]+@kubernetescrd""#
                };
                if success {
                    format!(
                        r#"sum(rate(traefik_service_requests_total{{{sel}, code!~"5.."}}[{{{{ interval }}}}])) / sum(rate(traefik_service_requests_total{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{{{sel}}}[{{{{ interval }}}}])) by (le)) * 1000"#
                    )
                }
            }
            Observer::Istio => {
                let sel = r#"reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}""#;
                if success {
                    format!(
                        r#"sum(rate(istio_requests_total{{{sel}, response_code!~"5.*"}}[{{{{ interval }}}}])) / sum(rate(istio_requests_total{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{sel}}}[{{{{ interval }}}}])) by (le))"#
                    )
                }
            }
            Observer::Linkerd => {
                let sel = r#"namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound""#;
                if success {
                    format!(
                        r#"sum(rate(response_total{{{sel}, classification!="failure"}}[{{{{ interval }}}}])) / sum(rate(response_total{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{{{sel}}}[{{{{ interval }}}}])) by (le))"#
                    )
                }
            }
            Observer::Osm => {
                let sel = r#"destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}""#;
                if success {
                    format!(
                        r#"sum(rate(osm_request_total{{{sel}, response_code!~"5.*"}}[{{{{ interval }}}}])) / sum(rate(osm_request_total{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{{{sel}}}[{{{{ interval }}}}])) by (le))"#
                    )
                }
            }
            Observer::Nginx => {
                let sel = r#"namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="""#;
                if success {
                    format!(
                        r#"sum(rate(nginx_ingress_controller_requests{{{sel}, status!~"5.*"}}[{{{{ interval }}}}])) / sum(rate(nginx_ingress_controller_requests{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"sum(rate(nginx_ingress_controller_ingress_upstream_latency_seconds_sum{{{sel}}}[{{{{ interval }}}}])) / sum(rate(nginx_ingress_controller_ingress_upstream_latency_seconds_count{{{sel}}}[{{{{ interval }}}}])) * 1000"#
                    )
                }
            }
            Observer::Contour
            | Observer::Kuma
            | Observer::Knative
            | Observer::Gloo
            | Observer::AppMesh => {
                let sel = match self {
                    Observer::Gloo => {
                        r#"envoy_cluster_name=~"{{ namespace }}-{{ service }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+""#
                    }
                    Observer::AppMesh => {
                        r#"kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ canary_pods }}""#
                    }
                    Observer::Contour => {
                        r#"envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+""#
                    }
                    Observer::Kuma => {
                        r#"envoy_cluster_name=~"{{ service }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+""#
                    }
                    _ => r#"envoy_cluster_name=~"{{ namespace }}/{{ route }}""#,
                };
                if success {
                    format!(
                        r#"sum(rate(envoy_cluster_upstream_rq{{{sel}, envoy_response_code!~"5.*"}}[{{{{ interval }}}}])) / sum(rate(envoy_cluster_upstream_rq{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{{{sel}}}[{{{{ interval }}}}])) by (le))"#
                    )
                }
            }
            Observer::Apisix => {
                let sel = r#"route=~"{{ namespace }}_{{ route }}-{{ service }}-canary_.+""#;
                if success {
                    format!(
                        r#"sum(rate(apisix_http_status{{{sel}, code!~"5.."}}[{{{{ interval }}}}])) / sum(rate(apisix_http_status{{{sel}}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{{type=~"request", {sel}}}[{{{{ interval }}}}])) by (le))"#
                    )
                }
            }
            Observer::Skipper => {
                let route = r#"route=~"kube(ew)?_{{ namespace }}__{{ ingress }}_canary__.*__{{ service }}_canary(_[0-9]+)?""#;
                if success {
                    format!(
                        r#"sum(rate(skipper_response_duration_seconds_bucket{{{route},code!~"5..",le="+Inf"}}[{{{{ interval }}}}])) / sum(rate(skipper_response_duration_seconds_bucket{{{route},le="+Inf"}}[{{{{ interval }}}}])) * 100"#
                    )
                } else {
                    format!(
                        r#"sum(rate(skipper_serve_route_duration_seconds_sum{{{route}}}[{{{{ interval }}}}])) / sum(rate(skipper_serve_route_duration_seconds_count{{{route}}}[{{{{ interval }}}}])) * 1000"#
                    )
                }
            }
        })
    }

    /// Renders a builtin query of this observer. Skipper names its routes after the namespace,
    /// Ingress and Service with every character but `[0-9A-Za-z_]` as `_`, so its variables are
    /// written that way (as Flagger's Skipper observer does).
    pub fn render(self, query: &str, vars: &TemplateVars<'_>) -> Result<String, String> {
        if self != Observer::Skipper {
            return render(query, vars);
        }
        let word = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        let (namespace, name, target, service, ingress, route) = (
            word(vars.namespace),
            word(vars.name),
            word(vars.target),
            word(vars.service),
            word(vars.ingress),
            word(vars.route),
        );
        render(
            query,
            &TemplateVars {
                namespace: &namespace,
                name: &name,
                target: &target,
                service: &service,
                ingress: &ingress,
                route: &route,
                ..*vars
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars<'static> {
        TemplateVars {
            namespace: "shop",
            name: "web",
            target: "web",
            service: "web",
            ingress: "web-ingress",
            route: "web-route",
            interval: "1m",
            canary_pods: "web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
            stable_pods: "web-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
            variables: None,
        }
    }

    #[test]
    fn the_observer_follows_the_provider_as_in_flagger() {
        use Observer::*;
        let app = GatewayMetrics::App;
        for (provider, want) in [
            ("", Http),
            ("kubernetes", Http),
            ("gatewayapi:v1", Http),
            ("gatewayapi:v1beta1", Http),
            ("istio", Istio),
            ("linkerd", Linkerd),
            ("traefik", TraefikCrd),
            ("smi:v1alpha3", Istio),
            ("smi:v1alpha1", Istio),
            ("osm", Osm),
            ("nginx", Nginx),
            ("skipper", Skipper),
            ("contour", Contour),
            ("kuma", Kuma),
            ("gloo", Gloo),
            ("appmesh", AppMesh),
            ("appmesh:v1beta2", AppMesh),
            ("apisix", Apisix),
            ("knative", Knative),
        ] {
            assert_eq!(Observer::for_provider(provider, app), want, "{provider}");
        }
        let traefik = GatewayMetrics::Traefik;
        assert_eq!(
            Observer::for_provider("gatewayapi:v1", traefik),
            TraefikGateway
        );
        assert_eq!(Observer::for_provider("", traefik), TraefikGateway);
        // Plain Services have no gateway in front: the app's metrics still.
        assert_eq!(Observer::for_provider("kubernetes", traefik), Http);
    }

    #[test]
    fn builtin_queries_render_to_the_exact_promql() {
        let q = |o: Observer, m: &str| render(&o.query(m).unwrap(), &vars()).unwrap();
        assert_eq!(
            q(Observer::TraefikGateway, SUCCESS_RATE),
            r#"sum(rate(traefik_service_requests_total{service=~"shop-web-canary-http-[0-9]+@kubernetesgateway", code!~"5.."}[1m])) / sum(rate(traefik_service_requests_total{service=~"shop-web-canary-http-[0-9]+@kubernetesgateway"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::TraefikGateway, DURATION),
            r#"histogram_quantile(0.99, sum(rate(traefik_service_request_duration_seconds_bucket{service=~"shop-web-canary-http-[0-9]+@kubernetesgateway"}[1m])) by (le)) * 1000"#
        );
        assert_eq!(
            q(Observer::Http, SUCCESS_RATE),
            r#"sum(rate(http_request_duration_seconds_count{kubernetes_namespace="shop", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.."}[1m])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="shop", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Istio, DURATION),
            r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination", destination_workload_namespace="shop", destination_workload=~"web"}[1m])) by (le))"#
        );
        assert_eq!(
            q(Observer::Linkerd, SUCCESS_RATE),
            r#"sum(rate(response_total{namespace="shop", deployment=~"web", direction="inbound", classification!="failure"}[1m])) / sum(rate(response_total{namespace="shop", deployment=~"web", direction="inbound"}[1m])) * 100"#
        );
        assert!(q(Observer::TraefikCrd, SUCCESS_RATE).contains("@kubernetescrd"));
        // Flagger's pkg/metrics/observers/osm.go, its whitespace folded.
        assert_eq!(
            q(Observer::Osm, SUCCESS_RATE),
            r#"sum(rate(osm_request_total{destination_namespace="shop", destination_kind="Deployment", destination_name="web", response_code!~"5.*"}[1m])) / sum(rate(osm_request_total{destination_namespace="shop", destination_kind="Deployment", destination_name="web"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Osm, DURATION),
            r#"histogram_quantile(0.99, sum(rate(osm_request_duration_ms_bucket{destination_namespace="shop", destination_kind="Deployment", destination_name="web"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/nginx.go, its whitespace folded.
        assert_eq!(
            q(Observer::Nginx, SUCCESS_RATE),
            r#"sum(rate(nginx_ingress_controller_requests{namespace="shop", ingress="web-ingress", canary!="", status!~"5.*"}[1m])) / sum(rate(nginx_ingress_controller_requests{namespace="shop", ingress="web-ingress", canary!=""}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Nginx, DURATION),
            r#"sum(rate(nginx_ingress_controller_ingress_upstream_latency_seconds_sum{namespace="shop", ingress="web-ingress", canary!=""}[1m])) / sum(rate(nginx_ingress_controller_ingress_upstream_latency_seconds_count{namespace="shop", ingress="web-ingress", canary!=""}[1m])) * 1000"#
        );
        // Flagger's pkg/metrics/observers/skipper.go (its test's expected query, whitespace
        // folded), names with non-word characters written as `_`.
        let skipper = TemplateVars {
            namespace: "skipper",
            ingress: "skipper-ingress",
            service: "backend",
            ..vars()
        };
        let qs = |m: &str| {
            Observer::Skipper
                .render(&Observer::Skipper.query(m).unwrap(), &skipper)
                .unwrap()
        };
        assert_eq!(
            qs(SUCCESS_RATE),
            r#"sum(rate(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?",code!~"5..",le="+Inf"}[1m])) / sum(rate(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?",le="+Inf"}[1m])) * 100"#
        );
        assert_eq!(
            qs(DURATION),
            r#"sum(rate(skipper_serve_route_duration_seconds_sum{route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?"}[1m])) / sum(rate(skipper_serve_route_duration_seconds_count{route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?"}[1m])) * 1000"#
        );
        // Flagger's pkg/metrics/observers/contour.go, its whitespace (and a trailing comma in
        // a selector) folded.
        assert_eq!(
            q(Observer::Contour, SUCCESS_RATE),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop_web-canary_[0-9a-zA-Z-]+", envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop_web-canary_[0-9a-zA-Z-]+"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Contour, DURATION),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"shop_web-canary_[0-9a-zA-Z-]+"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/knative.go (v1.41), folded the same way: Kourier's
        // cluster of the latest Revision, which `{{ route }}` names.
        let knative = TemplateVars {
            route: "web-00002",
            ..vars()
        };
        let qk = |m: &str| render(&Observer::Knative.query(m).unwrap(), &knative).unwrap();
        assert_eq!(
            qk(SUCCESS_RATE),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop/web-00002", envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop/web-00002"}[1m])) * 100"#
        );
        assert_eq!(
            qk(DURATION),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"shop/web-00002"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/kuma.go, folded the same way; the apex Service's name
        // where Flagger writes the target's (Kuma names the cluster after the Service).
        assert_eq!(
            q(Observer::Kuma, SUCCESS_RATE),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"web-canary_shop_svc_[0-9a-zA-Z-]+", envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"web-canary_shop_svc_[0-9a-zA-Z-]+"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Kuma, DURATION),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"web-canary_shop_svc_[0-9a-zA-Z-]+"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/gloo.go, folded the same way; the apex Service's name
        // where Flagger writes the target's (the Upstream is named after the Service).
        assert_eq!(
            q(Observer::Gloo, SUCCESS_RATE),
            r#"sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop-web-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{envoy_cluster_name=~"shop-web-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Gloo, DURATION),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~"shop-web-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/appmesh.go, folded the same way: the sidecars' metrics
        // of the canary's pods.
        assert_eq!(
            q(Observer::AppMesh, SUCCESS_RATE),
            r#"sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="shop", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", envoy_response_code!~"5.*"}[1m])) / sum(rate(envoy_cluster_upstream_rq{kubernetes_namespace="shop", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::AppMesh, DURATION),
            r#"histogram_quantile(0.99, sum(rate(envoy_cluster_upstream_rq_time_bucket{kubernetes_namespace="shop", kubernetes_pod_name=~"web-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"}[1m])) by (le))"#
        );
        // Flagger's pkg/metrics/observers/apisix.go, folded the same way; the apex Service's
        // name where Flagger writes the target's (the canary route is named after the Service).
        assert_eq!(
            q(Observer::Apisix, SUCCESS_RATE),
            r#"sum(rate(apisix_http_status{route=~"shop_web-route-web-canary_.+", code!~"5.."}[1m])) / sum(rate(apisix_http_status{route=~"shop_web-route-web-canary_.+"}[1m])) * 100"#
        );
        assert_eq!(
            q(Observer::Apisix, DURATION),
            r#"histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request", route=~"shop_web-route-web-canary_.+"}[1m])) by (le))"#
        );
        // Other observers render the variables as they are.
        assert!(
            Observer::Nginx
                .render("{{ ingress }}", &skipper)
                .unwrap()
                .contains("skipper-ingress")
        );
        assert_eq!(Observer::Http.query("error-rate"), None);
    }
}
