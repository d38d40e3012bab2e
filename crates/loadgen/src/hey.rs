//! `hey` command lines, as Flagger's load tester runs them, turned into load plans for the
//! native engine: no shell and no subprocess.
//!
//! The line is split into words the way `sh` would for plain words, single quotes, double
//! quotes and backslashes; anything that would make `sh` do more than run one command
//! (pipes, `;`, `&&`, redirections, `$` expansions, backquotes, globs at a word's start, new
//! lines) is refused with the reason. The words are then read as Go's `flag` package reads
//! hey's flags: `-flag value`, `-flag=value`, `--flag`, booleans without a value, flags
//! before the URL.
//!
//! Differences from hey, each deliberate: `-n` is the exact total (hey sends `n / c` per
//! worker, dropping the remainder); `-q` paces an open loop at `q` per worker with latency
//! measured from the due time (hey's ticker skips the ticks a slow server makes it miss);
//! redirects are not followed and compression is never asked for (so
//! `-disable-redirects` and `-disable-compression` change nothing); `-cpus` is ignored (the
//! service shares one runtime). `-o csv`, `-x` (proxy) and `-D` (body from a file of the
//! service's disk) are refused.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::error::{Error, invalid};
use crate::plan::{HttpVersion, Model, Plan, Target};

/// hey's default number of requests without `-z`.
const DEFAULT_REQUESTS: u64 = 200;
/// hey's default number of workers.
const DEFAULT_WORKERS: usize = 50;
/// hey's default request timeout, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 20;

