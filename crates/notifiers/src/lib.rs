//! Chat alerts: the [`Notifier`] seam and one file per provider (Slack, Microsoft Teams,
//! Discord, Google Chat, Rocket.Chat, a generic JSON webhook), the resolution of
//! `AlertProvider` objects into destinations, and delivery with retries.
//!
//! The engine decides *that* an alert goes out ([`fledge_core::Action::Notify`], with a kind
//! and a severity); the controller turns it into a [`Message`] with the Canary's facts and picks
//! the destinations. A [`Notifier`] only turns a message into the provider's JSON body: it does
//! no I/O, so every payload is unit-tested; [`deliver`] posts it.
//!
//! Adding a provider: one file with a type implementing [`Notifier`], and one line in
//! [`notifier_for`] (and [`TYPES`]).
#![forbid(unsafe_code)]

pub mod deliver;
pub mod discord;
pub mod gchat;
pub mod msteams;
pub mod resolve;
pub mod rocket;
pub mod slack;
pub mod webhook;

use fledge_api::CanaryPhase;
use fledge_core::{NotifyKind, Severity};
use jiff::Timestamp;
use reqwest::Url;

pub use deliver::{DeliveryError, DeliveryPolicy, Destination, Report, deliver, redact_url};
pub use discord::Discord;
pub use gchat::GoogleChat;
pub use msteams::{MsTeams, TeamsFormat};
pub use resolve::{ResolveError, Resolved};
pub use rocket::RocketChat;
pub use slack::Slack;
pub use webhook::Webhook;

/// Provider types (`AlertProvider.spec.type`).
pub const TYPES: [&str; 6] = ["slack", "msteams", "discord", "gchat", "rocket", "webhook"];

/// What one alert says, whatever the provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Namespace of the Canary.
    pub namespace: String,
    /// Name of the Canary.
    pub name: String,
    /// How bad it is.
    pub severity: Severity,
    /// What it is about.
    pub kind: NotifyKind,
    /// The engine's text.
    pub text: String,
    /// The Canary's phase after the decision.
    pub phase: CanaryPhase,
    /// The target workload, as `Kind/name`.
    pub target: String,
    /// The images of the target's containers (the new revision's), `name=image` when there are
    /// several.
    pub images: Vec<String>,
    /// The target's spec hash under test (the revision), if known.
    pub revision: Option<String>,
    /// Flagger's webhook checksum (revision and tracked configs).
    pub checksum: String,
    /// Percent of traffic on the canary.
    pub canary_weight: i32,
    /// Failed checks of the rollout so far.
    pub failed_checks: i32,
    /// When it was decided.
    pub at: Timestamp,
    /// The cluster's name (`fledge run --cluster-name`), when set.
    pub cluster: Option<String>,
}

impl Message {
    /// `namespace/name` of the Canary.
    pub fn canary(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The headline: the kind and the Canary, e.g. `Rolled back: test/podinfo`, with the
    /// cluster when named (`Rolled back: test/podinfo on prod-eu`).
    pub fn title(&self) -> String {
        match &self.cluster {
            Some(cluster) => format!("{}: {} on {cluster}", self.kind.title(), self.canary()),
            None => format!("{}: {}", self.kind.title(), self.canary()),
        }
    }

    /// The `kubectl` command that shows the Canary.
    pub fn kubectl(&self) -> String {
        format!(
            "kubectl -n {} describe canary/{}",
            self.namespace, self.name
        )
    }

    /// The facts every message lists, in order, as (label, value).
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        if let Some(cluster) = &self.cluster {
            facts.push(("Cluster", cluster.clone()));
        }
        facts.push(("Canary", self.canary()));
        facts.push(("Target", self.target.clone()));
        if !self.images.is_empty() {
            facts.push(("Image", self.images.join(", ")));
        }
        if let Some(r) = &self.revision {
            facts.push(("Revision", r.clone()));
        }
        facts.push(("Phase", self.phase.to_string()));
        facts.push(("Canary weight", format!("{}%", self.canary_weight)));
        if self.failed_checks > 0 || self.kind == NotifyKind::CheckFailed {
            facts.push(("Failed checks", self.failed_checks.to_string()));
        }
        facts.push(("Severity", self.severity.as_str().to_string()));
        facts
    }

    /// One line of plain text, for notifications and clients that show no cards.
    pub fn plain(&self) -> String {
        format!(
            "[{}] {}: {}",
            self.severity.as_str().to_uppercase(),
            self.title(),
            self.text
        )
    }
}

/// Where and as whom a message is posted, from the `AlertProvider`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Channel (Slack, Rocket.Chat), when set.
    pub channel: Option<String>,
    /// User name shown as the sender.
    pub username: String,
    /// The link back to the Canary (from `linkTemplate`), when set.
    pub link: Option<String>,
}

/// The user name messages are posted as when the provider sets none.
pub const DEFAULT_USERNAME: &str = "fledge";

/// A chat or webhook provider: turns a message into its JSON body.
pub trait Notifier: Send + Sync {
    /// The provider type (`slack`, `msteams`, ...).
    fn kind(&self) -> &'static str;

