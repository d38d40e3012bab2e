//! The cluster-wide limit on rollouts in progress (`--max-concurrent-rollouts`): a Canary may
//! start when the rollouts in progress plus the Canaries queued before it leave a slot free.
//! Canaries waiting for a slot are served in the order they started waiting.

use fledge_api::{Canary, CanaryPhase};
use fledge_core::conditions::{self, PROMOTED};
use kube::ResourceExt;

/// The reason the engine gives a Canary that waits for a slot.
pub const WAITING_FOR_SLOT: &str = "WaitingForRolloutSlot";

fn rolling_out(c: &Canary) -> bool {
    c.status.as_ref().is_some_and(|s| s.phase.is_rolling_out())
}

fn queued(c: &Canary) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.phase == CanaryPhase::Waiting
            && conditions::get(s, PROMOTED).and_then(|x| x.reason.as_deref())
                == Some(WAITING_FOR_SLOT)
    })
}

/// Queue order: when it started waiting, then namespace and name.
fn queue_key(c: &Canary) -> (Option<jiff::Timestamp>, String, String) {
    (
        c.status
            .as_ref()
            .and_then(|s| s.last_transition_time.as_ref())
            .map(|t| t.0),
        c.namespace().unwrap_or_default(),
        c.name_any(),
    )
}

/// Whether `me` may start a rollout now, given every Canary the controller sees.
pub fn slot_available<'a>(
    me: &Canary,
    all: impl IntoIterator<Item = &'a Canary>,
    max: usize,
) -> bool {
    let my_uid = me.uid();
    let my_key = queued(me).then(|| queue_key(me));
    let mut taken = 0usize;
    for c in all {
        if c.uid() == my_uid {
            continue;
        }
        let ahead = queued(c) && my_key.as_ref().is_none_or(|k| queue_key(c) < *k);
        if rolling_out(c) || ahead {
            taken += 1;
        }
    }
    taken < max
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::{CanaryCondition, CanaryStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn canary(name: &str, phase: CanaryPhase, reason: &str, since: i64) -> Canary {
        let mut c = Canary::new(name, Default::default());
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.status = Some(CanaryStatus {
            phase,
            last_transition_time: Some(Time(
                jiff::Timestamp::from_second(1_700_000_000 + since).unwrap(),
            )),
            conditions: Some(vec![CanaryCondition {
                r#type: PROMOTED.into(),
                status: "Unknown".into(),
                reason: Some(reason.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        c
    }

    #[test]
    fn rollouts_in_progress_take_slots() {
        let busy = canary("a", CanaryPhase::Progressing, "Progressing", 0);
        let idle = canary("b", CanaryPhase::Succeeded, "Succeeded", 0);
        let me = canary("me", CanaryPhase::Succeeded, "Succeeded", 0);
        assert!(!slot_available(&me, [&busy, &idle], 1));
        assert!(slot_available(&me, [&busy, &idle], 2));
        // A Canary never counts itself.
        let me_busy = canary("me", CanaryPhase::Progressing, "Progressing", 0);
        assert!(slot_available(&me_busy, [&me_busy], 1));
    }

    #[test]
    fn waiting_canaries_are_served_in_order() {
        let first = canary("first", CanaryPhase::Waiting, WAITING_FOR_SLOT, 10);
        let second = canary("second", CanaryPhase::Waiting, WAITING_FOR_SLOT, 20);
        let newcomer = canary("new", CanaryPhase::Succeeded, "Succeeded", 0);
        let all = [&first, &second, &newcomer];
        assert!(slot_available(&first, all, 1), "the first in line goes");
        assert!(
            !slot_available(&second, all, 1),
            "the second waits for the first"
        );
        assert!(slot_available(&second, all, 2));
        assert!(
            !slot_available(&newcomer, all, 2),
            "a newcomer queues behind both"
        );
        assert!(slot_available(&newcomer, all, 3));
    }

    #[test]
    fn a_canary_waiting_for_approval_holds_no_place_in_the_queue() {
        let gated = canary("gated", CanaryPhase::Waiting, "WaitingForApproval", 1);
        let me = canary("me", CanaryPhase::Waiting, WAITING_FOR_SLOT, 5);
        assert!(slot_available(&me, [&gated], 1));
    }
}
