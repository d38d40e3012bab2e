//! Table-driven tests of every validation rule: each case patches a valid spec and lists the
//! exact problems (field path, and a part of the message) it must produce.

use fledge_api::validate::{
    INGRESS_PROVIDERS, Problem, SUPPORTED_PROVIDERS, UNSUPPORTED_FLAGGER_METRIC_PROVIDERS,
    UNSUPPORTED_FLAGGER_PROVIDERS, validate_alert_provider_spec, validate_canary_spec,
    validate_metric_template_spec,
};
use fledge_api::{AlertProviderSpec, CanarySpec, MetricTemplateSpec};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A valid weighted canary on Istio with metrics, webhooks and alerts.
fn base_canary() -> Value {
    json!({
        "provider": "istio",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898, "targetPort": 9898},
        "analysis": {
            "interval": "1m",
            "threshold": 5,
            "maxWeight": 50,
            "stepWeight": 10,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "latency", "templateRef": {"name": "latency", "namespace": "flagger-system"},
                 "thresholdRange": {"max": 500}, "interval": "30s"}
            ],
            "webhooks": [
                {"name": "load-test", "url": "http://flagger-loadtester.test/", "timeout": "5s"}
            ],
            "alerts": [
                {"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}
            ]
        }
    })
}

fn base_metric_template() -> Value {
    json!({
        "provider": {"type": "prometheus", "address": "http://prometheus.monitoring:9090"},
        "query": "sum(rate(http_requests_total{namespace=\"{{ namespace }}\", pod=~\"{{ target }}-.*\"}[{{ interval }}]))"
    })
}

fn base_alert_provider() -> Value {
    json!({"type": "slack", "channel": "alerts", "secretRef": {"name": "slack-url"}})
}

/// Sets (or, with `null`, removes) the value at a path such as `analysis.stepWeights[2]`.
fn set(root: &mut Value, path: &str, value: Value) {
    let mut steps: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((key, idx)) => {
                let i: usize = idx.trim_end_matches(']').parse().unwrap();
                steps.push((key.to_string(), Some(i)));
            }
            None => steps.push((part.to_string(), None)),
        }
    }
    let last = steps.len() - 1;
    let mut node = root;
    for (n, (key, idx)) in steps.into_iter().enumerate() {
        let obj = node.as_object_mut().unwrap();
        if n == last && idx.is_none() {
            if value.is_null() {
                obj.remove(&key);
            } else {
                obj.insert(key, value);
            }
            return;
        }
        node = obj.entry(key).or_insert_with(|| json!({}));
        if let Some(i) = idx {
            let arr = node.as_array_mut().unwrap();
            while arr.len() <= i {
                arr.push(json!({}));
            }
            if n == last {
                arr[i] = value;
                return;
            }
            node = &mut arr[i];
        }
    }
}

fn patched(mut base: Value, patches: &[(&str, Value)]) -> Value {
    for (path, value) in patches {
        set(&mut base, path, value.clone());
    }
    base
}

fn canary(patches: &[(&str, Value)]) -> CanarySpec {
    serde_json::from_value(patched(base_canary(), patches)).unwrap()
}

/// Asserts that `problems` are exactly `expected`: same fields in the same order, each message
/// containing the given text.
fn assert_problems(case: &str, problems: &[Problem], expected: &[(&str, &str)]) {
    let got: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.field.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "{case}: expected {expected:#?}\ngot {got:#?}"
    );
    for ((field, message), (want_field, want_text)) in got.iter().zip(expected) {
        assert_eq!(field, want_field, "{case}: got {got:#?}");
        assert!(
            message.contains(want_text),
            "{case}: message of {field} is {message:?}, expected it to contain {want_text:?}"
        );
    }
}

type Case = (
    &'static str,
    Vec<(&'static str, Value)>,
    Vec<(&'static str, &'static str)>,
);

fn run_canary_cases(cases: Vec<Case>) {
    for (name, patches, expected) in cases {
        let spec = canary(&patches);
        assert_problems(name, &validate_canary_spec(&spec), &expected);
    }
}

#[test]
fn valid_specs_have_no_problems() {
    assert_eq!(validate_canary_spec(&canary(&[])), vec![]);
    let mt: MetricTemplateSpec = serde_json::from_value(base_metric_template()).unwrap();
    assert_eq!(validate_metric_template_spec(&mt), vec![]);
    let ap: AlertProviderSpec = serde_json::from_value(base_alert_provider()).unwrap();
    assert_eq!(validate_alert_provider_spec(&ap), vec![]);
}

#[test]
fn exact_messages() {
    let spec = canary(&[
        ("analysis.stepWeight", Value::Null),
        ("analysis.stepWeights", json!([5, 10, 10, 50])),
    ]);
    assert_eq!(
        validate_canary_spec(&spec),
        vec![Problem::new(
            "spec.analysis.stepWeights[2]",
            "10 is not greater than the step before it (10); steps must increase, e.g. [5, 10, 25, 50]"
        )]
    );
    let spec = canary(&[("provider", json!("appmesh"))]);
    assert_eq!(
        validate_canary_spec(&spec)[0].to_string(),
        "spec.service.meshName: provider appmesh (App Mesh v1beta1) needs the mesh of the virtual nodes; name it"
    );
    let spec = canary(&[("provider", json!("envoy"))]);
    assert_eq!(
        validate_canary_spec(&spec)[0].to_string(),
        "spec.provider: provider \"envoy\" is unknown; use one of: kubernetes, apisix, appmesh, appmesh:v1beta2, contour, \
         gatewayapi:v1, gatewayapi:v1beta1, gloo, istio, knative, kuma, linkerd, nginx, osm, skipper, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3, traefik"
    );
    let spec = canary(&[(
        "analysis.metrics[0].thresholdRange",
        json!({"min": 99, "max": 1}),
    )]);
    assert_eq!(
        validate_canary_spec(&spec),
        vec![Problem::new(
            "spec.analysis.metrics[0].thresholdRange",
            "min 99 is greater than max 1: no value could pass; swap them or widen the range"
        )]
    );
}

#[test]
fn providers() {
    for p in SUPPORTED_PROVIDERS {
        // kubernetes only does blue/green.
        let spec = if *p == "kubernetes" {
            canary(&[
                ("provider", json!(p)),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
            ])
        } else if *p == "apisix" {
            canary(&[
                ("provider", json!(p)),
                (
                    "routeRef",
                    json!({"kind": "ApisixRoute", "name": "podinfo"}),
                ),
            ])
        } else if INGRESS_PROVIDERS.contains(p) {
            canary(&[
                ("provider", json!(p)),
                ("ingressRef", json!({"kind": "Ingress", "name": "podinfo"})),
            ])
        } else if *p == "knative" {
            canary(&[
                ("provider", json!(p)),
                ("targetRef", knative_target()),
                ("service", Value::Null),
            ])
        } else if *p == "appmesh" {
            canary(&[
                ("provider", json!(p)),
                ("service.meshName", json!("global")),
            ])
        } else {
            canary(&[("provider", json!(p))])
        };
        assert_problems(p, &validate_canary_spec(&spec), &[]);
    }
    for p in UNSUPPORTED_FLAGGER_PROVIDERS {
        let spec = canary(&[("provider", json!(p))]);
        let problems = validate_canary_spec(&spec);
        assert_problems(
            p,
            &problems,
            &[(
                "spec.provider",
                "is not supported by fledge yet; supported: kubernetes",
            )],
        );
        assert!(problems[0].message.contains(&format!("{p:?}")));
    }
    run_canary_cases(vec![
        ("default provider", vec![("provider", Value::Null)], vec![]),
        ("empty provider", vec![("provider", json!(""))], vec![]),
        (
            "upper case",
            vec![("provider", json!("Istio"))],
            vec![(
                "spec.provider",
                "provider names are lower case: write \"istio\"",
            )],
        ),
        (
            "gatewayapi without version",
            vec![("provider", json!("gatewayapi"))],
            vec![("spec.provider", "needs its API version")],
        ),
        (
            "appmesh: what its routes cannot express",
            vec![
                ("provider", json!("appmesh:v1beta2")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("service.targetPort", json!("http")),
                (
                    "service.retries",
                    json!({"attempts": 2, "retryOn": "gateway-error,5xx"}),
                ),
                ("service.match", json!([{"uri": {"exact": "/api"}}])),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}},
                           {"queryParams": {"beta": {"exact": "1"}}}]),
                ),
            ],
            vec![
                ("spec.service.targetPort", "needs it as a number"),
                ("spec.service.match[0].uri", "routes by a URI prefix only"),
                (
                    "spec.service.retries.retryOn",
                    "\"5xx\" is not an App Mesh HTTP retry event",
                ),
                (
                    "spec.analysis.match[1]",
                    "matches A/B traffic on headers only",
                ),
            ],
        ),
        (
            "unknown",
            vec![("provider", json!("envoy"))],
            vec![(
                "spec.provider",
                "provider \"envoy\" is unknown; use one of: kubernetes",
            )],
        ),
    ]);
}

