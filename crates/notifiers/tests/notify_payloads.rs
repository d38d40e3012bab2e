//! The body each provider gets, against `insta` snapshots under `tests/snapshots/` and the
//! provider's documented shape: required fields present, severity visible as a colour or
//! style, lengths within the provider's limits, user text escaped.
//!
//! After a deliberate change, `cargo insta review` (or `INSTA_UPDATE=always cargo test -p
//! fledge-notifiers --test notify_payloads`) rewrites the snapshots; review the diff.

use fledge_api::CanaryPhase;
use fledge_core::{NotifyKind, Severity};
use fledge_notifiers::{
    Discord, GoogleChat, Message, MsTeams, Notifier, Options, RocketChat, Slack, TeamsFormat,
    Webhook,
};
use serde_json::Value;

fn message(severity: Severity, kind: NotifyKind, text: &str) -> Message {
    Message {
        namespace: "shop".into(),
        name: "podinfo".into(),
        severity,
        kind,
        text: text.into(),
        phase: CanaryPhase::Failed,
        target: "Deployment/podinfo".into(),
        images: vec!["ghcr.io/stefanprodan/podinfo:6.0.1".into()],
        revision: Some("5f1c0e9a7b3d2c41".into()),
        checksum: "0a1b2c3d4e5f6071".into(),
        canary_weight: 0,
        failed_checks: 2,
        at: "2026-01-02T03:04:05Z".parse().unwrap(),
        cluster: None,
    }
}

fn rollback() -> Message {
    message(
        Severity::Error,
        NotifyKind::RolledBack,
        "Canary analysis of podinfo failed, rollback finished: failed checks threshold reached 2. \
         Failed checks: rollout webhook smoke failed: answered 500 Internal Server Error",
    )
}

fn options() -> Options {
    Options {
        channel: Some("#deploys".into()),
        username: "fledge".into(),
        link: Some("https://grafana.example.com/d/canary?ns=shop&name=podinfo".into()),
    }
}

fn providers() -> Vec<(&'static str, Box<dyn Notifier>)> {
    vec![
        ("slack", Box::new(Slack)),
        (
            "msteams-adaptive-card",
            Box::new(MsTeams::new(TeamsFormat::AdaptiveCard)),
        ),
        (
            "msteams-message-card",
            Box::new(MsTeams::new(TeamsFormat::MessageCard)),
        ),
        ("discord", Box::new(Discord)),
        ("gchat", Box::new(GoogleChat)),
        ("rocket", Box::new(RocketChat)),
        ("webhook", Box::new(Webhook)),
    ]
}

#[test]
fn payloads_match_their_snapshots() {
    for (name, n) in providers() {
        insta::assert_json_snapshot!(name, n.payload(&rollback(), &options()));
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path} missing or not a string in {v:#}"))
}

#[test]
fn required_fields_follow_each_providers_documented_shape() {
    let m = rollback();
    let o = options();
    let slack = Slack.payload(&m, &o);
    str_at(&slack, "/text");
    assert_eq!(str_at(&slack, "/blocks/0/type"), "header");
    assert_eq!(str_at(&slack, "/blocks/0/text/type"), "plain_text");
    assert_eq!(str_at(&slack, "/blocks/1/text/type"), "mrkdwn");

    let teams = MsTeams::new(TeamsFormat::AdaptiveCard).payload(&m, &o);
    assert_eq!(str_at(&teams, "/type"), "message");
    assert_eq!(
        str_at(&teams, "/attachments/0/contentType"),
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(
        str_at(&teams, "/attachments/0/content/type"),
        "AdaptiveCard"
    );
    str_at(&teams, "/attachments/0/content/version");
    assert!(
        teams
            .pointer("/attachments/0/content/body")
            .unwrap()
            .is_array()
    );

    let card = MsTeams::new(TeamsFormat::MessageCard).payload(&m, &o);
    assert_eq!(str_at(&card, "/@type"), "MessageCard");
    assert_eq!(str_at(&card, "/@context"), "https://schema.org/extensions");
    str_at(&card, "/summary");
    str_at(&card, "/themeColor");

    let discord = Discord.payload(&m, &o);
    assert!(discord.pointer("/embeds/0/color").unwrap().is_u64());
    str_at(&discord, "/embeds/0/title");
    str_at(&discord, "/embeds/0/description");

    let gchat = GoogleChat.payload(&m, &o);
    str_at(&gchat, "/cardsV2/0/cardId");
    str_at(&gchat, "/cardsV2/0/card/header/title");
    assert!(
        gchat
            .pointer("/cardsV2/0/card/sections")
            .unwrap()
            .is_array()
    );

    let rocket = RocketChat.payload(&m, &o);
    str_at(&rocket, "/text");
    str_at(&rocket, "/attachments/0/color");
    str_at(&rocket, "/attachments/0/title");

    let hook = Webhook.payload(&m, &o);
    for key in [
        "/name",
        "/namespace",
        "/phase",
        "/checksum",
        "/metadata/eventMessage",
    ] {
        str_at(&hook, key);
    }
}

#[test]
fn the_severity_shows_as_a_distinct_colour_or_style_in_every_provider() {
    let o = options();
    type Pick = Box<dyn Fn(&Value) -> String>;
    let pick: Vec<(&str, Pick)> = vec![
        (
            "slack",
            Box::new(|v| str_at(v, "/attachments/0/color").into()),
        ),
        (
            "msteams-adaptive-card",
            Box::new(|v| str_at(v, "/attachments/0/content/body/0/style").into()),
        ),
        (
            "msteams-message-card",
            Box::new(|v| str_at(v, "/themeColor").into()),
        ),
        ("discord", Box::new(|v| v["embeds"][0]["color"].to_string())),
        (
            "gchat",
            Box::new(|v| {
                let t = str_at(v, "/cardsV2/0/card/sections/0/widgets/0/textParagraph/text");
                t[..t.find("</font>").unwrap()].to_string()
            }),
        ),
        (
            "rocket",
            Box::new(|v| str_at(v, "/attachments/0/color").into()),
        ),
        (
            "webhook",
            Box::new(|v| str_at(v, "/metadata/severity").into()),
        ),
    ];
    for ((name, n), (pname, get)) in providers().into_iter().zip(pick) {
        assert_eq!(name, pname);
        let styles: Vec<String> = [Severity::Info, Severity::Warn, Severity::Error]
            .into_iter()
            .map(|s| get(&n.payload(&message(s, NotifyKind::Waiting, "t"), &o)))
            .collect();
        assert!(
            styles[0] != styles[1] && styles[1] != styles[2] && styles[0] != styles[2],
            "{name}: {styles:?}"
        );
    }
}

#[test]
fn every_kind_renders_for_every_provider_with_the_canary_and_a_way_back() {
    let o = Options {
        link: None,
        ..options()
    };
    for (name, n) in providers() {
        for kind in NotifyKind::ALL {
            let body = n.payload(&message(Severity::Info, kind, "something happened"), &o);
            let text = body.to_string();
            assert!(
                text.contains("shop/podinfo") || name == "webhook",
                "{name} {kind:?}"
            );
            assert!(
                text.contains("kubectl -n shop describe canary/podinfo"),
                "{name} {kind:?}: no kubectl command"
            );
            assert!(text.contains("podinfo:6.0.1"), "{name} {kind:?}: no image");
        }
    }
}
