//! What a webhook call asks for, read from its `metadata` as Flagger's load tester reads it:
//! `type` (default `cmd`), `cmd`, `logCmdOutput`, `returnCmdOutput`; plus fledge's native
//! `type: load`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::plan::{HttpVersion, Model, Plan, Target};

/// How a task runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the background, one per canary and command (`cmd`, `load`): the call answers 202.
    Background,
    /// While the call waits (`bash`): 200 when it ends, with its output if `returnCmdOutput`.
    Blocking,
}

/// The work of a task.
#[derive(Clone, Debug)]
pub enum Work {
    /// A plan for the native engine.
    Load(Box<Plan>),
    /// A command for a shell, only with `--allow-commands`.
    Shell {
        /// `sh` (type `cmd`) or `bash` (type `bash`), as Flagger runs them.
        program: &'static str,
    },
}

/// One task asked for by a webhook call.
#[derive(Clone, Debug)]
pub struct Task {
    /// The text that identifies the task for deduplication: the command line, or the native
    /// fields in a canonical order.
    pub command: String,
    /// What to run.
    pub work: Work,
    /// How.
    pub mode: Mode,
    /// Log the summary (or the command's output) when it ends.
    pub log_output: bool,
    /// Answer with the summary (blocking tasks only, as in Flagger).
    pub return_output: bool,
}

/// Metadata keys of every type.
const COMMON: [&str; 3] = ["type", "logCmdOutput", "returnCmdOutput"];
/// Metadata keys of `type: load`.
const LOAD_FIELDS: [&str; 12] = [
    "url",
    "urls",
    "rate",
    "concurrency",
    "duration",
    "requests",
    "method",
    "headers",
    "body",
    "host",
    "timeout",
    "http2",
];

