//! Rendering MetricTemplate queries: Flagger's `{{ variable }}` syntax, and nothing more.
//!
//! A query is text with `{{ ... }}` actions. Each action names one variable (`namespace`,
//! `name`, `target`, `service`, `ingress`, `interval`, or `variables.NAME` from the metric's
//! `templateVariables`); Go's trim markers `{{-` and `-}}` drop the whitespace beside them.
//! There are no functions, pipelines or conditionals, so nothing in a template can run code,
//! and anything else is an error that says what to write instead.

use std::collections::BTreeMap;

use crate::validate::template_action_problem;

/// The values a query may use.
#[derive(Clone, Debug, Default)]
pub struct TemplateVars<'a> {
    /// The Canary's namespace.
    pub namespace: &'a str,
    /// The Canary's name.
    pub name: &'a str,
    /// `spec.targetRef.name`.
    pub target: &'a str,
    /// The apex Service's name (`spec.service.name`, or the target's name).
    pub service: &'a str,
    /// `spec.ingressRef.name`, or empty.
    pub ingress: &'a str,
    /// The metric's `interval` (its window), e.g. `1m`.
    pub interval: &'a str,
    /// The metric's `templateVariables`.
    pub variables: Option<&'a BTreeMap<String, String>>,
}

impl TemplateVars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "namespace" => self.namespace,
            "name" => self.name,
            "target" => self.target,
            "service" => self.service,
            "ingress" => self.ingress,
            "interval" => self.interval,
            _ => return None,
        })
    }
}

/// Renders `query` with `vars`. The error says which action is wrong and what to write.
pub fn render(query: &str, vars: &TemplateVars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            let line = query[..query.len() - rest.len() + open]
                .matches('\n')
                .count()
                + 1;
            return Err(format!(
                "has an unclosed {{{{ on line {line}; close it with }}}}, e.g. {{{{ namespace }}}}"
            ));
        };
        let inner = &after[..close];
        let mut before = &rest[..open];
        if inner.starts_with('-') {
            before = before.trim_end();
        }
        out.push_str(before);
        let body = inner.trim_start_matches('-').trim_end_matches('-').trim();
        if let Some(problem) = template_action_problem(body, inner) {
            return Err(problem);
        }
        let value = match body.strip_prefix("variables.") {
            Some(key) => vars
                .variables
                .and_then(|v| v.get(key))
                .map(String::as_str)
                .ok_or_else(|| {
                    format!(
                        "uses {{{{ {body} }}}}, but the metric's templateVariables has no {key:?}; add it to the Canary's analysis.metrics[].templateVariables"
                    )
                })?,
            None => vars
                .get(body)
                .ok_or_else(|| format!("uses the unknown variable {{{{ {body} }}}}"))?,
        };
        out.push_str(value);
        rest = &after[close + 2..];
        if inner.ends_with('-') {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(variables: &BTreeMap<String, String>) -> TemplateVars<'_> {
        TemplateVars {
            namespace: "shop",
            name: "web",
            target: "web-app",
            service: "web-svc",
            ingress: "",
            interval: "30s",
            variables: Some(variables),
        }
    }

    #[test]
    fn every_variable_is_filled_in() {
        let v = BTreeMap::from([("route".to_string(), "/api".to_string())]);
        let q = r#"sum(rate(x{ns="{{ namespace }}",c="{{name}}",t="{{ target }}",s="{{ service }}",i="{{ ingress }}",r="{{ variables.route }}"}[{{ interval }}]))"#;
        assert_eq!(
            render(q, &vars(&v)).unwrap(),
            r#"sum(rate(x{ns="shop",c="web",t="web-app",s="web-svc",i="",r="/api"}[30s]))"#
        );
        // Text without actions is left alone, braces and all.
        assert_eq!(render("up{a=\"}\"}", &vars(&v)).unwrap(), "up{a=\"}\"}");
    }

    #[test]
    fn trim_markers_drop_the_whitespace_beside_them() {
        let v = BTreeMap::new();
        assert_eq!(
            render("a  {{- namespace -}}  b", &vars(&v)).unwrap(),
            "ashopb"
        );
        assert_eq!(
            render("a {{ namespace -}}\n b", &vars(&v)).unwrap(),
            "a shopb"
        );
    }

    #[test]
    fn anything_but_a_variable_is_refused_with_what_to_write() {
        let v = BTreeMap::from([("known".to_string(), "1".to_string())]);
        for (q, words) in [
            ("{{ nope }}", "unknown variable {{ nope }}"),
            (
                "{{ variables.missing }}",
                "templateVariables has no \"missing\"",
            ),
            (
                "{{ printf \"%s\" name }}",
                "template functions are not supported",
            ),
            ("{{ .namespace }}", "without the dot"),
            ("{{ namespace | html }}", "template function"),
            ("{{ }}", "empty"),
            ("x{{ namespace", "unclosed {{ on line 1"),
            ("a\nb {{ name", "unclosed {{ on line 2"),
            ("{{ route }}", "apisix"),
        ] {
            let err = render(q, &vars(&v)).unwrap_err();
            assert!(err.contains(words), "{q}: {err}");
        }
    }
}