    /// Whether this is a chat (people read it): traffic steps are then left out by default.
    fn is_chat(&self) -> bool {
        true
    }

    /// The URL to post to, from the configured address.
    fn endpoint(&self, address: &Url) -> Url {
        address.clone()
    }

    /// The request body.
    fn payload(&self, msg: &Message, opts: &Options) -> serde_json::Value;
}

/// The notifier of a provider type; the Teams format follows the address (see [`TeamsFormat`]).
pub fn notifier_for(kind: &str, address: &Url) -> Option<Box<dyn Notifier>> {
    Some(match kind {
        "slack" => Box::new(Slack),
        "msteams" => Box::new(MsTeams::new(TeamsFormat::for_address(address))),
        "discord" => Box::new(Discord),
        "gchat" => Box::new(GoogleChat),
        "rocket" => Box::new(RocketChat),
        "webhook" => Box::new(Webhook),
        _ => return None,
    })
}

/// Colours of the severities: green, amber, red (hex without `#`).
pub fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "2EB67D",
        Severity::Warn => "ECB22E",
        Severity::Error => "E01E5A",
    }
}

/// An emoji for the severity, for providers that show text only.
pub fn badge(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "\u{2705}",
        Severity::Warn => "\u{26A0}\u{FE0F}",
        Severity::Error => "\u{1F6A8}",
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('\u{2026}');
    out
}

/// Escapes `&`, `<` and `>` (Slack mrkdwn, Google Chat's HTML subset): user text can then never
/// form a link, a mention such as `<!channel>`, or markup.
pub fn escape_angle(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Messages and options with every field set, for tests (here and in the controller's).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixture {
    use super::*;

    /// A rollback message with everything set, as the controller builds it.
    pub fn message() -> Message {
        Message {
            namespace: "shop".into(),
            name: "podinfo".into(),
            severity: Severity::Error,
            kind: NotifyKind::RolledBack,
            text: "Canary analysis of podinfo failed, rollback finished: failed checks \
                   threshold reached 2. Failed checks: rollout webhook smoke failed: answered \
                   500 Internal Server Error"
                .into(),
            phase: CanaryPhase::Failed,
            target: "Deployment/podinfo".into(),
            images: vec!["ghcr.io/stefanprodan/podinfo:6.0.1".into()],
            revision: Some("5f1c0e9a7b3d2c41".into()),
            checksum: "0a1b2c3d4e5f6071".into(),
            canary_weight: 0,
            failed_checks: 2,
            at: "2026-01-02T03:04:05Z".parse().expect("timestamp"),
            cluster: None,
        }
    }

    /// Options with a channel, a user name and a link.
    pub fn options() -> Options {
        Options {
            channel: Some("#deploys".into()),
            username: "fledge".into(),
            link: Some("https://grafana.example.com/d/canary?ns=shop&name=podinfo".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_carry_the_canary_target_image_revision_and_phase() {
        let m = fixture::message();
        let facts = m.facts();
        let get = |k: &str| {
            facts
                .iter()
                .find(|(label, _)| *label == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Canary"), Some("shop/podinfo"));
        assert_eq!(get("Target"), Some("Deployment/podinfo"));
        assert_eq!(get("Image"), Some("ghcr.io/stefanprodan/podinfo:6.0.1"));
        assert_eq!(get("Revision"), Some("5f1c0e9a7b3d2c41"));
        assert_eq!(get("Phase"), Some("Failed"));
        assert_eq!(get("Failed checks"), Some("2"));
        assert_eq!(get("Severity"), Some("error"));
        assert_eq!(m.kubectl(), "kubectl -n shop describe canary/podinfo");
        assert!(m.plain().starts_with("[ERROR] Rolled back: shop/podinfo: "));
    }

    #[test]
    fn the_cluster_is_named_in_the_title_and_first_among_the_facts() {
        let mut m = fixture::message();
        m.cluster = Some("prod-eu".into());
        assert_eq!(m.title(), "Rolled back: shop/podinfo on prod-eu");
        assert_eq!(m.facts()[0], ("Cluster", "prod-eu".to_string()));
        assert!(
            m.plain()
                .starts_with("[ERROR] Rolled back: shop/podinfo on prod-eu: ")
        );
    }

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 3), "éé\u{2026}");
        assert_eq!(clip("abcdef", 6), "abcdef");
    }

    #[test]
    fn every_type_has_a_notifier() {
        let url = Url::parse("https://chat.example.com/hook").unwrap();
        for t in TYPES {
            assert_eq!(notifier_for(t, &url).map(|n| n.kind()), Some(t));
        }
        assert!(notifier_for("teams", &url).is_none());
        assert_eq!(
            TYPES.to_vec(),
            {
                let mut v = fledge_api::validate::ALERT_PROVIDER_TYPES.to_vec();
                v.sort_by_key(|t| TYPES.iter().position(|x| x == t));
                v
            },
            "the same types as the API"
        );
    }
}
