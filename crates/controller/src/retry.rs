//! Retries of failed reconciles: exponential backoff with jitter, per Canary.
//!
//! Each failure of a Canary's reconcile lengthens its next wait; a success resets it. A failure
//! only a person can fix waits longer from the first retry (the engine has reported it once;
//! the watch on the Canary brings the fix sooner). The attempt counts live in memory: losing
//! them on a restart only starts the backoff over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use fledge_api::Canary;
use kube::runtime::reflector::ObjectRef;

/// First wait after a failure that may go away by itself (before jitter).
const TRANSIENT_MIN: Duration = Duration::from_secs(1);
/// Longest wait after such failures (before jitter).
const TRANSIENT_MAX: Duration = Duration::from_secs(60);
/// First wait after a failure only a person can fix (before jitter).
const PERMANENT_MIN: Duration = Duration::from_secs(30);
/// Longest wait after such failures (before jitter, which at most doubles it).
const PERMANENT_MAX: Duration = Duration::from_secs(150);

/// Conflicts in a row retried without backoff.
pub const QUICK_CONFLICTS: u32 = 3;
/// The wait after one of those.
pub const CONFLICT_WAIT: Duration = Duration::from_millis(500);

/// Failed attempts per Canary since its last successful reconcile.
#[derive(Default)]
pub struct Retries {
    attempts: Mutex<HashMap<ObjectRef<Canary>, u32>>,
}

impl Retries {
    /// Notes a failure of `canary`'s reconcile; returns how long to wait before the next one.
    pub fn failed(&self, canary: ObjectRef<Canary>, transient: bool) -> Duration {
        let mut map = self
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(canary).or_insert(0);
        *n = n.saturating_add(1);
        delay(transient, *n)
    }

    /// Notes a write that met a newer version of its object (409 Conflict); returns how long
    /// to wait. The first [`QUICK_CONFLICTS`] in a row are retried after [`CONFLICT_WAIT`] (the
    /// watch brings the newer version sooner anyway); conflicts that keep coming back then
    /// follow the backoff of transient failures, so that none loops fast for ever.
    pub fn conflicted(&self, canary: ObjectRef<Canary>) -> Duration {
        let mut map = self
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(canary).or_insert(0);
        *n = n.saturating_add(1);
        if *n <= QUICK_CONFLICTS {
            CONFLICT_WAIT
        } else {
            delay(true, *n - QUICK_CONFLICTS)
        }
    }

    /// Notes a successful reconcile: the next failure starts the backoff over.
    pub fn succeeded(&self, canary: &ObjectRef<Canary>) {
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(canary);
    }
}

/// The wait before retry number `attempt` (1 for the first retry).
fn delay(transient: bool, attempt: u32) -> Duration {
    let (min, max) = if transient {
        (TRANSIENT_MIN, TRANSIENT_MAX)
    } else {
        (PERMANENT_MIN, PERMANENT_MAX)
    };
    let nth = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(nth)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_retried_at_once_until_they_keep_coming_back() {
        let r = Retries::default();
        let c = || ObjectRef::new("podinfo").within("shop");
        for _ in 0..QUICK_CONFLICTS {
            assert_eq!(r.conflicted(c()), CONFLICT_WAIT);
        }
        let next = r.conflicted(c());
        assert!(
            next >= TRANSIENT_MIN && next <= 2 * TRANSIENT_MIN,
            "{next:?}"
        );
        assert!(r.conflicted(c()) >= 2 * TRANSIENT_MIN);
        r.succeeded(&c());
        assert_eq!(r.conflicted(c()), CONFLICT_WAIT);
    }

    #[test]
    fn waits_grow_exponentially_within_jittered_bounds() {
        for attempt in 1..=12u32 {
            for (transient, min, max) in [
                (true, TRANSIENT_MIN, TRANSIENT_MAX),
                (false, PERMANENT_MIN, PERMANENT_MAX),
            ] {
                let base = min
                    .saturating_mul(2u32.saturating_pow(attempt - 1))
                    .min(max);
                let d = delay(transient, attempt);
                assert!(
                    d >= base && d <= base * 2,
                    "attempt {attempt}: {d:?}, base {base:?}"
                );
            }
        }
        // A failure only a person can fix waits longer from the first retry.
        assert!(delay(false, 1) > delay(true, 1) * 10);
    }

    #[test]
    fn attempts_are_counted_per_canary_and_reset_on_success() {
        let r = Retries::default();
        let a = ObjectRef::<Canary>::new("a").within("ns");
        let b = ObjectRef::<Canary>::new("b").within("ns");
        for _ in 0..6 {
            r.failed(a.clone(), true);
        }
        assert!(r.failed(a.clone(), true) >= Duration::from_secs(60));
        assert!(r.failed(b.clone(), true) <= TRANSIENT_MIN * 2, "per Canary");
        r.succeeded(&a);
        assert!(r.failed(a, true) <= TRANSIENT_MIN * 2, "reset on success");
    }
}
