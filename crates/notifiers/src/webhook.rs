//! A generic JSON webhook with the fields of Flagger's `event` webhook: `name`, `namespace`,
//! `phase`, `checksum`, and `metadata` with `eventMessage`, `eventType` (`Normal`, or
//! `Warning` for warnings and errors) and `timestamp` (Unix milliseconds, as a string), plus
//! fledge's own keys in `metadata`: `severity`, `kind`, `title`, `target`, `image`, `revision`,
//! `canaryWeight`, `failedChecks`, `kubectl` and `link`. A receiver written for Flagger's event
//! webhook reads it unchanged. Traffic steps are sent by default (it is not a chat).

use serde_json::{Map, Value, json};

use super::{Message, Notifier, Options};
use fledge_core::Severity;

/// The generic webhook notifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct Webhook;

impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn is_chat(&self) -> bool {
        false
    }

    fn payload(&self, msg: &Message, opts: &Options) -> Value {
        let event_type = if msg.severity == Severity::Info {
            "Normal"
        } else {
            "Warning"
        };
        let mut meta = Map::new();
        let mut put = |k: &str, v: String| {
            meta.insert(k.to_string(), Value::String(v));
        };
        put("eventMessage", msg.text.clone());
        put("eventType", event_type.into());
        put("timestamp", msg.at.as_millisecond().to_string());
        put("severity", msg.severity.as_str().into());
        put(
            "kind",
            serde_json::to_value(msg.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        );
        put("title", msg.title());
        put("target", msg.target.clone());
        put("image", msg.images.join(", "));
        put("revision", msg.revision.clone().unwrap_or_default());
        put("canaryWeight", msg.canary_weight.to_string());
        put("failedChecks", msg.failed_checks.to_string());
        put("kubectl", msg.kubectl());
        if let Some(link) = &opts.link {
            put("link", link.clone());
        }
        json!({
            "name": msg.name,
            "namespace": msg.namespace,
            "phase": msg.phase,
            "checksum": msg.checksum,
            "metadata": meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn the_body_is_flaggers_event_payload_with_fledges_keys() {
        let body = Webhook.payload(&fixture::message(), &fixture::options());
        assert_eq!(body["name"], "podinfo");
        assert_eq!(body["namespace"], "shop");
        assert_eq!(body["phase"], "Failed");
        assert_eq!(body["checksum"], "0a1b2c3d4e5f6071");
        let m = &body["metadata"];
        assert!(
            m["eventMessage"]
                .as_str()
                .unwrap()
                .contains("rollback finished")
        );
        assert_eq!(m["eventType"], "Warning");
        assert_eq!(m["timestamp"], "1767323045000");
        assert_eq!(m["severity"], "error");
        assert_eq!(m["kind"], "rolledBack");
        assert_eq!(m["image"], "ghcr.io/stefanprodan/podinfo:6.0.1");
        assert!(
            m.as_object().unwrap().values().all(Value::is_string),
            "string map as in Flagger"
        );
        assert!(!Webhook.is_chat());
    }
}
