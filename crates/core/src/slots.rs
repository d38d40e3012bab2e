//! The cluster-wide limit on rollouts in progress (`--max-concurrent-rollouts`): who may start
//! a rollout now, and in which order the Canaries waiting for a slot are served.
//!
//! The order lives in the Canaries' statuses, so a restarted controller rebuilds it from the
//! cluster: a Canary that waits for a slot is `Waiting` with the `Promoted` condition's reason
//! [`WAITING_FOR_SLOT`], and it started waiting at `status.lastTransitionTime`. Waiters are
//! served by that time, then by namespace and name; a rollout in progress holds a slot.

use fledge_api::{CanaryPhase, CanaryStatus};
use jiff::Timestamp;

use crate::conditions::{self, PROMOTED};

/// The `Promoted` condition's reason (and the Event's) while a Canary waits for a slot.
pub const WAITING_FOR_SLOT: &str = "WaitingForRolloutSlot";

/// What the adapter observed about rollout slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutSlots {
    /// `--max-concurrent-rollouts`; `None`: no limit (everything else is then ignored).
    pub limit: Option<usize>,
    /// `namespace/name` of the Canary being reconciled (its place among equal waiting times).
    pub me: String,
    /// Every other Canary the controller sees, as [`SlotView::of`] reads it.
    pub others: Vec<SlotView>,
}

impl RolloutSlots {
    /// No limit: every Canary may start.
    pub fn unlimited() -> Self {
        RolloutSlots::default()
    }

    /// A limit of zero: no Canary may start (for tests and simulations).
    pub fn none_free() -> Self {
        RolloutSlots {
            limit: Some(0),
            ..Default::default()
        }
    }
}

/// Another Canary, as far as rollout slots go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotView {
    /// `namespace/name`.
    pub canary: String,
    /// It holds a slot: a rollout in progress, or one the adapter just started and its cache
    /// does not show yet.
    pub rolling_out: bool,
    /// It waits for a slot since then.
    pub waiting_since: Option<Timestamp>,
}

impl SlotView {
    /// Reads a Canary's slot state from its status (`namespace/name` given by the adapter).
    pub fn of(canary: String, status: Option<&CanaryStatus>) -> SlotView {
        SlotView {
            canary,
            rolling_out: status.is_some_and(|s| s.phase.is_rolling_out()),
            waiting_since: status.and_then(waiting_since),
        }
    }

    /// A Canary known to hold a slot whatever its cached status says.
    pub fn holding(canary: String) -> SlotView {
        SlotView {
            canary,
            rolling_out: true,
            waiting_since: None,
        }
    }
}

/// When a Canary with this status started waiting for a slot; `None` when it does not wait for
/// one. The time is never missing for a waiter (the epoch stands in for an unset time, which
/// puts it first).
pub fn waiting_since(status: &CanaryStatus) -> Option<Timestamp> {
    let waits = status.phase == CanaryPhase::Waiting
        && conditions::get(status, PROMOTED).and_then(|c| c.reason.as_deref())
            == Some(WAITING_FOR_SLOT);
    waits.then(|| {
        status
            .last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
    })
}