#[test]
fn top_level_fields() {
    run_canary_cases(vec![
        (
            "metricsServer without scheme",
            vec![("metricsServer", json!("prometheus:9090"))],
            vec![("spec.metricsServer", "is not an absolute URL")],
        ),
        (
            "metricsServer ftp",
            vec![("metricsServer", json!("ftp://prometheus:9090"))],
            vec![("spec.metricsServer", "uses scheme \"ftp\"")],
        ),
        (
            "metricsServer ok",
            vec![("metricsServer", json!("http://prometheus.monitoring:9090"))],
            vec![],
        ),
        (
            "progressDeadlineSeconds 0",
            vec![("progressDeadlineSeconds", json!(0))],
            vec![(
                "spec.progressDeadlineSeconds",
                "0 is not a number of seconds greater than 0",
            )],
        ),
        (
            "progressDeadlineSeconds negative",
            vec![("progressDeadlineSeconds", json!(-5))],
            vec![("spec.progressDeadlineSeconds", "default 600")],
        ),
        (
            "ingressRef without name",
            vec![("ingressRef", json!({"name": ""}))],
            vec![("spec.ingressRef.name", "is empty")],
        ),
        (
            "routeRef bad name",
            vec![("routeRef", json!({"name": "Bad_Name"}))],
            vec![("spec.routeRef.name", "is not a valid Kubernetes name")],
        ),
        (
            "upstreamRef namespace",
            vec![("upstreamRef", json!({"name": "up", "namespace": "Gloo"}))],
            vec![("spec.upstreamRef.namespace", "is not a namespace name")],
        ),
    ]);
}

#[test]
fn target_and_autoscaler_refs() {
    let long = "a".repeat(60);
    run_canary_cases(vec![
        (
            "DaemonSet",
            vec![("targetRef.kind", json!("DaemonSet"))],
            vec![],
        ),
        ("no kind", vec![("targetRef.kind", Value::Null)], vec![]),
        (
            "Service kind",
            vec![("targetRef.kind", json!("Service"))],
            vec![(
                "spec.targetRef.apiVersion",
                "kind Service is a Knative Service, apiVersion serving.knative.dev/v1 (with \
                 provider knative), not \"apps/v1\"",
            )],
        ),
        (
            "lower-case kind",
            vec![("targetRef.kind", json!("deployment"))],
            vec![(
                "spec.targetRef.kind",
                "kinds are case-sensitive: write Deployment",
            )],
        ),
        (
            "StatefulSet in steps of one pod",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.maxWeight", Value::Null),
                ("analysis.stepReplicas", json!(1)),
            ],
            vec![],
        ),
        (
            "StatefulSet with stepWeight read as a share of its pods",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
            ],
            vec![],
        ),
        (
            "StatefulSet behind a router",
            vec![("targetRef.kind", json!("StatefulSet"))],
            vec![],
        ),
        (
            "StatefulSet with no steps",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
            ],
            vec![(
                "spec.analysis.stepReplicas",
                "a StatefulSet is rolled out pod by pod",
            )],
        ),
        (
            "StatefulSet with a bad stepReplicas",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepReplicas", json!("0%")),
            ],
            vec![(
                "spec.analysis.stepReplicas",
                "\"0%\" is neither a number of pods",
            )],
        ),
        (
            "StatefulSet with stepReplicas and stepWeight",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
                ("analysis.stepReplicas", json!("20%")),
            ],
            vec![("spec.analysis.stepReplicas", "keep one of them")],
        ),
        (
            "StatefulSet with A/B matching",
            vec![
                ("targetRef.kind", json!("StatefulSet")),
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(5)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "1"}}}]),
                ),
            ],
            vec![(
                "spec.analysis.match",
                "a StatefulSet is rolled out in place",
            )],
        ),
        (
            "stepReplicas for a Deployment",
            vec![
                ("analysis.stepReplicas", json!(1)),
                ("analysis.stepWeight", Value::Null),
            ],
            vec![
                ("spec.analysis.stepReplicas", "moves pods of a StatefulSet"),
                ("spec.analysis", "has no traffic steps"),
            ],
        ),
        (
            "empty name",
            vec![("targetRef.name", json!(""))],
            vec![("spec.targetRef.name", "is empty")],
        ),
        (
            "upper-case name",
            vec![("targetRef.name", json!("Podinfo"))],
            vec![("spec.targetRef.name", "is not a valid Kubernetes name")],
        ),
        (
            "name too long for a Service",
            vec![("targetRef.name", json!(long.clone()))],
            vec![(
                "spec.targetRef.name",
                "is also the name of the generated Services",
            )],
        ),
        (
            "long name with a service name",
            vec![
                ("targetRef.name", json!(long)),
                ("service.name", json!("podinfo")),
            ],
            vec![],
        ),
        (
            "name starting with a digit",
            vec![("targetRef.name", json!("1app"))],
            vec![("spec.targetRef.name", "starting with a letter")],
        ),
        (
            "HPA",
            vec![(
                "autoscalerRef",
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}),
            )],
            vec![],
        ),
        (
            "autoscaler without kind",
            vec![("autoscalerRef", json!({"name": "podinfo"}))],
            vec![(
                "spec.autoscalerRef.kind",
                "is required: HorizontalPodAutoscaler or ScaledObject",
            )],
        ),
        (
            "autoscaler bad kind",
            vec![(
                "autoscalerRef",
                json!({"kind": "VerticalPodAutoscaler", "name": "podinfo"}),
            )],
            vec![("spec.autoscalerRef.kind", "is unknown")],
        ),
        (
            "autoscaler empty name",
            vec![("autoscalerRef", json!({"kind": "ScaledObject", "name": ""}))],
            vec![("spec.autoscalerRef.name", "is empty")],
        ),
        (
            "scaler replicas",
            vec![(
                "autoscalerRef",
                json!({"kind": "ScaledObject", "name": "so",
                "primaryScalerReplicas": {"minReplicas": 5, "maxReplicas": 2}}),
            )],
            vec![(
                "spec.autoscalerRef.primaryScalerReplicas.minReplicas",
                "5 is greater than maxReplicas 2",
            )],
        ),
        (
            "scaler replicas out of range",
            vec![(
                "autoscalerRef",
                json!({"kind": "ScaledObject", "name": "so",
                "primaryScalerReplicas": {"minReplicas": -1, "maxReplicas": 0}}),
            )],
            vec![
                (
                    "spec.autoscalerRef.primaryScalerReplicas.minReplicas",
                    "-1 is negative",
                ),
                (
                    "spec.autoscalerRef.primaryScalerReplicas.maxReplicas",
                    "0 is less than 1",
                ),
            ],
        ),
    ]);
}

