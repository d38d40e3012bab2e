//! Sharding: which Canaries one controller handles when several share a cluster.
//!
//! A shard is named (`--shard a`) and handles the Canaries labelled `fledge.dev/shard: a`. One
//! shard may also declare itself the default (`--default-shard`): it handles, besides its own,
//! every Canary without that label (or with an empty value). So a Canary belongs to exactly one
//! shard as long as one shard, and only one, is the default; a Canary labelled for a shard that
//! does not run is handled by none, and says so nowhere (as in Flux and Argo CD, where the
//! label is the operator's contract). Each shard elects its own leader.

use std::collections::BTreeMap;

/// The label naming a Canary's shard.
pub const SHARD_LABEL: &str = "fledge.dev/shard";

/// One controller's shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    name: String,
    default: bool,
}

impl Shard {
    /// The shard `name`; `default` also takes the Canaries without a shard label. `name` must be
    /// a valid label value (63 characters at most: letters, digits, `-`, `_` and `.`, starting
    /// and ending with a letter or digit).
    pub fn new(name: &str, default: bool) -> Result<Shard, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "--shard {name:?}: a shard name is the value of the {SHARD_LABEL} label, so it \
                 must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a \
                 letter or digit"
            ));
        }
        Ok(Shard {
            name: name.to_string(),
            default,
        })
    }

    /// The shard's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it also handles Canaries without a shard label.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The label selector the API server can filter this shard's Canaries with: exactly them,
    /// or `None` for the default shard, which watches every Canary and keeps those [`owns`]
    /// says (a label selector cannot say "this value or no label").
    ///
    /// [`owns`]: Shard::owns
    pub fn selector(&self) -> Option<String> {
        (!self.default).then(|| format!("{SHARD_LABEL}={}", self.name))
    }

    /// Whether a Canary with these labels is this shard's.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        match labels.get(SHARD_LABEL).map(String::as_str) {
            None | Some("") => self.default,
            Some(v) => v == self.name,
        }
    }

    /// The leader-election Lease of this shard, from the unsharded Lease's name.
    pub fn lease_name(&self, base: &str) -> String {
        format!("{base}-{}", self.name)
    }
}

/// Whether a controller in `shard` (or unsharded: `None`) handles a Canary with `labels`.
pub fn handles(shard: Option<&Shard>, labels: &BTreeMap<String, String>) -> bool {
    shard.is_none_or(|s| s.owns(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(shard: Option<&str>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([("app".to_string(), "podinfo".to_string())]);
        if let Some(s) = shard {
            l.insert(SHARD_LABEL.to_string(), s.to_string());
        }
        l
    }

    #[test]
    fn every_canary_belongs_to_exactly_one_of_the_shards() {
        let a = Shard::new("a", true).unwrap();
        let b = Shard::new("b", false).unwrap();
        for (label, owner) in [
            (None, "a"),
            (Some(""), "a"),
            (Some("a"), "a"),
            (Some("b"), "b"),
        ] {
            let l = labels(label);
            let owners: Vec<&str> = [&a, &b]
                .into_iter()
                .filter(|s| s.owns(&l))
                .map(Shard::name)
                .collect();
            assert_eq!(owners, [owner], "label {label:?}");
        }
        // A shard nobody runs: no owner among these two.
        assert!(!a.owns(&labels(Some("c"))) && !b.owns(&labels(Some("c"))));
    }

    #[test]
    fn the_api_server_filters_for_a_named_shard_and_the_default_filters_itself() {
        assert_eq!(
            Shard::new("b", false).unwrap().selector().as_deref(),
            Some("fledge.dev/shard=b")
        );
        assert_eq!(Shard::new("a", true).unwrap().selector(), None);
    }

    #[test]
    fn an_unsharded_controller_handles_every_canary() {
        assert!(handles(None, &labels(Some("b"))));
        assert!(handles(None, &labels(None)));
        let b = Shard::new("b", false).unwrap();
        assert!(!handles(Some(&b), &labels(None)));
    }

    #[test]
    fn each_shard_has_its_own_lease() {
        let a = Shard::new("a", true).unwrap();
        assert_eq!(a.lease_name("fledge-leader"), "fledge-leader-a");
    }

    #[test]
    fn a_shard_name_must_be_a_label_value() {
        for bad in ["", "-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            let e = Shard::new(bad, false).unwrap_err();
            assert!(e.contains("--shard") && e.contains(SHARD_LABEL), "{e}");
        }
        for good in ["a", "shard-1", "eu.west_2", &"x".repeat(63)] {
            assert!(Shard::new(good, false).is_ok(), "{good}");
        }
    }
}
