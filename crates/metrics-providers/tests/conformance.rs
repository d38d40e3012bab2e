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
use fledge_metrics_providers::{ProviderConfig, SecretData, provider_for};
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
    /// Whether the wire format can carry NaN; where it cannot, the NaN case sends a point
    /// without a value, which must be no data.
    fn carries_nan(&self) -> bool {
        true
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
        if body["query"] == r#"from(bucket: "default") |> range(start: -2h)"# {
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
    ]
}

/// A contract server for `f`, answering `case`.
async fn serve(f: &Arc<dyn Fixture>, case: Case) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let f = f.clone();
    contract_server(Arc::new(move |req: &Request| f.serve(case, req))).await
}

/// The outcome of one query (after the online check, as the controller runs them).
async fn outcome(f: &dyn Fixture, address: &str, timeout: Duration) -> MetricOutcome {
    let p = match provider_for(&f.config(address), timeout) {
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
        Case::Unauthorized => {
            matches!(got, MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)
                if m.contains("401") && m.contains("credentials"))
        }
        Case::Forbidden => {
            matches!(got, MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)
                if m.contains("403") && m.contains("credentials"))
        }
        Case::TooManyRequests => {
            matches!(got, MetricOutcome::ProviderUnreachable(m)
                if m.contains("429") && m.to_lowercase().contains("too many requests")
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
    let mut wrong = Vec::new();
    for f in fixtures() {
        for case in CASES {
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
    let mut wrong = Vec::new();
    for f in fixtures() {
        for case in [Case::OneNumber(99.5), Case::Unauthorized] {
            let (url, violations) = serve(&f, case).await;
            let p = provider_for(&f.config(&url), Duration::from_secs(5)).unwrap();
            let online = p.online().await;
            let ok = match case {
                Case::Unauthorized => online
                    .as_ref()
                    .is_err_and(|m| m.contains("401") && !m.contains(SECRET)),
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
        let p = provider_for(&f.config(&address), Duration::from_secs(5)).unwrap();
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
