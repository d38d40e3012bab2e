//! The InfluxDB metrics provider: Flux over the v2 query API (`POST /api/v2/query?org=…`,
//! <https://docs.influxdata.com/influxdb/v2/api/#operation/PostQuery>) with
//! `Authorization: Token <token>`, as Flagger's client library sends it. A Secret, when named,
//! must hold `token` and `org`, the keys Flagger reads. The answer is annotated CSV
//! (<https://docs.influxdata.com/influxdb/v2/reference/syntax/annotated-csv/>); the result is the
//! `_value` of its one row. The online check lists one bucket (`buckets() |> limit(n: 1)`).
//! Tested against InfluxDB 1.8's v2 query API as well as against the documented contract.

use std::time::Duration;

use fledge_core::MetricOutcome;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use crate::http::{Http, base_url, endpoint, json_message, online, secret_header};
use crate::{MetricsProvider, ProviderConfig};

/// The Secret key of the API token, as Flagger names it.
pub const TOKEN: &str = "token";
/// The Secret key of the organisation, as Flagger names it.
pub const ORG: &str = "org";

/// A client of one InfluxDB 2 server.
pub struct InfluxDb {
    http: Http,
    query: Url,
}

impl InfluxDb {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<InfluxDb, String> {
        let base = base_url(
            "influxdb",
            &cfg.address,
            None,
            "http://influxdb.monitoring:8086",
        )?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/csv"));
        let mut query = endpoint(&base, "/api/v2/query");
        if cfg.secret.is_some() {
            let keys = cfg.credentials("influxdb", &[TOKEN, ORG])?;
            headers.insert(
                AUTHORIZATION,
                secret_header(
                    &format!("Token {}", keys[0]),
                    &format!("the {TOKEN} of the provider's Secret"),
                )?,
            );
            query.query_pairs_mut().append_pair("org", &keys[1]);
        }
        let http = Http::new("InfluxDB", "token, org", cfg, &base, headers, timeout)?;
        Ok(InfluxDb { http, query })
    }

    /// [`InfluxDb::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(InfluxDb::new(cfg, ctx.timeout)?))
    }

    fn flux(&self, flux: &str) -> reqwest::RequestBuilder {
        // The body the InfluxDB client libraries send: the query, its type and the dialect
        // (a header row and the datatype, group and default annotations).
        let body = serde_json::json!({
            "query": flux,
            "type": "flux",
            "dialect": {
                "header": true,
                "delimiter": ",",
                "annotations": ["datatype", "group", "default"],
                "commentPrefix": "#",
                "dateTimeFormat": "RFC3339",
            },
        });
        self.http.client.post(self.query.clone()).json(&body)
    }
}

/// The documented error body: `{"code": "invalid", "message": "..."}`; InfluxDB 1.8's v2 query
/// API (HTTP 500 for every failed query) answers a CSV table instead: an `error` header and the
/// message.
fn refusal(body: &str) -> Option<String> {
    json_message(body, "message").or_else(|| {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(body.as_bytes());
        let mut rows = reader.records().map_while(Result::ok);
        let header = rows.next()?;
        let i = header.iter().position(|c| c == "error")?;
        rows.next()?
            .get(i)
            .map(str::to_string)
            .filter(|m| !m.is_empty())
    })
}

/// The one number of an annotated CSV answer: the `_value` of its one row, across every table.
///
/// Flagger takes the first row's value when it is a float, answers 0 when there is no row, and
/// fails on any other type. fledge differs where that is wrong: no row is no data (0 passes an
/// error-rate check without data), several rows are several series (Flagger judges an arbitrary
/// one), and integers (`long`, `unsignedLong`, what `count()` gives) are numbers.
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut datatypes: Vec<String> = Vec::new();
    let mut defaults: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let mut after_annotation = false;
    let mut values: Vec<Option<f64>> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("not CSV: {e}"))?;
        let fields: Vec<String> = record.iter().map(str::to_string).collect();
        if fields.iter().all(String::is_empty) {
            continue;
        }
        match fields[0].as_str() {
            "#datatype" => datatypes = fields,
            "#default" => defaults = fields,
            f if f.starts_with('#') => {}
            _ if after_annotation || header.is_none() => {
                header = Some(fields);
                after_annotation = false;
                continue;
            }
            _ => {
                let columns = header.as_deref().unwrap_or_default();
                // An error after the answer started comes as a table with an error column.
                if let Some(i) = columns.iter().position(|c| c == "error") {
                    return Ok(MetricOutcome::Error(format!(
                        "InfluxDB refused the query: {}",
                        fields.get(i).map_or("", String::as_str)
                    )));
                }
                values.push(row_value(columns, &datatypes, &defaults, &fields)?);
                continue;
            }
        }
        after_annotation = true;
    }
    match values.as_slice() {
        [] => Ok(MetricOutcome::NoData),
        [None] => Ok(MetricOutcome::NoData),
        [Some(v)] => Ok(MetricOutcome::Value(*v)),
        many => Ok(MetricOutcome::Error(format!(
            "the query returned {} rows where one number is expected (one series); aggregate them, e.g. with |> sum() after |> group()",
            many.len()
        ))),
    }
}

