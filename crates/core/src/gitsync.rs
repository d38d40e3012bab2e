//! The `GitSynced` condition of a Canary with `spec.gitops`: whether every ledger record and
//! revert reached Git, from the adapter's view of the durable queue
//! ([`crate::Observations::git_queue`]), with a warning Event when writing fails and an alert
//! when records wait too long.

use crate::action::{NotifyKind, Severity};
use crate::conditions;
use crate::ctx::Cx;

/// Sets `GitSynced` from the queue as observed; nothing when the Canary has no `spec.gitops`
/// or the queue is not known.
pub(crate) fn run(cx: &mut Cx) {
    if cx.spec.gitops.is_none() || cx.obs.deleting {
        return;
    }
    let Some(q) = cx.obs.git_queue.as_ref() else {
        return;
    };
    let since = q
        .oldest
        .map(|t| crate::ctx::whole_seconds(t).to_string())
        .unwrap_or_default();
    let (value, reason, message) = match (q.pending, &q.error) {
        (0, _) => (
            "True",
            "Synced".to_string(),
            "every ledger record and revert is in Git".to_string(),
        ),
        (n, Some(e)) => (
            "False",
            e.reason.clone(),
            format!("{n} record(s) queued since {since}: {}", e.message),
        ),
        (n, None) => (
            "False",
            "Queued".to_string(),
            format!("{n} record(s) queued since {since}"),
        ),
    };
    let before = conditions::get(&cx.status, conditions::GIT_SYNCED)
        .map(|c| (c.status.clone(), c.reason.clone()));
    let now = cx.now;
    conditions::set(
        &mut cx.status,
        conditions::GIT_SYNCED,
        value,
        &reason,
        &message,
        now,
    );
    // Writing failed (not merely queued): say so once, when the condition turns or its reason
    // changes.
    let turned = before.as_ref().map(|(s, r)| (s.as_str(), r.as_deref()))
        != Some((value, Some(reason.as_str())));
    if turned && value == "False" && reason != "Queued" {
        cx.event(true, &reason, message.clone());
    }
    // Records waiting longer than the limit: tell people (the text is stable while nothing
    // changes, so the alert de-duplication posts it once).
    if q.pending > 0
        && let Some(oldest) = q.oldest
        && cx
            .elapsed(Some(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                oldest,
            )))
            .is_some_and(|waited| waited > q.alert_after)
    {
        let text = format!(
            "Ledger records of {} have waited for Git longer than {}s: {message}",
            cx.target_name(),
            q.alert_after.as_secs()
        );
        cx.notify(Severity::Error, NotifyKind::Blocked, text);
    }
}
