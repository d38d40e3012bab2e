//! The rules the API server checks by itself: `x-kubernetes-validations` (CEL) in the Canary
//! CRD, so that `kubectl apply` refuses the worst specs even where `fledge validate` never ran.
//!
//! They are a subset of [`crate::validate`]: every spec `validate` accepts, the API server
//! accepts too (a test applies Flagger's documented examples through the real API server).
//! What needs more than one object (a provider's abilities, references) stays in `validate`
//! and in the controller's `SpecValid` condition.
//!
//! Each rule is attached by a schemars transform on its type (`#[schemars(transform = …)]`),
//! so the generated CRD carries it; a field's own rules go on that field's schema, rules that
//! read several fields on the object with a `fieldPath` naming the field to fix. The API
//! server prefixes each message with the field path; the messages name the field again and
//! say what to write instead.
//!
//! Lists that rules run over carry a `maxItems` and strings read by a regular expression a
//! `maxLength`: the API server refuses a CRD whose rules it cannot bound within its cost
//! budget. The bounds are far above what anyone writes (a Canary of Flagger's examples has at
//! most a handful of metrics and webhooks).

use schemars::Schema;
use serde_json::{Map, Value, json};

/// Most metrics in `spec.analysis.metrics`.
pub const MAX_METRICS: u64 = 100;
/// Most webhooks in `spec.analysis.webhooks`.
pub const MAX_WEBHOOKS: u64 = 100;
/// Most entries in `spec.analysis.alerts`.
pub const MAX_ALERTS: u64 = 100;
/// Most match conditions in `spec.analysis.match`.
pub const MAX_MATCHES: u64 = 100;
/// Most steps in `spec.analysis.stepWeights`: strictly increasing percentages, so at most 100.
pub const MAX_STEP_WEIGHTS: u64 = 100;
/// Longest duration string (Go's longest duration, `2562047h47m16.854775807s`, has 24
/// characters).
pub const MAX_DURATION_LEN: u64 = 64;
/// Longest webhook URL.
pub const MAX_URL_LEN: u64 = 8192;

/// Go's `time.ParseDuration` grammar as [`crate::parse_duration`] reads it (surrounding white
/// space, an optional `+`, numbers with units, or `0`), in RE2 without backslashes so that it
/// needs no escaping inside a CEL string. A `-` is refused: no field takes a negative duration.
const DURATION_RE: &str =
    "^[[:space:]]*[+]?(0|(([0-9]+[.]?[0-9]*|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)[[:space:]]*$";

/// A rule of a field: the CEL expression over `self` and its message.
fn rule(expr: impl Into<String>, message: impl Into<String>) -> Value {
    json!({ "rule": expr.into(), "message": message.into() })
}

/// A rule of an object that names the field to fix (`fieldPath`, relative to the object).
fn rule_at(field: &str, expr: impl Into<String>, message: impl Into<String>) -> Value {
    json!({ "rule": expr.into(), "message": message.into(), "fieldPath": format!(".{field}") })
}

/// Appends `rules` to the `x-kubernetes-validations` of `schema`.
fn add_rules(schema: &mut Value, rules: impl IntoIterator<Item = Value>) {
    if let Some(obj) = schema.as_object_mut() {
        add_object_rules(obj, rules);
    }
}

/// Appends `rules` to the `x-kubernetes-validations` of an object's own schema.
fn add_object_rules(obj: &mut Map<String, Value>, rules: impl IntoIterator<Item = Value>) {
    let list = obj
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.extend(rules);
    }
}

/// The schema of property `name` of an object schema. Every property named here exists on
/// its type; a missing one is a bug that the CRD tests catch (the rule would be missing).
fn property<'a>(schema: &'a mut Schema, name: &str) -> Option<&'a mut Value> {
    schema.get_mut("properties")?.get_mut(name)
}

fn add_property_rules(schema: &mut Schema, name: &str, rules: impl IntoIterator<Item = Value>) {
    if let Some(p) = property(schema, name) {
        add_rules(p, rules);
    }
}

fn set_bound(schema: &mut Schema, name: &str, key: &str, value: u64) {
    if let Some(Value::Object(p)) = property(schema, name) {
        p.insert(key.to_string(), json!(value));
    }
}