#[test]
fn service() {
    run_canary_cases(vec![
        (
            "port 0",
            vec![("service.port", json!(0))],
            vec![(
                "spec.service.port",
                "0 is not a port number; use 1 to 65535",
            )],
        ),
        (
            "port 70000",
            vec![("service.port", json!(70000))],
            vec![("spec.service.port", "70000 is not a port number")],
        ),
        (
            "name",
            vec![("service.name", json!("1svc"))],
            vec![("spec.service.name", "is not a valid Service name")],
        ),
        (
            "port name upper",
            vec![("service.portName", json!("HTTP"))],
            vec![("spec.service.portName", "is not a valid port name")],
        ),
        (
            "port name long",
            vec![("service.portName", json!("a-very-long-port-name"))],
            vec![("spec.service.portName", "at most 15")],
        ),
        (
            "port name ok",
            vec![("service.portName", json!("http-metrics"))],
            vec![],
        ),
        (
            "targetPort 0",
            vec![("service.targetPort", json!(0))],
            vec![("spec.service.targetPort", "or the name of a container port")],
        ),
        (
            "targetPort name",
            vec![("service.targetPort", json!("http"))],
            vec![],
        ),
        (
            "targetPort bad name",
            vec![("service.targetPort", json!("Bad_Name"))],
            vec![("spec.service.targetPort", "is not a valid port name")],
        ),
        (
            "trafficDistribution case",
            vec![("service.trafficDistribution", json!("preferclose"))],
            vec![(
                "spec.service.trafficDistribution",
                "values are case-sensitive: write PreferClose",
            )],
        ),
        (
            "timeout",
            vec![("service.timeout", json!("abc"))],
            vec![("spec.service.timeout", "\"abc\" is not a duration")],
        ),
        (
            "timeout zero allowed",
            vec![("service.timeout", json!("0s"))],
            vec![],
        ),
        (
            "backendTimeout",
            vec![("service.backendTimeout", json!("10"))],
            vec![("spec.service.backendTimeout", "is not a duration")],
        ),
        (
            "retries",
            vec![(
                "service.retries",
                json!({"attempts": -1, "perTryTimeout": "x"}),
            )],
            vec![
                ("spec.service.retries.attempts", "-1 is negative"),
                ("spec.service.retries.perTryTimeout", "is not a duration"),
            ],
        ),
        (
            "retries zero perTryTimeout",
            vec![(
                "service.retries",
                json!({"attempts": 3, "perTryTimeout": "0s"}),
            )],
            vec![("spec.service.retries.perTryTimeout", "is zero")],
        ),
        (
            "hosts",
            vec![("service.hosts", json!(["app.example.com", " "]))],
            vec![("spec.service.hosts[1]", "is empty")],
        ),
        (
            "match no condition",
            vec![("service.match", json!([{"uri": {}}]))],
            vec![("spec.service.match[0].uri", "sets no match")],
        ),
        (
            "match two conditions",
            vec![(
                "service.match",
                json!([{"uri": {"exact": "/", "prefix": "/api"}}]),
            )],
            vec![(
                "spec.service.match[0].uri",
                "sets exact and prefix; set only one",
            )],
        ),
        (
            "match bad regex",
            vec![("service.match", json!([{"uri": {"regex": "(api"}}]))],
            vec![(
                "spec.service.match[0].uri.regex",
                "is not a valid regular expression",
            )],
        ),
        (
            "match port",
            vec![("service.match", json!([{"port": 0}]))],
            vec![("spec.service.match[0].port", "0 is not a port number")],
        ),
        (
            "rewrite type",
            vec![("service.rewrite", json!({"type": "Replace"}))],
            vec![(
                "spec.service.rewrite.type",
                "is not one of: ReplaceFullPath, ReplacePrefixMatch",
            )],
        ),
        (
            "mirror backend",
            vec![(
                "service.mirror",
                json!([{"backendRef": {"name": "", "port": 0}}]),
            )],
            vec![
                ("spec.service.mirror[0].backendRef.name", "is empty"),
                (
                    "spec.service.mirror[0].backendRef.port",
                    "is not a port number",
                ),
            ],
        ),
        (
            "gatewayRefs",
            vec![(
                "service.gatewayRefs",
                json!([{"name": "", "namespace": "Istio", "port": 70000}]),
            )],
            vec![
                ("spec.service.gatewayRefs[0].name", "is empty"),
                ("spec.service.gatewayRefs[0].port", "is not a port number"),
                (
                    "spec.service.gatewayRefs[0].namespace",
                    "is not a namespace name",
                ),
            ],
        ),
        (
            "cors maxAge",
            vec![("service.corsPolicy", json!({"maxAge": "1 day"}))],
            vec![("spec.service.corsPolicy.maxAge", "is not a duration")],
        ),
        (
            "cors allowOrigins",
            vec![(
                "service.corsPolicy",
                json!({"allowOrigins": [{"exact": "a", "regex": "b"}]}),
            )],
            vec![("spec.service.corsPolicy.allowOrigins[0]", "set only one")],
        ),
        (
            "tls mode",
            vec![("service.trafficPolicy", json!({"tls": {"mode": "disable"}}))],
            vec![("spec.service.trafficPolicy.tls.mode", "write DISABLE")],
        ),
        (
            "load balancer",
            vec![(
                "service.trafficPolicy",
                json!({"loadBalancer": {"simple": "RR", "warmupDurationSecs": "x",
                "consistentHash": {"httpCookie": {"name": "", "ttl": "y"}}}}),
            )],
            vec![
                (
                    "spec.service.trafficPolicy.loadBalancer.simple",
                    "is not one of",
                ),
                (
                    "spec.service.trafficPolicy.loadBalancer.warmupDurationSecs",
                    "is not a duration",
                ),
                (
                    "spec.service.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
                    "is empty",
                ),
                (
                    "spec.service.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
                    "is not a duration",
                ),
            ],
        ),
        (
            "outlier detection",
            vec![(
                "service.trafficPolicy",
                json!({"outlierDetection": {"interval": "0s", "baseEjectionTime": "x",
                "maxEjectionPercent": 101, "minHealthPercent": -1}}),
            )],
            vec![
                (
                    "spec.service.trafficPolicy.outlierDetection.interval",
                    "is zero",
                ),
                (
                    "spec.service.trafficPolicy.outlierDetection.baseEjectionTime",
                    "is not a duration",
                ),
                (
                    "spec.service.trafficPolicy.outlierDetection.maxEjectionPercent",
                    "101 is not a percentage between 0 and 100",
                ),
                (
                    "spec.service.trafficPolicy.outlierDetection.minHealthPercent",
                    "-1 is not a percentage",
                ),
            ],
        ),
        (
            "connection pool",
            vec![(
                "service.trafficPolicy",
                json!({"connectionPool": {"http": {"idleTimeout": "x", "h2UpgradePolicy": "upgrade"}}}),
            )],
            vec![
                (
                    "spec.service.trafficPolicy.connectionPool.http.idleTimeout",
                    "is not a duration",
                ),
                (
                    "spec.service.trafficPolicy.connectionPool.http.h2UpgradePolicy",
                    "write UPGRADE",
                ),
            ],
        ),
    ]);
}

#[test]
fn analysis_numbers() {
    run_canary_cases(vec![
        (
            "interval",
            vec![("analysis.interval", json!("1x"))],
            vec![(
                "spec.analysis.interval",
                "\"1x\" is not a duration; write one such as 30s, 1m or 1h30m",
            )],
        ),
        (
            "interval zero",
            vec![("analysis.interval", json!("0s"))],
            vec![("spec.analysis.interval", "\"0s\" is zero")],
        ),
        (
            "interval negative",
            vec![("analysis.interval", json!("-1m"))],
            vec![("spec.analysis.interval", "is negative")],
        ),
        (
            "interval empty",
            vec![("analysis.interval", json!(""))],
            vec![("spec.analysis.interval", "is empty")],
        ),
        (
            "iterations negative",
            vec![("analysis.iterations", json!(-1))],
            vec![("spec.analysis.iterations", "-1 is negative")],
        ),
        (
            "threshold 0",
            vec![("analysis.threshold", json!(0))],
            vec![("spec.analysis.threshold", "0 is less than 1")],
        ),
        (
            "maxWeight 0",
            vec![
                ("analysis.maxWeight", json!(0)),
                ("analysis.stepWeight", json!(10)),
            ],
            vec![(
                "spec.analysis.maxWeight",
                "0 is not a percentage between 1 and 100",
            )],
        ),
        (
            "maxWeight 101",
            vec![("analysis.maxWeight", json!(101))],
            vec![("spec.analysis.maxWeight", "101 is not a percentage")],
        ),
        (
            "stepWeight 0",
            vec![("analysis.stepWeight", json!(0))],
            vec![
                (
                    "spec.analysis.stepWeight",
                    "0 is not a percentage between 1 and 100",
                ),
                ("spec.analysis", "has no traffic steps"),
            ],
        ),
        (
            "stepWeight 101",
            vec![
                ("analysis.stepWeight", json!(101)),
                ("analysis.maxWeight", json!(100)),
            ],
            vec![("spec.analysis.stepWeight", "101 is not a percentage")],
        ),
        (
            "stepWeightPromotion",
            vec![("analysis.stepWeightPromotion", json!(0))],
            vec![("spec.analysis.stepWeightPromotion", "0 is not a percentage")],
        ),
        (
            "mirrorWeight",
            vec![("analysis.mirrorWeight", json!(150))],
            vec![("spec.analysis.mirrorWeight", "150 is not a percentage")],
        ),
        (
            "primaryReadyThreshold 0",
            vec![("analysis.primaryReadyThreshold", json!(0))],
            vec![(
                "spec.analysis.primaryReadyThreshold",
                "0 is not a percentage between 1 and 100",
            )],
        ),
        (
            "canaryReadyThreshold 101",
            vec![("analysis.canaryReadyThreshold", json!(101))],
            vec![(
                "spec.analysis.canaryReadyThreshold",
                "101 is not a percentage",
            )],
        ),
        (
            "ready thresholds ok",
            vec![
                ("analysis.primaryReadyThreshold", json!(50)),
                ("analysis.canaryReadyThreshold", json!(100)),
            ],
            vec![],
        ),
        (
            "stepWeights out of range",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepWeights", json!([5, 0, 200])),
            ],
            vec![
                (
                    "spec.analysis.stepWeights[1]",
                    "0 is not a percentage between 1 and 100",
                ),
                ("spec.analysis.stepWeights[2]", "200 is not a percentage"),
            ],
        ),
        (
            "stepWeights decreasing",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepWeights", json!([20, 10, 30])),
            ],
            vec![(
                "spec.analysis.stepWeights[1]",
                "10 is not greater than the step before it (20)",
            )],
        ),
        (
            "stepWeights ok",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepWeights", json!([1, 2, 5, 10, 50, 100])),
            ],
            vec![],
        ),
        (
            "stepWeight and stepWeights",
            vec![("analysis.stepWeights", json!([10, 20]))],
            vec![(
                "spec.analysis.stepWeight",
                "is set together with stepWeights; keep one",
            )],
        ),
        (
            "stepWeight above maxWeight",
            vec![("analysis.stepWeight", json!(60))],
            vec![(
                "spec.analysis.stepWeight",
                "60 is greater than maxWeight 50",
            )],
        ),
        (
            "stepWeight equal to maxWeight",
            vec![("analysis.stepWeight", json!(50))],
            vec![],
        ),
    ]);
}