/// Splits a command line into words as `sh` would, refusing shell syntax that would do more
/// than run one command with literal arguments.
pub fn split_words(line: &str) -> Result<Vec<String>, Error> {
    let refuse = |what: &str| {
        invalid(format!(
            "the command uses shell syntax ({what}); only a single hey command with literal \
             arguments runs natively"
        ))
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\n' | '\r' => return Err(refuse("a new line")),
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(invalid("unterminated single quote in the command")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => {
                                return Err(invalid("unterminated double quote in the command"));
                            }
                        },
                        Some('$') => return Err(refuse("$ expansion")),
                        Some('`') => return Err(refuse("a backquote")),
                        Some(c) => word.push(c),
                        None => return Err(invalid("unterminated double quote in the command")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(invalid("the command ends with a backslash")),
                }
            }
            '|' => return Err(refuse("a pipe")),
            '&' => return Err(refuse("&")),
            ';' => return Err(refuse(";")),
            '<' | '>' => return Err(refuse("a redirection")),
            '(' | ')' => return Err(refuse("parentheses")),
            '$' => return Err(refuse("$ expansion")),
            '`' => return Err(refuse("a backquote")),
            '#' | '~' if !in_word => return Err(refuse(&format!("{c} at the start of a word"))),
            '*' | '?' | '[' if !in_word => {
                return Err(refuse(&format!("the glob {c} at the start of a word")));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether `line` names `hey` as its command (`hey …` or `/path/to/hey …`).
pub fn is_hey(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    first == "hey" || first.ends_with("/hey")
}

/// Parses a whole `hey` command line into a plan.
pub fn parse_command(line: &str) -> Result<Plan, Error> {
    let words = split_words(line)?;
    let Some((cmd, args)) = words.split_first() else {
        return Err(invalid("the command is empty"));
    };
    if cmd != "hey" && !cmd.ends_with("/hey") {
        return Err(invalid(format!(
            "{cmd:?} is not hey: only hey command lines run natively"
        )));
    }
    parse_args(args)
}

/// Flags of hey that take a value.
const VALUE_FLAGS: [&str; 16] = [
    "n", "c", "q", "z", "o", "m", "H", "t", "A", "d", "D", "T", "a", "x", "host", "cpus",
];
/// Flags of hey that are booleans.
const BOOL_FLAGS: [&str; 4] = [
    "h2",
    "disable-compression",
    "disable-keepalive",
    "disable-redirects",
];

/// Parses hey's arguments (without the command name).
pub fn parse_args(args: &[String]) -> Result<Plan, Error> {
    let mut n: Option<u64> = None;
    let mut c: Option<usize> = None;
    let mut q: Option<f64> = None;
    let mut z: Option<Duration> = None;
    let mut method = Method::GET;
    let mut headers: Vec<String> = Vec::new();
    let mut timeout_secs = DEFAULT_TIMEOUT_SECS;
    let mut accept: Option<String> = None;
    let mut body = String::new();
    let mut content_type = "text/html".to_string();
    let mut basic: Option<String> = None;
    let mut host: Option<String> = None;
    let mut h2 = false;
    let mut keepalive = true;

    let mut rest = args.iter().peekable();
    let mut positional = Vec::new();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            positional.extend(rest.by_ref().cloned());
            break;
        }
        let Some(flag) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|f| !f.is_empty() && !positional_started(&positional))
        else {
            positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (flag, None),
        };
        if BOOL_FLAGS.contains(&name) {
            let on = match inline.as_deref() {
                None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
                Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
                Some(v) => return Err(invalid(format!("-{name}: invalid boolean {v:?}"))),
            };
            match name {
                "h2" => h2 = on,
                "disable-keepalive" => keepalive = !on,
                // Never asked for / never followed by the engine.
                _ => {}
            }
            continue;
        }
        if !VALUE_FLAGS.contains(&name) {
            return Err(invalid(format!("hey has no flag -{name}")));
        }
        let value = match inline {
            Some(v) => v,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| invalid(format!("flag -{name} needs a value")))?,
        };
        let num = |what: &str| -> Result<u64, Error> {
            value
                .parse()
                .map_err(|_| invalid(format!("-{name}: {what} expected, not {value:?}")))
        };
        match name {
            "n" => n = Some(num("a number of requests")?),
            "c" => c = Some(num("a number of workers")? as usize),
            "q" => {
                let rate: f64 = value.parse().map_err(|_| {
                    invalid(format!("-q: a rate per second expected, not {value:?}"))
                })?;
                if rate < 0.0 || !rate.is_finite() {
                    return Err(invalid(format!("-q: invalid rate {value:?}")));
                }
                q = (rate > 0.0).then_some(rate);
            }
            "z" => {
                z = Some(
                    fledge_api::parse_duration(&value).map_err(|e| invalid(format!("-z: {e}")))?,
                )
            }
            "m" => {
                method = Method::from_bytes(value.to_ascii_uppercase().as_bytes())
                    .map_err(|_| invalid(format!("-m: invalid method {value:?}")))?
            }
            "H" => headers.push(value),
            "t" => timeout_secs = num("a timeout in seconds")?,
            "A" => accept = Some(value),
            "d" => body = value,
            "T" => content_type = value,
            "a" => {
                if !value.contains(':') {
                    return Err(invalid("-a: expected username:password"));
                }
                basic = Some(value);
            }
            "host" => host = Some(value),
            "cpus" => {
                num("a number of CPUs")?;
            }
            "o" => {
                return Err(Error::Unsupported {
                    flag: format!("-o {value}"),
                    why: "the summary is the only output",
                });
            }
            "x" => {
                return Err(Error::Unsupported {
                    flag: "-x".into(),
                    why: "requests go to the target directly, not through a proxy",
                });
            }
            "D" => {
                return Err(Error::Unsupported {
                    flag: "-D".into(),
                    why: "a body is never read from a file of the load generator's disk; use -d",
                });
            }
            _ => return Err(invalid(format!("hey has no flag -{name}"))),
        }
    }
    let url = match positional.as_slice() {
        [] => return Err(invalid("the hey command has no URL")),
        [url] => url.clone(),
        [url, next, ..] if next.starts_with('-') => {
            return Err(invalid(format!(
                "{next} comes after the URL {url}, where hey stops reading flags; put it before \
                 the URL"
            )));
        }
        [url, extra, ..] => {
            return Err(invalid(format!(
                "the hey command has more than one URL ({url}, {extra})"
            )));
        }
    };
    let concurrency = c.unwrap_or(DEFAULT_WORKERS);
    if concurrency == 0 {
        return Err(invalid("-c must be at least 1"));
    }
    // hey: with -z the request count is ignored.
    let requests = match z {
        Some(_) => None,
        None => Some(n.unwrap_or(DEFAULT_REQUESTS)),
    };
    if let Some(n) = requests
        && n < concurrency as u64
    {
        return Err(invalid(format!(
            "-n {n} is smaller than -c {concurrency}, which hey refuses"
        )));
    }
    let mut plan = Plan {
        targets: vec![Target::parse(&url, 1)?],
        method,
        headers: Default::default(),
        host: None,
        body: Bytes::from(body),
        concurrency,
        model: match q {
            Some(per_worker) => Model::OpenLoop {
                rate: per_worker * concurrency as f64,
            },
            None => Model::ClosedLoop,
        },
        requests,
        duration: z,
        timeout: (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs)),
        http: if h2 {
            HttpVersion::Http2
        } else {
            HttpVersion::Http1
        },
        keepalive,
        tls: Default::default(),
    };
    let header_value = |v: &str, what: &str| {
        HeaderValue::from_str(v).map_err(|_| invalid(format!("{what}: invalid header value")))
    };
    plan.headers
        .insert(CONTENT_TYPE, header_value(&content_type, "-T")?);
    if let Some(a) = accept {
        plan.headers.insert(ACCEPT, header_value(&a, "-A")?);
    }
    if let Some(b) = basic {
        let token = base64::engine::general_purpose::STANDARD.encode(b);
        plan.headers.insert(
            AUTHORIZATION,
            header_value(&format!("Basic {token}"), "-a")?,
        );
    }
    for h in &headers {
        plan.add_header_line(h)
            .map_err(|e| invalid(format!("-H: {e}")))?;
    }
    // -host wins over a Host header, as in hey.
    if host.is_some() {
        plan.host = host;
    }
    plan.check()?;
    Ok(plan)
}