/// A duration field: well-formed (Go's grammar) and greater than zero.
fn duration_field(schema: &mut Schema, name: &str, path: &str) {
    set_bound(schema, name, "maxLength", MAX_DURATION_LEN);
    add_property_rules(
        schema,
        name,
        [rule(
            format!("self.matches('{DURATION_RE}') && self.matches('[1-9]')"),
            format!(
                "{path} must be a duration greater than 0 such as 30s, 1m or 1h30m (a number \
                 with a unit: ns, us, ms, s, m or h)"
            ),
        )],
    );
}

/// An integer percentage between 0 and 100.
fn percent_field(schema: &mut Schema, name: &str, path: &str) {
    add_property_rules(
        schema,
        name,
        [rule(
            "self >= 0 && self <= 100",
            format!("{path} must be a percentage between 0 and 100"),
        )],
    );
}

/// An integer of at least `min`.
fn at_least(schema: &mut Schema, name: &str, min: i64, message: String) {
    add_property_rules(schema, name, [rule(format!("self >= {min}"), message)]);
}

/// `CanarySpec`: a rollout strategy unless analysis is skipped; no weights with the
/// `kubernetes` provider.
pub(crate) fn canary_spec(schema: &mut Schema) {
    at_least(
        schema,
        "progressDeadlineSeconds",
        1,
        "spec.progressDeadlineSeconds must be a number of seconds greater than 0; remove it for \
         the default 600"
            .into(),
    );
    let weights = "(has(self.analysis.stepWeight) && self.analysis.stepWeight > 0) || \
                   (has(self.analysis.stepWeights) && size(self.analysis.stepWeights) > 0)";
    // A StatefulSet's steps may be counted in pods, and its weights are shares of its pods
    // (which the kubernetes provider's traffic follows).
    let statefulset = "(has(self.targetRef.kind) && self.targetRef.kind == 'StatefulSet')";
    // `service` may be left out for `knative` only; no default is written into stored objects.
    if let Some(Value::Object(service)) = property(schema, "service") {
        service.remove("default");
    }
    add_object_rules(
        schema.ensure_object(),
        [
            rule_at(
                "analysis",
                format!(
                    "(has(self.skipAnalysis) && self.skipAnalysis) || (has(self.analysis) && \
                     ((has(self.analysis.iterations) && self.analysis.iterations > 0) || {weights} \
                     || ({statefulset} && has(self.analysis.stepReplicas))))"
                ),
                "spec.analysis has no traffic steps: set stepWeight (with maxWeight) or \
                 stepWeights for a progressive canary, iterations for blue/green, or match with \
                 iterations for A/B testing, stepReplicas for a StatefulSet (or skipAnalysis: \
                 true to promote without analysis)",
            ),
            rule_at(
                "service",
                "has(self.service) || (has(self.provider) && self.provider == 'knative')",
                "spec.service is required: fledge generates the Services <name>, <name>-primary \
                 and <name>-canary from it; set at least spec.service.port (only provider \
                 knative, whose Knative Service routes to its Revisions, needs none)",
            ),
            rule_at(
                "analysis",
                format!(
                    "!has(self.provider) || self.provider != 'kubernetes' || \
                     !has(self.analysis) || {statefulset} || !({weights})"
                ),
                "spec.analysis: provider kubernetes switches all traffic at once (blue/green) \
                 and cannot take traffic weights; remove stepWeight and stepWeights and set \
                 iterations",
            ),
        ],
    );
}