/// Whether the Canary whose status is `mine` may start a rollout now: the slots taken by
/// rollouts in progress and by the waiters ahead of it leave one free. A Canary that is not
/// waiting yet queues behind every waiter.
pub fn admits(mine: &CanaryStatus, slots: &RolloutSlots) -> bool {
    let Some(limit) = slots.limit else {
        return true;
    };
    let my_place = waiting_since(mine).map(|t| (t, slots.me.as_str()));
    let taken = slots
        .others
        .iter()
        .filter(|o| o.canary != slots.me)
        .filter(|o| {
            let ahead = o
                .waiting_since
                .is_some_and(|t| my_place.is_none_or(|mine| (t, o.canary.as_str()) < mine));
            o.rolling_out || ahead
        })
        .count();
    taken < limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::CanaryCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(phase: CanaryPhase, reason: &str, since: i64) -> CanaryStatus {
        CanaryStatus {
            phase,
            last_transition_time: Some(Time(
                Timestamp::from_second(1_700_000_000 + since).unwrap(),
            )),
            conditions: Some(vec![CanaryCondition {
                r#type: PROMOTED.into(),
                status: "Unknown".into(),
                reason: Some(reason.into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn view(name: &str, s: &CanaryStatus) -> SlotView {
        SlotView::of(format!("ns/{name}"), Some(s))
    }

    fn slots(me: &str, limit: usize, others: &[(&str, &CanaryStatus)]) -> RolloutSlots {
        RolloutSlots {
            limit: Some(limit),
            me: format!("ns/{me}"),
            others: others.iter().map(|(n, s)| view(n, s)).collect(),
        }
    }

    #[test]
    fn rollouts_in_progress_take_slots() {
        let busy = status(CanaryPhase::Progressing, "Progressing", 0);
        let idle = status(CanaryPhase::Succeeded, "Succeeded", 0);
        let me = status(CanaryPhase::Succeeded, "Succeeded", 0);
        let others = [("a", &busy), ("b", &idle)];
        assert!(!admits(&me, &slots("me", 1, &others)));
        assert!(admits(&me, &slots("me", 2, &others)));
        assert!(admits(&me, &RolloutSlots::unlimited()));
        assert!(!admits(&me, &RolloutSlots::none_free()));
        // A Canary never counts itself.
        let me_busy = status(CanaryPhase::Progressing, "Progressing", 0);
        assert!(admits(&me_busy, &slots("me", 1, &[("me", &me_busy)])));
        // A slot the adapter just handed out counts before its cache shows it.
        let mut held = slots("me", 1, &[]);
        held.others.push(SlotView::holding("ns/other".into()));
        assert!(!admits(&me, &held));
    }

    #[test]
    fn waiting_canaries_are_served_in_order() {
        let first = status(CanaryPhase::Waiting, WAITING_FOR_SLOT, 10);
        let second = status(CanaryPhase::Waiting, WAITING_FOR_SLOT, 20);
        let newcomer = status(CanaryPhase::Succeeded, "Succeeded", 0);
        let all = [("first", &first), ("second", &second), ("new", &newcomer)];
        assert!(
            admits(&first, &slots("first", 1, &all)),
            "the first in line goes"
        );
        assert!(
            !admits(&second, &slots("second", 1, &all)),
            "the second waits for the first"
        );
        assert!(admits(&second, &slots("second", 2, &all)));
        assert!(
            !admits(&newcomer, &slots("new", 2, &all)),
            "a newcomer queues behind both"
        );
        assert!(admits(&newcomer, &slots("new", 3, &all)));
        // Equal waiting times: namespace and name decide.
        let a = status(CanaryPhase::Waiting, WAITING_FOR_SLOT, 10);
        let tie = [("a", &a), ("first", &first)];
        assert!(admits(&a, &slots("a", 1, &tie)));
        assert!(!admits(&first, &slots("first", 1, &tie)));
    }

    #[test]
    fn a_canary_waiting_for_approval_holds_no_place_in_the_queue() {
        let gated = status(CanaryPhase::Waiting, "WaitingForApproval", 1);
        let me = status(CanaryPhase::Waiting, WAITING_FOR_SLOT, 5);
        assert!(admits(&me, &slots("me", 1, &[("gated", &gated)])));
        assert_eq!(waiting_since(&gated), None);
    }

    proptest::proptest! {
        /// Whatever the cluster looks like, the Canaries admitted are the earliest waiters (by
        /// time, then name), as many as the slots the rollouts in progress leave, and never more.
        #[test]
        fn the_queue_is_served_first_come_first_served(
            limit in 0..5usize,
            canaries in proptest::collection::vec((0..3u8, 0..4i64), 0..8),
        ) {
            let statuses: Vec<(String, CanaryStatus)> = canaries
                .iter()
                .enumerate()
                .map(|(i, (kind, since))| {
                    let s = match kind {
                        0 => status(CanaryPhase::Progressing, "Progressing", 0),
                        1 => status(CanaryPhase::Waiting, WAITING_FOR_SLOT, *since),
                        _ => status(CanaryPhase::Succeeded, "Succeeded", 0),
                    };
                    (format!("c{i}"), s)
                })
                .collect();
            let all: Vec<(&str, &CanaryStatus)> =
                statuses.iter().map(|(n, s)| (n.as_str(), s)).collect();
            let rolling = statuses.iter().filter(|(_, s)| s.phase.is_rolling_out()).count();
            let mut waiters: Vec<(Timestamp, String)> = statuses
                .iter()
                .filter_map(|(n, s)| Some((waiting_since(s)?, format!("ns/{n}"))))
                .collect();
            waiters.sort();
            let free = limit.saturating_sub(rolling);
            for (i, (_, name)) in waiters.iter().enumerate() {
                let short = name.trim_start_matches("ns/");
                let mine = &statuses.iter().find(|(n, _)| n == short).unwrap().1;
                let others: Vec<(&str, &CanaryStatus)> =
                    all.iter().copied().filter(|(n, _)| *n != short).collect();
                proptest::prop_assert_eq!(admits(mine, &slots(short, limit, &others)), i < free);
            }
        }
    }
}
