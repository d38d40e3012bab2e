//! Rendering MetricTemplate queries: Flagger's `{{ variable }}` syntax, and nothing more.
//!
//! A query is text with `{{ ... }}` actions. Each action names one variable (`namespace`,
//! `name`, `target`, `service`, `ingress`, `route`, `interval`, `canary_pods`, `stable_pods`, or
//! `variables.NAME` from the metric's
//! `templateVariables`), or is a `printf` of them, as Flagger's templates use it: `{{ printf
//! "%s_%s" namespace service }}` with the verbs `%s`, `%v`, `%q` and `%%`, whose arguments are
//! variables or quoted strings. Go's trim markers `{{-` and `-}}` drop the whitespace beside
//! them. There are no other functions, pipelines or conditionals, so nothing in a template can
//! run code, and anything else is an error that says what to write instead.

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
    /// `spec.routeRef.name` (the apisix provider's ApisixRoute), or empty.
    pub route: &'a str,
    /// The metric's `interval` (its window), e.g. `1m`.
    pub interval: &'a str,
    /// The canary's pod names as a regular expression for a `=~` matcher: a Deployment's
    /// `<target>-<hash>-<suffix>` pods, or a StatefulSet's pods at or above the partition
    /// (`db-3|db-4`).
    pub canary_pods: &'a str,
    /// The stable (promoted) pods' names likewise: `<target>-primary-…`, or a StatefulSet's
    /// pods below the partition.
    pub stable_pods: &'a str,
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
            "route" => self.route,
            "interval" => self.interval,
            "canary_pods" => self.canary_pods,
            "stable_pods" => self.stable_pods,
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
        if let Some(call) = Printf::parse(body) {
            out.push_str(&call?.render(vars)?);
            rest = &after[close + 2..];
            if inner.ends_with('-') {
                rest = rest.trim_start();
            }
            continue;
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

/// One argument of a `printf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// A variable (`namespace`, `variables.NAME`, …).
    Var(String),
    /// A quoted string.
    Text(String),
}

/// A `{{ printf "format" args… }}` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Printf {
    format: String,
    pub(crate) args: Vec<Arg>,
}

impl Printf {
    /// `None` when `body` is no `printf` call; otherwise the call, or what is wrong with it.
    pub(crate) fn parse(body: &str) -> Option<Result<Printf, String>> {
        let rest = body.strip_prefix("printf")?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        Some(Printf::parse_args(rest.trim()).map_err(|why| format!("uses {{{{ {body} }}}}: {why}")))
    }

    fn parse_args(mut rest: &str) -> Result<Printf, String> {
        let mut words = Vec::new();
        while !rest.is_empty() {
            if let Some(quoted) = rest.strip_prefix('"') {
                let mut text = String::new();
                let mut chars = quoted.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => text.push('\n'),
                            Some((_, 't')) => text.push('\t'),
                            Some((_, c @ ('"' | '\\'))) => text.push(c),
                            Some((_, c)) => text.push_str(&format!("\\{c}")),
                            None => return Err("a quoted string is not closed".into()),
                        },
                        Some((_, c)) => text.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                };
                words.push(Arg::Text(text));
                rest = quoted[end + 1..].trim_start();
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let word = &rest[..end];
                if word.contains(['|', '(', ')', '$']) {
                    return Err(format!(
                        "{word:?} is not a variable or a quoted string; printf takes only those"
                    ));
                }
                words.push(Arg::Var(word.to_string()));
                rest = rest[end..].trim_start();
            }
        }
        let mut words = words.into_iter();
        let Some(Arg::Text(format)) = words.next() else {
            return Err(
                "printf needs a quoted format first, e.g. printf \"%s_%s\" namespace service"
                    .into(),
            );
        };
        let args: Vec<Arg> = words.collect();
        let verbs = verbs(&format)?;
        if verbs != args.len() {
            return Err(format!(
                "the format has {verbs} verbs and {} arguments follow it",
                args.len()
            ));
        }
        Ok(Printf { format, args })
    }

    /// The text, with each argument's value.
    fn render(&self, vars: &TemplateVars<'_>) -> Result<String, String> {
        let mut values = self.args.iter().map(|a| match a {
            Arg::Text(t) => Ok(t.clone()),
            Arg::Var(v) => match v.strip_prefix("variables.") {
                Some(key) => vars
                    .variables
                    .and_then(|m| m.get(key))
                    .cloned()
                    .ok_or_else(|| format!("uses {v} in a printf, but the metric's templateVariables has no {key:?}; add it to the Canary's analysis.metrics[].templateVariables")),
                None => vars
                    .get(v)
                    .map(str::to_string)
                    .ok_or_else(|| format!("uses the unknown variable {v} in a printf")),
            },
        });
        let mut out = String::new();
        let mut chars = self.format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('q') => out.push_str(&format!(
                    "{:?}",
                    values.next().transpose()?.unwrap_or_default()
                )),
                Some(_) => out.push_str(&values.next().transpose()?.unwrap_or_default()),
                None => {}
            }
        }
        Ok(out)
    }
}

