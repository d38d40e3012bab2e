//! What a run measured: latencies in an HDR histogram, status codes, error kinds, and the
//! summary printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly, in microseconds (one hour); longer ones count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a request got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection or the HTTP handshake failed (refused, unreachable, name unknown).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No full answer within the request timeout.
    Timeout,
    /// The server closed the connection before answering.
    Closed,
    /// The answer was not valid HTTP, or the request could not be written.
    Protocol,
    /// Reading the response body failed.
    Body,
}

impl ErrorKind {
    /// Every kind, for metrics.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Body,
    ];

    /// The kind as a label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Body => "body",
        }
    }
}

/// The figures of one run (or of one worker, merged at the end).
#[derive(Clone, Debug)]
pub struct Report {
    /// Latency of every answered request, in microseconds, from the time the request was due
    /// (open loop) or sent (closed loop) to the end of its body.
    pub latency_us: Histogram<u64>,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests per target (the plan's order), answered or not.
    pub per_target: Vec<u64>,
    /// Response body bytes read.
    pub body_bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The run was cancelled before its bound.
    pub cancelled: bool,
}

impl Report {
    /// An empty report for `targets` targets.
    pub fn new(targets: usize) -> Report {
        Report {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            per_target: vec![0; targets],
            body_bytes: 0,
            elapsed: Duration::ZERO,
            cancelled: false,
        }
    }

    /// Records an answer.
    pub(crate) fn answered(&mut self, target: usize, status: u16, latency: Duration, bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(us);
        *self.statuses.entry(status).or_default() += 1;
        self.per_target[target] += 1;
        self.body_bytes += bytes;
    }

    /// Records a request without an answer.
    pub(crate) fn failed(&mut self, target: usize, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
        self.per_target[target] += 1;
    }

    /// Adds another worker's figures.
    pub(crate) fn merge(&mut self, other: &Report) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (a, b) in self.per_target.iter_mut().zip(&other.per_target) {
            *a += b;
        }
        self.body_bytes += other.body_bytes;
    }

    /// Requests sent, answered or not.
    pub fn requests(&self) -> u64 {
        self.answers() + self.errors.values().sum::<u64>()
    }

    /// Requests answered (any status).
    pub fn answers(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Answers with a status below 500: what Flagger's request-success-rate counts as success.
    pub fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(code, _)| **code < 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests per second over the run's wall time.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests() as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q`-quantile (0..=1) of the latency, `None` without answers.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        (!self.latency_us.is_empty())
            .then(|| Duration::from_micros(self.latency_us.value_at_quantile(q)))
    }