#[test]
fn strategies() {
    let ab_match = json!([{"headers": {"x-canary": {"exact": "always"}}}]);
    // The TrafficSplit providers refuse A/B testing and mirroring, Skipper mirroring, naming
    // themselves.
    for provider in ["osm", "smi:v1alpha1", "skipper"] {
        for (field, patch, text) in [
            (
                "spec.analysis.match",
                ("analysis.match", ab_match.clone()),
                "cannot route by header, cookie or query parameter",
            ),
            (
                "spec.analysis.mirror",
                ("analysis.mirror", json!(true)),
                "cannot mirror traffic",
            ),
        ] {
            if provider == "skipper" && field == "spec.analysis.match" {
                continue;
            }
            let spec = canary(&[
                ("provider", json!(provider)),
                ("ingressRef", json!({"name": "podinfo"})),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                patch,
            ]);
            let want = format!("provider {provider} {text}");
            assert_problems(provider, &validate_canary_spec(&spec), &[(field, &want)]);
        }
    }
    // Skipper: A/B testing with one match entry of headers, query parameters and method (the
    // canary Ingress's one predicate), nothing else.
    let skipper = |m: Value| {
        canary(&[
            ("provider", json!("skipper")),
            ("ingressRef", json!({"name": "podinfo"})),
            ("analysis.stepWeight", Value::Null),
            ("analysis.iterations", json!(10)),
            ("analysis.match", m),
        ])
    };
    let ok = json!([{"headers": {"x-canary": {"regex": "^(in|out)sider$"}},
                     "queryParams": {"beta": {"prefix": "yes"}}, "method": {"exact": "GET"}}]);
    assert_problems("skipper A/B", &validate_canary_spec(&skipper(ok)), &[]);
    assert_problems(
        "skipper A/B, what a predicate cannot match",
        &validate_canary_spec(&skipper(json!([
            {"headers": {"x-canary": {"regex": "(unclosed"}}, "uri": {"prefix": "/beta"},
             "method": {"regex": "GET|POST"}},
            {"headers": {"x-other": {"exact": "1", "prefix": "2"}}},
        ]))),
        &[
            (
                "spec.analysis.match[0].headers.x-canary.regex",
                "is not a valid regular expression",
            ),
            ("spec.analysis.match[1].headers.x-other", "set only one of"),
            ("spec.analysis.match", "give one match entry"),
            ("spec.analysis.match[0].uri", "cannot match on uri"),
            (
                "spec.analysis.match[0].method",
                "matches the method exactly only",
            ),
        ],
    );
    // Gloo: A/B testing by headers (inverted for withoutHeaders), query parameters and exact
    // method, any number of entries (Gloo ORs a route's matchers); nothing else; mirroring
    // refused.
    let gloo = |m: Value| {
        canary(&[
            ("provider", json!("gloo")),
            ("analysis.stepWeight", Value::Null),
            ("analysis.iterations", json!(10)),
            ("analysis.match", m),
        ])
    };
    let ok = json!([{"headers": {"x-canary": {"regex": "^(in|out)sider$"}},
                     "queryParams": {"beta": {"prefix": "yes"}}, "method": {"exact": "GET"}},
                    {"withoutHeaders": {"x-old": {"suffix": "1"}}}]);
    assert_problems("gloo A/B", &validate_canary_spec(&gloo(ok)), &[]);
    assert_problems(
        "gloo A/B, what a matcher cannot match",
        &validate_canary_spec(&gloo(json!([
            {"headers": {"x-canary": {"regex": "(unclosed"}}, "uri": {"prefix": "/beta"},
             "method": {"regex": "GET|POST"}, "sourceLabels": {"app": "a"}},
            {"name": "nothing"},
        ]))),
        &[
            (
                "spec.analysis.match[0].headers.x-canary.regex",
                "is not a valid regular expression",
            ),
            (
                "spec.analysis.match[0].uri",
                "provider gloo routes A/B traffic by headers, withoutHeaders, queryParams and method only, and cannot match on uri",
            ),
            (
                "spec.analysis.match[0].sourceLabels",
                "cannot match on sourceLabels",
            ),
            (
                "spec.analysis.match[0].method",
                "provider gloo matches the method exactly only",
            ),
            (
                "spec.analysis.match[1]",
                "needs headers, withoutHeaders, queryParams or a method",
            ),
        ],
    );
    assert_problems(
        "gloo mirroring",
        &validate_canary_spec(&canary(&[
            ("provider", json!("gloo")),
            ("analysis.mirror", json!(true)),
        ])),
        &[(
            "spec.analysis.mirror",
            "provider gloo cannot mirror traffic",
        )],
    );
    run_canary_cases(vec![
        (
            "kubernetes with stepWeight",
            vec![("provider", json!("kubernetes"))],
            vec![
                (
                    "spec.analysis.stepWeight",
                    "provider kubernetes does not support traffic weights",
                ),
                (
                    "spec.analysis.iterations",
                    "provider kubernetes does blue/green only",
                ),
            ],
        ),
        (
            "kubernetes with stepWeights and iterations",
            vec![
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepWeights", json!([10, 20])),
                ("analysis.iterations", json!(5)),
            ],
            vec![(
                "spec.analysis.stepWeights",
                "provider kubernetes does not support traffic weights",
            )],
        ),
        (
            "kubernetes A/B",
            vec![
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(5)),
                ("analysis.match", ab_match.clone()),
            ],
            vec![(
                "spec.analysis.match",
                "provider kubernetes cannot route by header",
            )],
        ),
        (
            "kubernetes skipAnalysis",
            vec![
                ("provider", json!("kubernetes")),
                ("analysis", Value::Null),
                ("skipAnalysis", json!(true)),
            ],
            vec![],
        ),
        (
            "A/B on istio",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.match", ab_match.clone()),
            ],
            vec![],
        ),
        (
            "A/B on gatewayapi",
            vec![
                ("provider", json!("gatewayapi:v1")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.match", ab_match.clone()),
            ],
            vec![],
        ),
        (
            "A/B without iterations",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.match", ab_match.clone()),
            ],
            vec![(
                "spec.analysis.iterations",
                "A/B testing (analysis.match) needs iterations",
            )],
        ),
        (
            "A/B on linkerd",
            vec![
                ("provider", json!("linkerd")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.match", ab_match.clone()),
            ],
            vec![(
                "spec.analysis.match",
                "provider linkerd cannot route by header, cookie or query parameter",
            )],
        ),
        (
            "A/B on nginx by header and cookie",
            vec![
                ("provider", json!("nginx")),
                ("ingressRef", json!({"name": "podinfo"})),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}},
                           {"headers": {"cookie": {"exact": "canary"}}}]),
                ),
            ],
            vec![],
        ),
        (
            "A/B on nginx beyond one header and one cookie",
            vec![
                ("provider", json!("nginx")),
                ("ingressRef", json!({"name": "podinfo"})),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"prefix": "a"}, "cookie": {"exact": "c"}}},
                           {"headers": {"x-other": {"exact": "b"}}},
                           {"queryParams": {"canary": {"exact": "1"}}}]),
                ),
            ],
            vec![
                (
                    "spec.analysis.match[0].headers",
                    "provider nginx cannot require several headers",
                ),
                (
                    "spec.analysis.match[0].headers.x-canary",
                    "provider nginx matches a header exactly or by a regular expression only",
                ),
                (
                    "spec.analysis.match[1].headers.x-other",
                    "provider nginx routes by one header only",
                ),
                (
                    "spec.analysis.match[1].headers.x-other",
                    "provider nginx matches one header against one value or pattern",
                ),
                (
                    "spec.analysis.match[2].queryParams",
                    "provider nginx routes A/B traffic with ingress-nginx's canary annotations, \
                     which cannot match on queryParams",
                ),
            ],
        ),
        (
            "A/B on contour beyond exact headers",
            vec![
                ("provider", json!("contour")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}},
                           {"headers": {"user-agent": {"regex": ".*Firefox.*"}},
                            "queryParams": {"canary": {"exact": "1"}}}]),
                ),
            ],
            vec![
                (
                    "spec.analysis.match[1]",
                    "provider contour matches A/B traffic on headers only",
                ),
                (
                    "spec.analysis.match[1].headers.user-agent",
                    "provider contour matches a header by its exact value only",
                ),
            ],
        ),
        (
            "nginx without ingressRef",
            vec![("provider", json!("nginx"))],
            vec![("spec.ingressRef", "is required by provider nginx")],
        ),
        (
            "nginx with an ingressRef that is no Ingress",
            vec![
                ("provider", json!("nginx")),
                (
                    "ingressRef",
                    json!({"kind": "HTTPProxy", "name": "podinfo"}),
                ),
            ],
            vec![(
                "spec.ingressRef.kind",
                "provider nginx copies an Ingress, not a HTTPProxy",
            )],
        ),
        (
            "A/B, mirroring and session affinity on kuma",
            vec![
                ("provider", json!("kuma")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}}]),
                ),
                ("analysis.mirror", json!(true)),
                ("analysis.sessionAffinity", json!({"cookieName": "c"})),
            ],
            vec![
                (
                    "spec.analysis.match",
                    "provider kuma cannot route by header, cookie or query parameter",
                ),
                (
                    "spec.analysis.mirror",
                    "provider kuma cannot mirror traffic",
                ),
                (
                    "spec.analysis.sessionAffinity",
                    "provider kuma cannot route by cookie",
                ),
            ],
        ),
        (
            "apisix without routeRef, and A/B",
            vec![
                ("provider", json!("apisix")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}}]),
                ),
            ],
            vec![
                (
                    "spec.analysis.match",
                    "provider apisix cannot route by header, cookie or query parameter",
                ),
                ("spec.routeRef", "is required by provider apisix"),
            ],
        ),
        (
            "apisix with a routeRef that is no ApisixRoute, and mirroring",
            vec![
                ("provider", json!("apisix")),
                ("routeRef", json!({"kind": "Ingress", "name": "podinfo"})),
                ("analysis.mirror", json!(true)),
            ],
            vec![
                (
                    "spec.analysis.mirror",
                    "provider apisix cannot mirror traffic",
                ),
                (
                    "spec.routeRef.kind",
                    "provider apisix copies an ApisixRoute, not a Ingress",
                ),
            ],
        ),
        (
            "mirror and session affinity on nginx",
            vec![
                ("provider", json!("nginx")),
                ("ingressRef", json!({"name": "podinfo"})),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
                ("analysis.sessionAffinity", json!({"cookieName": "c"})),
            ],
            vec![
                (
                    "spec.analysis.mirror",
                    "provider nginx cannot mirror traffic",
                ),
                (
                    "spec.analysis.sessionAffinity",
                    "provider nginx cannot route by cookie",
                ),
            ],
        ),
        (
            "A/B match with a bad condition",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                                           {"headers": {"user-agent": {}}}]),
                ),
            ],
            vec![("spec.analysis.match[1].headers.user-agent", "sets no match")],
        ),
        (
            "blue/green",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.maxWeight", Value::Null),
                ("analysis.iterations", json!(10)),
            ],
            vec![],
        ),
        (
            "iterations and weights",
            vec![("analysis.iterations", json!(10))],
            vec![(
                "spec.analysis.iterations",
                "is set together with stepWeight/stepWeights",
            )],
        ),
        (
            "no steps",
            vec![("analysis.stepWeight", Value::Null)],
            vec![("spec.analysis", "has no traffic steps")],
        ),
        (
            "no analysis",
            vec![("analysis", Value::Null)],
            vec![("spec.analysis", "has no traffic steps")],
        ),
        (
            "empty stepWeights",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.stepWeights", json!([])),
            ],
            vec![("spec.analysis", "has no traffic steps")],
        ),
        (
            "skipAnalysis without steps",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("skipAnalysis", json!(true)),
            ],
            vec![],
        ),
        (
            "mirror on istio",
            vec![
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
                ("analysis.mirrorWeight", json!(50)),
            ],
            vec![],
        ),
        (
            "mirror with weights: one mirrored step before the first weighted step",
            vec![
                ("analysis.stepWeight", json!(10)),
                ("analysis.mirror", json!(true)),
            ],
            vec![],
        ),
        (
            "mirror on gatewayapi:v1beta1",
            vec![
                ("provider", json!("gatewayapi:v1beta1")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
            ],
            vec![],
        ),
        (
            "mirror on linkerd",
            vec![
                ("provider", json!("linkerd")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
            ],
            vec![(
                "spec.analysis.mirror",
                "provider linkerd cannot mirror traffic; mirroring needs gatewayapi:v1 or gatewayapi:v1beta1 or istio or traefik",
            )],
        ),
        (
            "mirror without iterations or weights",
            vec![
                ("analysis.mirror", json!(true)),
                ("analysis.stepWeight", Value::Null),
            ],
            vec![("spec.analysis", "has no traffic steps")],
        ),
        (
            "mirror on traefik",
            vec![
                ("provider", json!("traefik")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
                ("analysis.mirrorWeight", json!(50)),
            ],
            vec![],
        ),
        (
            "A/B testing on traefik",
            vec![
                ("provider", json!("traefik")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "always"}}}]),
                ),
            ],
            vec![(
                "spec.analysis.match",
                "provider traefik routes through a TraefikService, which cannot match requests by header, cookie or query parameter, so A/B testing is not possible; remove analysis.match, or use provider gatewayapi:v1",
            )],
        ),
        (
            "mirror on kubernetes",
            vec![
                ("provider", json!("kubernetes")),
                ("analysis.stepWeight", Value::Null),
                ("analysis.iterations", json!(10)),
                ("analysis.mirror", json!(true)),
            ],
            vec![(
                "spec.analysis.mirror",
                "provider kubernetes cannot mirror traffic",
            )],
        ),
    ]);
}

