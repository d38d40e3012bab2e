//! The conformance suite every metrics provider passes: against a server on loopback that
//! implements the provider's documented request and response contract (path, method, query
//! parameters, credentials, error bodies, 429), one query gives exactly one finite number or a
//! failure that says which (no data, several series, NaN, a refused query, denied, rate limited,
//! unreachable, timed out), and no outcome ever shows the provider's secret.
//!
//! Adding a provider: one [`Fixture`] (how its server checks and answers each request) and one
//! line in [`fixtures`].

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Request, Response, contract_server};
use fledge_core::MetricOutcome;
use fledge_metrics_providers::{Cluster, Context, ProviderConfig, SecretData, provider_for};
use tokio::net::TcpListener;

/// What the server is made to do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// One series with one finite number.
    OneNumber(f64),
    /// No series at all.
    NoData,
    /// Several series where one number is expected.
    SeveralSeries,
    /// One series whose value is NaN (or, where the wire format cannot carry NaN, has no value).
    NaN,
    /// The server refuses the query as invalid.
    RefusedQuery,
    /// The server answers 401 Unauthorized.
    Unauthorized,
    /// The server answers 403 Forbidden.
    Forbidden,
    /// The server answers 429 Too Many Requests, asking to wait [`WAIT`] seconds.
    TooManyRequests,
}

const CASES: [Case; 8] = [
    Case::OneNumber(99.5),
    Case::NoData,
    Case::SeveralSeries,
    Case::NaN,
    Case::RefusedQuery,
    Case::Unauthorized,
    Case::Forbidden,
    Case::TooManyRequests,
];

/// A secret value that must never appear in an outcome.
const SECRET: &str = "s3cr3t-t0ken";
/// A second secret, for providers with two credentials.
const SECRET2: &str = "s3cr3t-app-k3y";
/// The seconds a 429 answer asks to wait.
const WAIT: &str = "7";
/// The metric interval the suite queries over.
const INTERVAL: Duration = Duration::from_secs(30);

/// How one provider's server answers, and how fledge is configured to reach it.
trait Fixture: Sync + Send {
    /// `spec.provider.type`.
    fn kind(&self) -> &'static str;
    /// The configuration for a server at `address`, with credentials holding [`SECRET`] (and
    /// [`SECRET2`]).
    fn config(&self, address: &str) -> ProviderConfig;
    /// The query the suite sends.
    fn query(&self) -> &'static str;
    /// How the server answers `req` (the query, or the online check) in `case`; `Err` says how
    /// the request breaks the provider's documented contract.
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String>;
    /// What the provider is built with for a server at `address` (the timeout; a cluster
    /// client for the providers that read the cluster).
    fn context(&self, address: &str, timeout: Duration) -> Context {
        let _ = address;
        timeout.into()
    }
    /// The cases the provider's API can express (every one but where a comment says why).
    fn cases(&self) -> Vec<Case> {
        CASES.to_vec()
    }
    /// Whether the wire format can carry NaN; where it cannot, the NaN case sends a point
    /// without a value, which must be no data.
    fn carries_nan(&self) -> bool {
        true
    }
    /// The HTTP status the provider's API answers `case` with (Unauthorized, Forbidden,
    /// TooManyRequests), which its failure names.
    fn status(&self, case: Case) -> u16 {
        match case {
            Case::Unauthorized => 401,
            Case::Forbidden => 403,
            Case::TooManyRequests => 429,
            _ => 200,
        }
    }
    /// Whether the provider's failure on 429 can say how long the server asks to wait (the
    /// Prometheus client library does not expose the answer's headers).
    fn says_the_wait(&self) -> bool {
        true
    }
}

fn secret(name: &str, pairs: &[(&str, &str)]) -> Option<SecretData> {
    Some(SecretData {
        name: format!("test/{name}"),
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    })
}

fn config(kind: &str, address: &str, secret: Option<SecretData>) -> ProviderConfig {
    ProviderConfig {
        kind: kind.into(),
        address: address.into(),
        headers: Vec::new(),
        secret,
        insecure_skip_verify: false,
        region: None,
    }
}

/// `Err` unless `req` has parameters `from` and `to`, whole numbers `window` apart.
fn expect_window(req: &Request, from: &str, to: &str, window: u64) -> Result<(), String> {
    let number = |name: &str| {
        req.param(name)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("parameter {name} is missing or not a whole number"))
    };
    let (f, t) = (number(from)?, number(to)?);
    if t.checked_sub(f) != Some(window) {
        return Err(format!(
            "{from}..{to} spans {}, expected {window}",
            t as i128 - f as i128
        ));
    }
    Ok(())
}

struct Prometheus;