/// `CanaryAnalysis`: percentages, counts, the interval, and the strategy's fields.
pub(crate) fn canary_analysis(schema: &mut Schema) {
    let base = "spec.analysis";
    duration_field(schema, "interval", &format!("{base}.interval"));
    for field in [
        "maxWeight",
        "stepWeight",
        "stepWeightPromotion",
        "mirrorWeight",
        "primaryReadyThreshold",
        "canaryReadyThreshold",
    ] {
        percent_field(schema, field, &format!("{base}.{field}"));
    }
    at_least(
        schema,
        "iterations",
        0,
        format!("{base}.iterations must be 0 or more (the number of analysis runs)"),
    );
    at_least(
        schema,
        "threshold",
        1,
        format!(
            "{base}.threshold must be 1 or more: it is the number of failed checks that rolls \
             back"
        ),
    );
    at_least(
        schema,
        "inconclusiveLimit",
        1,
        format!(
            "{base}.inconclusiveLimit must be 1 or more, or left out to never pause on \
             inconclusive steps"
        ),
    );

    set_bound(schema, "stepWeights", "maxItems", MAX_STEP_WEIGHTS);
    if let Some(items) = property(schema, "stepWeights").and_then(|p| p.get_mut("items")) {
        add_rules(
            items,
            [rule(
                "self >= 0 && self <= 100",
                format!("{base}.stepWeights: each step must be a percentage between 0 and 100"),
            )],
        );
    }
    add_property_rules(
        schema,
        "stepWeights",
        [rule(
            "self.isSorted() && self.all(w, self.filter(v, v == w).size() == 1)",
            format!("{base}.stepWeights must increase from step to step, e.g. [5, 10, 25, 50]"),
        )],
    );
    for (field, max) in [
        ("metrics", MAX_METRICS),
        ("webhooks", MAX_WEBHOOKS),
        ("alerts", MAX_ALERTS),
        ("match", MAX_MATCHES),
    ] {
        set_bound(schema, field, "maxItems", max);
    }

    let step_weight = "(has(self.stepWeight) && self.stepWeight > 0)";
    let step_weights = "(has(self.stepWeights) && size(self.stepWeights) > 0)";
    let iterations = "(has(self.iterations) && self.iterations > 0)";
    let matches = "(has(self.match) && size(self.match) > 0)";
    add_object_rules(
        schema.ensure_object(),
        [
            rule_at(
                "stepWeights",
                format!("!({step_weight} && {step_weights})"),
                format!(
                    "{base}.stepWeight and {base}.stepWeights are both set; keep one: \
                     stepWeights lists every step, stepWeight adds the same amount at each step \
                     up to maxWeight"
                ),
            ),
            rule_at(
                "iterations",
                format!("!{matches} || {iterations}"),
                format!(
                    "{base}.iterations is required with {base}.match (A/B testing): set the \
                     number of analysis runs before promotion, e.g. 10"
                ),
            ),
            rule_at(
                "iterations",
                format!("!({iterations} && ({step_weight} || {step_weights})) || {matches}"),
                format!(
                    "{base}.iterations is set together with stepWeight/stepWeights: iterations \
                     means blue/green, weights mean a progressive canary; remove one"
                ),
            ),
            rule_at(
                "stepWeight",
                "!(has(self.stepWeight) && has(self.maxWeight) && !has(self.stepWeights)) || \
                 self.stepWeight <= self.maxWeight",
                format!(
                    "{base}.stepWeight is greater than {base}.maxWeight: the first step would \
                     pass the maximum; lower stepWeight or raise maxWeight"
                ),
            ),
        ],
    );
}

/// `CanaryMetric`: the interval, and a threshold range that some value can pass.
pub(crate) fn canary_metric(schema: &mut Schema) {
    let base = "spec.analysis.metrics[]";
    duration_field(schema, "interval", &format!("{base}.interval"));
    add_object_rules(
        schema.ensure_object(),
        [
            rule_at(
                "thresholdRange",
                "!has(self.thresholdRange) || has(self.thresholdRange.min) || \
                 has(self.thresholdRange.max)",
                format!(
                    "{base}.thresholdRange has neither min nor max; set the lowest passing value \
                     (min), the highest (max), or both"
                ),
            ),
            rule_at(
                "thresholdRange",
                "!has(self.thresholdRange) || !has(self.thresholdRange.min) || \
                 !has(self.thresholdRange.max) || \
                 self.thresholdRange.min <= self.thresholdRange.max",
                format!(
                    "{base}.thresholdRange.min is greater than max: no value could pass; swap \
                     them or widen the range"
                ),
            ),
        ],
    );
}