#[test]
fn metrics() {
    run_canary_cases(vec![
        (
            "empty name",
            vec![("analysis.metrics[0].name", json!(""))],
            vec![("spec.analysis.metrics[0].name", "is empty")],
        ),
        (
            "duplicate name",
            vec![("analysis.metrics[1].name", json!("request-success-rate"))],
            vec![(
                "spec.analysis.metrics[1].name",
                "\"request-success-rate\" is already the name of metrics[0]",
            )],
        ),
        (
            "interval",
            vec![("analysis.metrics[0].interval", json!("soon"))],
            vec![("spec.analysis.metrics[0].interval", "is not a duration")],
        ),
        (
            "interval zero",
            vec![("analysis.metrics[0].interval", json!("0"))],
            vec![("spec.analysis.metrics[0].interval", "is zero")],
        ),
        (
            "noData not a choice",
            vec![("analysis.metrics[0].noData", json!("ignore"))],
            vec![(
                "spec.analysis.metrics[0].noData",
                "\"ignore\" is not a choice; write fail (no data fails the check, the default), skip",
            )],
        ),
        (
            "noData and dryRun as meant",
            vec![
                ("analysis.metrics[0].noData", json!("skip")),
                ("analysis.metrics[1].noData", json!("pass")),
                ("analysis.metrics[0].dryRun", json!(true)),
                ("analysis.inconclusiveLimit", json!(3)),
            ],
            vec![],
        ),
        (
            "inconclusiveLimit zero",
            vec![("analysis.inconclusiveLimit", json!(0))],
            vec![(
                "spec.analysis.inconclusiveLimit",
                "0 is not a number of steps; write 1 or more",
            )],
        ),
        (
            "empty range",
            vec![("analysis.metrics[0].thresholdRange", json!({}))],
            vec![(
                "spec.analysis.metrics[0].thresholdRange",
                "has neither min nor max",
            )],
        ),
        (
            "min equals max",
            vec![(
                "analysis.metrics[0].thresholdRange",
                json!({"min": 1, "max": 1}),
            )],
            vec![],
        ),
        (
            "deprecated threshold",
            vec![
                ("analysis.metrics[0].thresholdRange", Value::Null),
                ("analysis.metrics[0].threshold", json!(99)),
            ],
            vec![],
        ),
        (
            "custom metric without templateRef",
            vec![("analysis.metrics[1].templateRef", Value::Null)],
            vec![(
                "spec.analysis.metrics[1].templateRef",
                "is missing: \"latency\" is not a builtin metric (request-success-rate, request-duration)",
            )],
        ),
        (
            "inline query",
            vec![
                ("analysis.metrics[1].templateRef", Value::Null),
                ("analysis.metrics[1].query", json!("sum(up)")),
            ],
            vec![],
        ),
        (
            "empty inline query",
            vec![
                ("analysis.metrics[1].templateRef", Value::Null),
                ("analysis.metrics[1].query", json!(" ")),
            ],
            vec![("spec.analysis.metrics[1].query", "is empty")],
        ),
        (
            "templateRef without name",
            vec![("analysis.metrics[1].templateRef", json!({"name": ""}))],
            vec![("spec.analysis.metrics[1].templateRef.name", "is empty")],
        ),
        (
            "templateRef namespace",
            vec![(
                "analysis.metrics[1].templateRef",
                json!({"name": "latency", "namespace": "Flagger"}),
            )],
            vec![(
                "spec.analysis.metrics[1].templateRef.namespace",
                "is not a namespace name",
            )],
        ),
        (
            "template variables",
            vec![(
                "analysis.metrics[1].templateVariables",
                json!({"direction": "inbound", "bad-name": "x"}),
            )],
            vec![(
                "spec.analysis.metrics[1].templateVariables",
                "\"bad-name\" cannot be used as {{ variables.bad-name }}",
            )],
        ),
    ]);
}

