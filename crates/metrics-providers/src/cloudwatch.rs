//! The CloudWatch metrics provider: `GetMetricData`
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html>)
//! with the template's query as its `MetricDataQueries`, a JSON array of
//! `MetricDataQuery` objects (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDataQuery.html>)
//! written with the API's field names (`Id`, `Expression`, `MetricStat`, `ReturnData`, …; any
//! case, as Flagger reads them).
//!
//! Through the AWS SDK for Rust, so requests are signed with Signature Version 4 from the
//! standard credential chain (environment variables, web identity as EKS's IAM roles for service
//! accounts set it up, the shared config and credentials files, the container and instance
//! metadata endpoints), in the region of `spec.provider.region` (required, as in Flagger). An
//! `spec.provider.address` overrides the endpoint (a VPC endpoint, a proxy). CloudWatch reads no
//! Secret, as in Flagger.
//!
//! As in Flagger, the query covers the last ten metric intervals, asks for at most 20 points,
//! newest first, and its result is the newest value of the first result. fledge differs where
//! that is wrong: several results (more than one query with `ReturnData` left true) are a failure
//! rather than an arbitrary pick, every page of the answer is read (`NextToken`), and NaN is a
//! failure. The online check sends `GetMetricData` without queries, which CloudWatch refuses as
//! invalid once the request is authenticated (as Flagger's check does).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataError, GetMetricDataOutput};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StandardUnit, StatusCode,
};
use fledge_core::MetricOutcome;
use serde::Deserialize;
use url::Url;

use crate::http::{DEFAULT_INTERVAL, base_url, clip, whole_seconds};
use crate::{MetricsProvider, ProviderConfig};

/// How many metric intervals back the query starts, as in Flagger.
const WINDOW_INTERVALS: u64 = 10;
/// The points asked for, as in Flagger.
const MAX_DATAPOINTS: i32 = 20;
/// The most pages of one answer fledge reads.
const MAX_PAGES: usize = 10;

/// The AWS error codes of a request refused for its credentials or permissions
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CommonErrors.html>).
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "NotAuthorized",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// The AWS error codes of a throttled request.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// What the messages say about where the credentials come from.
const CREDENTIALS: &str = "fledge signs with the standard AWS credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity as IRSA sets it up, the shared config files, the instance or container role); check those credentials and that they allow cloudwatch:GetMetricData";

/// A client of the CloudWatch API in one region.
pub struct CloudWatch {
    region: String,
    endpoint: Option<Url>,
    /// Where messages say the API is.
    shown: String,
    timeout: Duration,
}