/// How many arguments `format` takes; only `%s`, `%v`, `%q` and `%%` are understood.
fn verbs(format: &str) -> Result<usize, String> {
    let mut n = 0;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => {}
                Some('s' | 'v' | 'q') => n += 1,
                Some(v) => {
                    return Err(format!(
                        "the verb %{v} is not supported; use %s (or %v, %q) for text"
                    ));
                }
                None => return Err("the format ends with a lone %".into()),
            }
        }
    }
    Ok(n)
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
            route: "podinfo",
            interval: "30s",
            canary_pods: "db-3|db-4",
            stable_pods: "db-0|db-1|db-2",
            variables: Some(variables),
        }
    }

    #[test]
    fn every_variable_is_filled_in() {
        let v = BTreeMap::from([("route".to_string(), "/api".to_string())]);
        let q = r#"sum(rate(x{ns="{{ namespace }}",c="{{name}}",t="{{ target }}",s="{{ service }}",i="{{ ingress }}",a="{{ route }}",r="{{ variables.route }}"}[{{ interval }}]))"#;
        assert_eq!(
            render(q, &vars(&v)).unwrap(),
            r#"sum(rate(x{ns="shop",c="web",t="web-app",s="web-svc",i="",a="podinfo",r="/api"}[30s]))"#
        );
        let q = r#"x{pod=~"{{ canary_pods }}"} / x{pod=~"{{ stable_pods }}"}"#;
        assert_eq!(
            render(q, &vars(&v)).unwrap(),
            r#"x{pod=~"db-3|db-4"} / x{pod=~"db-0|db-1|db-2"}"#
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
                "{{ printf \"%s\" nope }}",
                "uses the unknown variable nope in {{ printf",
            ),
            ("{{ printf \"%d\" name }}", "the verb %d is not supported"),
            ("{{ printf \"%s %s\" name }}", "2 verbs and 1 arguments"),
            ("{{ printf name }}", "needs a quoted format first"),
            ("{{ printf \"%s }}", "not closed"),
            (
                "{{ printf \"%s\" (name) }}",
                "not a variable or a quoted string",
            ),
            (
                "{{ index . \"x\" }}",
                "fledge supports printf and no other template function",
            ),
            ("{{ .namespace }}", "without the dot"),
            ("{{ namespace | html }}", "template function"),
            ("{{ }}", "empty"),
            ("x{{ namespace", "unclosed {{ on line 1"),
            ("a\nb {{ name", "unclosed {{ on line 2"),
        ] {
            let err = render(q, &vars(&v)).unwrap_err();
            assert!(err.contains(words), "{q}: {err}");
        }
    }

    #[test]
    fn printf_formats_variables_and_quoted_strings_as_go_does() {
        let v = BTreeMap::from([("zone".to_string(), "eu-1".to_string())]);
        let vars = TemplateVars {
            namespace: "shop",
            ingress: "podinfo",
            service: "podinfo",
            ..vars(&v)
        };
        // Flagger's Skipper template.
        let q = r#"{{ printf "kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?" namespace ingress service }}"#;
        assert_eq!(
            render(q, &vars).unwrap(),
            "kube(ew)?_shop__podinfo_canary__.*__podinfo_canary(_[0-9]+)?"
        );
        assert_eq!(
            render(
                r#"a{{- printf "%v/%q/%s%%" variables.zone "x\"y" "z" -}} b"#,
                &vars
            )
            .unwrap(),
            "aeu-1/\"x\\\"y\"/z%b"
        );
    }
}