#[test]
fn statistical_judgement() {
    let judged = json!({"direction": "increase", "critical": true,
                        "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 1.5}});
    let ok = || {
        vec![
            (
                "analysis.judge",
                json!({"type": "statistical", "confidence": 0.98,
                "scoreThresholds": {"marginal": 60, "pass": 90},
                "groups": [{"name": "latency", "weight": 2}]}),
            ),
            ("analysis.metrics[1].thresholdRange", Value::Null),
            (
                "analysis.metrics[1].judge",
                json!({"group": "latency", "direction": "increase"}),
            ),
        ]
    };
    let with = |extra: Vec<(&'static str, Value)>| {
        let mut p = ok();
        p.extend(extra);
        p
    };
    run_canary_cases(vec![
        ("a judged latency beside a fixed success rate", ok(), vec![]),
        (
            "a metric judge without the analysis judge",
            vec![
                ("analysis.metrics[1].thresholdRange", Value::Null),
                ("analysis.metrics[1].judge", judged.clone()),
            ],
            vec![(
                "spec.analysis.metrics[1].judge",
                "needs spec.analysis.judge (type: statistical)",
            )],
        ),
        (
            "a judge with nothing to judge",
            vec![("analysis.judge", json!({"type": "statistical"}))],
            vec![("spec.analysis.judge", "no metric has a judge block")],
        ),
        (
            "not statistical, confidence and scores out of bounds",
            with(vec![(
                "analysis.judge",
                json!({"type": "bayesian", "confidence": 1.0,
                       "scoreThresholds": {"marginal": 90, "pass": 120}}),
            )]),
            vec![
                (
                    "spec.analysis.judge.type",
                    "\"bayesian\" is not a kind of judgement",
                ),
                (
                    "spec.analysis.judge.confidence",
                    "1 is not a confidence between 0.5 and 1",
                ),
                (
                    "spec.analysis.judge.scoreThresholds.pass",
                    "120 is not a score",
                ),
            ],
        ),
        (
            "marginal above pass, a weightless group, an unknown group",
            with(vec![
                (
                    "analysis.judge",
                    json!({"type": "statistical", "scoreThresholds": {"marginal": 90, "pass": 80},
                           "groups": [{"name": "latency", "weight": 0}]}),
                ),
                ("analysis.metrics[1].judge", json!({"group": "errors"})),
            ]),
            vec![
                (
                    "spec.analysis.judge.scoreThresholds",
                    "marginal 90 is above pass 80",
                ),
                (
                    "spec.analysis.judge.groups[0].weight",
                    "0 is not a positive weight",
                ),
                (
                    "spec.analysis.metrics[1].judge.group",
                    "\"errors\" is not among spec.analysis.judge.groups (latency)",
                ),
            ],
        ),
        (
            "a builtin judged, and a judged metric with a range",
            with(vec![
                ("analysis.metrics[0].judge", json!({})),
                ("analysis.metrics[1].thresholdRange", json!({"max": 500})),
            ]),
            vec![
                (
                    "spec.analysis.metrics[0].judge",
                    "\"request-success-rate\" has no MetricTemplate",
                ),
                (
                    "spec.analysis.metrics[0].thresholdRange",
                    "a judged metric is compared with the baseline",
                ),
                (
                    "spec.analysis.metrics[1].thresholdRange",
                    "a judged metric is compared with the baseline",
                ),
            ],
        ),
        (
            "choices and effect sizes",
            with(vec![(
                "analysis.metrics[1].judge",
                json!({"direction": "up", "nanStrategy": "zero", "outliers": "all",
                       "effectSize": {"allowedIncrease": 0.9, "allowedDecrease": 0.8,
                                      "criticalDecrease": 0.9}}),
            )]),
            vec![
                (
                    "spec.analysis.metrics[1].judge.direction",
                    "is not a direction",
                ),
                (
                    "spec.analysis.metrics[1].judge.nanStrategy",
                    "is not a choice",
                ),
                ("spec.analysis.metrics[1].judge.outliers", "is not a choice"),
                (
                    "spec.analysis.metrics[1].judge.effectSize.allowedIncrease",
                    "0.9 is not a ratio of means at or above 1",
                ),
                (
                    "spec.analysis.metrics[1].judge.effectSize.criticalDecrease",
                    "0.9 is above allowedDecrease 0.8",
                ),
            ],
        ),
        (
            "a fresh baseline of a DaemonSet",
            with(vec![("targetRef.kind", json!("DaemonSet"))]),
            vec![(
                "spec.analysis.judge.baseline",
                "a fresh baseline is a copy of the primary Deployment, and the target is a DaemonSet",
            )],
        ),
    ]);
}

#[test]
fn webhooks() {
    run_canary_cases(vec![
        (
            "empty name",
            vec![("analysis.webhooks[0].name", json!(""))],
            vec![("spec.analysis.webhooks[0].name", "is empty")],
        ),
        (
            "duplicate name",
            vec![(
                "analysis.webhooks[1]",
                json!({"name": "load-test", "url": "http://b/"}),
            )],
            vec![(
                "spec.analysis.webhooks[1].name",
                "\"load-test\" is already the name of webhooks[0]",
            )],
        ),
        (
            "unknown type",
            vec![("analysis.webhooks[0].type", json!("pre"))],
            vec![(
                "spec.analysis.webhooks[0].type",
                "\"pre\" is not a webhook type; use one of: confirm-rollout, pre-rollout, rollout",
            )],
        ),
        (
            "every type",
            vec![(
                "analysis.webhooks",
                json!([
                    {"name": "a", "type": "confirm-rollout", "url": "http://x/"},
                    {"name": "b", "type": "pre-rollout", "url": "http://x/"},
                    {"name": "c", "type": "rollout", "url": "http://x/"},
                    {"name": "d", "type": "confirm-traffic-increase", "url": "http://x/"},
                    {"name": "e", "type": "confirm-promotion", "url": "http://x/"},
                    {"name": "f", "type": "post-rollout", "url": "http://x/"},
                    {"name": "g", "type": "rollback", "url": "http://x/"},
                    {"name": "h", "type": "event", "url": "https://x:8443/hook"},
                    {"name": "i", "type": "", "url": "http://x/"}
                ]),
            )],
            vec![],
        ),
        (
            "empty url",
            vec![("analysis.webhooks[0].url", json!(""))],
            vec![("spec.analysis.webhooks[0].url", "is empty")],
        ),
        (
            "relative url",
            vec![(
                "analysis.webhooks[0].url",
                json!("flagger-loadtester.test/"),
            )],
            vec![("spec.analysis.webhooks[0].url", "is not an absolute URL")],
        ),
        (
            "ftp url",
            vec![("analysis.webhooks[0].url", json!("ftp://loadtester/"))],
            vec![(
                "spec.analysis.webhooks[0].url",
                "uses scheme \"ftp\"; use an http or https URL",
            )],
        ),
        (
            "bad port",
            vec![(
                "analysis.webhooks[0].url",
                json!("http://loadtester:99999/"),
            )],
            vec![(
                "spec.analysis.webhooks[0].url",
                "is not a valid URL (invalid port number)",
            )],
        ),
        (
            "timeout",
            vec![("analysis.webhooks[0].timeout", json!("5"))],
            vec![(
                "spec.analysis.webhooks[0].timeout",
                "\"5\" is not a duration",
            )],
        ),
        (
            "timeout zero",
            vec![("analysis.webhooks[0].timeout", json!("0s"))],
            vec![("spec.analysis.webhooks[0].timeout", "is zero")],
        ),
        (
            "retries",
            vec![("analysis.webhooks[0].retries", json!(-2))],
            vec![("spec.analysis.webhooks[0].retries", "-2 is negative")],
        ),
        (
            "retries ok",
            vec![("analysis.webhooks[0].retries", json!(3))],
            vec![],
        ),
    ]);
}

#[test]
fn alerts_and_session_affinity() {
    run_canary_cases(vec![
        (
            "empty name",
            vec![("analysis.alerts[0].name", json!(""))],
            vec![("spec.analysis.alerts[0].name", "is empty")],
        ),
        (
            "severity",
            vec![("analysis.alerts[0].severity", json!("warning"))],
            vec![(
                "spec.analysis.alerts[0].severity",
                "\"warning\" is not one of: info, warn, error",
            )],
        ),
        (
            "severity empty",
            vec![("analysis.alerts[0].severity", json!(""))],
            vec![],
        ),
        (
            "providerRef name",
            vec![("analysis.alerts[0].providerRef.name", json!(""))],
            vec![(
                "spec.analysis.alerts[0].providerRef.name",
                "is empty; set it to the name of an AlertProvider",
            )],
        ),
        (
            "providerRef namespace",
            vec![(
                "analysis.alerts[0].providerRef.namespace",
                json!("Flagger_System"),
            )],
            vec![(
                "spec.analysis.alerts[0].providerRef.namespace",
                "is not a namespace name",
            )],
        ),
        (
            "session affinity",
            vec![(
                "analysis.sessionAffinity",
                json!({"cookieName": "fledge-cookie", "maxAge": 21600, "sameSite": "Lax"}),
            )],
            vec![],
        ),
        (
            "session affinity without cookie",
            vec![("analysis.sessionAffinity", json!({"maxAge": 0}))],
            vec![
                ("spec.analysis.sessionAffinity.cookieName", "is required"),
                (
                    "spec.analysis.sessionAffinity.maxAge",
                    "0 is not a number of seconds greater than 0",
                ),
            ],
        ),
        (
            "session affinity bad names",
            vec![(
                "analysis.sessionAffinity",
                json!({"cookieName": "my cookie", "primaryCookieName": "p", "sameSite": "lax"}),
            )],
            vec![
                (
                    "spec.analysis.sessionAffinity.cookieName",
                    "is not a valid cookie name",
                ),
                ("spec.analysis.sessionAffinity.sameSite", "write Lax"),
            ],
        ),
        (
            "session affinity same cookies",
            vec![(
                "analysis.sessionAffinity",
                json!({"cookieName": "c", "primaryCookieName": "c"}),
            )],
            vec![(
                "spec.analysis.sessionAffinity.primaryCookieName",
                "is the same as cookieName",
            )],
        ),
        (
            "session affinity on traefik",
            vec![
                ("provider", json!("traefik")),
                (
                    "analysis.sessionAffinity",
                    json!({"cookieName": "c", "maxAge": 60, "sameSite": "Lax"}),
                ),
            ],
            vec![],
        ),
        (
            "session affinity on traefik: one cookie, no Partitioned",
            vec![
                ("provider", json!("traefik")),
                (
                    "analysis.sessionAffinity",
                    json!({"cookieName": "c", "primaryCookieName": "p", "partitioned": true}),
                ),
            ],
            vec![
                (
                    "spec.analysis.sessionAffinity.primaryCookieName",
                    "provider traefik keeps clients of the primary and of the canary with one sticky cookie (cookieName); remove primaryCookieName",
                ),
                (
                    "spec.analysis.sessionAffinity.partitioned",
                    "has no Partitioned attribute",
                ),
            ],
        ),
        (
            "session affinity on linkerd",
            vec![
                ("provider", json!("linkerd")),
                ("analysis.sessionAffinity", json!({"cookieName": "c"})),
            ],
            vec![(
                "spec.analysis.sessionAffinity",
                "provider linkerd cannot route by cookie",
            )],
        ),
    ]);
}

/// A Knative Service as `spec.targetRef`.
fn knative_target() -> Value {
    json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"})
}

#[test]
fn knative() {
    let target = || ("targetRef", knative_target());
    let knative = || ("provider", json!("knative"));
    let no_service = || ("service", Value::Null);
    run_canary_cases(vec![
        ("knative", vec![knative(), target(), no_service()], vec![]),
        (
            "a Deployment on knative",
            vec![knative(), no_service()],
            vec![(
                "spec.targetRef",
                "provider knative rolls out a Knative Service; write apiVersion: \
                 serving.knative.dev/v1 and kind: Service, or choose another provider for a \
                 Deployment",
            )],
        ),
        (
            "a Knative Service on istio",
            vec![("provider", json!("istio")), target(), no_service()],
            vec![(
                "spec.provider",
                "the target is a Knative Service, whose traffic Knative routes between its \
                 Revisions; write provider: knative (not istio)",
            )],
        ),
        (
            "services on knative",
            vec![knative(), target()],
            vec![("spec.service", "provider knative generates no Services")],
        ),
        (
            "an autoscaler on knative",
            vec![
                knative(),
                target(),
                no_service(),
                (
                    "autoscalerRef",
                    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}),
                ),
            ],
            vec![("spec.autoscalerRef", "Knative scales each Revision itself")],
        ),
        (
            "blue/green on knative",
            vec![
                knative(),
                target(),
                no_service(),
                ("analysis.stepWeight", Value::Null),
                ("analysis.maxWeight", Value::Null),
                ("analysis.iterations", json!(5)),
            ],
            vec![(
                "spec.analysis.iterations",
                "blue/green would leave the new Revision without traffic",
            )],
        ),
        (
            "A/B on knative",
            vec![
                knative(),
                target(),
                no_service(),
                ("analysis.stepWeight", Value::Null),
                ("analysis.maxWeight", Value::Null),
                ("analysis.iterations", json!(5)),
                (
                    "analysis.match",
                    json!([{"headers": {"x-canary": {"exact": "insider"}}}]),
                ),
            ],
            vec![(
                "spec.analysis.match",
                "provider knative cannot route by header",
            )],
        ),
        (
            "mirroring on knative",
            vec![
                knative(),
                target(),
                no_service(),
                ("analysis.stepWeight", Value::Null),
                ("analysis.maxWeight", Value::Null),
                ("analysis.iterations", json!(5)),
                ("analysis.mirror", json!(true)),
            ],
            vec![
                ("spec.analysis.iterations", "blue/green would leave"),
                ("spec.analysis.mirror", "knative"),
            ],
        ),
        (
            "no service, not knative",
            vec![no_service()],
            vec![(
                "spec.service.port",
                "0 is not a port number; use 1 to 65535 (spec.service, the Services fledge \
                 generates, is required by every provider but knative)",
            )],
        ),
    ]);
}