/// `CanaryWebhook`: an http(s) URL, the timeout and the retries.
pub(crate) fn canary_webhook(schema: &mut Schema) {
    let base = "spec.analysis.webhooks[]";
    duration_field(schema, "timeout", &format!("{base}.timeout"));
    at_least(
        schema,
        "retries",
        0,
        format!("{base}.retries must be 0 or more"),
    );
    set_bound(schema, "url", "maxLength", MAX_URL_LEN);
    add_property_rules(
        schema,
        "url",
        [rule(
            "self.matches('^[[:space:]]*(?i:https?)://[^/?#[:space:]]')",
            format!(
                "{base}.url must be an absolute http or https URL, e.g. \
                 http://fledge-loadtester.test/"
            ),
        )],
    );
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::Value;

    use crate::Canary;

    /// The rules at `pointer` (a JSON pointer into the spec's schema).
    fn rules_at(spec: &Value, pointer: &str) -> Vec<String> {
        let at = spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no schema at {pointer}"));
        at["x-kubernetes-validations"]
            .as_array()
            .unwrap_or_else(|| panic!("no rules at {pointer}"))
            .iter()
            .map(|r| r["message"].as_str().expect("a message").to_string())
            .collect()
    }

    fn spec_schema() -> Value {
        let crd = serde_json::to_value(Canary::crd()).expect("CRD as JSON");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn every_rule_lands_on_its_field_and_names_it() {
        let spec = spec_schema();
        let analysis = "/properties/analysis/properties";
        for (pointer, field) in [
            (
                "/properties/progressDeadlineSeconds",
                "spec.progressDeadlineSeconds",
            ),
            (&format!("{analysis}/interval"), "spec.analysis.interval"),
            (
                &format!("{analysis}/stepWeight"),
                "spec.analysis.stepWeight",
            ),
            (&format!("{analysis}/maxWeight"), "spec.analysis.maxWeight"),
            (
                &format!("{analysis}/mirrorWeight"),
                "spec.analysis.mirrorWeight",
            ),
            (
                &format!("{analysis}/stepWeightPromotion"),
                "spec.analysis.stepWeightPromotion",
            ),
            (
                &format!("{analysis}/primaryReadyThreshold"),
                "spec.analysis.primaryReadyThreshold",
            ),
            (
                &format!("{analysis}/canaryReadyThreshold"),
                "spec.analysis.canaryReadyThreshold",
            ),
            (
                &format!("{analysis}/iterations"),
                "spec.analysis.iterations",
            ),
            (&format!("{analysis}/threshold"), "spec.analysis.threshold"),
            (
                &format!("{analysis}/inconclusiveLimit"),
                "spec.analysis.inconclusiveLimit",
            ),
            (
                &format!("{analysis}/stepWeights"),
                "spec.analysis.stepWeights",
            ),
            (
                &format!("{analysis}/stepWeights/items"),
                "spec.analysis.stepWeights",
            ),
            (
                &format!("{analysis}/metrics/items/properties/interval"),
                "spec.analysis.metrics[].interval",
            ),
            (
                &format!("{analysis}/webhooks/items/properties/timeout"),
                "spec.analysis.webhooks[].timeout",
            ),
            (
                &format!("{analysis}/webhooks/items/properties/retries"),
                "spec.analysis.webhooks[].retries",
            ),
            (
                &format!("{analysis}/webhooks/items/properties/url"),
                "spec.analysis.webhooks[].url",
            ),
        ] {
            let rules = rules_at(&spec, pointer);
            assert!(
                rules.iter().all(|m| m.starts_with(field)),
                "{pointer}: {rules:?} should name {field}"
            );
        }
        assert_eq!(rules_at(&spec, "").len(), 3, "the spec's own rules");
        assert_eq!(rules_at(&spec, "/properties/analysis").len(), 4);
        assert_eq!(
            rules_at(&spec, &format!("{analysis}/metrics/items")).len(),
            2
        );
        for list in ["metrics", "webhooks", "alerts", "match", "stepWeights"] {
            assert!(
                spec.pointer(&format!("{analysis}/{list}/maxItems"))
                    .is_some(),
                "{list} has no maxItems: the API server cannot bound the cost of its rules"
            );
        }
    }

    /// The duration rule's pattern agrees with `parse_duration` (the API server's RE2 and the
    /// `regex` crate read this pattern alike: no backreferences, no look-around).
    #[test]
    fn the_duration_pattern_accepts_what_parse_duration_accepts() {
        let re = regex::Regex::new(super::DURATION_RE).expect("the pattern compiles");
        let positive = regex::Regex::new("[1-9]").expect("compiles");
        let rule = |s: &str| re.is_match(s) && positive.is_match(s);
        for ok in [
            "30s", "1m", "1h30m", "1.5h", ".5s", "5.s", "+1m", " 10s ", "1h0m0s", "500ms", "3µs",
            "3us", "1m1m",
        ] {
            assert!(
                crate::parse_duration(ok).is_ok_and(|d| !d.is_zero()),
                "{ok}"
            );
            assert!(
                rule(ok),
                "the rule refuses {ok:?}, which parse_duration accepts"
            );
        }
        for bad in [
            "", "0", "0s", "10", "1d", "-1m", "1m30", "m", ".s", "1 m", "5sec", "1h-1m",
        ] {
            assert!(!rule(bad), "the rule accepts {bad:?}");
        }
    }
}
