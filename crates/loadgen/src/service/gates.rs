//! Manual gates, keyed by canary, with the semantics of Flagger's load tester: a gate is
//! closed until opened, stays open until closed, and `approve`/`halt` answer the same
//! whatever the state. Rollback gates are a separate set of keys.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which set of gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/gate/*`: confirm-rollout, confirm-traffic-increase, confirm-promotion.
    Promotion,
    /// `/rollback/*`: a `rollback` webhook.
    Rollback,
}

/// The gates of every canary, in memory (like Flagger's, they reset on restart).
#[derive(Debug, Default)]
pub struct Gates {
    open: Mutex<HashMap<(Kind, String, String), bool>>,
}

/// Keyed by kind, name and namespace as separate parts: Flagger joins them with dots, so
/// `a.b`/`c` and `a`/`b.c` shared a gate there; here they never do.
fn key(kind: Kind, name: &str, namespace: &str) -> (Kind, String, String) {
    (kind, name.to_string(), namespace.to_string())
}

impl Gates {
    /// Opens a gate.
    pub fn open(&self, kind: Kind, name: &str, namespace: &str) {
        self.set(kind, name, namespace, true);
    }

    /// Closes a gate.
    pub fn close(&self, kind: Kind, name: &str, namespace: &str) {
        self.set(kind, name, namespace, false);
    }

    /// Whether a gate is open; a gate never opened is closed.
    pub fn is_open(&self, kind: Kind, name: &str, namespace: &str) -> bool {
        let map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&key(kind, name, namespace))
            .copied()
            .unwrap_or(false)
    }

    fn set(&self, kind: Kind, name: &str, namespace: &str, open: bool) {
        let mut map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key(kind, name, namespace), open);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_opened_and_open_until_closed() {
        let g = Gates::default();
        assert!(!g.is_open(Kind::Promotion, "podinfo", "test"));
        g.open(Kind::Promotion, "podinfo", "test");
        assert!(g.is_open(Kind::Promotion, "podinfo", "test"));
        assert!(
            g.is_open(Kind::Promotion, "podinfo", "test"),
            "checking does not close"
        );
        g.open(Kind::Promotion, "podinfo", "test");
        assert!(
            g.is_open(Kind::Promotion, "podinfo", "test"),
            "opening twice stays open"
        );
        g.close(Kind::Promotion, "podinfo", "test");
        assert!(!g.is_open(Kind::Promotion, "podinfo", "test"));
        g.close(Kind::Promotion, "podinfo", "test");
        assert!(!g.is_open(Kind::Promotion, "podinfo", "test"));
    }

    #[test]
    fn gates_are_per_canary_and_kind() {
        let g = Gates::default();
        g.open(Kind::Promotion, "podinfo", "test");
        assert!(!g.is_open(Kind::Promotion, "podinfo", "prod"));
        assert!(!g.is_open(Kind::Promotion, "other", "test"));
        assert!(!g.is_open(Kind::Rollback, "podinfo", "test"));
        g.open(Kind::Rollback, "podinfo", "prod");
        assert!(g.is_open(Kind::Rollback, "podinfo", "prod"));
        assert!(!g.is_open(Kind::Promotion, "podinfo", "prod"));
        // Dots in names never make two canaries share a gate.
        g.open(Kind::Promotion, "a.b", "c");
        assert!(!g.is_open(Kind::Promotion, "a", "b.c"));
        g.open(Kind::Promotion, "rollback.podinfo", "prod");
        g.close(Kind::Rollback, "podinfo", "prod");
        assert!(g.is_open(Kind::Promotion, "rollback.podinfo", "prod"));
    }
}
