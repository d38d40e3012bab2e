//! What the providers that read the Kubernetes API (`keptn`, `externalmetrics`) share: the
//! client, its timeout, and the typed failure of a request.

use std::time::Duration;

use fledge_core::MetricOutcome;

use crate::Cluster;
use crate::http::clip;

/// A Kubernetes API client of a provider, with what its failures tell people.
pub(crate) struct KubeApi {
    /// The client and how messages name its API server.
    pub cluster: Cluster,
    /// Every request gives up after this long.
    pub timeout: Duration,
    /// What to check on 401 and 403 (the identity's permissions).
    pub rbac: &'static str,
    /// What to check on 404.
    pub missing: &'static str,
}

impl KubeApi {
    /// The API server as messages name it.
    pub fn where_(&self) -> String {
        match self.cluster.shown.as_str() {
            "" => "the Kubernetes API".into(),
            at => format!("the Kubernetes API at {at}"),
        }
    }

    /// The typed failure of a request about `what` that failed.
    pub fn failure(&self, e: kube::Error, what: &str) -> MetricOutcome {
        let at = self.where_();
        match e {
            kube::Error::Api(s) => match s.code {
                401 | 403 => MetricOutcome::ProviderUnreachable(format!(
                    "{at} answered HTTP {} about {what}: {}; {}",
                    s.code,
                    clip(&s.message, 300),
                    self.rbac
                )),
                429 => MetricOutcome::ProviderUnreachable(format!(
                    "{at} answered HTTP 429 about {what}: too many requests ({})",
                    clip(&s.message, 300)
                )),
                404 => MetricOutcome::Error(format!(
                    "{at} refused the query: {what} does not exist (HTTP 404: {}); {}",
                    clip(&s.message, 300),
                    self.missing
                )),
                400 | 409 | 422 => MetricOutcome::Error(format!(
                    "{at} refused {what} (HTTP {}): {}",
                    s.code,
                    clip(&s.message, 300)
                )),
                code => MetricOutcome::ProviderUnreachable(format!(
                    "{at} answered HTTP {code} about {what}: {}",
                    clip(&s.message, 300)
                )),
            },
            other => {
                let mut cause: &dyn std::error::Error = &other;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                MetricOutcome::ProviderUnreachable(format!(
                    "cannot reach {at} for {what}: {}",
                    clip(&cause.to_string(), 300)
                ))
            }
        }
    }

    /// A request that outlived the timeout. The client waits and retries by itself when the API
    /// server answers 429 or 503 (as its Retry-After asks), so a throttled request ends here too.
    pub fn late(&self, what: &str) -> MetricOutcome {
        MetricOutcome::ProviderUnreachable(format!(
            "{} did not answer about {what} within {}s (the client waits and retries while the API server answers 429 too many requests or 503)",
            self.where_(),
            self.timeout.as_secs_f64()
        ))
    }

    /// Whether the API server serves `group_version` (`group/version`); the error says why not,
    /// with `install` as the fix when it does not.
    pub async fn serves(&self, group_version: &str, install: &str) -> Result<(), String> {
        let what = format!("the API group {group_version}");
        let answer = tokio::time::timeout(
            self.timeout,
            self.cluster.client.list_api_group_resources(group_version),
        )
        .await;
        let failure = match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                return Err(format!(
                    "{} does not serve {what}: {install}",
                    self.where_()
                ));
            }
            Ok(Err(e)) => self.failure(e, &what),
            Err(_) => self.late(&what),
        };
        match failure {
            MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m) => Err(m),
            other => Err(format!("{other:?}")),
        }
    }
}
