//! Posting one body to one destination: a timeout per attempt, retries with exponential
//! backoff (`backon`) on connection failures, 5xx and 429 (waiting as `Retry-After` asks, up to
//! a bound), no retry on other 4xx nor on a timeout (the provider may have posted the message:
//! a retry could post it twice). Errors never carry the URL: a webhook URL is a secret.

use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::Url;
use serde_json::Value;

/// Where a message goes. The URL and token are secrets: `Debug` shows only scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URL posted to.
    pub url: Url,
    /// The HTTP(S) proxy, if any.
    pub proxy: Option<Url>,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("url", &redact_url(self.url.as_str()))
            .field(
                "proxy",
                &self.proxy.as_ref().map(|p| redact_url(p.as_str())),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How hard delivery tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` waited for; a provider asking for more gets no retry.
    pub max_retry_after: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            timeout: Duration::from_secs(10),
            retries: 3,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Why a message was not delivered. Never contains the URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No answer within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection could not be made.
    #[error("could not connect")]
    Connect,
    /// The provider answered with an error status.
    #[error("answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// Its `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider asked to wait longer than the controller waits.
    #[error("rate limited: Retry-After {0:?} is longer than the controller waits")]
    RetryAfterTooLong(Duration),
    /// Anything else (the request could not be built or sent).
    #[error("failed: {0}")]
    Other(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed and cannot post the message twice.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Connect => true,
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A label for the `/metrics` counter of failed alerts.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::Timeout(_) => "timeout",
            DeliveryError::Connect => "connect",
            DeliveryError::Status { status: 429, .. } | DeliveryError::RetryAfterTooLong(_) => {
                "rate_limited"
            }
            DeliveryError::Status { status, .. } if *status >= 500 => "server_error",
            DeliveryError::Status { .. } => "client_error",
            DeliveryError::Other(_) => "other",
        }
    }
}

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Requests sent.
    pub attempts: u32,
    /// The waits before each retry, in order (the backoff's, or `Retry-After`).
    pub waits: Vec<Duration>,
    /// The outcome.
    pub result: Result<(), DeliveryError>,
}

/// Posts `body` as JSON to `dest` with `http` (a client for `dest`'s proxy).
pub async fn deliver(
    http: &reqwest::Client,
    dest: &Destination,
    body: &Value,
    policy: &DeliveryPolicy,
) -> Report {
    let attempts = Mutex::new(0u32);
    let waits = Mutex::new(Vec::new());
    let attempt = || async {
        *attempts.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        send(http, dest, body, policy.timeout).await
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.retries);
    let max_wait = policy.max_retry_after;
    let result = attempt
        .retry(backoff)
        .when(DeliveryError::retryable)
        .adjust(|e, delay| match e {
            DeliveryError::Status {
                retry_after: Some(asked),
                ..
            } => (*asked <= max_wait).then_some(*asked),
            _ => delay,
        })
        .notify(|_, d| waits.lock().unwrap_or_else(|e| e.into_inner()).push(d))
        .await
        .map_err(|e| match e {
            DeliveryError::Status {
                retry_after: Some(asked),
                ..
            } if asked > max_wait => DeliveryError::RetryAfterTooLong(asked),
            e => e,
        });
    Report {
        attempts: attempts.into_inner().unwrap_or_else(|e| e.into_inner()),
        waits: waits.into_inner().unwrap_or_else(|e| e.into_inner()),
        result,
    }
}

async fn send(
    http: &reqwest::Client,
    dest: &Destination,
    body: &Value,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let mut req = http.post(dest.url.clone()).timeout(timeout).json(body);
    if let Some(token) = &dest.token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            DeliveryError::Timeout(timeout)
        } else if e.is_connect() {
            DeliveryError::Connect
        } else {
            DeliveryError::Other(e.without_url().to_string())
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
    Err(DeliveryError::Status {
        status: status.as_u16(),
        retry_after,
    })
}

/// Reads `Retry-After`: seconds, or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let ms = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Only the scheme and host of a URL (webhook URLs carry their key in the path, the query or
/// the user info), for logs and Events. A URL that does not parse shows its scheme alone: where
/// its host ends cannot be told safely.
pub fn redact_url(value: &str) -> String {
    if let Ok(u) = Url::parse(value.trim()) {
        return match u.host_str() {
            Some(h) => format!("{}://{h}", u.scheme()),
            None => format!("{}:", u.scheme()),
        };
    }
    match value.trim().split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme.len() <= 16
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!("{scheme}://(invalid host)")
        }
        _ => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn urls_show_only_scheme_and_host() {
        let secret = "T000/B000/XXXXSECRET";
        for (url, shown) in [
            (
                format!("https://hooks.slack.com/services/{secret}"),
                "https://hooks.slack.com",
            ),
            (
                format!("https://user:pw@chat.example.com/hook?token={secret}"),
                "https://chat.example.com",
            ),
            (
                format!("https://user:{secret}@chat.example.com/hook"),
                "https://(invalid host)",
            ),
            (
                format!("https://hooks slack.com/services/{secret}"),
                "https://(invalid host)",
            ),
            (
                format!("https://u:{secret}@bad host/x"),
                "https://(invalid host)",
            ),
            (format!("hooks.slack.com/services/{secret}"), "(not a URL)"),
        ] {
            let r = redact_url(&url);
            assert_eq!(r, shown);
            assert!(!r.contains(secret));
        }
        let d = Destination {
            url: Url::parse(&format!("https://hooks.slack.com/services/{secret}")).unwrap(),
            proxy: None,
            token: Some(secret.into()),
        };
        assert!(!format!("{d:?}").contains(secret));
    }

    #[test]
    fn only_failures_that_cannot_double_post_are_retried() {
        let status = |s| DeliveryError::Status {
            status: s,
            retry_after: None,
        };
        assert!(status(500).retryable());
        assert!(status(503).retryable());
        assert!(status(429).retryable());
        assert!(!status(400).retryable());
        assert!(!status(404).retryable());
        assert!(DeliveryError::Connect.retryable());
        assert!(!DeliveryError::Timeout(Duration::from_secs(1)).retryable());
        assert_eq!(status(429).label(), "rate_limited");
        assert_eq!(status(502).label(), "server_error");
        assert_eq!(status(403).label(), "client_error");
    }
}
