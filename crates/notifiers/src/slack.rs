//! Slack incoming webhooks: Block Kit with a plain-text fallback.
//!
//! The body has the top-level `text` (shown in notifications and by clients without blocks),
//! `blocks` with a header (severity badge and title) and the message, and one attachment whose
//! `color` bar shows the severity, holding the facts and the link back. Text is Slack `mrkdwn`
//! with `&`, `<` and `>` escaped, so a message can never mention `@channel` or form a link.
//! Limits kept: header 150 characters, section text 3000, at most 10 fields of 2000. A
//! `channel` and `username` are sent when set (honoured by legacy webhooks and by
//! `chat.postMessage` with a `token`).

use serde_json::{Value, json};

use super::{Message, Notifier, Options, badge, clip, colour, escape_angle};

/// Header text limit.
pub const HEADER_MAX: usize = 150;
/// Section text limit.
pub const TEXT_MAX: usize = 3000;
/// Fields per section.
pub const FIELDS_MAX: usize = 10;
/// Field text limit.
pub const FIELD_MAX: usize = 2000;

/// The Slack notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slack;

impl Notifier for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        let fields: Vec<Value> = msg
            .facts()
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(label, value)| {
                json!({
                    "type": "mrkdwn",
                    "text": clip(&format!("*{label}*\n{}", escape_angle(&value)), FIELD_MAX),
                })
            })
            .collect();
        let kubectl = format!("`{}`", escape_angle(&msg.kubectl()));
        let context = match &opts.link {
            Some(url) => format!("<{}|Open the Canary> \u{2022} {kubectl}", escape_angle(url)),
            None => kubectl,
        };
        let mut body = json!({
            "text": clip(&msg.plain(), TEXT_MAX),
            "username": opts.username,
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": clip(&format!("{} {}", badge(msg.severity), msg.title()), HEADER_MAX),
                        "emoji": true,
                    },
                },
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": clip(&escape_angle(&msg.text), TEXT_MAX)},
                },
            ],
            "attachments": [{
                "color": format!("#{}", colour(msg.severity)),
                "blocks": [
                    {"type": "section", "fields": fields},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": clip(&context, TEXT_MAX)},
                    ]},
                ],
            }],
        });
        if let Some(channel) = &opts.channel {
            body["channel"] = json!(channel);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn a_message_is_block_kit_with_a_text_fallback_and_a_severity_colour() {
        let body = Slack.payload(&fixture::message(), &fixture::options());
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("[ERROR] Rolled back")
        );
        assert_eq!(body["channel"], "#deploys");
        assert_eq!(body["username"], "fledge");
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[1]["type"], "section");
        assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
        assert_eq!(body["attachments"][0]["color"], "#E01E5A");
        let fields = body["attachments"][0]["blocks"][0]["fields"]
            .as_array()
            .unwrap();
        assert!(fields.len() <= FIELDS_MAX);
        assert!(fields.iter().any(|f| {
            f["text"]
                .as_str()
                .unwrap()
                .contains("ghcr.io/stefanprodan/podinfo:6.0.1")
        }));
        let context = body["attachments"][0]["blocks"][1]["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(context.contains(
            "<https://grafana.example.com/d/canary?ns=shop&amp;name=podinfo|Open the Canary>"
        ));
        assert!(context.contains("kubectl -n shop describe canary/podinfo"));
    }

    #[test]
    fn user_text_cannot_mention_or_link_and_lengths_stay_in_limits() {
        let mut m = fixture::message();
        m.text = format!(
            "<!channel> <https://evil.example|click> & {}",
            "x".repeat(5000)
        );
        m.name = "n".repeat(300);
        let body = Slack.payload(&m, &Options::default());
        let section = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.starts_with("&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; "));
        assert!(!section.contains("<!channel>"));
        assert!(section.chars().count() <= TEXT_MAX);
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= HEADER_MAX);
        assert!(body["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
        assert!(body.get("channel").is_none(), "no channel unless set");
    }
}