/// Reads a task from webhook metadata. `Err` is the reason for a 400 answer.
pub fn parse(metadata: &BTreeMap<String, String>, allow_commands: bool) -> Result<Task, String> {
    let typ = metadata.get("type").map_or("cmd", String::as_str);
    // Flagger reads these with Go's ParseBool and takes anything else as false.
    let flag = |k: &str| {
        matches!(
            metadata.get(k).map(String::as_str),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    };
    let (log_output, return_output) = (flag("logCmdOutput"), flag("returnCmdOutput"));
    let mode = match typ {
        "cmd" | "load" => Mode::Background,
        "bash" => Mode::Blocking,
        "helm" | "helmv3" | "kubectl" | "concord" | "ngrinder" => {
            return Err(format!(
                "task type {typ} is not supported by fledge-loadgen (it runs hey command lines \
                 and type load natively, and other commands of types cmd and bash only when \
                 started with --allow-commands)"
            ));
        }
        other => return Err(format!("unknown task type {other}")),
    };
    if typ == "load" {
        let plan = parse_load(metadata)?;
        let command = LOAD_FIELDS
            .iter()
            .filter_map(|k| metadata.get(*k).map(|v| format!("{k}={v:?}")))
            .collect::<Vec<_>>()
            .join(" ");
        return Ok(Task {
            command,
            work: Work::Load(Box::new(plan)),
            mode,
            log_output,
            return_output,
        });
    }
    let command = metadata
        .get("cmd")
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or("cmd not found in metadata")?;
    let work = if crate::hey::is_hey(&command) {
        Work::Load(Box::new(
            crate::hey::parse_command(&command).map_err(|e| format!("hey command: {e}"))?,
        ))
    } else if allow_commands {
        Work::Shell {
            program: if typ == "bash" { "bash" } else { "sh" },
        }
    } else {
        return Err(format!(
            "the command is not a hey command line, and running other commands is off \
             (start fledge-loadgen serve with --allow-commands to run them in a shell): {}",
            first_word(&command)
        ));
    };
    Ok(Task {
        command,
        work,
        mode,
        log_output,
        return_output,
    })
}

fn first_word(command: &str) -> String {
    let w = command.split_whitespace().next().unwrap_or("");
    format!("{w:?} is not hey")
}

/// The native form: `url` (or `urls`, one `URL [weight]` per line), `rate` (total requests
/// per second, or `max` for a closed loop), `concurrency` (default 1), `duration` and/or
/// `requests` (at least one), `method`, `headers` (one `Name: value` per line), `body`,
/// `host`, `timeout` (default `10s`, `0` for none), `http2`.
fn parse_load(m: &BTreeMap<String, String>) -> Result<Plan, String> {
    if let Some(k) = m
        .keys()
        .find(|k| !LOAD_FIELDS.contains(&k.as_str()) && !COMMON.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {k:?} for type load (fields: {})",
            LOAD_FIELDS.join(", ")
        ));
    }
    let get = |k: &str| m.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut targets = Vec::new();
    if let Some(url) = get("url") {
        targets.push(Target::parse(url, 1).map_err(|e| e.to_string())?);
    }
    if let Some(urls) = get("urls") {
        for line in urls.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.split_whitespace();
            let url = parts.next().unwrap_or_default();
            let weight = match parts.next() {
                None => 1,
                Some(w) => w
                    .parse()
                    .map_err(|_| format!("urls: invalid weight {w:?} of {url}"))?,
            };
            if let Some(extra) = parts.next() {
                return Err(format!("urls: unexpected {extra:?} after {url} {weight}"));
            }
            targets.push(Target::parse(url, weight).map_err(|e| e.to_string())?);
        }
    }
    if targets.is_empty() {
        return Err("type load needs url (or urls)".into());
    }
    let model = match get("rate") {
        None => {
            return Err(
                "type load needs rate: total requests per second, or \"max\" for as fast as \
                 the workers go"
                    .into(),
            );
        }
        Some("max") => Model::ClosedLoop,
        Some(r) => Model::OpenLoop {
            rate: r.parse().map_err(|_| {
                format!("rate: a number of requests per second or \"max\", not {r:?}")
            })?,
        },
    };
    let number = |k: &str| -> Result<Option<u64>, String> {
        get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{k}: a whole number, not {v:?}"))
            })
            .transpose()
    };
    let dur = |k: &str| -> Result<Option<Duration>, String> {
        get(k)
            .map(|v| fledge_api::parse_duration(v).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let mut plan = Plan {
        targets,
        method: match get("method") {
            Some(v) => Method::from_bytes(v.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("method: invalid method {v:?}"))?,
            None => Method::GET,
        },
        headers: Default::default(),
        host: get("host").map(str::to_string),
        body: Bytes::from(m.get("body").cloned().unwrap_or_default()),
        concurrency: number("concurrency")?.unwrap_or(1) as usize,
        model,
        requests: number("requests")?,
        duration: dur("duration")?,
        timeout: match dur("timeout")? {
            None => Some(Duration::from_secs(10)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        },
        http: match get("http2") {
            None | Some("false") => HttpVersion::Http1,
            Some("true") => HttpVersion::Http2,
            Some(v) => return Err(format!("http2: true or false, not {v:?}")),
        },
        keepalive: true,
        tls: Default::default(),
    };
    if let Some(headers) = m.get("headers") {
        for line in headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
            plan.add_header_line(line)
                .map_err(|e| format!("headers: {e}"))?;
        }
    }
    plan.check().map_err(|e| e.to_string())?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cmd_is_the_default_type_and_hey_runs_natively() {
        let t = parse(
            &meta(&[(
                "cmd",
                "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/",
            )]),
            false,
        )
        .unwrap();
        assert_eq!(t.mode, Mode::Background);
        assert_eq!(
            t.command,
            "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
        );
        assert!(matches!(t.work, Work::Load(ref p) if p.concurrency == 2));
        assert!(!t.log_output && !t.return_output);
    }

    #[test]
    fn flaggers_flags_and_types() {
        let t = parse(
            &meta(&[
                ("type", "bash"),
                ("cmd", "hey -n 10 -c 1 http://x/"),
                ("logCmdOutput", "true"),
                ("returnCmdOutput", "1"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(t.mode, Mode::Blocking);
        assert!(t.log_output && t.return_output);
        // Go's ParseBool: anything else is false.
        let t = parse(
            &meta(&[("cmd", "hey -n 10 -c 1 http://x/"), ("logCmdOutput", "yes")]),
            false,
        )
        .unwrap();
        assert!(!t.log_output);
    }

    #[test]
    fn other_commands_need_the_explicit_flag() {
        let curl = meta(&[
            ("type", "bash"),
            (
                "cmd",
                "curl -sd 'test' http://podinfo-canary:9898/token | grep token",
            ),
        ]);
        let err = parse(&curl, false).unwrap_err();
        assert!(
            err.contains("--allow-commands") && err.contains("\"curl\""),
            "{err}"
        );
        let t = parse(&curl, true).unwrap();
        assert!(matches!(t.work, Work::Shell { program: "bash" }));
        let t = parse(&meta(&[("cmd", "echo hi")]), true).unwrap();
        assert!(matches!(t.work, Work::Shell { program: "sh" }));
        // A hey line is never handed to a shell, even when commands are allowed.
        let t = parse(&meta(&[("cmd", "hey -n 1 -c 1 http://x/")]), true).unwrap();
        assert!(matches!(t.work, Work::Load(_)));
        let err = parse(&meta(&[("cmd", "hey -z 1m http://x/ | tee x")]), true).unwrap_err();
        assert!(err.contains("pipe"), "{err}");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            parse(&meta(&[("type", "cmd")]), false).unwrap_err(),
            "cmd not found in metadata"
        );
        assert_eq!(
            parse(&meta(&[("type", "nope")]), false).unwrap_err(),
            "unknown task type nope"
        );
        assert!(
            parse(&meta(&[("type", "helm"), ("cmd", "test x")]), true)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            parse(&meta(&[("cmd", "hey -z 1m -x p:1 http://x/")]), false)
                .unwrap_err()
                .contains("proxy")
        );
    }

    #[test]
    fn the_native_form() {
        let t = parse(
            &meta(&[
                ("type", "load"),
                ("urls", "http://a.test/ 3\nhttp://b.test/x\n"),
                ("rate", "50"),
                ("concurrency", "4"),
                ("duration", "2m"),
                ("method", "post"),
                (
                    "headers",
                    "X-Canary: insider\nContent-Type: application/json",
                ),
                ("body", "{\"a\":1}"),
                ("host", "app.example.com"),
                ("timeout", "0"),
                ("http2", "true"),
            ]),
            false,
        )
        .unwrap();
        let Work::Load(p) = t.work else {
            panic!("not a load")
        };
        assert_eq!(p.targets.len(), 2);
        assert_eq!((p.targets[0].weight, p.targets[1].weight), (3, 1));
        assert_eq!(p.model, Model::OpenLoop { rate: 50.0 });
        assert_eq!(p.concurrency, 4);
        assert_eq!(p.duration, Some(Duration::from_secs(120)));
        assert_eq!(p.requests, None);
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.headers["x-canary"], "insider");
        assert_eq!(p.body, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(p.host.as_deref(), Some("app.example.com"));
        assert_eq!(p.timeout, None);
        assert_eq!(p.http, HttpVersion::Http2);
        assert_eq!(t.mode, Mode::Background);
        assert!(t.command.contains("rate=\"50\""), "{}", t.command);

        let t = parse(
            &meta(&[
                ("type", "load"),
                ("url", "http://a/"),
                ("rate", "max"),
                ("requests", "5"),
            ]),
            false,
        )
        .unwrap();
        let Work::Load(p) = t.work else {
            panic!("not a load")
        };
        assert_eq!(
            (p.model, p.requests, p.concurrency),
            (Model::ClosedLoop, Some(5), 1)
        );
        assert_eq!(p.timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn native_form_refusals() {
        for (pairs, why) in [
            (vec![("rate", "5"), ("duration", "1m")], "needs url"),
            (vec![("url", "http://a/"), ("duration", "1m")], "needs rate"),
            (vec![("url", "http://a/"), ("rate", "5")], "unbounded"),
            (
                vec![("url", "http://a/"), ("rate", "fast"), ("duration", "1m")],
                "rate:",
            ),
            (
                vec![("url", "http://a/"), ("rate", "5"), ("duration", "soon")],
                "duration:",
            ),
            (
                vec![("url", "http://a/"), ("rate", "5"), ("requests", "-1")],
                "requests:",
            ),
            (
                vec![
                    ("url", "http://a/"),
                    ("rate", "5"),
                    ("requests", "1"),
                    ("rps", "3"),
                ],
                "unknown field \"rps\"",
            ),
            (
                vec![
                    ("urls", "http://a/ heavy"),
                    ("rate", "5"),
                    ("requests", "1"),
                ],
                "invalid weight",
            ),
            (
                vec![
                    ("url", "http://a/"),
                    ("rate", "5"),
                    ("requests", "1"),
                    ("headers", "broken"),
                ],
                "headers:",
            ),
            (
                vec![
                    ("url", "http://a/"),
                    ("rate", "5"),
                    ("requests", "1"),
                    ("http2", "yes"),
                ],
                "http2:",
            ),
            (
                vec![
                    ("url", "http://a/"),
                    ("rate", "5"),
                    ("requests", "1"),
                    ("concurrency", "0"),
                ],
                "concurrency",
            ),
        ] {
            let mut m = meta(&pairs);
            m.insert("type".into(), "load".into());
            let err = parse(&m, false).unwrap_err();
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
    }
}