#[test]
fn every_problem_at_once() {
    let spec = canary(&[
        ("provider", json!("envoy")),
        ("service.port", json!(0)),
        ("analysis.interval", json!("soon")),
        ("analysis.stepWeight", Value::Null),
        ("analysis.stepWeights", json!([10, 5])),
        ("analysis.webhooks[0].url", json!("loadtester")),
    ]);
    let fields: Vec<String> = validate_canary_spec(&spec)
        .into_iter()
        .map(|p| p.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.provider",
            "spec.service.port",
            "spec.analysis.interval",
            "spec.analysis.stepWeights[1]",
            "spec.analysis.webhooks[0].url",
        ]
    );
}

fn metric_template(patches: &[(&str, Value)]) -> MetricTemplateSpec {
    serde_json::from_value(patched(base_metric_template(), patches)).unwrap()
}

#[test]
fn metric_templates() {
    for t in UNSUPPORTED_FLAGGER_METRIC_PROVIDERS {
        let spec = metric_template(&[("provider.type", json!(t))]);
        assert_problems(
            t,
            &validate_metric_template_spec(&spec),
            &[(
                "spec.provider.type",
                "is not supported by fledge yet; supported: prometheus",
            )],
        );
    }
    let cases: Vec<Case> = vec![
        ("no type", vec![("provider.type", Value::Null)], vec![]),
        (
            "no address",
            vec![("provider.address", Value::Null)],
            vec![],
        ),
        (
            "unsupported type: address not checked",
            vec![
                ("provider.type", json!("signoz")),
                ("provider.address", json!("https://metrics.<REGION>.x")),
            ],
            vec![(
                "spec.provider.type",
                "metrics provider \"signoz\" is not supported by fledge yet",
            )],
        ),
        (
            "a provider reached in a region, without one",
            vec![
                ("provider.type", json!("cloudwatch")),
                ("provider.address", Value::Null),
                ("query", json!("[{\"Id\": \"e1\", \"Expression\": \"m1\"}]")),
            ],
            vec![(
                "spec.provider.region",
                "is required for the cloudwatch provider",
            )],
        ),
        (
            "a CloudWatch query that is not MetricDataQueries",
            vec![
                ("provider.type", json!("cloudwatch")),
                ("provider.address", Value::Null),
                ("provider.region", json!("eu-west-1")),
                ("query", json!("sum(rate(x[1m]))")),
            ],
            vec![("spec.query", "is not JSON")],
        ),
        (
            "a CloudWatch query without an Id",
            vec![
                ("provider.type", json!("cloudwatch")),
                ("provider.address", Value::Null),
                ("provider.region", json!("eu-west-1")),
                ("query", json!("[{\"Expression\": \"m1\"}]")),
            ],
            vec![("spec.query", "item 0 is not a MetricDataQuery with an Id")],
        ),
        (
            "a CloudWatch query with templates in and out of strings",
            vec![
                ("provider.type", json!("cloudwatch")),
                ("provider.address", Value::Null),
                ("provider.region", json!("eu-west-1")),
                (
                    "query",
                    json!(
                        "[{\"id\": \"m1\", \"MetricStat\": {\"Metric\": {\"Dimensions\": [{\"Name\": \"app\", \"Value\": \"{{ name }}.{{ namespace }}\"}]}, \"Period\": {{ variables.period }}, \"Stat\": \"Sum\"}}]"
                    ),
                ),
            ],
            vec![],
        ),
        (
            "a Keptn query of another kind",
            vec![
                ("provider.type", json!("keptn")),
                ("provider.address", Value::Null),
                ("query", json!("prometheus/{{ namespace }}/latency")),
            ],
            vec![("spec.query", "is not a Keptn query")],
        ),
        (
            "a Keptn query",
            vec![
                ("provider.type", json!("keptn")),
                ("provider.address", Value::Null),
                (
                    "query",
                    json!("analysis/{{ namespace }}/budget/5m/workload={{ target }}"),
                ),
            ],
            vec![],
        ),
        (
            "a provider reached in a region, with one",
            vec![
                ("provider.type", json!("cloudwatch")),
                ("provider.address", Value::Null),
                ("query", json!("[{\"Id\": \"e1\", \"Expression\": \"m1\"}]")),
                ("provider.region", json!("ap-northeast-1")),
            ],
            vec![],
        ),
        (
            "a provider that needs credentials, without a Secret",
            vec![("provider.type", json!("datadog"))],
            vec![(
                "spec.provider.secretRef",
                "is required for the datadog provider",
            )],
        ),
        (
            "a provider that needs credentials, with a Secret",
            vec![
                ("provider.type", json!("datadog")),
                ("provider.secretRef", json!({"name": "datadog"})),
            ],
            vec![],
        ),
        (
            "a provider without a default address, without one",
            vec![
                ("provider.type", json!("dynatrace")),
                ("provider.address", Value::Null),
                ("provider.secretRef", json!({"name": "dynatrace"})),
            ],
            vec![(
                "spec.provider.address",
                "is required for the dynatrace provider",
            )],
        ),
        (
            "unknown type",
            vec![("provider.type", json!("prom"))],
            vec![(
                "spec.provider.type",
                "metrics provider \"prom\" is unknown; use prometheus",
            )],
        ),
        (
            "address",
            vec![("provider.address", json!("prometheus:9090"))],
            vec![("spec.provider.address", "is not an absolute URL")],
        ),
        (
            "address scheme",
            vec![("provider.address", json!("tcp://prometheus:9090"))],
            vec![("spec.provider.address", "uses scheme \"tcp\"")],
        ),
        (
            "headers",
            vec![(
                "provider.headers",
                json!({"X-Scope-OrgID": ["a"], "bad header": ["b"]}),
            )],
            vec![(
                "spec.provider.headers",
                "\"bad header\" is not an HTTP header name",
            )],
        ),
        (
            "secretRef",
            vec![("provider.secretRef", json!({"name": ""}))],
            vec![("spec.provider.secretRef.name", "is empty")],
        ),
        (
            "secretRef name",
            vec![("provider.secretRef", json!({"name": "Prom_Token"}))],
            vec![(
                "spec.provider.secretRef.name",
                "is not a valid Kubernetes name",
            )],
        ),
        (
            "empty query",
            vec![("query", json!(" \n"))],
            vec![("spec.query", "is empty")],
        ),
        (
            "no spaces",
            vec![("query", json!("up{ns=\"{{namespace}}\",t=\"{{target}}\"}"))],
            vec![],
        ),
        (
            "trim markers",
            vec![("query", json!("up{ns=\"{{- namespace -}}\"}"))],
            vec![],
        ),
        (
            "every variable",
            vec![(
                "query",
                json!(
                    "{{ namespace }}{{ name }}{{ target }}{{ service }}{{ ingress }}{{ interval }}{{ variables.direction }}"
                ),
            )],
            vec![],
        ),
        (
            "stray closing braces",
            vec![("query", json!("sum(x{a=\"}}\"})"))],
            vec![],
        ),
        (
            "unclosed",
            vec![("query", json!("sum(\n rate(x{ns=\"{{ namespace\"}[1m]))"))],
            vec![("spec.query", "has an unclosed {{ on line 2")],
        ),
        (
            "empty action",
            vec![("query", json!("up{ {{ }} }"))],
            vec![("spec.query", "has an empty {{ }}")],
        ),
        (
            "unknown variable",
            vec![("query", json!("up{d=\"{{ direction }}\"}"))],
            vec![(
                "spec.query",
                "uses the unknown variable {{ direction }}; use one of namespace, name, target, service, ingress, route, interval, canary_pods, stable_pods, or pass it from the Canary's templateVariables as {{ variables.direction }}",
            )],
        ),
        (
            "dot",
            vec![("query", json!("up{n=\"{{ .namespace }}\"}"))],
            vec![("spec.query", "write {{ namespace }} without the dot")],
        ),
        (
            "bad variable name",
            vec![("query", json!("up{n=\"{{ variables.my-var }}\"}"))],
            vec![("spec.query", "\"my-var\" is not a variable name")],
        ),
        (
            "printf of variables",
            vec![(
                "query",
                json!("up{n=\"{{ printf \"%s-%s\" namespace variables.x }}\"}"),
            )],
            vec![],
        ),
        (
            "printf of an unknown variable",
            vec![("query", json!("up{n=\"{{ printf \"%s\" nope }}\"}"))],
            vec![("spec.query", "uses the unknown variable nope in {{ printf")],
        ),
        (
            "another function",
            vec![("query", json!("up{n=\"{{ index . \"n\" }}\"}"))],
            vec![("spec.query", "uses the template function \"index\"")],
        ),
        (
            "route: spec.routeRef.name, as Flagger fills it",
            vec![("query", json!("up{r=\"{{ route }}\", s=\"{{ route }}\"}"))],
            vec![],
        ),
        (
            "two different problems",
            vec![("query", json!("{{ foo }} {{ bar }}"))],
            vec![("spec.query", "{{ foo }}"), ("spec.query", "{{ bar }}")],
        ),
    ];
    for (name, patches, expected) in cases {
        let spec = metric_template(&patches);
        assert_problems(name, &validate_metric_template_spec(&spec), &expected);
    }
}