/// Go's flag package stops at the first non-flag argument.
fn positional_started(positional: &[String]) -> bool {
    !positional.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(line: &str) -> Plan {
        parse_command(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> String {
        parse_command(line)
            .err()
            .unwrap_or_else(|| panic!("{line} was accepted"))
            .to_string()
    }

    #[test]
    fn the_line_flaggers_docs_use_most() {
        let p = plan("hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/");
        assert_eq!(p.duration, Some(Duration::from_secs(60)));
        assert_eq!(p.requests, None, "-z makes hey ignore -n");
        assert_eq!(p.concurrency, 2);
        assert_eq!(p.model, Model::OpenLoop { rate: 20.0 }, "-q is per worker");
        assert_eq!(p.method, Method::GET);
        assert_eq!(p.http, HttpVersion::Http1);
        assert_eq!(p.timeout, Some(Duration::from_secs(20)));
        assert!(p.keepalive);
        assert_eq!(p.headers[CONTENT_TYPE], "text/html", "hey's default -T");
        let t = &p.targets[0];
        assert_eq!((t.host.as_str(), t.port), ("podinfo-canary.test", 9898));
    }

    #[test]
    fn every_flag_in_flaggers_docs() {
        let p = plan(
            "hey -z 2m -q 10 -c 2 -host www.example.com -H 'X-Canary: insider' \
             -H 'Cookie: type=insider' http://gateway-istio.istio-ingress/status/500",
        );
        assert_eq!(p.host.as_deref(), Some("www.example.com"));
        assert_eq!(p.headers["x-canary"], "insider");
        assert_eq!(p.headers["cookie"], "type=insider");
        assert_eq!(p.targets[0].path_and_query, "/status/500");

        let p = plan(
            "hey -z 1m -q 10 -c 2 -m POST -d '{test: 2}' http://podinfo-canary.test:9898/echo",
        );
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.body, Bytes::from_static(b"{test: 2}"));

        let p = plan("hey -z 1m -q 10 -c 2 -h2 https://podinfo.example.com/");
        assert_eq!(p.http, HttpVersion::Http2);
        assert!(p.targets[0].https);

        let p = plan("hey -z 1m -c 5 -q 5 http://app.example.com/status/500");
        assert_eq!(p.model, Model::OpenLoop { rate: 25.0 });
        assert_eq!(p.concurrency, 5);

        let p = plan("hey -z 10m -q 10 -c 2 http://podinfo.test/");
        assert_eq!(p.duration, Some(Duration::from_secs(600)));
    }

    #[test]
    fn the_rest_of_heys_flags() {
        let p = plan(
            "/usr/local/bin/hey -n 30 -c 3 -t 5 -A application/json -T application/json \
             -a user:secret -disable-keepalive -disable-compression -disable-redirects -cpus 2 \
             -m put http://127.0.0.1:8080/x",
        );
        assert_eq!(p.requests, Some(30));
        assert_eq!(p.duration, None);
        assert_eq!(p.model, Model::ClosedLoop);
        assert_eq!(p.timeout, Some(Duration::from_secs(5)));
        assert_eq!(p.headers[ACCEPT], "application/json");
        assert_eq!(p.headers[CONTENT_TYPE], "application/json");
        assert_eq!(p.headers[AUTHORIZATION], "Basic dXNlcjpzZWNyZXQ=");
        assert!(!p.keepalive);
        assert_eq!(p.method, Method::PUT);

        // hey's defaults: 200 requests, 50 workers; -t 0 waits forever.
        let p = plan("hey -t 0 http://x/");
        assert_eq!((p.requests, p.concurrency), (Some(200), 50));
        assert_eq!(p.timeout, None);

        // Go flag syntax: --flag, -flag=value, -bool=false.
        let p = plan("hey --z=30s -c=4 --q 2.5 -h2=false -H=\"X-A: b c\" http://x/");
        assert_eq!(p.duration, Some(Duration::from_secs(30)));
        assert_eq!(p.model, Model::OpenLoop { rate: 10.0 });
        assert_eq!(p.http, HttpVersion::Http1);
        assert_eq!(p.headers["x-a"], "b c");
        // A Host header sets the host, and -host wins over it.
        let p = plan("hey -n 1 -c 1 -H 'Host: a.test' http://x/");
        assert_eq!(p.host.as_deref(), Some("a.test"));
        let p = plan("hey -n 1 -c 1 -host b.test -H 'Host: a.test' http://x/");
        assert_eq!(p.host.as_deref(), Some("b.test"));
        // -q 0 is hey's "no limit".
        assert_eq!(
            plan("hey -n 1 -c 1 -q 0 http://x/").model,
            Model::ClosedLoop
        );
    }

    #[test]
    fn quoting_as_sh_does() {
        assert_eq!(
            split_words(r#"hey -H "X-A: \"q\" \$" -d 'it''s' a\ b"#).unwrap(),
            ["hey", "-H", "X-A: \"q\" $", "-d", "its", "a b"]
        );
        // Unmatched globs stay literal in sh: a query string needs no quotes.
        assert_eq!(
            split_words("hey http://x/?a=1&").unwrap_err().to_string(),
            "the command uses shell syntax (&); only a single hey command with literal \
             arguments runs natively"
        );
        assert_eq!(
            split_words("hey http://x/?a=1").unwrap()[1],
            "http://x/?a=1"
        );
    }

    #[test]
    fn shell_syntax_is_refused_with_the_reason() {
        for (line, why) in [
            ("hey -z 1m http://x/ | tee out", "a pipe"),
            ("hey -z 1m http://x/; rm -rf /", ";"),
            ("hey -z 1m http://x/ && curl y", "&"),
            ("hey -z 1m http://x/ > /tmp/out", "redirection"),
            ("hey -z $DURATION http://x/", "$ expansion"),
            ("hey -z \"$D\" http://x/", "$ expansion"),
            ("hey -z `echo 1m` http://x/", "backquote"),
            ("hey -z 1m $(echo http://x/)", "$ expansion"),
            ("hey -z 1m http://x/\nrm x", "new line"),
            ("hey -z 1m ~/urls", "~"),
            ("hey -z 1m *", "glob"),
        ] {
            let e = err(line);
            assert!(e.contains(why), "{line:?}: {e}");
        }
        assert!(err("hey -d 'open http://x/").contains("unterminated single quote"));
    }

    #[test]
    fn not_hey_or_bad_flags() {
        assert!(err("curl -sd 'test' http://podinfo-canary:9898/token").contains("is not hey"));
        assert!(err("").contains("empty"));
        assert!(err("hey -z 1m").contains("no URL"));
        assert!(err("hey -z 1m http://a/ http://b/").contains("more than one URL"));
        assert!(err("hey http://a/ -z 1m").contains("put it before the URL"));
        assert!(err("hey -w 3 http://a/").contains("no flag -w"));
        assert!(err("hey -z http://a/").contains("-z: \"http://a/\" is not a duration"));
        assert!(err("hey -z 1m -c").contains("needs a value"));
        assert!(err("hey -n 1 -c 2 http://a/").contains("smaller than -c"));
        assert!(err("hey -z 1m -q fast http://a/").contains("rate"));
        assert!(err("hey -z 1m -H nocolon http://a/").contains("-H"));
        assert!(err("hey -z 1m -o csv http://a/").contains("not supported"));
        assert!(err("hey -z 1m -x proxy:3128 http://a/").contains("proxy"));
        assert!(err("hey -z 1m -D /etc/passwd -m POST http://a/").contains("-D"));
        assert!(err("hey -z 1m -m 'GE T' http://a/").contains("invalid method"));
        assert!(err("hey -z 1m -a nopassword http://a/").contains("username:password"));
        assert!(err("hey -z 1m podinfo:9898").contains("not absolute"));
        assert!(err("hey -z 1m -c 0 http://a/").contains("at least 1"));
        assert!(err("hey -z 1m -h2=maybe http://a/").contains("invalid boolean"));
    }

    #[test]
    fn recognises_hey_lines() {
        assert!(is_hey("hey -z 1m http://x/"));
        assert!(is_hey("  /bin/hey http://x/"));
        assert!(!is_hey("heyho http://x/"));
        assert!(!is_hey("curl http://x/"));
    }
}