    /// The summary as JSON.
    pub fn to_json(&self, targets: &[String]) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let json = JsonReport {
            requests: self.requests(),
            answered: self.answers(),
            successes: self.successes(),
            success_ratio: ratio(self.successes(), self.requests()),
            elapsed_seconds: self.elapsed.as_secs_f64(),
            requests_per_second: self.rate(),
            body_bytes: self.body_bytes,
            cancelled: self.cancelled,
            latency_ms: JsonLatency {
                p50: ms(self.quantile(0.5)),
                p90: ms(self.quantile(0.9)),
                p99: ms(self.quantile(0.99)),
                p999: ms(self.quantile(0.999)),
                max: ms((!self.latency_us.is_empty())
                    .then(|| Duration::from_micros(self.latency_us.max()))),
                mean: (!self.latency_us.is_empty()).then(|| self.latency_us.mean() / 1000.0),
            },
            status_codes: self
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            targets: targets
                .iter()
                .zip(&self.per_target)
                .map(|(url, n)| JsonTarget {
                    url: url.clone(),
                    requests: *n,
                })
                .collect(),
        };
        serde_json::to_value(json).unwrap_or_default()
    }

    /// The summary as text, for a terminal or a log.
    pub fn to_text(&self, targets: &[String]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Summary:");
        let _ = writeln!(
            s,
            "  requests:   {} in {:.2}s, {:.1} req/s{}",
            self.requests(),
            self.elapsed.as_secs_f64(),
            self.rate(),
            if self.cancelled { " (cancelled)" } else { "" }
        );
        let _ = writeln!(
            s,
            "  success:    {:.2}% ({} of {} answered below 500)",
            100.0 * ratio(self.successes(), self.requests()),
            self.successes(),
            self.requests()
        );
        let _ = writeln!(s, "  body read:  {} bytes", self.body_bytes);
        if !self.latency_us.is_empty() {
            let _ = writeln!(s, "Latency:");
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
                let _ = writeln!(s, "  {name:<6} {}", fmt_duration(self.quantile(q)));
            }
            let _ = writeln!(
                s,
                "  max    {}",
                fmt_duration(Some(Duration::from_micros(self.latency_us.max())))
            );
        }
        if !self.statuses.is_empty() {
            let _ = writeln!(s, "Status codes:");
            for (code, n) in &self.statuses {
                let _ = writeln!(s, "  [{code}] {n}");
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "Errors:");
            for (kind, n) in &self.errors {
                let _ = writeln!(s, "  {:<9} {n}", kind.as_str());
            }
        }
        if targets.len() > 1 {
            let _ = writeln!(s, "Targets:");
            for (url, n) in targets.iter().zip(&self.per_target) {
                let _ = writeln!(s, "  {n:>10}  {url}");
            }
        }
        s
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A latency in the unit that suits it.
pub fn fmt_duration(d: Option<Duration>) -> String {
    match d {
        None => "-".into(),
        Some(d) if d < Duration::from_millis(1) => format!("{} µs", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.3} s", d.as_secs_f64()),
    }
}

#[derive(Serialize)]
struct JsonReport {
    requests: u64,
    answered: u64,
    successes: u64,
    success_ratio: f64,
    elapsed_seconds: f64,
    requests_per_second: f64,
    body_bytes: u64,
    cancelled: bool,
    latency_ms: JsonLatency,
    status_codes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    targets: Vec<JsonTarget>,
}

#[derive(Serialize)]
struct JsonLatency {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

#[derive(Serialize)]
struct JsonTarget {
    url: String,
    requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_summarises() {
        let mut a = Report::new(2);
        let mut b = Report::new(2);
        for i in 0..99 {
            a.answered(0, 200, Duration::from_millis(1 + i % 3), 10);
        }
        b.answered(1, 503, Duration::from_millis(500), 0);
        b.failed(1, ErrorKind::Timeout);
        a.merge(&b);
        a.elapsed = Duration::from_secs(2);
        assert_eq!(a.requests(), 101);
        assert_eq!(a.answers(), 100);
        assert_eq!(a.successes(), 99);
        assert_eq!(a.per_target, vec![99, 2]);
        assert_eq!(a.body_bytes, 990);
        assert!((a.rate() - 50.5).abs() < 1e-9);
        let p99 = a.quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_millis(3) && p99 < Duration::from_millis(4));
        let max = a.quantile(1.0).unwrap();
        assert!(max >= Duration::from_millis(499), "{max:?}");

        let urls = vec!["http://a/".to_string(), "http://b/".to_string()];
        let json = a.to_json(&urls);
        assert_eq!(json["requests"], 101);
        assert_eq!(json["status_codes"]["503"], 1);
        assert_eq!(json["errors"]["timeout"], 1);
        assert_eq!(json["targets"][1]["requests"], 2);
        let text = a.to_text(&urls);
        assert!(text.contains("[200] 99"), "{text}");
        assert!(text.contains("timeout"), "{text}");
        assert!(text.contains("p99.9"), "{text}");
    }

    #[test]
    fn empty_reports_have_no_quantiles() {
        let r = Report::new(1);
        assert_eq!(r.quantile(0.5), None);
        assert_eq!(r.to_json(&[])["latency_ms"]["p50"], serde_json::Value::Null);
        assert!(!r.to_text(&[]).contains("Latency"));
    }
}
