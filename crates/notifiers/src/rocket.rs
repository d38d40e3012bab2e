//! Rocket.Chat incoming webhooks: a text with one attachment.
//!
//! `text` is the plain line; the attachment has the headline as `title` (linked to the
//! provider's link through `title_link`), the message as `text`, the severity's `color`, and
//! the facts as short `fields` (`title`, `value`). The `kubectl` command closes the text.
//! `alias` (Rocket.Chat's display name for webhook messages) and `channel` come from the
//! provider, as `username` and `channel` did for Flagger.

use serde_json::{Value, json};

use super::{Message, Notifier, Options, clip, colour};

/// Longest text sent (Rocket.Chat's default message limit is 5000 characters).
pub const TEXT_MAX: usize = 4000;

/// The Rocket.Chat notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct RocketChat;

impl Notifier for RocketChat {
    fn kind(&self) -> &'static str {
        "rocket"
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        let fields: Vec<Value> = msg
            .facts()
            .into_iter()
            .map(|(title, value)| json!({"short": true, "title": title, "value": value}))
            .collect();
        let mut attachment = json!({
            "title": msg.title(),
            "text": clip(&format!("{}\n`{}`", msg.text, msg.kubectl()), TEXT_MAX),
            "color": format!("#{}", colour(msg.severity)),
            "fields": fields,
        });
        if let Some(url) = &opts.link {
            attachment["title_link"] = json!(url);
        }
        let mut body = json!({
            "alias": opts.username,
            "text": clip(&msg.plain(), TEXT_MAX),
            "attachments": [attachment],
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
    fn a_message_is_text_with_one_coloured_attachment() {
        let body = RocketChat.payload(&fixture::message(), &fixture::options());
        assert_eq!(body["alias"], "fledge");
        assert_eq!(body["channel"], "#deploys");
        let a = &body["attachments"][0];
        assert_eq!(a["color"], "#E01E5A");
        assert_eq!(a["title"], "Rolled back: shop/podinfo");
        assert_eq!(
            a["title_link"],
            "https://grafana.example.com/d/canary?ns=shop&name=podinfo"
        );
        assert!(
            a["fields"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["short"] == true && f["title"].is_string() && f["value"].is_string())
        );
        assert!(
            a["text"]
                .as_str()
                .unwrap()
                .ends_with("`kubectl -n shop describe canary/podinfo`")
        );
    }

    #[test]
    fn long_text_is_clipped() {
        let mut m = fixture::message();
        m.text = "w".repeat(10_000);
        let body = RocketChat.payload(&m, &Options::default());
        assert!(body["text"].as_str().unwrap().chars().count() <= TEXT_MAX);
        assert!(
            body["attachments"][0]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= TEXT_MAX
        );
        assert!(body.get("channel").is_none());
    }
}