fn alert_provider(patches: &[(&str, Value)]) -> AlertProviderSpec {
    serde_json::from_value(patched(base_alert_provider(), patches)).unwrap()
}

#[test]
fn alert_providers() {
    for t in ["slack", "msteams", "discord", "rocket", "gchat", "webhook"] {
        let spec = alert_provider(&[("type", json!(t))]);
        assert_problems(t, &validate_alert_provider_spec(&spec), &[]);
    }
    let cases: Vec<Case> = vec![
        (
            "empty type",
            vec![("type", json!(""))],
            vec![(
                "spec.type",
                "is empty; use one of: slack, msteams, discord, rocket, gchat, webhook",
            )],
        ),
        (
            "unknown type",
            vec![("type", json!("teams"))],
            vec![("spec.type", "\"teams\" is not an alert provider type")],
        ),
        (
            "address only",
            vec![
                ("secretRef", Value::Null),
                (
                    "address",
                    json!("https://hooks.slack.com/services/T0/B0/XXXX"),
                ),
            ],
            vec![],
        ),
        (
            "neither",
            vec![("secretRef", Value::Null)],
            vec![("spec.address", "is missing and no secretRef is set")],
        ),
        (
            "blank address",
            vec![("secretRef", Value::Null), ("address", json!("  "))],
            vec![("spec.address", "is missing and no secretRef is set")],
        ),
        (
            "secretRef name",
            vec![("secretRef", json!({"name": ""}))],
            vec![("spec.secretRef.name", "is empty")],
        ),
        (
            "proxy",
            vec![("proxy", json!("socks5://proxy:1080"))],
            vec![],
        ),
        (
            "bad proxy",
            vec![("proxy", json!("proxy.internal:3128"))],
            vec![("spec.proxy", "is not an absolute URL")],
        ),
        (
            "link template",
            vec![(
                "linkTemplate",
                json!("https://grafana.example.com/d/canary?ns={namespace}&name={name}"),
            )],
            vec![],
        ),
        (
            "bad link template",
            vec![("linkTemplate", json!("grafana/{namespace}/{name}"))],
            vec![("spec.linkTemplate", "is not an absolute URL")],
        ),
        ("traffic steps", vec![("trafficSteps", json!(true))], vec![]),
    ];
    for (name, patches, expected) in cases {
        let spec = alert_provider(&patches);
        assert_problems(name, &validate_alert_provider_spec(&spec), &expected);
    }
}

#[test]
fn urls_are_never_repeated_in_messages() {
    let secret = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
    for address in [
        format!("hooks.slack.com/services/{secret}"),
        format!("ftp://hooks.slack.com/services/{secret}"),
        format!("https://hooks.slack.com:99999/services/{secret}"),
        format!("https://hooks slack.com/services/{secret}"),
        format!("{secret}://x"),
    ] {
        let spec = alert_provider(&[("address", json!(address)), ("proxy", json!(address))]);
        let problems = validate_alert_provider_spec(&spec);
        assert_eq!(problems.len(), 2, "{address}: {problems:?}");
        for p in &problems {
            assert!(!p.message.contains("XXXX"), "{address}: {p}");
            assert!(!p.message.contains("hooks"), "{address}: {p}");
        }
        let spec = canary(&[("analysis.webhooks[0].url", json!(address))]);
        let problems = validate_canary_spec(&spec);
        assert_eq!(problems.len(), 1, "{address}: {problems:?}");
        assert!(!problems[0].message.contains("XXXX"), "{}", problems[0]);
    }
}

proptest! {
    #[test]
    fn url_messages_never_contain_the_token(
        prefix in "(https?://|ftp://|)(hooks\\.slack\\.com|[a-z ]{0,8})(:[0-9]{1,6})?/",
        token in "[A-Za-z0-9]{12,30}",
        suffix in "[ -~]{0,10}",
    ) {
        let address = format!("{prefix}{token}{suffix}");
        let spec = alert_provider(&[("address", json!(address))]);
        for p in validate_alert_provider_spec(&spec) {
            prop_assert!(!p.message.contains(&token), "{}", p);
        }
    }

    #[test]
    fn template_checks_never_panic(query in "(\\{\\{|\\}\\}|[ -~]|é|\n|-){0,60}") {
        let spec = MetricTemplateSpec { query, ..Default::default() };
        let _ = validate_metric_template_spec(&spec);
    }

    #[test]
    fn canary_checks_never_panic(
        provider in proptest::option::of("[a-z:0-9]{0,12}"),
        interval in proptest::option::of("[0-9a-zµ.-]{0,6}"),
        step in proptest::option::of(any::<i32>()),
        steps in proptest::option::of(proptest::collection::vec(any::<i32>(), 0..6)),
        max in proptest::option::of(any::<i32>()),
        iterations in proptest::option::of(any::<i32>()),
        url in "[ -~]{0,30}",
        regex in "[ -~]{0,12}",
        port in any::<i32>(),
    ) {
        let spec = canary(&[
            ("provider", json!(provider)),
            ("analysis.interval", json!(interval)),
            ("analysis.stepWeight", json!(step)),
            ("analysis.stepWeights", json!(steps)),
            ("analysis.maxWeight", json!(max)),
            ("analysis.iterations", json!(iterations)),
            ("analysis.webhooks[0].url", json!(url)),
            ("analysis.match", json!([{"headers": {"x": {"regex": regex}}}])),
            ("service.port", json!(port)),
        ]);
        for p in validate_canary_spec(&spec) {
            prop_assert!(p.field.starts_with("spec"), "{}", p);
            prop_assert!(!p.message.is_empty());
        }
    }
}

#[test]
fn gateway_api_matches_only_what_an_http_route_can() {
    let ab = |m: Value| {
        vec![
            ("provider", json!("gatewayapi:v1")),
            ("analysis.stepWeight", Value::Null),
            ("analysis.iterations", json!(5)),
            ("analysis.match", m),
        ]
    };
    run_canary_cases(vec![
        (
            "headers, cookie, query and uri on gatewayapi",
            ab(json!([
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                {"queryParams": {"canary": {"exact": "1"}}, "uri": {"prefix": "/api"},
                 "method": {"exact": "GET"}}
            ])),
            vec![],
        ),
        (
            "what an HTTPRoute cannot match",
            ab(json!([
                {"sourceLabels": {"app": "x"}, "withoutHeaders": {"x": {"exact": "y"}},
                 "method": {"prefix": "G"}}
            ])),
            vec![
                (
                    "spec.analysis.match[0].sourceLabels",
                    "provider gatewayapi:v1 routes with an HTTPRoute, which cannot match on sourceLabels",
                ),
                ("spec.analysis.match[0].withoutHeaders", "cannot match on"),
                (
                    "spec.analysis.match[0].method",
                    "matches a method exactly only",
                ),
            ],
        ),
        (
            "the service match too, on v1beta1",
            vec![
                ("provider", json!("gatewayapi:v1beta1")),
                (
                    "service.match",
                    json!([{"authority": {"exact": "a"}, "port": 80}]),
                ),
            ],
            vec![
                (
                    "spec.service.match[0].authority",
                    "cannot match on authority",
                ),
                ("spec.service.match[0].port", "cannot match on port"),
            ],
        ),
        (
            "istio matches all of it",
            vec![(
                "service.match",
                json!([{"authority": {"exact": "a"}, "sourceLabels": {"app": "x"}}]),
            )],
            vec![],
        ),
    ]);
}
