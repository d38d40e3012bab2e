//! Microsoft Teams, in both of its webhook formats:
//!
//! - Workflows (Power Automate, "post to a channel when a webhook request is received"): a
//!   `message` with one Adaptive Card attachment (`application/vnd.microsoft.card.adaptive`,
//!   card version 1.4): a title in a container styled by severity (`good`, `warning`,
//!   `attention`), the text, a `FactSet`, the `kubectl` command, and an `Action.OpenUrl` when
//!   the provider has a link.
//! - The older Office 365 connector: a `MessageCard` with `summary`, `themeColor` (the
//!   severity's colour), one section with the title, text and facts, and an `OpenUri` action.
//!
//! The format follows the address: connector URLs (`*.webhook.office.com`,
//! `outlook.office.com`, or a `/webhookb2/` path) get the MessageCard, every other address
//! the Adaptive Card. Teams refuses messages over about 28 KB, so texts are clipped well below.

use reqwest::Url;
use serde_json::{Value, json};

use super::{Message, Notifier, Options, clip, colour};
use fledge_core::Severity;

/// Longest message text sent to Teams.
pub const TEXT_MAX: usize = 4000;
/// Longest fact value.
pub const FACT_MAX: usize = 1000;

/// Which Teams format to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeamsFormat {
    /// Workflows / Power Automate: an Adaptive Card in a `message`.
    AdaptiveCard,
    /// The retired Office 365 connector: a `MessageCard`.
    MessageCard,
}

impl TeamsFormat {
    /// The format an address expects.
    pub fn for_address(address: &Url) -> TeamsFormat {
        let host = address.host_str().unwrap_or_default().to_ascii_lowercase();
        let connector = host.ends_with(".webhook.office.com")
            || host == "outlook.office.com"
            || host == "outlook.office365.com"
            || address.path().contains("/webhookb2/");
        if connector {
            TeamsFormat::MessageCard
        } else {
            TeamsFormat::AdaptiveCard
        }
    }
}

/// The Microsoft Teams notifier.
#[derive(Clone, Copy, Debug)]
pub struct MsTeams {
    format: TeamsFormat,
}

impl MsTeams {
    /// A notifier sending `format`.
    pub fn new(format: TeamsFormat) -> Self {
        MsTeams { format }
    }
}

fn style(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Info => ("good", "Good"),
        Severity::Warn => ("warning", "Warning"),
        Severity::Error => ("attention", "Attention"),
    }
}

impl Notifier for MsTeams {
    fn kind(&self) -> &'static str {
        "msteams"
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        match self.format {
            TeamsFormat::AdaptiveCard => adaptive_card(msg, opts),
            TeamsFormat::MessageCard => message_card(msg, opts),
        }
    }
}

fn adaptive_card(msg: &Message, opts: &Options) -> Value {
    let (container, text_colour) = style(msg.severity);
    let facts: Vec<Value> = msg
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": clip(&value, FACT_MAX)}))
        .collect();
    let actions: Vec<Value> = opts
        .link
        .iter()
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open the Canary", "url": url}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "Container",
                "style": container,
                "bleed": true,
                "items": [{
                    "type": "TextBlock",
                    "text": msg.title(),
                    "weight": "Bolder",
                    "size": "Medium",
                    "color": text_colour,
                    "wrap": true,
                }],
            },
            {"type": "TextBlock", "text": clip(&msg.text, TEXT_MAX), "wrap": true},
            {"type": "FactSet", "facts": facts},
            {
                "type": "TextBlock",
                "text": msg.kubectl(),
                "fontType": "Monospace",
                "isSubtle": true,
                "wrap": true,
            },
        ],
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

fn message_card(msg: &Message, opts: &Options) -> Value {
    let facts: Vec<Value> = msg
        .facts()
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": clip(&value, FACT_MAX)}))
        .collect();
    let mut card = json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": clip(&msg.plain(), 200),
        "themeColor": colour(msg.severity),
        "title": msg.title(),
        "sections": [{
            "activityTitle": clip(&msg.text, TEXT_MAX),
            "activitySubtitle": msg.kubectl(),
            "facts": facts,
            "markdown": false,
        }],
    });
    if let Some(url) = &opts.link {
        card["potentialAction"] = json!([{
            "@type": "OpenUri",
            "name": "Open the Canary",
            "targets": [{"os": "default", "uri": url}],
        }]);
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn the_format_follows_the_address() {
        let f = |u: &str| TeamsFormat::for_address(&Url::parse(u).unwrap());
        assert_eq!(
            f("https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d"),
            TeamsFormat::MessageCard
        );
        assert_eq!(
            f("https://outlook.office.com/webhook/a/IncomingWebhook/b"),
            TeamsFormat::MessageCard
        );
        assert_eq!(
            f(
                "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x"
            ),
            TeamsFormat::AdaptiveCard
        );
        assert_eq!(f("http://127.0.0.1:8080/teams"), TeamsFormat::AdaptiveCard);
        assert_eq!(
            f("http://127.0.0.1:8080/webhookb2/x"),
            TeamsFormat::MessageCard
        );
    }

    #[test]
    fn workflows_get_an_adaptive_card_styled_by_severity() {
        let body = MsTeams::new(TeamsFormat::AdaptiveCard)
            .payload(&fixture::message(), &fixture::options());
        assert_eq!(body["type"], "message");
        let att = &body["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &att["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["style"], "attention");
        assert_eq!(card["body"][0]["items"][0]["color"], "Attention");
        assert_eq!(card["body"][2]["type"], "FactSet");
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
        assert!(serde_json::to_vec(&body).unwrap().len() < 28 * 1024);
    }

    #[test]
    fn connectors_get_a_message_card_with_the_theme_colour() {
        let mut m = fixture::message();
        m.severity = Severity::Warn;
        let body = MsTeams::new(TeamsFormat::MessageCard).payload(&m, &Options::default());
        assert_eq!(body["@type"], "MessageCard");
        assert_eq!(body["@context"], "https://schema.org/extensions");
        assert_eq!(body["themeColor"], "ECB22E");
        assert!(!body["summary"].as_str().unwrap().is_empty());
        assert!(body["sections"][0]["facts"].as_array().unwrap().len() >= 5);
        assert!(body.get("potentialAction").is_none(), "no link, no action");
    }
}