impl CloudWatch {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<CloudWatch, String> {
        let region = cfg
            .region
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                "the cloudwatch provider needs spec.provider.region, the AWS region of the metrics (e.g. us-east-1)".to_string()
            })?
            .to_string();
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "spec.provider.region {region:?} is not an AWS region name; write e.g. us-east-1"
            ));
        }
        let endpoint = match cfg.address.trim() {
            "" => None,
            a => Some(base_url(
                "cloudwatch",
                a,
                None,
                "https://monitoring.us-east-1.amazonaws.com",
            )?),
        };
        let shown = match &endpoint {
            Some(e) => crate::shown(e.as_str()),
            None => format!("https://monitoring.{region}.amazonaws.com"),
        };
        if let Some(e) = &endpoint {
            let policy = crate::egress::policy();
            if let Some(reason) =
                crate::egress::refused(&policy, e, fledge_core::egress::Purpose::Metrics)
            {
                return Err(format!(
                    "the CloudWatch address {shown} is not allowed: {reason}"
                ));
            }
        }
        Ok(CloudWatch {
            region,
            endpoint,
            shown,
            timeout,
        })
    }

    /// [`CloudWatch::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(CloudWatch::new(cfg, ctx.timeout)?))
    }

    /// The SDK client for this region and endpoint. Clients are kept for the life of the
    /// process, so that the credentials they resolved (and refresh) are reused from one analysis
    /// to the next.
    async fn client(&self) -> Client {
        type Key = (String, Option<String>, Duration);
        static CLIENTS: OnceLock<Mutex<HashMap<Key, Client>>> = OnceLock::new();
        let clients = CLIENTS.get_or_init(Default::default);
        let key = (
            self.region.clone(),
            self.endpoint.as_ref().map(Url::to_string),
            self.timeout,
        );
        if let Some(c) = clients.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return c;
        }
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.timeout)
                    .connect_timeout(self.timeout.min(Duration::from_secs(5)))
                    .build(),
            )
            // One attempt: the analysis queries again at its next interval, and a failure it
            // sees is a failure the engine judges.
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .load()
            .await;
        let mut conf = aws_sdk_cloudwatch::config::Builder::from(&shared);
        if let Some(e) = &self.endpoint {
            // An address from the Canary's namespace: its host name is resolved through the
            // egress policy, as the other providers' are. (The credential chain keeps the
            // SDK's own client: the instance metadata it may ask is the operator's, not a
            // Canary's.)
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_with_resolver(crate::egress::AwsPolicyResolver::new(
                    fledge_core::egress::Purpose::Metrics,
                ));
            conf = conf
                .endpoint_url(e.as_str().trim_end_matches('/'))
                .http_client(http);
        }
        let client = Client::from_conf(conf.build());
        if let Ok(mut m) = clients.lock() {
            m.insert(key, client.clone());
        }
        client
    }

    /// Runs `queries` over `[start, end]`, reading every page; `Err` is the failure.
    async fn fetch(
        &self,
        queries: Vec<MetricDataQuery>,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<GetMetricDataOutput>, MetricOutcome> {
        let client = self.client().await;
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .max_datapoints(MAX_DATAPOINTS)
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.failure(&e))?;
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            pages.push(page);
            match &token {
                None => return Ok(pages),
                Some(_) if pages.len() >= MAX_PAGES => {
                    return Err(MetricOutcome::Error(format!(
                        "CloudWatch at {} answered in more than {MAX_PAGES} pages; narrow the query to one metric",
                        self.shown
                    )));
                }
                Some(_) => {}
            }
        }
    }

    /// The typed failure of a request that did not give an answer.
    fn failure(&self, e: &SdkError<GetMetricDataError>) -> MetricOutcome {
        let at = &self.shown;
        match e {
            SdkError::TimeoutError(_) => MetricOutcome::ProviderUnreachable(format!(
                "CloudWatch at {at} did not answer within {}s",
                self.timeout.as_secs_f64()
            )),
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                MetricOutcome::ProviderUnreachable(format!(
                    "CloudWatch at {at} did not answer within {}s",
                    self.timeout.as_secs_f64()
                ))
            }
            SdkError::DispatchFailure(d) if d.is_io() => MetricOutcome::ProviderUnreachable(
                format!("cannot reach CloudWatch at {at}: {}", innermost(e)),
            ),
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or("an unnamed error");
                let message = clip(s.err().message().unwrap_or("no message"), 500);
                if status == 429 || THROTTLED.contains(&code) {
                    MetricOutcome::ProviderUnreachable(format!(
                        "CloudWatch at {at} answered HTTP {status} {code}: too many requests ({message}); lower the analysis frequency or ask AWS for a higher GetMetricData quota"
                    ))
                } else if matches!(status, 401 | 403) || DENIED.contains(&code) {
                    MetricOutcome::ProviderUnreachable(format!(
                        "CloudWatch at {at} answered HTTP {status} {code}: {message}; {CREDENTIALS}"
                    ))
                } else if (400..500).contains(&status) {
                    MetricOutcome::Error(format!(
                        "CloudWatch at {at} refused the query (HTTP {status} {code}): {message}"
                    ))
                } else {
                    MetricOutcome::ProviderUnreachable(format!(
                        "CloudWatch at {at} answered HTTP {status} {code}: {message}"
                    ))
                }
            }
            SdkError::ResponseError(_) => MetricOutcome::Error(format!(
                "CloudWatch at {at} gave an answer fledge cannot read: {}",
                innermost(e)
            )),
            // Among them: no credentials found by the chain, or a request that cannot be signed.
            _ => MetricOutcome::ProviderUnreachable(format!(
                "cannot query CloudWatch at {at}: {}; {CREDENTIALS}",
                clip(&DisplayErrorContext(e).to_string(), 500)
            )),
        }
    }

    async fn run(&self, query: &str, start: SystemTime, end: SystemTime) -> MetricOutcome {
        let queries = match parse_queries(query) {
            Ok(q) => q,
            Err(e) => return MetricOutcome::Error(e),
        };
        match self.fetch(queries, start, end).await {
            Ok(pages) => value_of(&pages),
            Err(failure) => failure,
        }
    }
}

