//! Which chat alerts go where: the severity filter of each `spec.analysis.alerts` entry (or the
//! controller's default provider when the Canary declares none), references confined to the
//! Canary's namespace under `--no-cross-namespace-refs`, and the suppression of an alert the
//! Canary already sent within the hour. The alerts sent are remembered in
//! `status.recentAlerts`, so a restarted controller does not send them again.

use std::time::Duration;

use fledge_api::{CanaryStatus, SentAlert};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::{Action, NotifyKind, Severity};
use crate::ctx::Cx;

/// How long an alert sent for a Canary suppresses the same alert.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(3600);
/// How many alerts `status.recentAlerts` remembers.
pub const MAX_RECENT: usize = 16;

/// Where one alert goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertTarget {
    /// An entry of `spec.analysis.alerts`: its AlertProvider.
    Provider {
        /// The entry's `name`.
        alert: String,
        /// The AlertProvider's namespace; `None`: the Canary's.
        namespace: Option<String>,
        /// The AlertProvider's name.
        name: String,
    },
    /// The controller's default provider (`--alert-*` flags), for Canaries that declare no
    /// alerts.
    Default,
}

/// The destinations an alert of `severity` reaches. `default`: the lowest severity of the
/// controller's default provider, if it has one; `confined_to`: the Canary's namespace when
/// references to other namespaces are refused.
pub fn targets(
    alerts: Option<&[fledge_api::CanaryAlert]>,
    severity: Severity,
    default: Option<Severity>,
    confined_to: Option<&str>,
) -> Vec<AlertTarget> {
    match alerts.filter(|a| !a.is_empty()) {
        None => match default {
            Some(min) if severity >= min => vec![AlertTarget::Default],
            _ => Vec::new(),
        },
        Some(alerts) => alerts
            .iter()
            .filter(|a| {
                // An unknown severity is reported by validation; until fixed it sends all.
                let min = Severity::parse(a.severity.as_deref().unwrap_or_default())
                    .unwrap_or(Severity::Info);
                severity >= min
            })
            .map(|a| AlertTarget::Provider {
                alert: a.name.clone(),
                namespace: a.provider_ref.namespace.clone().filter(|n| !n.is_empty()),
                name: a.provider_ref.name.clone(),
            })
            .filter(|t| match (t, confined_to) {
                (
                    AlertTarget::Provider {
                        namespace: Some(ns),
                        ..
                    },
                    Some(only),
                ) => ns == only,
                _ => true,
            })
            .collect(),
    }
}

/// What makes two alerts of a Canary the same: kind, severity, text, and the revision and
/// rollout they are about (`status` is the plan's next status), as 16 hex digits of a SHA-256.
pub fn repeat_key(
    status: &CanaryStatus,
    kind: NotifyKind,
    severity: Severity,
    text: &str,
) -> String {
    key(&About::of(status), kind, severity, text)
}

/// The revision and rollout an alert is about.
struct About {
    revision: String,
    rollout_start: String,
}

impl About {
    fn of(status: &CanaryStatus) -> About {
        About {
            revision: status.last_applied_spec.clone().unwrap_or_default(),
            rollout_start: status
                .rollout
                .as_ref()
                .and_then(|r| r.start_time.as_ref())
                .map_or(String::new(), |t| t.0.as_second().to_string()),
        }
    }
}

fn key(about: &About, kind: NotifyKind, severity: Severity, text: &str) -> String {
    let mut h = Sha256::new();
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    for part in [
        kind.as_str(),
        severity.as_str(),
        text,
        about.revision.as_str(),
        about.rollout_start.as_str(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Settles the plan's alerts: each `Notify` gets its destinations; one with none is kept (the
/// adapter sends nothing) but not remembered; one the Canary sent within [`REPEAT_WINDOW`] is
/// dropped; the others are remembered in `status.recentAlerts`.
pub(crate) fn settle(cx: &mut Cx) {
    let now = cx.now;
    let alerts = cx.spec.analysis.as_ref().and_then(|a| a.alerts.as_deref());
    let default = cx.obs.default_alert_severity;
    let confined = cx.obs.confined_to_namespace.as_deref();
    let about = About::of(&cx.status);
    let mut reports = cx.take_reports();
    let recent = &mut cx.status.recent_alerts;
    let window = jiff::SignedDuration::try_from(REPEAT_WINDOW).unwrap_or_default();
    recent.retain(|r| now.duration_since(r.time.0) < window);
    reports.retain_mut(|a| {
        let Action::Notify {
            severity,
            kind,
            message,
            to,
        } = a
        else {
            return true;
        };
        *to = targets(alerts, *severity, default, confined);
        if to.is_empty() {
            return true;
        }
        let key = key(&about, *kind, *severity, message);
        if recent.iter().any(|r| r.key == key) {
            return false;
        }
        recent.push(SentAlert {
            key,
            time: Time(now),
        });
        true
    });
    let excess = recent.len().saturating_sub(MAX_RECENT);
    recent.drain(..excess);
    cx.put_reports(reports);
}
