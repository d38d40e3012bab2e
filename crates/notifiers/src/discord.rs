//! Discord webhooks: one embed per message.
//!
//! The embed has a `title` (severity badge and headline), a `description` (the text, Markdown
//! escaped), a `color` (the severity's, as an integer), inline `fields` with the facts, a
//! `footer` with the `kubectl` command, the `url` of the provider's link and a `timestamp`.
//! `allowed_mentions` is empty, so no text can ping `@everyone` or a role. Discord's limits are
//! kept: title 256, description 4096, 25 fields of 256/1024, footer 2048, 6000 in all.
//!
//! Flagger posted through Discord's Slack-compatible endpoint (`.../slack`); an address written
//! for Flagger that ends with `/slack` is posted to the native endpoint instead.

use reqwest::Url;
use serde_json::{Value, json};

use super::{Message, Notifier, Options, badge, clip, colour};

/// Title limit.
pub const TITLE_MAX: usize = 256;
/// Description limit (kept lower so that the whole embed stays within [`TOTAL_MAX`]).
pub const DESCRIPTION_MAX: usize = 3500;
/// Field name limit.
pub const FIELD_NAME_MAX: usize = 256;
/// Field value limit.
pub const FIELD_VALUE_MAX: usize = 1024;
/// Fields per embed.
pub const FIELDS_MAX: usize = 25;
/// Footer limit.
pub const FOOTER_MAX: usize = 2048;
/// All the text of an embed.
pub const TOTAL_MAX: usize = 6000;

/// The Discord notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discord;

/// Escapes Discord Markdown, so that text shows as written.
fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Notifier for Discord {
    fn kind(&self) -> &'static str {
        "discord"
    }

    fn endpoint(&self, address: &Url) -> Url {
        let mut url = address.clone();
        if let Some(native) = url.path().strip_suffix("/slack").map(str::to_string) {
            url.set_path(&native);
        }
        url
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        let fields: Vec<Value> = msg
            .facts()
            .into_iter()
            .take(FIELDS_MAX)
            .map(|(name, value)| {
                json!({
                    "name": clip(name, FIELD_NAME_MAX),
                    "value": clip(&value, FIELD_VALUE_MAX),
                    "inline": true,
                })
            })
            .collect();
        let colour = u32::from_str_radix(colour(msg.severity), 16).unwrap_or(0);
        let mut embed = json!({
            "title": clip(&format!("{} {}", badge(msg.severity), msg.title()), TITLE_MAX),
            "description": clip(&escape_markdown(&msg.text), DESCRIPTION_MAX),
            "color": colour,
            "fields": fields,
            "footer": {"text": clip(&msg.kubectl(), FOOTER_MAX)},
            "timestamp": msg.at.to_string(),
        });
        if let Some(url) = &opts.link {
            embed["url"] = json!(url);
        }
        json!({
            "username": opts.username,
            "allowed_mentions": {"parse": []},
            "embeds": [embed],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn embed_chars(e: &Value) -> usize {
        let s = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        s(&e["title"])
            + s(&e["description"])
            + s(&e["footer"]["text"])
            + e["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| s(&f["name"]) + s(&f["value"]))
                .sum::<usize>()
    }

    #[test]
    fn a_message_is_one_embed_coloured_by_severity() {
        let body = Discord.payload(&fixture::message(), &fixture::options());
        assert_eq!(body["username"], "fledge");
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
        let e = &body["embeds"][0];
        assert_eq!(e["color"], 0xE01E5A);
        assert!(
            e["title"]
                .as_str()
                .unwrap()
                .contains("Rolled back: shop/podinfo")
        );
        assert_eq!(
            e["url"],
            "https://grafana.example.com/d/canary?ns=shop&name=podinfo"
        );
        assert_eq!(e["timestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(
            e["footer"]["text"],
            "kubectl -n shop describe canary/podinfo"
        );
        assert!(
            e["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == "Image")
        );
    }

    #[test]
    fn text_is_escaped_and_the_embed_stays_within_limits() {
        let mut m = fixture::message();
        m.text = format!("@everyone **bold** `code` {}", "y".repeat(9000));
        m.name = "n".repeat(400);
        let body = Discord.payload(&m, &Options::default());
        let e = &body["embeds"][0];
        let d = e["description"].as_str().unwrap();
        assert!(d.starts_with("@everyone \\*\\*bold\\*\\* \\`code\\` "));
        assert!(e["title"].as_str().unwrap().chars().count() <= TITLE_MAX);
        assert!(embed_chars(e) <= TOTAL_MAX, "{}", embed_chars(e));
        for f in e["fields"].as_array().unwrap() {
            assert!(f["value"].as_str().unwrap().chars().count() <= FIELD_VALUE_MAX);
        }
    }

    #[test]
    fn flaggers_slack_compatible_address_posts_to_the_native_endpoint() {
        let u = Url::parse("https://discord.com/api/webhooks/1/abc/slack").unwrap();
        assert_eq!(Discord.endpoint(&u).path(), "/api/webhooks/1/abc");
        let native = Url::parse("https://discord.com/api/webhooks/1/abc").unwrap();
        assert_eq!(Discord.endpoint(&native), native);
    }
}