// https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries (the request, the
// vector result, the error body with errorType bad_data on 400).
impl Fixture for Prometheus {
    fn kind(&self) -> &'static str {
        "prometheus"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        config(
            self.kind(),
            address,
            secret("prometheus", &[("token", SECRET)]),
        )
    }
    fn query(&self) -> &'static str {
        "sum(rate(requests_total[1m]))"
    }
    fn says_the_wait(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        if req.method != "GET" && req.method != "POST" || req.path != "/api/v1/query" {
            return Err("expected GET or POST /api/v1/query".into());
        }
        req.expect_header("authorization", &format!("Bearer {SECRET}"))?;
        let vector = |values: &[&str]| {
            let series: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!(r#"{{"metric":{{"i":"{i}"}},"value":[1700000000,"{v}"]}}"#))
                .collect();
            Response::json(
                200,
                format!(
                    r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                    series.join(",")
                ),
            )
        };
        match case {
            Case::Unauthorized => return Ok(Response::text(401, "Unauthorized")),
            Case::Forbidden => return Ok(Response::text(403, "Forbidden")),
            _ => {}
        }
        if req.param("query") == Some("vector(1)") {
            return Ok(vector(&["1"]));
        }
        req.expect_param("query", self.query())?;
        Ok(match case {
            Case::OneNumber(v) => vector(&[&v.to_string()]),
            Case::NoData => vector(&[]),
            Case::SeveralSeries => vector(&["1", "2", "3"]),
            Case::NaN => vector(&["NaN"]),
            Case::RefusedQuery => Response::json(
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}"#,
            ),
            Case::TooManyRequests => {
                Response::text(429, "Too Many Requests").with_header("Retry-After", WAIT)
            }
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct Datadog;

// The query: https://docs.datadoghq.com/api/latest/metrics/#query-timeseries-points
// (GET /api/v1/query, query/from/to in seconds, DD-API-KEY and DD-APPLICATION-KEY headers, the
// series/pointlist answer, 400 and 403 with {"errors": [...]}, 429 "Too many requests").
// The online check: https://docs.datadoghq.com/api/latest/authentication/#validate-api-key
// (GET /api/v1/validate answers {"valid": true}).
// Rate limits: https://docs.datadoghq.com/api/latest/rate-limits/ (X-RateLimit-Reset: the
// seconds until the limit resets; Datadog documents no Retry-After).
impl Fixture for Datadog {
    fn kind(&self) -> &'static str {
        "datadog"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        let keys = [
            ("datadog_api_key", SECRET),
            ("datadog_application_key", SECRET2),
        ];
        config(self.kind(), address, secret("datadog", &keys))
    }
    fn query(&self) -> &'static str {
        "sum:istio.mesh.request.count{reporter:destination,destination_workload:podinfo}.as_count()"
    }
    fn carries_nan(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        let errors = |status: u16, message: &str| {
            Response::json(status, format!(r#"{{"errors":["{message}"]}}"#))
        };
        match case {
            Case::Unauthorized => return Ok(errors(401, "Unauthorized")),
            Case::Forbidden => return Ok(errors(403, "Forbidden")),
            _ => {}
        }
        req.expect_header("DD-API-KEY", SECRET)?;
        req.expect_header("DD-APPLICATION-KEY", SECRET2)?;
        if req.path == "/api/v1/validate" {
            req.expect("GET", "/api/v1/validate")?;
            return Ok(Response::json(200, r#"{"valid":true}"#));
        }
        req.expect("GET", "/api/v1/query")?;
        req.expect_param("query", self.query())?;
        expect_window(req, "from", "to", 10 * INTERVAL.as_secs())?;
        let series = |values: &[&str]| {
            let series: Vec<String> = values
                .iter()
                .map(|v| {
                    format!(
                        r#"{{"metric":"istio.mesh.request.count","scope":"reporter:destination","pointlist":[[1700000000000,1.0],[1700000060000,{v}]],"length":2,"aggr":"sum"}}"#
                    )
                })
                .collect();
            Response::json(
                200,
                format!(
                    r#"{{"status":"ok","res_type":"time_series","from_date":1699999400000,"to_date":1700000060000,"query":"q","series":[{}]}}"#,
                    series.join(",")
                ),
            )
        };
        Ok(match case {
            Case::OneNumber(v) => series(&[&v.to_string()]),
            Case::NoData => series(&[]),
            Case::SeveralSeries => series(&["1", "2", "3"]),
            Case::NaN => Response::json(
                200,
                r#"{"status":"ok","res_type":"time_series","series":[{"pointlist":[[1700000000000,null]]}]}"#,
            ),
            Case::RefusedQuery => errors(
                400,
                "Error parsing query: unable to parse sum:: Rule 'scope_expr' didn't match",
            ),
            Case::TooManyRequests => errors(429, "Too many requests")
                .with_header("X-RateLimit-Limit", "100")
                .with_header("X-RateLimit-Period", "10")
                .with_header("X-RateLimit-Remaining", "0")
                .with_header("X-RateLimit-Reset", WAIT),
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct NewRelic;

// https://docs.newrelic.com/docs/apis/insights-apis/query-insights-event-data-api/ (GET
// /v1/accounts/{account id}/query with the NRQL in `nrql`, the query key in X-Query-Key, the
// answer {"results": [{"result": n}]}, errors as {"error": "..."}).
// Rate limits: https://docs.newrelic.com/docs/apis/rest-api-v2/requirements/api-overview-rate-limits/
// (429 when the account's query limit is reached).
impl Fixture for NewRelic {
    fn kind(&self) -> &'static str {
        "newrelic"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        let keys = [
            ("newrelic_account_id", "1234567"),
            ("newrelic_query_key", SECRET),
        ];
        config(self.kind(), address, secret("newrelic", &keys))
    }
    fn query(&self) -> &'static str {
        "SELECT filter(sum(nginx_ingress_controller_requests), WHERE status >= '500') / sum(nginx_ingress_controller_requests) * 100 FROM Metric WHERE ingress = 'podinfo'"
    }
    fn carries_nan(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        let error = |status: u16, message: &str| {
            Response::json(status, format!(r#"{{"error":"{message}"}}"#))
        };
        req.expect("GET", "/v1/accounts/1234567/query")?;
        req.expect_header("X-Query-Key", SECRET)?;
        match case {
            Case::Unauthorized => return Ok(error(401, "Invalid query key")),
            Case::Forbidden => {
                return Ok(error(
                    403,
                    "The query key does not give access to account 1234567",
                ));
            }
            _ => {}
        }
        if req.param("nrql") == Some("SELECT * FROM Metric") {
            return Ok(Response::json(200, r#"{"results":[{"events":[]}]}"#));
        }
        req.expect_param(
            "nrql",
            &format!("{} SINCE {} seconds ago", self.query(), INTERVAL.as_secs()),
        )?;
        let results = |values: &[&str]| {
            let results: Vec<String> = values
                .iter()
                .map(|v| format!(r#"{{"result":{v}}}"#))
                .collect();
            Response::json(
                200,
                format!(
                    r#"{{"results":[{}],"metadata":{{"eventTypes":["Metric"]}}}}"#,
                    results.join(",")
                ),
            )
        };
        Ok(match case {
            Case::OneNumber(v) => results(&[&v.to_string()]),
            Case::NoData => results(&[]),
            Case::SeveralSeries => results(&["1", "2", "3"]),
            Case::NaN => results(&["null"]),
            Case::RefusedQuery => error(
                400,
                "NRQL Syntax Error: Error at line 1 position 8, unexpected 'filter'",
            ),
            Case::TooManyRequests => {
                error(429, "Too many requests").with_header("Retry-After", WAIT)
            }
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct Dynatrace;

// https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points (GET
// /api/v2/metrics/query with metricSelector, resolution, from and to in milliseconds; the answer
// {"totalCount", "nextPageKey", "result": [{"metricId", "data": [{"timestamps", "values"}]}]};
// errors as {"error": {"code", "message", "constraintViolations"}}).
// Authentication: https://docs.dynatrace.com/docs/dynatrace-api/basics/dynatrace-api-authentication
// (Authorization: Api-Token <token>; 401 for a missing or wrong token, 403 for a token without
// the metrics.read scope).
// Rate limits: https://docs.dynatrace.com/docs/dynatrace-api/basics/access-limit (429 with
// Retry-After in seconds and X-RateLimit-Reset in microseconds).
// The online check: https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-all-metrics
impl Fixture for Dynatrace {
    fn kind(&self) -> &'static str {
        "dynatrace"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        config(
            self.kind(),
            address,
            secret("dynatrace", &[("dynatrace_token", SECRET)]),
        )
    }
    fn query(&self) -> &'static str {
        "builtin:service.response.time:filter(eq(dt.entity.service,SERVICE-ABCDEFG0123456789)):percentile(95)"
    }
    fn carries_nan(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        let error = |status: u16, message: &str| {
            Response::json(
                status,
                format!(r#"{{"error":{{"code":{status},"message":"{message}"}}}}"#),
            )
        };
        req.expect_header("Authorization", &format!("Api-Token {SECRET}"))?;
        match case {
            Case::Unauthorized => return Ok(error(401, "Missing authorization parameter.")),
            Case::Forbidden => {
                return Ok(error(
                    403,
                    "Token is missing required scope. Use one of: metrics.read (Read metrics)",
                ));
            }
            _ => {}
        }
        if req.path == "/api/v2/metrics" {
            req.expect_param("pageSize", "1")?;
            return Ok(Response::json(
                200,
                r#"{"totalCount":1500,"nextPageKey":"AQAAABQBAAAABQ==","metrics":[{"metricId":"builtin:apps.other.apdex.osAndGeo"}]}"#,
            ));
        }
        req.expect("GET", "/api/v2/metrics/query")?;
        req.expect_param("metricSelector", self.query())?;
        req.expect_param("resolution", "Inf")?;
        expect_window(req, "from", "to", 10 * INTERVAL.as_millis() as u64)?;
        let data = |values: &[&str]| {
            let data: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!(
                        r#"{{"dimensions":["SERVICE-{i}"],"dimensionMap":{{"dt.entity.service":"SERVICE-{i}"}},"timestamps":[1700000060000],"values":[{v}]}}"#
                    )
                })
                .collect();
            Response::json(
                200,
                format!(
                    r#"{{"totalCount":{},"nextPageKey":null,"resolution":"Inf","result":[{{"metricId":"q","dataPointCountRatio":0.1,"dimensionCountRatio":0.1,"data":[{}]}}]}}"#,
                    values.len(),
                    data.join(",")
                ),
            )
        };
        Ok(match case {
            Case::OneNumber(v) => data(&[&v.to_string()]),
            Case::NoData => data(&[]),
            Case::SeveralSeries => data(&["1", "2", "3"]),
            Case::NaN => data(&["null"]),
            Case::RefusedQuery => Response::json(
                400,
                r#"{"error":{"code":400,"message":"Constraints violated.","constraintViolations":[{"path":"metricSelector","message":"The metric selector is invalid","parameterLocation":"QUERY","location":null}]}}"#,
            ),
            Case::TooManyRequests => error(429, "Too many requests")
                .with_header("Retry-After", WAIT)
                .with_header("X-RateLimit-Limit", "50")
                .with_header("X-RateLimit-Reset", "1700000007000000"),
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct Graphite;

// https://graphite.readthedocs.io/en/latest/render_api.html (GET /render with target, from and
// format=json; the answer [{"target", "datapoints": [[value or null, timestamp]]}]; a request
// graphite-web cannot parse is a 400 with the reason as plain text).
// Basic auth in front of it: https://graphite.readthedocs.io/en/latest/config-webapp.html
// (401 with WWW-Authenticate: Basic without the right user, 403 for a user without access).
// 429 with Retry-After is what a rate-limiting proxy in front of it answers
// (https://www.rfc-editor.org/rfc/rfc6585#section-4); Graphite itself documents no limit.
impl Fixture for Graphite {
    fn kind(&self) -> &'static str {
        "graphite"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        let keys = [("username", "fledge"), ("password", SECRET)];
        config(self.kind(), address, secret("graphite", &keys))
    }
    fn query(&self) -> &'static str {
        "target=summarize(\n  asPercent(sumSeries(stats.app.podinfo.status.5*.count), sumSeries(stats.app.podinfo.status.*.count)),\n  '30s', 'avg')\n&from=-30s"
    }
    fn carries_nan(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("fledge:{SECRET}"));
        req.expect("GET", "/render")?;
        req.expect_header("Authorization", &format!("Basic {basic}"))?;
        req.expect_param("format", "json")?;
        match case {
            Case::Unauthorized => {
                return Ok(Response::text(401, "Unauthorized")
                    .with_header("WWW-Authenticate", "Basic realm=\"graphite\""));
            }
            Case::Forbidden => return Ok(Response::text(403, "Forbidden")),
            _ => {}
        }
        if req.param("target") == Some("test") {
            return Ok(Response::json(200, "[]"));
        }
        req.expect_param(
            "target",
            "summarize( asPercent(sumSeries(stats.app.podinfo.status.5*.count), sumSeries(stats.app.podinfo.status.*.count)), '30s', 'avg')",
        )?;
        req.expect_param("from", "-30s")?;
        let targets = |values: &[&str]| {
            let targets: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!(
                        r#"{{"target":"summarize(t{i})","tags":{{"name":"t{i}"}},"datapoints":[[1.0,1700000000],[{v},1700000030],[null,1700000060]]}}"#
                    )
                })
                .collect();
            Response::json(200, format!("[{}]", targets.join(",")))
        };
        Ok(match case {
            Case::OneNumber(v) => targets(&[&v.to_string()]),
            Case::NoData => targets(&[]),
            Case::SeveralSeries => targets(&["1", "2", "3"]),
            Case::NaN => Response::json(
                200,
                r#"[{"target":"t","datapoints":[[null,1700000000],[null,1700000030]]}]"#,
            ),
            Case::RefusedQuery => {
                Response::text(400, "Received request for unknown function: asPercnt")
            }
            Case::TooManyRequests => {
                Response::text(429, "Too Many Requests").with_header("Retry-After", WAIT)
            }
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct InfluxDb;

// https://docs.influxdata.com/influxdb/v2/api/#operation/PostQuery (POST /api/v2/query?org=…
// with a JSON body {"query", "type": "flux", "dialect"}, Authorization: Token <token>; the
// answer in annotated CSV; errors as {"code", "message"}: 400 invalid, 401 unauthorized, 403
// forbidden, 429 with Retry-After).
// The CSV: https://docs.influxdata.com/influxdb/v2/reference/syntax/annotated-csv/
impl Fixture for InfluxDb {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        let keys = [("token", SECRET), ("org", "my-org")];
        config(self.kind(), address, secret("influx-token", &keys))
    }
    fn query(&self) -> &'static str {
        "from(bucket: \"default\")\n|> range(start: -2h)\n|> filter(fn: (r) => r[\"_measurement\"] == \"istio_requests_total\")\n|> count()\n|> yield(name: \"count\")"
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        let error = |status: u16, code: &str, message: &str| {
            Response::json(
                status,
                format!(r#"{{"code":"{code}","message":"{message}"}}"#),
            )
        };
        req.expect("POST", "/api/v2/query")?;
        req.expect_param("org", "my-org")?;
        req.expect_header("Authorization", &format!("Token {SECRET}"))?;
        req.expect_header("Content-Type", "application/json")?;
        let body: serde_json::Value =
            serde_json::from_str(&req.body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if body["type"] != "flux" {
            return Err(format!(
                "the body's type is {}, expected \"flux\"",
                body["type"]
            ));
        }
        if body["dialect"]["annotations"] != serde_json::json!(["datatype", "group", "default"]) {
            return Err(
                "the dialect does not ask for the datatype, group and default annotations".into(),
            );
        }
        match case {
            Case::Unauthorized => return Ok(error(401, "unauthorized", "unauthorized access")),
            Case::Forbidden => {
                return Ok(error(
                    403,
                    "forbidden",
                    "insufficient permissions for read on bucket default",
                ));
            }
            _ => {}
        }
        let csv = |values: &[&str]| {
            let mut out = String::from(
                "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string\r\n#group,false,false,true,true,false,true\r\n#default,count,,,,,\r\n,result,table,_start,_stop,_value,_measurement\r\n",
            );
            for (i, v) in values.iter().enumerate() {
                out.push_str(&format!(
                    ",,{i},2024-01-01T00:00:00Z,2024-01-01T02:00:00Z,{v},istio_requests_total\r\n"
                ));
            }
            out.push_str("\r\n");
            Response {
                content_type: "text/csv; charset=utf-8",
                ..Response::text(200, out)
            }
        };
        if body["query"] == "buckets() |> limit(n: 1)" {
            return Ok(csv(&[]));
        }
        if body["query"] != self.query() {
            return Err(format!("the body's query is {}", body["query"]));
        }
        Ok(match case {
            Case::OneNumber(v) => csv(&[&v.to_string()]),
            Case::NoData => csv(&[]),
            Case::SeveralSeries => csv(&["1", "2", "3"]),
            Case::NaN => csv(&["NaN"]),
            Case::RefusedQuery => error(
                400,
                "invalid",
                "compilation failed: error at @1:1-1:4: undefined identifier frm",
            ),
            Case::TooManyRequests => error(
                429,
                "too many requests",
                "org my-org has exceeded its query limit",
            )
            .with_header("Retry-After", WAIT),
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct Splunk;

// The SignalFlow API's HTTP form:
// https://dev.splunk.com/observability/reference/api/signalflow/latest (POST
// /v2/signalflow/execute with start, stop and immediate as parameters, the program as a
// text/plain body, X-SF-Token; errors as {"message", "errorType"}; the answer a stream of
// Server-Sent Events), and its messages:
// https://dev.splunk.com/observability/docs/signalflow/messages/ (control-message STREAM_START,
// JOB_START, END_OF_CHANNEL; metadata; data {"logicalTimestampMs", "data": [{"tsId", "value"}]};
// error {"errors": [{"code", "context"}]}).
// The online check: https://dev.splunk.com/observability/reference/api/retrieve_metrics_metadata/latest
// (GET /v2/metric?limit=1). 429 with Retry-After is the generic shape of
// https://www.rfc-editor.org/rfc/rfc6585#section-4 for Splunk's documented request limits.
impl Fixture for Splunk {
    fn kind(&self) -> &'static str {
        "splunk"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        config(
            self.kind(),
            address,
            secret("splunk", &[("sf_token_key", SECRET)]),
        )
    }
    fn query(&self) -> &'static str {
        "total = data('traces.count', filter=filter('sf_service', 'podinfo')).sum().publish(enable=False)\n((total / 2) * 100).publish()"
    }
    fn carries_nan(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        let error = |status: u16, message: &str| {
            Response::json(
                status,
                format!(r#"{{"message":"{message}","errorType":"ERROR"}}"#),
            )
        };
        req.expect_header("X-SF-Token", SECRET)?;
        match case {
            Case::Unauthorized => return Ok(error(401, "Unauthorized")),
            Case::Forbidden => return Ok(error(403, "Forbidden")),
            _ => {}
        }
        if req.path == "/v2/metric" {
            req.expect("GET", "/v2/metric")?;
            req.expect_param("limit", "1")?;
            return Ok(Response::json(
                200,
                r#"{"count":1,"results":[{"name":"traces.count"}]}"#,
            ));
        }
        req.expect("POST", "/v2/signalflow/execute")?;
        req.expect_header("Content-Type", "text/plain")?;
        req.expect_param("immediate", "true")?;
        expect_window(req, "start", "stop", 10 * INTERVAL.as_millis() as u64)?;
        if req.body != self.query() {
            return Err(format!("the body is {:?}, expected the program", req.body));
        }
        let stream = |points: &[(&str, &str)]| {
            let mut out = String::from(
                "event: control-message\ndata: {\"event\":\"STREAM_START\",\"timestampMs\":1700000000000}\n\nevent: control-message\ndata: {\"event\":\"JOB_START\",\"handle\":\"FxMZ1zYAgAA\",\"timestampMs\":1700000000001}\n\n",
            );
            for (ts, _) in points {
                out.push_str(&format!("event: metadata\ndata: {{\"tsId\":\"{ts}\",\"properties\":{{\"sf_streamLabel\":\"x\"}}}}\n\n"));
            }
            for (ts, v) in points {
                out.push_str(&format!("event: data\ndata: {{\"logicalTimestampMs\":1700000000000,\"data\":[{{\"tsId\":\"{ts}\",\"value\":{v}}}]}}\n\n"));
            }
            out.push_str("event: control-message\ndata: {\"event\":\"END_OF_CHANNEL\",\"timestampMs\":1700000000002}\n\n");
            Response {
                content_type: "text/event-stream",
                ..Response::text(200, out)
            }
        };
        Ok(match case {
            Case::OneNumber(v) => stream(&[("AAAAAKcTBlI", &v.to_string())]),
            Case::NoData => stream(&[]),
            Case::SeveralSeries => stream(&[
                ("AAAAAKcTBlI", "1"),
                ("AAAAAFX8UvM", "2"),
                ("AAAAAGRn2w4", "3"),
            ]),
            Case::NaN => stream(&[("AAAAAKcTBlI", "null")]),
            Case::RefusedQuery => error(
                400,
                "Unable to compile program: line 1: unknown function 'dta'",
            ),
            Case::TooManyRequests => {
                error(429, "Too many requests").with_header("Retry-After", WAIT)
            }
            Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct CloudWatch;

/// The access key id of the CloudWatch fixture (not a secret: it is sent in every request).
const AWS_ACCESS_KEY_ID: &str = "AKIDFLEDGETEST";
/// The region the CloudWatch fixture is configured with.
const AWS_REGION: &str = "eu-west-1";
/// The path of `GetMetricData` in Smithy RPC v2 CBOR.
const GET_METRIC_DATA: &str = "/service/GraniteServiceVersion20100801/operation/GetMetricData";

// The AWS SDK for Rust speaks Smithy RPC v2 CBOR to CloudWatch (the protocol its CloudWatch
// client is generated for), with CloudWatch's awsQuery-compatible error codes:
// - https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html (POST
//   /service/{service}/operation/{operation}, smithy-protocol: rpc-v2-cbor, Content-Type and
//   Accept application/cbor, timestamps as CBOR tag 1, errors as a map with __type)
// - https://smithy.io/2.0/aws/protocols/aws-query-protocol.html#aws-protocols-awsquerycompatible-trait
//   (the x-amzn-query-error header: "Code;Sender")
// - https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html
//   (MetricDataQueries, StartTime, EndTime, NextToken, ScanBy, MaxDatapoints; the answer's
//   MetricDataResults with Id, Label, Timestamps, Values, StatusCode Complete|PartialData, and
//   NextToken for the next page; InvalidNextToken)
// - https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CommonErrors.html
//   (AccessDenied 403, Throttling 400, InvalidParameterValue 400, MissingParameter 400)
// - https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
//   (Signature Version 4, recomputed here from the request with the aws-sigv4 crate; the signing
//   name of CloudWatch is "monitoring"; a wrong signature is SignatureDoesNotMatch, 403).
impl Fixture for CloudWatch {
    fn kind(&self) -> &'static str {
        "cloudwatch"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        ProviderConfig {
            region: Some(AWS_REGION.into()),
            ..config(self.kind(), address, None)
        }
    }
    fn query(&self) -> &'static str {
        r#"[
  {"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"},
  {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "MyKubernetesCluster", "MetricName": "ErrorCount",
     "Dimensions": [{"Name": "appName", "Value": "podinfo.test"}]}, "Period": 60, "Stat": "Sum", "Unit": "Count"},
   "ReturnData": false},
  {"Id": "m2", "MetricStat": {"Metric": {"Namespace": "MyKubernetesCluster", "MetricName": "RequestCount",
     "Dimensions": [{"Name": "appName", "Value": "podinfo.test"}]}, "Period": 60, "Stat": "Sum", "Unit": "Count"},
   "ReturnData": false}
]"#
    }
    fn says_the_wait(&self) -> bool {
        false
    }
    fn status(&self, case: Case) -> u16 {
        match case {
            // CloudWatch knows no 401: an unknown key or a wrong signature is 403, throttling 400.
            Case::Unauthorized | Case::Forbidden => 403,
            Case::TooManyRequests => 400,
            _ => 200,
        }
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        req.expect("POST", GET_METRIC_DATA)?;
        req.expect_header("smithy-protocol", "rpc-v2-cbor")?;
        req.expect_header("content-type", "application/cbor")?;
        req.expect_header("accept", "application/cbor")?;
        // The server of the Unauthorized case holds another secret for the key id.
        let known = if case == Case::Unauthorized {
            "an0ther-s3cret"
        } else {
            SECRET
        };
        if let Err(why) = aws::verify_sigv4(req, AWS_ACCESS_KEY_ID, known, AWS_REGION, "monitoring")
        {
            if case == Case::Unauthorized {
                return Ok(aws::error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
                ));
            }
            return Err(why);
        }
        let body = aws::decode(&req.raw)?;
        let queries = aws::field(&body, "MetricDataQueries")
            .and_then(|q| q.as_array())
            .ok_or("MetricDataQueries is missing or not a list")?;
        if queries.is_empty() {
            // The online check: authenticated, refused for want of queries.
            return Ok(aws::error(
                400,
                "MissingParameter",
                "The parameter MetricDataQueries.member.1 is required.",
            ));
        }
        aws::expect_queries(queries)?;
        let (start, end) = (
            aws::timestamp(&body, "StartTime")?,
            aws::timestamp(&body, "EndTime")?,
        );
        if end - start != 10.0 * INTERVAL.as_secs_f64() {
            return Err(format!(
                "StartTime..EndTime spans {}s, expected ten intervals",
                end - start
            ));
        }
        if aws::field(&body, "MaxDatapoints").and_then(|v| v.as_integer()) != Some(20.into()) {
            return Err("MaxDatapoints is not 20".into());
        }
        if aws::text(&body, "ScanBy") != Some("TimestampDescending") {
            return Err("ScanBy is not TimestampDescending".into());
        }
        let token = aws::text(&body, "NextToken");
        if token.is_some_and(|t| t != "page-2") {
            return Ok(aws::error(
                400,
                "InvalidNextToken",
                "The service returned an error with Error Code InvalidNextToken.",
            ));
        }
        let t = end.floor() as i64;
        Ok(match case {
            // The newest point is on the second page, after a PartialData first page.
            Case::OneNumber(_) if token.is_none() => {
                aws::results(&[("e1", "PartialData", &[(t - 120, 1.0)])], Some("page-2"))
            }
            Case::OneNumber(v) => {
                aws::results(&[("e1", "Complete", &[(t, v), (t - 60, 2.0)])], None)
            }
            Case::NoData => aws::results(&[("e1", "Complete", &[])], None),
            Case::SeveralSeries => aws::results(
                &[
                    ("e1", "Complete", &[(t, 0.5)]),
                    ("m1", "Complete", &[(t, 1.0)]),
                    ("m2", "Complete", &[(t, 2.0)]),
                ],
                None,
            ),
            Case::NaN => aws::results(&[("e1", "Complete", &[(t, f64::NAN)])], None),
            Case::RefusedQuery => aws::error(
                400,
                "InvalidParameterValue",
                "The value m1 / m2 / for parameter MetricDataQueries.member.1.Expression is not valid.",
            ),
            Case::TooManyRequests => aws::error(400, "Throttling", "Rate exceeded"),
            Case::Forbidden => aws::error(
                403,
                "AccessDenied",
                "User: arn:aws:iam::123456789012:user/fledge is not authorized to perform: cloudwatch:GetMetricData",
            ),
            Case::Unauthorized => unreachable!(),
        })
    }
}

/// The CloudWatch contract server's parts: CBOR bodies and the SigV4 check.
mod aws {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use ciborium::Value;

    use super::{Request, Response};

    /// The request body as CBOR.
    pub fn decode(raw: &[u8]) -> Result<Value, String> {
        ciborium::from_reader(raw).map_err(|e| format!("the body is not CBOR: {e}"))
    }

    /// The field `name` of the CBOR map `v`.
    pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
        v.as_map()?
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    }

    /// The text field `name` of `v`.
    pub fn text<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
        field(v, name)?.as_text()
    }

    /// The timestamp field `name` (CBOR tag 1, epoch seconds), in seconds.
    pub fn timestamp(v: &Value, name: &str) -> Result<f64, String> {
        match field(v, name) {
            Some(Value::Tag(1, t)) => match t.as_ref() {
                Value::Integer(i) => Ok(i128::from(*i) as f64),
                Value::Float(f) => Ok(*f),
                other => Err(format!("{name} is tag 1 of {other:?}")),
            },
            other => Err(format!("{name} is {other:?}, not a timestamp (tag 1)")),
        }
    }

    /// `Err` unless `queries` are the fixture's three, as the template wrote them.
    pub fn expect_queries(queries: &[Value]) -> Result<(), String> {
        let ids: Vec<&str> = queries.iter().filter_map(|q| text(q, "Id")).collect();
        if ids != ["e1", "m1", "m2"] {
            return Err(format!("the query Ids are {ids:?}"));
        }
        if text(&queries[0], "Expression") != Some("m1 / m2")
            || text(&queries[0], "Label") != Some("ErrorRate")
            || field(&queries[0], "ReturnData").is_some()
        {
            return Err("query e1 is not the template's expression".into());
        }
        for (q, name) in [(&queries[1], "ErrorCount"), (&queries[2], "RequestCount")] {
            let stat = field(q, "MetricStat").ok_or("a MetricStat is missing")?;
            let metric = field(stat, "Metric").ok_or("a Metric is missing")?;
            let dims = field(metric, "Dimensions").and_then(Value::as_array);
            let dim = dims.and_then(|d| d.first());
            let ok = text(metric, "Namespace") == Some("MyKubernetesCluster")
                && text(metric, "MetricName") == Some(name)
                && dims.map(Vec::len) == Some(1)
                && dim.and_then(|d| text(d, "Name")) == Some("appName")
                && dim.and_then(|d| text(d, "Value")) == Some("podinfo.test")
                && field(stat, "Period").and_then(Value::as_integer) == Some(60.into())
                && text(stat, "Stat") == Some("Sum")
                && text(stat, "Unit") == Some("Count")
                && field(q, "ReturnData").and_then(Value::as_bool) == Some(false);
            if !ok {
                return Err(format!("query for {name} is not the template's: {q:?}"));
            }
        }
        Ok(())
    }

    fn cbor(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).expect("CBOR encodes");
        out
    }

    fn text_value(s: &str) -> Value {
        Value::Text(s.into())
    }

    /// One result of an answer: its Id, StatusCode and `(epoch seconds, value)` points.
    pub type Series<'a> = (&'a str, &'a str, &'a [(i64, f64)]);

    /// A `GetMetricData` answer of `results`, with `next` as its NextToken.
    pub fn results(results: &[Series], next: Option<&str>) -> Response {
        let results = results
            .iter()
            .map(|(id, status, points)| {
                Value::Map(vec![
                    (text_value("Id"), text_value(id)),
                    (text_value("Label"), text_value("ErrorRate")),
                    (
                        text_value("Timestamps"),
                        Value::Array(
                            points
                                .iter()
                                .map(|(t, _)| Value::Tag(1, Box::new(Value::Float(*t as f64))))
                                .collect(),
                        ),
                    ),
                    (
                        text_value("Values"),
                        Value::Array(points.iter().map(|(_, v)| Value::Float(*v)).collect()),
                    ),
                    (text_value("StatusCode"), text_value(status)),
                ])
            })
            .collect();
        let mut body = vec![
            (text_value("MetricDataResults"), Value::Array(results)),
            (text_value("Messages"), Value::Array(Vec::new())),
        ];
        if let Some(t) = next {
            body.push((text_value("NextToken"), text_value(t)));
        }
        Response::bytes(200, "application/cbor", cbor(&Value::Map(body)))
            .with_header("smithy-protocol", "rpc-v2-cbor")
    }

    /// An error answer: `__type` and `message` in the body, the awsQuery code in
    /// x-amzn-query-error.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        let body = Value::Map(vec![
            (
                text_value("__type"),
                text_value(&format!("com.amazonaws.cloudwatch#{code}")),
            ),
            (text_value("message"), text_value(message)),
        ]);
        let fault = if status >= 500 { "Receiver" } else { "Sender" };
        Response::bytes(status, "application/cbor", cbor(&body))
            .with_header("smithy-protocol", "rpc-v2-cbor")
            .with_header("x-amzn-query-error", &format!("{code};{fault}"))
    }

    /// `Ok` when `req` carries a valid SigV4 signature by `key_id` with `secret` for `region`
    /// and `service`: the signature is computed again from the method, path, signed headers and
    /// body, at the request's own X-Amz-Date, and compared.
    pub fn verify_sigv4(
        req: &Request,
        key_id: &str,
        secret: &str,
        region: &str,
        service: &str,
    ) -> Result<(), String> {
        verify_sigv4_session(req, key_id, secret, None, region, service)
    }

    /// [`verify_sigv4`] for temporary credentials: the session token must be sent
    /// (X-Amz-Security-Token) and signed.
    pub fn verify_sigv4_session(
        req: &Request,
        key_id: &str,
        secret: &str,
        session: Option<&str>,
        region: &str,
        service: &str,
    ) -> Result<(), String> {
        if let Some(token) = session {
            req.expect_header("x-amz-security-token", token)?;
        }
        let auth = req
            .header("authorization")
            .ok_or("no Authorization header")?;
        let rest = auth
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or("the Authorization header is not AWS4-HMAC-SHA256")?;
        let part = |name: &str| {
            rest.split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(name))
                .ok_or(format!("the Authorization header has no {name}"))
        };
        let (credential, signed, signature) = (
            part("Credential=")?,
            part("SignedHeaders=")?,
            part("Signature=")?,
        );
        let date = req.header("x-amz-date").ok_or("no X-Amz-Date header")?;
        let scope = format!(
            "{key_id}/{}/{region}/{service}/aws4_request",
            &date[..8.min(date.len())]
        );
        if credential != scope {
            return Err(format!(
                "the credential scope is {credential}, expected {scope}"
            ));
        }
        let signed: Vec<&str> = signed.split(';').collect();
        let musts: &[&str] = if session.is_some() {
            &["host", "x-amz-date", "x-amz-security-token"]
        } else {
            &["host", "x-amz-date"]
        };
        for must in musts {
            if !signed.contains(must) {
                return Err(format!("{must} is not signed"));
            }
        }
        let time = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", date)
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map_err(|e| format!("X-Amz-Date {date}: {e}"))?;
        let time = std::time::SystemTime::from(time.timestamp());
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter(|(k, _)| signed.contains(&k.as_str()) && k != "x-amz-date")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let identity =
            aws_credential_types::Credentials::new(key_id, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let host = req.header("host").ok_or("no Host header")?;
        let uri = format!("http://{host}{}", req.path);
        let signable = SignableRequest::new(
            &req.method,
            uri,
            headers.into_iter(),
            SignableBody::Bytes(&req.raw),
        )
        .map_err(|e| e.to_string())?;
        let (_, expected) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        if expected != signature {
            return Err("the SigV4 signature does not match the request".into());
        }
        Ok(())
    }
}

/// Every provider the suite runs against.
fn fixtures() -> Vec<Arc<dyn Fixture>> {
    vec![
        Arc::new(Prometheus),
        Arc::new(Datadog),
        Arc::new(NewRelic),
        Arc::new(Dynatrace),
        Arc::new(Graphite),
        Arc::new(InfluxDb),
        Arc::new(Splunk),
        Arc::new(CloudWatch),
        Arc::new(Stackdriver),
        Arc::new(Keptn),
        Arc::new(ExternalMetrics),
    ]
}

struct ExternalMetrics;

// The External Metrics API an adapter serves (and the API server proxies):
// https://github.com/kubernetes/design-proposals-archive/blob/main/instrumentation/external-metrics-api.md
// (GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}?labelSelector=…,
// an ExternalMetricValueList whose items carry metricName, metricLabels, timestamp and value as
// a Kubernetes quantity), failures as a Status object
// (https://kubernetes.io/docs/reference/using-api/api-concepts/), the bearer token of the
// provider's Secret (key `token`, as Flagger's docs name it).
impl Fixture for ExternalMetrics {
    fn kind(&self) -> &'static str {
        "externalmetrics"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        config(
            self.kind(),
            address,
            secret("external-metric-server-token", &[("token", SECRET)]),
        )
    }
    fn query(&self) -> &'static str {
        "webapp-frontend/job-success-rate?labelSelector=env%3Dproduction"
    }
    // A quantity cannot be NaN: the case sends an item without a number, which must fail.
    fn cases(&self) -> Vec<Case> {
        CASES.into_iter().filter(|c| *c != Case::NaN).collect()
    }
    // The client waits and retries a 429 as the Retry-After asks, until the query times out.
    fn says_the_wait(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        req.expect_header("Authorization", &format!("Bearer {SECRET}"))?;
        match case {
            Case::Unauthorized => return Ok(k8s::status(401, "Unauthorized", "Unauthorized")),
            Case::Forbidden => {
                return Ok(k8s::status(
                    403,
                    "Forbidden",
                    "job-success-rate.external.metrics.k8s.io is forbidden: User \"system:serviceaccount:fledge:fledge\" cannot list resource \"job-success-rate\" in API group \"external.metrics.k8s.io\" in the namespace \"webapp-frontend\"",
                ));
            }
            _ => {}
        }
        if req.path == "/apis/external.metrics.k8s.io/v1beta1" {
            req.expect("GET", "/apis/external.metrics.k8s.io/v1beta1")?;
            return Ok(Response::json(
                200,
                r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"external.metrics.k8s.io/v1beta1","resources":[{"name":"externalmetrics","singularName":"","namespaced":true,"kind":"ExternalMetricValueList","verbs":["get"]}]}"#.to_string(),
            ));
        }
        req.expect(
            "GET",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/webapp-frontend/job-success-rate",
        )?;
        if req.param("labelSelector") != Some("env=production") {
            return Err(format!(
                "labelSelector {:?}, expected env=production",
                req.param("labelSelector")
            ));
        }
        let item = |labels: &str, value: &str| {
            format!(
                r#"{{"metricName":"job-success-rate","metricLabels":{labels},"timestamp":"2026-01-01T00:00:00Z","value":"{value}"}}"#
            )
        };
        let list = |items: &[String]| {
            Response::json(
                200,
                format!(
                    r#"{{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{{}},"items":[{}]}}"#,
                    items.join(",")
                ),
            )
        };
        Ok(match case {
            // 99.5 as a quantity.
            Case::OneNumber(v) => {
                list(&[item(r#"{"env":"production"}"#, &format!("{}m", v * 1000.0))])
            }
            Case::NoData => list(&[]),
            Case::SeveralSeries => list(&[
                item(r#"{"env":"production","zone":"a"}"#, "1"),
                item(r#"{"env":"production","zone":"b"}"#, "2"),
            ]),
            Case::RefusedQuery => k8s::status(
                400,
                "BadRequest",
                "unable to parse the label selector: found '=', expected: identifier",
            ),
            Case::TooManyRequests => k8s::status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
            .with_header("Retry-After", WAIT),
            Case::NaN | Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

struct Stackdriver;

/// The Stackdriver fixture's project.
const GCP_PROJECT: &str = "my-project";
/// The service account of the Stackdriver fixture's key.
const GCP_ACCOUNT: &str = "fledge@my-project.iam.gserviceaccount.com";

// The query: https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/query
// (POST /v3/projects/{project}/timeSeries:query with {"query", "pageToken"}; the answer
// {"timeSeriesDescriptor", "timeSeriesData": [{"labelValues", "pointData": [{"values":
// [TypedValue], "timeInterval"}]}], "nextPageToken", "partialErrors"}), with the bearer token in
// Authorization (https://cloud.google.com/docs/authentication/rest).
// Errors: https://cloud.google.com/apis/design/errors ({"error": {"code", "message", "status"}};
// INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429).
// The token: https://developers.google.com/identity/protocols/oauth2/service-account#httprest
// (POST to the key's token_uri, grant_type urn:ietf:params:oauth:grant-type:jwt-bearer and the
// assertion: a JWT signed RS256 with the key, whose iss is the account, aud the token_uri, and
// scope the scopes asked; the answer {"access_token", "expires_in", "token_type"}); the server
// checks the JWT's signature with the key's public half.
impl Fixture for Stackdriver {
    fn kind(&self) -> &'static str {
        "stackdriver"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        let key = google::key_json(&format!("{address}/token"));
        let keys = [
            ("project", GCP_PROJECT),
            ("serviceAccountKey", key.as_str()),
        ];
        config(self.kind(), address, secret("gcloud-sa", &keys))
    }
    fn query(&self) -> &'static str {
        "fetch k8s_container\n| metric 'istio.io/service/server/response_latencies'\n| filter (metric.destination_service_name == 'podinfo-canary' && metric.destination_service_namespace == 'test')\n| align delta(1m)\n| every 1m\n| group_by [], [value_response_latencies_percentile: percentile(value.response_latencies, 99)]"
    }
    fn says_the_wait(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        if req.path == "/token" {
            return google::token(req);
        }
        let error = |code: u16, status: &str, message: &str| {
            Response::json(
                code,
                format!(
                    r#"{{"error":{{"code":{code},"message":"{message}","status":"{status}"}}}}"#
                ),
            )
        };
        req.expect(
            "POST",
            &format!("/v3/projects/{GCP_PROJECT}/timeSeries:query"),
        )?;
        if case == Case::Unauthorized {
            return Ok(error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ));
        }
        req.expect_header("Authorization", &format!("Bearer {SECRET}"))?;
        req.expect_header("Content-Type", "application/json")?;
        let body: serde_json::Value =
            serde_json::from_str(&req.body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if body["query"] == "" {
            return Ok(error(400, "INVALID_ARGUMENT", "Query must not be empty."));
        }
        if body["query"] != self.query() {
            return Err(format!("the body's query is {}", body["query"]));
        }
        let page = body["pageToken"].as_str();
        if page.is_some_and(|p| p != "page-2") {
            return Ok(error(400, "INVALID_ARGUMENT", "Invalid page token."));
        }
        let answer = |values: &[&str], next: Option<&str>| {
            let series: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!(
                        r#"{{"labelValues":[{{"stringValue":"s{i}"}}],"pointData":[{{"values":[{{"doubleValue":{v}}}],"timeInterval":{{"startTime":"2026-01-01T00:01:00Z","endTime":"2026-01-01T00:02:00Z"}}}},{{"values":[{{"doubleValue":1.0}}],"timeInterval":{{"startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T00:01:00Z"}}}}]}}"#
                    )
                })
                .collect();
            let next = next.map_or(String::new(), |n| format!(r#","nextPageToken":"{n}""#));
            Response::json(
                200,
                format!(
                    r#"{{"timeSeriesDescriptor":{{"pointDescriptors":[{{"key":"value_response_latencies_percentile","valueType":"DOUBLE","metricKind":"GAUGE"}}]}},"timeSeriesData":[{}]{next}}}"#,
                    series.join(",")
                ),
            )
        };
        Ok(match case {
            // An empty first page with a token for the next.
            Case::OneNumber(_) if page.is_none() => answer(&[], Some("page-2")),
            Case::OneNumber(v) => answer(&[&v.to_string()], None),
            Case::NoData => answer(&[], None),
            Case::SeveralSeries => answer(&["1", "2", "3"], None),
            Case::NaN => answer(&["\"NaN\""], None),
            Case::RefusedQuery => error(
                400,
                "INVALID_ARGUMENT",
                "Line 2: Table operation 'metric' references metric 'istio.io/service/server/response_latencie' which is not known.",
            ),
            Case::Forbidden => error(
                403,
                "PERMISSION_DENIED",
                "Permission monitoring.timeSeries.list denied (or the resource may not exist).",
            ),
            Case::TooManyRequests => error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Time series queries' of service 'monitoring.googleapis.com'.",
            ),
            Case::Unauthorized => unreachable!(),
        })
    }
}

/// The Stackdriver contract server's parts: a service-account key made for the tests, and the
/// token endpoint that checks the JWT signed with it.
mod google {
    use std::sync::OnceLock;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::{GCP_ACCOUNT, GCP_PROJECT, Request, Response, SECRET, SECRET2};

    /// The RSA key of the tests' service account, made once per run: its PKCS#8 PEM and its
    /// public key.
    fn keys() -> &'static (String, Vec<u8>) {
        static KEYS: OnceLock<(String, Vec<u8>)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let pair = KeyPair::generate(KeySize::Rsa2048).expect("an RSA key");
            let der = pair.as_der().expect("PKCS#8");
            let b64 = STANDARD.encode(der.as_ref());
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            );
            (pem, pair.public_key().as_ref().to_vec())
        })
    }

    /// A service-account key file (as the Cloud console downloads it) whose token_uri is
    /// `token_uri`.
    pub fn key_json(token_uri: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": GCP_PROJECT,
            "private_key_id": SECRET2,
            "private_key": keys().0,
            "client_email": GCP_ACCOUNT,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }

    fn part(b64: &str) -> Result<Vec<u8>, String> {
        URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|e| format!("a JWT part is not base64url: {e}"))
    }

    /// The token endpoint: the JWT assertion checked (header, claims, signature), then a token.
    pub fn token(req: &Request) -> Result<Response, String> {
        req.expect("POST", "/token")?;
        req.expect_header("content-type", "application/x-www-form-urlencoded")?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or(format!("the form has no {name}"))
        };
        if field("grant_type")? != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return Err("grant_type is not the JWT bearer grant".into());
        }
        let jwt = field("assertion")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [head, claims, signature] = parts.as_slice() else {
            return Err("the assertion is not a JWT of three parts".into());
        };
        let header: serde_json::Value =
            serde_json::from_slice(&part(head)?).map_err(|e| e.to_string())?;
        if header["alg"] != "RS256" {
            return Err(format!("the JWT's alg is {}", header["alg"]));
        }
        let signed = format!("{head}.{claims}");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &keys().1)
            .verify(signed.as_bytes(), &part(signature)?)
            .map_err(|_| "the JWT's signature does not verify with the key".to_string())?;
        let claims: serde_json::Value =
            serde_json::from_slice(&part(claims)?).map_err(|e| e.to_string())?;
        let token_uri = format!("http://{}/token", req.header("host").unwrap_or_default());
        if claims["iss"] != GCP_ACCOUNT || claims["aud"] != token_uri.as_str() {
            return Err(format!("the JWT's iss or aud is wrong: {claims}"));
        }
        if claims["scope"] != "https://www.googleapis.com/auth/monitoring.read" {
            return Err(format!("the JWT asks for the scope {}", claims["scope"]));
        }
        let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
        if !matches!((iat, exp), (Some(i), Some(e)) if e > i && e - i <= 3600) {
            return Err("the JWT's iat and exp are not an hour or less apart".into());
        }
        Ok(Response::json(
            200,
            format!(r#"{{"access_token":"{SECRET}","expires_in":3599,"token_type":"Bearer"}}"#),
        ))
    }
}

struct Keptn;

// The Kubernetes API as the controller's client speaks it:
// https://kubernetes.io/docs/reference/using-api/api-concepts/ (GET
// /apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}, the discovery document
// /apis/{group}/{version}, failures as a Status object with code, reason and message; 401
// Unauthorized, 403 Forbidden, 404 NotFound, 429 TooManyRequests with Retry-After), with the
// bearer token of the client's identity
// (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#service-account-tokens).
// The KeptnMetric (metrics.keptn.sh/v1beta1, status.value a decimal string, status.rawValue,
// status.lastUpdated): https://keptn.sh/stable/docs/reference/crd-reference/metrics/ and the
// API reference https://keptn.sh/stable/docs/reference/api-reference/metrics/v1/.
impl Fixture for Keptn {
    fn kind(&self) -> &'static str {
        "keptn"
    }
    fn config(&self, _address: &str) -> ProviderConfig {
        config(self.kind(), "", None)
    }
    fn context(&self, address: &str, timeout: Duration) -> Context {
        Context {
            timeout,
            cluster: Some(k8s::cluster(address)),
        }
    }
    fn cases(&self) -> Vec<Case> {
        // A KeptnMetric holds one value: several series cannot be expressed.
        CASES
            .into_iter()
            .filter(|c| *c != Case::SeveralSeries)
            .collect()
    }
    fn query(&self) -> &'static str {
        "keptnmetric/test/response-time/2m/reporter=destination"
    }
    // The controller's client retries a 429 as the Retry-After asks, until the query times out.
    fn says_the_wait(&self) -> bool {
        false
    }
    fn serve(&self, case: Case, req: &Request) -> Result<Response, String> {
        req.expect_header("Authorization", &format!("Bearer {SECRET}"))?;
        match case {
            Case::Unauthorized => return Ok(k8s::status(401, "Unauthorized", "Unauthorized")),
            Case::Forbidden => {
                return Ok(k8s::status(
                    403,
                    "Forbidden",
                    "keptnmetrics.metrics.keptn.sh \"response-time\" is forbidden: User \"system:serviceaccount:fledge:fledge\" cannot get resource \"keptnmetrics\" in API group \"metrics.keptn.sh\" in the namespace \"test\"",
                ));
            }
            _ => {}
        }
        if req.path == "/apis/metrics.keptn.sh/v1beta1" {
            req.expect("GET", "/apis/metrics.keptn.sh/v1beta1")?;
            return Ok(k8s::discovery());
        }
        req.expect(
            "GET",
            "/apis/metrics.keptn.sh/v1beta1/namespaces/test/keptnmetrics/response-time",
        )?;
        let metric = |status: &str| {
            Response::json(
                200,
                format!(
                    r#"{{"apiVersion":"metrics.keptn.sh/v1beta1","kind":"KeptnMetric","metadata":{{"name":"response-time","namespace":"test","resourceVersion":"42"}},"spec":{{"provider":{{"name":"my-provider"}},"query":"histogram_quantile(0.95, sum by(le) (rate(http_server_request_latency_seconds_bucket[1m])))","fetchIntervalSeconds":10}},"status":{status}}}"#
                ),
            )
        };
        Ok(match case {
            Case::OneNumber(v) => metric(&format!(
                r#"{{"value":"{v}","rawValue":"OTkuNQ==","lastUpdated":"2026-01-01T00:00:00Z"}}"#
            )),
            Case::NoData => metric("{}"),
            Case::NaN => metric(r#"{"value":"NaN","lastUpdated":"2026-01-01T00:00:00Z"}"#),
            Case::RefusedQuery => k8s::status(
                404,
                "NotFound",
                "keptnmetrics.metrics.keptn.sh \"response-time\" not found",
            ),
            Case::TooManyRequests => k8s::status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
            .with_header("Retry-After", WAIT),
            Case::SeveralSeries | Case::Unauthorized | Case::Forbidden => unreachable!(),
        })
    }
}

/// The Keptn contract server's parts: a client of it, Status objects, discovery.
mod k8s {
    use super::{Cluster, Response, SECRET};

    /// A client of the API server at `address`, with [`SECRET`] as its bearer token.
    pub fn cluster(address: &str) -> Cluster {
        let mut config = kube::Config::new(address.parse().expect("a URL"));
        config.auth_info.token = Some(SECRET.to_string().into());
        Cluster {
            client: kube::Client::try_from(config).expect("a client"),
            shown: fledge_metrics_providers::shown(address),
        }
    }

    /// A failure as the API server answers it.
    pub fn status(code: u16, reason: &str, message: &str) -> Response {
        Response::json(
            code,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code,
            })
            .to_string(),
        )
    }

    /// The discovery document of metrics.keptn.sh/v1beta1.
    pub fn discovery() -> Response {
        let resource = |name: &str, singular: &str, kind: &str| {
            serde_json::json!({
                "name": name, "singularName": singular, "namespaced": true, "kind": kind,
                "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
            })
        };
        Response::json(
            200,
            serde_json::json!({
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "metrics.keptn.sh/v1beta1",
                "resources": [
                    resource("keptnmetrics", "keptnmetric", "KeptnMetric"),
                    resource("analyses", "analysis", "Analysis"),
                    resource("analysisdefinitions", "analysisdefinition", "AnalysisDefinition"),
                ],
            })
            .to_string(),
        )
    }
}

/// Set in the environment of the child process a test runs in (see [`in_child`]).
const CHILD: &str = "FLEDGE_CONFORMANCE_CHILD";

/// Runs test `name` of this binary again in a child process whose environment holds the
/// CloudWatch fixture's credentials for the AWS SDK's standard credential chain (and nothing
/// else an AWS SDK reads: no profile, no instance metadata), and checks it passed; `true` in the
/// parent, which is then done. A test cannot set its own process's environment (changing it
/// while threads run is unsafe), and the chain reads the environment.
async fn in_child(name: &str) -> bool {
    let keys = [
        ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
    ];
    in_child_with(name, &keys).await
}

/// [`in_child`], with only `extra` in the child's environment besides what keeps AWS's and
/// Google's SDKs from reading this machine's files and metadata services. Neither AWS's nor
/// Google's variables of the parent reach the child.
async fn in_child_with(name: &str, extra: &[(&str, std::ffi::OsString)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, _) in std::env::vars_os() {
        let k_text = k.to_string_lossy();
        if k_text.starts_with("AWS_") || k_text.starts_with("GOOGLE_") || k_text.starts_with("GCE_")
        {
            cmd.env_remove(k);
        }
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let nowhere = std::env::temp_dir().join("fledge-conformance-no-aws-config");
    let out = cmd
        .env(CHILD, "1")
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the test's child process finished within 2 minutes")
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// A contract server for `f`, answering `case`.
async fn serve(f: &Arc<dyn Fixture>, case: Case) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let f = f.clone();
    contract_server(Arc::new(move |req: &Request| f.serve(case, req))).await
}

/// The outcome of one query (after the online check, as the controller runs them).
async fn outcome(f: &dyn Fixture, address: &str, timeout: Duration) -> MetricOutcome {
    let p = match provider_for(&f.config(address), f.context(address, timeout)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    p.query_over(f.query(), INTERVAL).await
}

fn judge(f: &dyn Fixture, case: Case, got: &MetricOutcome) -> Result<(), String> {
    let text = format!("{got:?}");
    if text.contains(SECRET) || text.contains(SECRET2) {
        return Err(format!("the secret shows in {text}"));
    }
    let ok = match case {
        Case::OneNumber(v) => matches!(got, MetricOutcome::Value(x) if *x == v),
        Case::NoData => matches!(got, MetricOutcome::NoData),
        Case::SeveralSeries => matches!(got, MetricOutcome::Error(m) if m.contains("series")),
        // A NaN is never a passing number: either the value NaN, which the engine fails, or a
        // failure saying so.
        Case::NaN if !f.carries_nan() => matches!(got, MetricOutcome::NoData),
        Case::NaN => match got {
            MetricOutcome::Value(v) => v.is_nan(),
            MetricOutcome::Error(m) => m.contains("NaN"),
            _ => false,
        },
        Case::RefusedQuery => matches!(got, MetricOutcome::Error(m) if m.contains("refused")),
        Case::Unauthorized | Case::Forbidden => {
            matches!(got, MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)
                if m.contains(&f.status(case).to_string()) && m.contains("credentials"))
        }
        Case::TooManyRequests => {
            matches!(got, MetricOutcome::ProviderUnreachable(m)
                if m.contains(&f.status(case).to_string()) && m.to_lowercase().contains("too many requests")
                    && (!f.says_the_wait() || m.contains(&format!("wait {WAIT}s"))))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{case:?} gave {text}"))
    }
}

#[tokio::test]
async fn every_provider_gives_one_number_or_says_what_went_wrong() {
    if in_child("every_provider_gives_one_number_or_says_what_went_wrong").await {
        return;
    }
    let mut wrong = Vec::new();
    for f in fixtures() {
        for case in f.cases() {
            let (url, violations) = serve(&f, case).await;
            let got = outcome(f.as_ref(), &url, Duration::from_secs(5)).await;
            if let Err(e) = judge(f.as_ref(), case, &got) {
                wrong.push(format!("{}: {e}", f.kind()));
            }
            for v in violations.lock().unwrap().iter() {
                wrong.push(format!(
                    "{}: {case:?}: the request broke the contract: {v}",
                    f.kind()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn the_online_check_follows_the_contract_and_fails_on_denial() {
    if in_child("the_online_check_follows_the_contract_and_fails_on_denial").await {
        return;
    }
    let mut wrong = Vec::new();
    for f in fixtures() {
        for case in [Case::OneNumber(99.5), Case::Unauthorized] {
            let (url, violations) = serve(&f, case).await;
            let p = provider_for(&f.config(&url), f.context(&url, Duration::from_secs(5))).unwrap();
            let online = p.online().await;
            let ok = match case {
                Case::Unauthorized => online.as_ref().is_err_and(|m| {
                    m.contains(&f.status(Case::Unauthorized).to_string()) && !m.contains(SECRET)
                }),
                _ => online.is_ok(),
            };
            if !ok {
                wrong.push(format!("{}: {case:?}: online gave {online:?}", f.kind()));
            }
            for v in violations.lock().unwrap().iter() {
                wrong.push(format!(
                    "{}: online: the request broke the contract: {v}",
                    f.kind()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn an_unreachable_server_is_unreachable_and_its_check_fails_offline() {
    if in_child("an_unreachable_server_is_unreachable_and_its_check_fails_offline").await {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for f in fixtures() {
        let address = format!("http://127.0.0.1:{port}");
        let got = outcome(f.as_ref(), &address, Duration::from_secs(5)).await;
        assert!(
            matches!(&got, MetricOutcome::ProviderUnreachable(m) if m.contains(&address) && !m.contains(SECRET)),
            "{}: {got:?}",
            f.kind()
        );
        let p = provider_for(
            &f.config(&address),
            f.context(&address, Duration::from_secs(5)),
        )
        .unwrap();
        let online = p.online().await;
        assert!(
            online.as_ref().is_err_and(|m| !m.contains(SECRET)),
            "{}: online {online:?}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_timeout() {
    if in_child("a_server_that_never_answers_times_out_within_the_timeout").await {
        return;
    }
    for f in fixtures() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and holds every connection without answering.
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            outcome(f.as_ref(), &address, Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: the query outlived its timeout", f.kind()));
        assert!(
            matches!(&got, MetricOutcome::ProviderUnreachable(m) if m.contains("0.3s")),
            "{}: {got:?}",
            f.kind()
        );
        hold.abort();
    }
}

#[test]
fn a_type_this_build_lacks_is_refused_naming_the_ones_it_has() {
    let mut cfg = Prometheus.config("http://127.0.0.1:1");
    cfg.kind = "graphite-but-not-really".into();
    let Err(MetricOutcome::Error(m)) = provider_for(&cfg, Duration::from_secs(1)) else {
        panic!("accepted");
    };
    assert!(
        m.contains("graphite-but-not-really") && m.contains("prometheus"),
        "{m}"
    );
}

#[test]
fn every_provider_is_known_to_validation_and_runs_the_suite() {
    assert_eq!(
        fledge_metrics_providers::provider_names(),
        fledge_api::validate::SUPPORTED_METRIC_PROVIDERS,
        "fledge validate accepts exactly the metrics providers this build has"
    );
    let covered: Vec<&str> = fixtures().iter().map(|f| f.kind()).collect();
    assert_eq!(covered, fledge_metrics_providers::provider_names());
}

#[test]
fn the_cloudwatch_server_rejects_a_request_whose_signature_does_not_match() {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let body = b"\xa1\x71MetricDataQueries\x80".to_vec();
    let time = std::time::UNIX_EPOCH + Duration::from_secs(1_764_806_400);
    let identity =
        aws_credential_types::Credentials::new(AWS_ACCESS_KEY_ID, SECRET, None, None, "test")
            .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(AWS_REGION)
        .name("monitoring")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", "127.0.0.1:1"),
        ("content-type", "application/cbor"),
    ];
    let signable = SignableRequest::new(
        "POST",
        format!("http://127.0.0.1:1{GET_METRIC_DATA}"),
        headers.into_iter(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in instructions.headers() {
        signed.push((k.to_ascii_lowercase(), v.to_string()));
    }
    let request = Request {
        method: "POST".into(),
        path: GET_METRIC_DATA.into(),
        headers: signed,
        raw: body.clone(),
        ..Request::default()
    };
    let verify = |r: &Request, secret: &str| {
        aws::verify_sigv4(r, AWS_ACCESS_KEY_ID, secret, AWS_REGION, "monitoring")
    };
    assert_eq!(verify(&request, SECRET), Ok(()));
    assert!(verify(&request, "an0ther-s3cret").is_err());
    let mut tampered = request.clone();
    tampered.raw[1] ^= 1;
    assert!(verify(&tampered, SECRET).is_err());
    let mut moved = request.clone();
    moved.path = "/service/GraniteServiceVersion20100801/operation/PutMetricData".into();
    assert!(verify(&moved, SECRET).is_err());
    let mut unsigned = request;
    unsigned.headers.retain(|(k, _)| k != "authorization");
    assert!(verify(&unsigned, SECRET).is_err());
}

#[tokio::test]
async fn stackdriver_without_a_key_uses_googles_default_credentials() {
    const NAME: &str = "stackdriver_without_a_key_uses_googles_default_credentials";
    let key_file = std::env::temp_dir().join(format!(
        "fledge-conformance-gcp-key-{}.json",
        std::process::id()
    ));
    if in_child_with(
        NAME,
        &[("GOOGLE_APPLICATION_CREDENTIALS", key_file.clone().into())],
    )
    .await
    {
        let _ = std::fs::remove_file(&key_file);
        return;
    }
    // In the child: the key file of GOOGLE_APPLICATION_CREDENTIALS, as application default
    // credentials find it, has its token_uri on this server.
    let f: Arc<dyn Fixture> = Arc::new(Stackdriver);
    let (url, violations) = serve(&f, Case::OneNumber(42.0)).await;
    let path = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").unwrap();
    std::fs::write(&path, google::key_json(&format!("{url}/token"))).unwrap();
    // A Secret with only the project (what Flagger's documentation has for workload identity),
    // then no Secret at all (the project is the credentials' own).
    for secret in [secret("gcloud-sa", &[("project", GCP_PROJECT)]), None] {
        let cfg = config("stackdriver", &url, secret);
        let p = provider_for(&cfg, Duration::from_secs(5)).unwrap();
        assert_eq!(p.online().await, Ok(()));
        let got = p.query_over(Stackdriver.query(), INTERVAL).await;
        assert!(
            matches!(got, MetricOutcome::Value(v) if v == 42.0),
            "{got:?}"
        );
    }
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
}

#[tokio::test]
async fn a_keptn_analysis_is_created_waited_for_and_deleted() {
    use std::sync::Mutex;
    const BASE: &str = "/apis/metrics.keptn.sh/v1beta1/namespaces/test/analyses";
    // What the server saw, in order, and how often the Analysis was read.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let handler = Arc::new(move |req: &Request| -> Result<Response, String> {
        req.expect_header("Authorization", &format!("Bearer {SECRET}"))?;
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        let analysis = |state: &str| {
            serde_json::json!({
                "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "Analysis",
                "metadata": {"name": "error-budget-x7k2p", "namespace": "test", "resourceVersion": "7"},
                "spec": {"analysisDefinition": {"name": "error-budget"}, "timeframe": {"recent": "5m"}},
                "status": serde_json::from_str::<serde_json::Value>(state).unwrap(),
            })
            .to_string()
        };
        match req.method.as_str() {
            "POST" => {
                req.expect("POST", BASE)?;
                let body: serde_json::Value =
                    serde_json::from_str(&req.body).map_err(|e| e.to_string())?;
                let expected = serde_json::json!({
                    "analysisDefinition": {"name": "error-budget"},
                    "timeframe": {"recent": "5m"},
                    "args": {"workload": "podinfo", "stage": "canary"},
                });
                if body["apiVersion"] != "metrics.keptn.sh/v1beta1"
                    || body["kind"] != "Analysis"
                    || body["metadata"]["generateName"] != "error-budget-"
                    || body["spec"] != expected
                {
                    return Err(format!("the Analysis is not the query's: {body}"));
                }
                Ok(Response::json(201, analysis("{}")))
            }
            "GET" => {
                req.expect("GET", &format!("{BASE}/error-budget-x7k2p"))?;
                let reads = log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.starts_with("GET"))
                    .count();
                Ok(Response::json(
                    200,
                    analysis(if reads < 2 {
                        r#"{"state":"Progressing"}"#
                    } else {
                        r#"{"state":"Completed","pass":true,"raw":"{}"}"#
                    }),
                ))
            }
            "DELETE" => {
                req.expect("DELETE", &format!("{BASE}/error-budget-x7k2p"))?;
                Ok(Response::json(
                    200,
                    analysis(r#"{"state":"Completed","pass":true}"#),
                ))
            }
            other => Err(format!("unexpected {other}")),
        }
    });
    let (url, violations) = contract_server(handler).await;
    let ctx = Keptn.context(&url, Duration::from_secs(8));
    let p = provider_for(&Keptn.config(&url), ctx).unwrap();
    let got = p
        .query_over(
            "analysis/test/error-budget/5m/workload=podinfo;stage=canary",
            INTERVAL,
        )
        .await;
    assert!(
        matches!(got, MetricOutcome::Value(v) if v == 1.0),
        "{got:?}"
    );
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some(&*format!("POST {BASE}"))
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some(&*format!("DELETE {BASE}/error-budget-x7k2p"))
    );
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("GET")).count(),
        2,
        "{seen:?}"
    );
}

#[test]
fn keptn_needs_the_cluster() {
    let Err(MetricOutcome::Error(m)) =
        provider_for(&Keptn.config("http://127.0.0.1:1"), Duration::from_secs(1))
    else {
        panic!("built without a cluster");
    };
    assert!(m.contains("Kubernetes client"), "{m}");
}

#[tokio::test]
async fn cloudwatch_signs_with_the_web_identity_credentials_irsa_sets_up() {
    use std::sync::Mutex;
    const NAME: &str = "cloudwatch_signs_with_the_web_identity_credentials_irsa_sets_up";
    const ROLE: &str = "arn:aws:iam::123456789012:role/fledge";
    const TEMP_KEY: &str = "ASIAFLEDGETEST";
    const SESSION: &str = "FwoGZXIvYXdzEFLEDGE-session-token";
    if std::env::var_os(CHILD).is_some() {
        // In the child: only the web identity in the environment, as EKS sets it on the pod.
        let url = std::env::var("FLEDGE_TEST_CLOUDWATCH").unwrap();
        let p = provider_for(&CloudWatch.config(&url), Duration::from_secs(5)).unwrap();
        let got = p.query_over(CloudWatch.query(), INTERVAL).await;
        assert!(
            matches!(got, MetricOutcome::Value(v) if v == 12.5),
            "{got:?}"
        );
        return;
    }
    // The parent serves STS and CloudWatch while the child runs.
    // https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html (the
    // AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE a pod gets) and
    // https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
    // (awsQuery: a form POST with Action, Version, RoleArn, RoleSessionName and WebIdentityToken,
    // unsigned; the XML answer's Credentials).
    let token =
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZmxlZGdlOmZsZWRnZSJ9.c2ln";
    let token_file = std::env::temp_dir().join(format!(
        "fledge-conformance-web-identity-{}",
        std::process::id()
    ));
    std::fs::write(&token_file, token).unwrap();
    let assumed = Arc::new(Mutex::new(0));
    let count = assumed.clone();
    let handler = Arc::new(move |req: &Request| -> Result<Response, String> {
        if req.path == "/" {
            req.expect("POST", "/")?;
            req.expect_header("content-type", "application/x-www-form-urlencoded")?;
            if req.header("authorization").is_some() {
                return Err("AssumeRoleWithWebIdentity is signed; it takes no credentials".into());
            }
            let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
                .into_owned()
                .collect();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if field("Action") != Some("AssumeRoleWithWebIdentity")
                || field("Version") != Some("2011-06-15")
                || field("RoleArn") != Some(ROLE)
                || field("WebIdentityToken") != Some(token)
                || field("RoleSessionName").is_none_or(str::is_empty)
            {
                return Err(format!("not the pod's AssumeRoleWithWebIdentity: {form:?}"));
            }
            *count.lock().unwrap() += 1;
            let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
            return Ok(Response {
                content_type: "text/xml",
                ..Response::text(
                    200,
                    format!(
                        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:fledge:fledge</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/fledge/fledge-session</Arn>
      <AssumedRoleId>AROAFLEDGETEST:fledge-session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{SESSION}</SessionToken>
      <SecretAccessKey>{SECRET2}</SecretAccessKey>
      <Expiration>{}</Expiration>
      <AccessKeyId>{TEMP_KEY}</AccessKeyId>
    </Credentials>
    <Provider>oidc.eks.eu-west-1.amazonaws.com/id/FLEDGE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
                        expires.strftime("%Y-%m-%dT%H:%M:%SZ")
                    ),
                )
            });
        }
        req.expect("POST", GET_METRIC_DATA)?;
        aws::verify_sigv4_session(
            req,
            TEMP_KEY,
            SECRET2,
            Some(SESSION),
            AWS_REGION,
            "monitoring",
        )?;
        let body = aws::decode(&req.raw)?;
        let end = aws::timestamp(&body, "EndTime")?.floor() as i64;
        Ok(aws::results(&[("e1", "Complete", &[(end, 12.5)])], None))
    });
    let (url, violations) = contract_server(handler).await;
    let ran = in_child_with(
        NAME,
        &[
            ("AWS_ROLE_ARN", ROLE.into()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.clone().into()),
            ("AWS_ENDPOINT_URL_STS", url.clone().into()),
            ("FLEDGE_TEST_CLOUDWATCH", url.into()),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&token_file);
    assert!(ran);
    assert!(
        violations.lock().unwrap().is_empty(),
        "{:?}",
        violations.lock().unwrap()
    );
    assert_eq!(*assumed.lock().unwrap(), 1, "the role is assumed once");
}
