//! Google Chat incoming webhooks: one card (cards v2).
//!
//! `cardsV2` holds one card with a `header` (headline; the severity and phase as subtitle), a
//! section whose `textParagraph` starts with the severity in its colour (`<font color>`,
//! part of the HTML subset Chat renders) followed by the text, a section of `decoratedText`
//! facts, and a section with the `kubectl` command and, when the provider has a link, a
//! button that opens it. `fallbackText` is the plain line for notifications. Text is
//! HTML-escaped; texts stay under Chat's 4096-character message limit and the card well under
//! 100 widgets.

use serde_json::{Value, json};

use super::{Message, Notifier, Options, clip, colour, escape_angle};

/// Longest text of a paragraph.
pub const TEXT_MAX: usize = 4000;
/// Longest header title.
pub const TITLE_MAX: usize = 200;
/// Widgets per card.
pub const WIDGETS_MAX: usize = 100;

/// The Google Chat notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoogleChat;

impl Notifier for GoogleChat {
    fn kind(&self) -> &'static str {
        "gchat"
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        let severity = format!(
            "<font color=\"#{}\"><b>{}</b></font>",
            colour(msg.severity),
            msg.severity.as_str().to_uppercase()
        );
        let facts: Vec<Value> = msg
            .facts()
            .into_iter()
            .map(|(label, value)| {
                json!({"decoratedText": {
                    "topLabel": label,
                    "text": clip(&escape_angle(&value), TEXT_MAX),
                    "wrapText": true,
                }})
            })
            .collect();
        let mut links = vec![json!({"textParagraph": {
            "text": format!("<code>{}</code>", escape_angle(&msg.kubectl())),
        }})];
        if let Some(url) = &opts.link {
            links.push(json!({"buttonList": {"buttons": [{
                "text": "Open the Canary",
                "onClick": {"openLink": {"url": url}},
            }]}}));
        }
        json!({
            "fallbackText": clip(&msg.plain(), TEXT_MAX),
            "cardsV2": [{
                "cardId": format!("fledge-{}-{}", msg.namespace, msg.name),
                "card": {
                    "header": {
                        "title": clip(&msg.title(), TITLE_MAX),
                        "subtitle": format!("{} \u{2022} phase {}", msg.severity.as_str(), msg.phase),
                    },
                    "sections": [
                        {"widgets": [{"textParagraph": {
                            "text": clip(&format!("{severity} {}", escape_angle(&msg.text)), TEXT_MAX),
                        }}]},
                        {"header": "Details", "widgets": facts},
                        {"widgets": links},
                    ],
                },
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn a_message_is_one_cards_v2_card_with_the_severity_in_colour() {
        let body = GoogleChat.payload(&fixture::message(), &fixture::options());
        let card = &body["cardsV2"][0];
        assert_eq!(card["cardId"], "fledge-shop-podinfo");
        assert_eq!(card["card"]["header"]["title"], "Rolled back: shop/podinfo");
        let first = card["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
            .as_str()
            .unwrap();
        assert!(first.starts_with("<font color=\"#E01E5A\"><b>ERROR</b></font> Canary analysis"));
        let widgets: usize = card["card"]["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["widgets"].as_array().unwrap().len())
            .sum();
        assert!(widgets <= WIDGETS_MAX);
        let button = &card["card"]["sections"][2]["widgets"][1]["buttonList"]["buttons"][0];
        assert_eq!(
            button["onClick"]["openLink"]["url"],
            "https://grafana.example.com/d/canary?ns=shop&name=podinfo"
        );
        assert!(
            body["fallbackText"]
                .as_str()
                .unwrap()
                .starts_with("[ERROR]")
        );
    }

    #[test]
    fn text_is_html_escaped_and_clipped() {
        let mut m = fixture::message();
        m.text = format!("<b>not bold</b> & {}", "z".repeat(6000));
        let body = GoogleChat.payload(&m, &Options::default());
        let text = body["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
            .as_str()
            .unwrap();
        assert!(text.contains("&lt;b&gt;not bold&lt;/b&gt; &amp; "));
        assert!(text.chars().count() <= TEXT_MAX);
        assert_eq!(
            body["cardsV2"][0]["card"]["sections"][2]["widgets"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "no link, no button"
        );
    }
}