/// The innermost cause of `e` (e.g. "Connection refused (os error 111)").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    clip(&cause.to_string(), 300)
}

/// One `MetricDataQuery` as the template writes it (field names in lower case: Flagger reads the
/// JSON case-insensitively, so `Id`, `id` and `ID` are the same field).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
struct QueryJson {
    id: String,
    expression: Option<String>,
    label: Option<String>,
    metricstat: Option<StatJson>,
    period: Option<i32>,
    returndata: Option<bool>,
    accountid: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
struct StatJson {
    metric: MetricJson,
    period: i32,
    stat: String,
    unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
struct MetricJson {
    namespace: Option<String>,
    metricname: Option<String>,
    #[serde(default)]
    dimensions: Vec<DimensionJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
struct DimensionJson {
    name: String,
    value: String,
}

/// `v` with every object key in lower case.
fn lower_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), lower_keys(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        serde_json::Value::Array(a) => a.into_iter().map(lower_keys).collect(),
        other => other,
    }
}

/// The template's query as `MetricDataQueries`; the error says what is wrong and how to write it.
fn parse_queries(query: &str) -> Result<Vec<MetricDataQuery>, String> {
    const HOW: &str = "write a JSON array of MetricDataQuery objects, e.g. [{\"Id\": \"e1\", \"Expression\": \"m1 / m2\"}, {\"Id\": \"m1\", \"MetricStat\": {\"Metric\": {\"Namespace\": \"…\", \"MetricName\": \"…\"}, \"Period\": 60, \"Stat\": \"Sum\"}, \"ReturnData\": false}, …]";
    let value: serde_json::Value =
        serde_json::from_str(query).map_err(|e| format!("spec.query is not JSON ({e}); {HOW}"))?;
    let parsed: Vec<QueryJson> = serde_json::from_value(lower_keys(value))
        .map_err(|e| format!("spec.query is not a list of MetricDataQuery ({e}); {HOW}"))?;
    if parsed.is_empty() {
        return Err(format!("spec.query has no MetricDataQuery; {HOW}"));
    }
    Ok(parsed
        .into_iter()
        .map(|q| {
            let stat = q.metricstat.map(|s| {
                let metric = Metric::builder()
                    .set_namespace(s.metric.namespace)
                    .set_metric_name(s.metric.metricname)
                    .set_dimensions(Some(
                        s.metric
                            .dimensions
                            .into_iter()
                            .map(|d| Dimension::builder().name(d.name).value(d.value).build())
                            .collect(),
                    ))
                    .build();
                MetricStat::builder()
                    .metric(metric)
                    .period(s.period)
                    .stat(s.stat)
                    .set_unit(s.unit.as_deref().map(StandardUnit::from))
                    .build()
            });
            MetricDataQuery::builder()
                .id(q.id)
                .set_expression(q.expression)
                .set_label(q.label)
                .set_metric_stat(stat)
                .set_period(q.period)
                .set_return_data(q.returndata)
                .set_account_id(q.accountid)
                .build()
        })
        .collect())
}

/// One result of the answer, its pages put together.
#[derive(Default)]
struct Result1 {
    /// `(seconds since the epoch, value)`, as the pages gave them.
    points: Vec<(f64, f64)>,
    statuses: Vec<String>,
    messages: Vec<String>,
}

/// The one number of an answer: the newest value of its one result.
fn value_of(pages: &[GetMetricDataOutput]) -> MetricOutcome {
    let mut results: BTreeMap<String, Result1> = BTreeMap::new();
    let mut messages: Vec<String> = Vec::new();
    for page in pages {
        for m in page.messages() {
            messages.push(format!(
                "{}: {}",
                m.code().unwrap_or("-"),
                m.value().unwrap_or("")
            ));
        }
        for r in page.metric_data_results() {
            let entry = results
                .entry(r.id().unwrap_or_default().to_string())
                .or_default();
            let times = r.timestamps();
            for (i, v) in r.values().iter().enumerate() {
                let t = times
                    .get(i)
                    .map_or(f64::NEG_INFINITY, DateTime::as_secs_f64);
                entry.points.push((t, *v));
            }
            if let Some(s) = r.status_code() {
                entry.statuses.push(s.as_str().to_string());
            }
            for m in r.messages() {
                entry.messages.push(format!(
                    "{}: {}",
                    m.code().unwrap_or("-"),
                    m.value().unwrap_or("")
                ));
            }
        }
    }
    let said = |ms: &[String]| {
        if ms.is_empty() {
            String::new()
        } else {
            format!(" ({})", clip(&ms.join("; "), 300))
        }
    };
    let (id, result) = match results.len() {
        0 => return MetricOutcome::NoData,
        1 => results.into_iter().next().expect("one result"),
        n => {
            return MetricOutcome::Error(format!(
                "the query returned {n} results (series: {}) where one number is expected; set \"ReturnData\": false on every query but the one to judge",
                results.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    };
    let has = |code: StatusCode| result.statuses.iter().any(|s| s == code.as_str());
    if has(StatusCode::InternalError) {
        return MetricOutcome::ProviderUnreachable(format!(
            "CloudWatch could not compute result {id}{}",
            said(&[result.messages, messages].concat())
        ));
    }
    if has(StatusCode::Forbidden) {
        return MetricOutcome::ProviderUnreachable(format!(
            "CloudWatch denied result {id} (status Forbidden){}; {CREDENTIALS}",
            said(&result.messages)
        ));
    }
    let newest = result
        .points
        .iter()
        .copied()
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    match newest {
        None => MetricOutcome::NoData,
        Some((_, v)) if v.is_finite() => MetricOutcome::Value(v),
        Some((_, v)) => MetricOutcome::Error(format!(
            "CloudWatch result {id} is {v} (NaN or infinite), not a number to judge; guard the expression against dividing by zero, e.g. IF(m2 > 0, m1 / m2, 0)"
        )),
    }
}

fn seconds_ago(end: SystemTime, interval: Duration) -> SystemTime {
    end - Duration::from_secs(WINDOW_INTERVALS * whole_seconds(interval))
}

#[async_trait::async_trait]
impl MetricsProvider for CloudWatch {
    async fn online(&self) -> Result<(), String> {
        let now = SystemTime::now();
        let answer = self
            .client()
            .await
            .get_metric_data()
            .set_metric_data_queries(Some(Vec::new()))
            .start_time(DateTime::from(now - DEFAULT_INTERVAL))
            .end_time(DateTime::from(now))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            // Authenticated, and refused as invalid for want of queries: CloudWatch is there.
            Err(SdkError::ServiceError(s))
                if s.raw().status().as_u16() == 400
                    && !s
                        .err()
                        .code()
                        .is_some_and(|c| DENIED.contains(&c) || THROTTLED.contains(&c)) =>
            {
                Ok(())
            }
            Err(e) => match self.failure(&e) {
                MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m) => Err(m),
                other => Err(format!("{other:?}")),
            },
        }
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.query_over(query, DEFAULT_INTERVAL).await
    }

    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let end = SystemTime::now();
        self.run(query, seconds_ago(end, interval), end).await
    }

    async fn query_at(&self, query: &str, unix_seconds: i64) -> MetricOutcome {
        let Ok(secs) = u64::try_from(unix_seconds) else {
            return MetricOutcome::Error(format!("{unix_seconds} is before 1970"));
        };
        let end = UNIX_EPOCH + Duration::from_secs(secs);
        self.run(query, seconds_ago(end, DEFAULT_INTERVAL), end)
            .await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::types::{MessageData, MetricDataResult};

    use super::*;

    fn page(results: Vec<MetricDataResult>) -> GetMetricDataOutput {
        GetMetricDataOutput::builder()
            .set_metric_data_results(Some(results))
            .build()
    }

    fn result(id: &str, points: &[(i64, f64)]) -> MetricDataResult {
        let mut b = MetricDataResult::builder()
            .id(id)
            .status_code(StatusCode::Complete);
        for (t, v) in points {
            b = b.timestamps(DateTime::from_secs(*t)).values(*v);
        }
        b.build()
    }

    #[test]
    fn flaggers_example_query_parses_with_any_case() {
        let q = parse_queries(
            r#"[{"Id":"e1","Expression":"m1 / m2","Label":"ErrorRate"},
                {"id":"m1","metricStat":{"metric":{"Namespace":"MyKubernetesCluster","MetricName":"ErrorCount",
                 "Dimensions":[{"Name":"appName","Value":"podinfo.test"}]},"Period":60,"Stat":"Sum","Unit":"Count"},
                 "ReturnData":false}]"#,
        )
        .unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].expression(), Some("m1 / m2"));
        assert_eq!(q[0].return_data(), None);
        let stat = q[1].metric_stat().unwrap();
        assert_eq!(stat.period(), Some(60));
        assert_eq!(stat.unit(), Some(&StandardUnit::Count));
        let metric = stat.metric().unwrap();
        assert_eq!(metric.metric_name(), Some("ErrorCount"));
        assert_eq!(metric.dimensions()[0].value(), Some("podinfo.test"));
        assert_eq!(q[1].return_data(), Some(false));
    }

    #[test]
    fn a_query_that_is_not_a_list_of_metric_data_queries_says_how_to_write_one() {
        for (query, says) in [
            ("sum(rate(x[1m]))", "not JSON"),
            (r#"{"Id":"m1"}"#, "not a list"),
            ("[]", "no MetricDataQuery"),
            (r#"[{"Id":"m1","Expresion":"m2"}]"#, "expresion"),
            (r#"[{"Expression":"m2"}]"#, "id"),
        ] {
            let e = parse_queries(query).unwrap_err();
            assert!(e.contains(says) && e.contains("\"Id\""), "{query}: {e}");
        }
    }

    #[test]
    fn the_newest_value_of_the_one_result_across_pages_is_the_number() {
        let pages = [
            page(vec![result("e1", &[(300, 3.0), (240, 2.0)])]),
            page(vec![result("e1", &[(360, 4.5)])]),
        ];
        assert_eq!(format!("{:?}", value_of(&pages)), "Value(4.5)");
    }

    #[test]
    fn no_result_or_no_value_is_no_data() {
        assert_eq!(format!("{:?}", value_of(&[page(vec![])])), "NoData");
        assert_eq!(
            format!("{:?}", value_of(&[page(vec![result("e1", &[])])])),
            "NoData"
        );
    }

    #[test]
    fn several_results_nan_and_internal_errors_are_failures() {
        let several = value_of(&[page(vec![
            result("m1", &[(1, 1.0)]),
            result("m2", &[(1, 2.0)]),
        ])]);
        assert!(
            matches!(&several, MetricOutcome::Error(m) if m.contains("2 results") && m.contains("ReturnData")),
            "{several:?}"
        );
        let nan = value_of(&[page(vec![result("e1", &[(1, f64::NAN)])])]);
        assert!(
            matches!(&nan, MetricOutcome::Error(m) if m.contains("NaN")),
            "{nan:?}"
        );
        let failed = MetricDataResult::builder()
            .id("e1")
            .status_code(StatusCode::InternalError)
            .messages(
                MessageData::builder()
                    .code("InternalError")
                    .value("try again")
                    .build(),
            )
            .build();
        let failed = value_of(&[page(vec![failed])]);
        assert!(
            matches!(&failed, MetricOutcome::ProviderUnreachable(m) if m.contains("try again")),
            "{failed:?}"
        );
    }

    #[test]
    fn the_region_is_required_and_the_address_overrides_the_endpoint() {
        let mut cfg = crate::http::testing::config("cloudwatch", "", &[]);
        cfg.secret = None;
        let Err(e) = CloudWatch::new(&cfg, Duration::from_secs(1)) else {
            panic!("accepted without a region");
        };
        assert!(e.contains("spec.provider.region"), "{e}");
        cfg.region = Some("eu west 1".into());
        let Err(e) = CloudWatch::new(&cfg, Duration::from_secs(1)) else {
            panic!("accepted a bad region");
        };
        assert!(e.contains("us-east-1"), "{e}");
        cfg.region = Some("eu-west-1".into());
        let cw = CloudWatch::new(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(cw.shown, "https://monitoring.eu-west-1.amazonaws.com");
        cfg.address = "https://user:pw@vpce.example:8443/x".into();
        let cw = CloudWatch::new(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(cw.shown, "https://vpce.example:8443");
    }
}