/// The `_value` of one data row, `None` when it is empty.
fn row_value(
    columns: &[String],
    datatypes: &[String],
    defaults: &[String],
    fields: &[String],
) -> Result<Option<f64>, String> {
    let i = columns.iter().position(|c| c == "_value").ok_or_else(|| {
        format!(
            "the result has no _value column (columns: {}); keep _value, e.g. end with |> keep(columns: [\"_value\"])",
            columns.join(", ").trim_start_matches(", ")
        )
    })?;
    let mut text = fields.get(i).map_or("", String::as_str);
    if text.is_empty() {
        text = defaults.get(i).map_or("", String::as_str);
    }
    if text.is_empty() {
        return Ok(None);
    }
    match datatypes.get(i).map_or("double", String::as_str) {
        "double" | "long" | "unsignedLong" => text
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("the _value {text:?} is not a number")),
        other => Err(format!("the _value is a {other} ({text:?}), not a number")),
    }
}

#[async_trait::async_trait]
impl MetricsProvider for InfluxDb {
    async fn online(&self) -> Result<(), String> {
        // Flagger reads the last 2 h of a bucket named "default", which fails on every server
        // without one. Listing one bucket needs the same token and no particular bucket.
        let request = self.flux("buckets() |> limit(n: 1)");
        online(self.http.send(request, refusal).await)
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.http.answer(self.flux(query), refusal, value_of).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(body: &str) -> String {
        crate::http::testing::shown(value_of(body))
    }

    const HEAD: &str = "#datatype,string,long,dateTime:RFC3339,double,string\r\n#group,false,false,false,false,true\r\n#default,_result,,,,\r\n,result,table,_time,_value,_field\r\n";

    #[test]
    fn the_one_rows_value_is_the_result() {
        assert_eq!(
            v(&format!("{HEAD},,0,2024-01-01T00:00:00Z,1.5,f\r\n\r\n")),
            "Value(1.5)"
        );
        let long = "#datatype,string,long,long\r\n#group,false,false,false\r\n#default,count,,\r\n,result,table,_value\r\n,,0,42\r\n";
        assert_eq!(v(long), "Value(42.0)");
        assert_eq!(
            v(&format!("{HEAD},,0,2024-01-01T00:00:00Z,NaN,f\r\n")),
            "Value(NaN)"
        );
    }

    #[test]
    fn no_row_or_an_empty_value_is_no_data() {
        assert_eq!(v(""), "NoData");
        assert_eq!(v("\r\n"), "NoData");
        assert_eq!(v(HEAD), "NoData");
        assert_eq!(
            v(&format!("{HEAD},,0,2024-01-01T00:00:00Z,,f\r\n")),
            "NoData"
        );
    }

    #[test]
    fn rows_of_several_tables_are_several_series() {
        let two = format!(
            "{HEAD},,0,2024-01-01T00:00:00Z,1,a\r\n,,1,2024-01-01T00:00:00Z,2,b\r\n\r\n{HEAD},,2,2024-01-01T00:00:00Z,3,c\r\n"
        );
        assert!(v(&two).contains("3 rows"), "{}", v(&two));
    }

    #[test]
    fn other_types_a_missing_value_column_and_errors_say_so() {
        let text = "#datatype,string,long,string\r\n#group,false,false,false\r\n#default,_result,,\r\n,result,table,_value\r\n,,0,abc\r\n";
        assert!(v(text).contains("is a string"), "{}", v(text));
        let no_value = "#datatype,string,long,double\r\n#group,false,false,false\r\n#default,_result,,\r\n,result,table,x\r\n,,0,1\r\n";
        assert!(
            v(no_value).contains("no _value column (columns: result, table, x)"),
            "{}",
            v(no_value)
        );
        let error = "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,\"type error 1:1-1:5: undefined identifier \"\"frm\"\"\",\r\n";
        assert!(
            v(error).contains("refused the query: type error"),
            "{}",
            v(error)
        );
    }

    #[test]
    fn an_error_body_in_json_or_as_a_csv_table_gives_its_message() {
        assert_eq!(
            refusal(r#"{"code":"invalid","message":"compilation failed"}"#).as_deref(),
            Some("compilation failed")
        );
        assert_eq!(
            refusal("error\n\"type error 1:1-1:4: undefined identifier \"\"frm\"\"\"\n").as_deref(),
            Some("type error 1:1-1:4: undefined identifier \"frm\"")
        );
        assert_eq!(refusal("error\n"), None);
        assert_eq!(refusal("<html>bad gateway</html>"), None);
    }

    #[test]
    fn a_secret_needs_token_and_org_and_gives_them() {
        let cfg = |data: &[(&str, &str)]| {
            crate::http::testing::config("influxdb", "http://influxdb:8086", data)
        };
        let Err(e) = InfluxDb::new(&cfg(&[(TOKEN, "t0k")]), Duration::from_secs(1)) else {
            panic!("accepted without org");
        };
        assert!(
            e.contains("apps/influxdb") && e.contains("no org") && !e.contains("t0k"),
            "{e}"
        );
        let ok = InfluxDb::new(
            &cfg(&[(TOKEN, "t"), (ORG, "my org")]),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            ok.query.as_str(),
            "http://influxdb:8086/api/v2/query?org=my+org"
        );
    }
}
