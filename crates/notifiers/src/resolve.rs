//! From an `AlertProvider` (and its Secret) to a destination: the type's notifier, the URL,
//! proxy and token, the channel, user name and link. Every problem names the object and the
//! field, and shows a URL only as its scheme and host.

use std::collections::BTreeMap;

use fledge_api::AlertProviderSpec;
use fledge_api::validate::{http_url, validate_alert_provider_spec};
use fledge_core::NotifyKind;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use reqwest::Url;

use super::{DEFAULT_USERNAME, Destination, Message, Notifier, Options, notifier_for, redact_url};

/// A provider ready to send to.
pub struct Resolved {
    /// Who it is, for logs and metrics: `namespace/name`, or `default` for the controller's.
    pub provider: String,
    /// Its notifier.
    pub notifier: Box<dyn Notifier>,
    /// Where to post.
    pub destination: Destination,
    /// Channel, when set.
    pub channel: Option<String>,
    /// Sender name.
    pub username: String,
    /// `linkTemplate`, when set.
    pub link_template: Option<String>,
    /// Whether traffic steps are sent.
    pub traffic_steps: bool,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("provider", &self.provider)
            .field("kind", &self.notifier.kind())
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// Whether a message of `kind` goes to this provider (severity is the alert's business).
    pub fn wants(&self, kind: NotifyKind) -> bool {
        kind != NotifyKind::TrafficStep || self.traffic_steps
    }

    /// The options of a message: channel, user name, and the link for its Canary.
    pub fn options(&self, msg: &Message) -> Options {
        Options {
            channel: self.channel.clone(),
            username: self.username.clone(),
            link: self.link_template.as_ref().map(|t| {
                t.replace("{namespace}", &msg.namespace)
                    .replace("{name}", &msg.name)
            }),
        }
    }

    /// Identifies the destination for the delivery queues (in memory only).
    pub fn queue_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.notifier.kind(),
            self.destination.url,
            self.destination
                .proxy
                .as_ref()
                .map(Url::as_str)
                .unwrap_or(""),
            self.destination.token.as_deref().unwrap_or("")
        )
    }
}

/// Why a provider cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The AlertProvider does not exist.
    #[error("AlertProvider {0} not found")]
    NotFound(String),
    /// Its Secret does not exist.
    #[error("AlertProvider {provider}: spec.secretRef: Secret {secret} not found")]
    SecretNotFound {
        /// `namespace/name` of the AlertProvider.
        provider: String,
        /// `namespace/name` of the Secret.
        secret: String,
    },
    /// Something in it is wrong.
    #[error("AlertProvider {provider}: {field}: {message}")]
    Invalid {
        /// `namespace/name` of the AlertProvider.
        provider: String,
        /// The field (or Secret key) at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The API server could not be asked (transient).
    #[error("cannot read AlertProvider {provider}: {message}")]
    Unavailable {
        /// `namespace/name` of the AlertProvider.
        provider: String,
        /// The error.
        message: String,
    },
}

impl ResolveError {
    /// Whether the user must fix something (as opposed to a transient API error).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, ResolveError::Unavailable { .. })
    }
}

/// Reads the AlertProvider `namespace/name` and its Secret, and resolves them.
///
/// The addresses it posts to (and its proxy) are checked against `policy` for alerts when they
/// are written as IP addresses (a name is checked when the client resolves it): a refused one
/// makes the provider invalid, with the reason.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    name: &str,
    policy: &fledge_core::egress::DestinationPolicy,
) -> Result<Resolved, ResolveError> {
    let label = format!("{namespace}/{name}");
    let unavailable = |e: kube::Error| ResolveError::Unavailable {
        provider: label.clone(),
        message: e.to_string(),
    };
    let providers: Api<fledge_api::AlertProvider> = Api::namespaced(client.clone(), namespace);
    let provider = providers
        .get_opt(name)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ResolveError::NotFound(label.clone()))?;
    let secret = match &provider.spec.secret_ref {
        Some(r) if !r.name.is_empty() => {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let s = secrets
                .get_opt(&r.name)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| ResolveError::SecretNotFound {
                    provider: label.clone(),
                    secret: format!("{namespace}/{}", r.name),
                })?;
            Some((
                format!("{namespace}/{}", r.name),
                s.data.unwrap_or_default(),
            ))
        }
        _ => None,
    };
    let resolved = from_spec(
        &label,
        &provider.spec,
        secret.as_ref().map(|(n, d)| (n.as_str(), d)),
    )
    .and_then(|r| match refused(&r.destination, policy) {
        Some((field, message)) => Err(ResolveError::Invalid {
            provider: label.clone(),
            field: field.into(),
            message,
        }),
        None => Ok(r),
    });
    set_ready(&providers, &provider, resolved.as_ref().err()).await;
    resolved
}

/// The field and the reason when `policy` refuses an address of `dest` written as an IP.
fn refused(
    dest: &crate::deliver::Destination,
    policy: &fledge_core::egress::DestinationPolicy,
) -> Option<(&'static str, String)> {
    let urls = [
        ("spec.address (or its Secret's address)", Some(&dest.url)),
        ("spec.proxy", dest.proxy.as_ref()),
    ];
    urls.into_iter().find_map(|(field, url)| {
        let url = url?;
        policy
            .refuses_host(
                url.host_str()?,
                url.port_or_known_default(),
                fledge_core::egress::Purpose::Alert,
            )
            .map(|reason| (field, reason))
    })
}

/// Keeps the AlertProvider's `Ready` condition in step: `False` with the problem (object and
/// field, never a secret) or `True`. Written only when it changes; a failed write is logged.
async fn set_ready(
    api: &Api<fledge_api::AlertProvider>,
    provider: &fledge_api::AlertProvider,
    problem: Option<&ResolveError>,
) {
    let mut status = fledge_api::CanaryStatus {
        conditions: provider.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (value, reason, message) = match problem {
        None => (
            "True",
            "Resolved",
            "The provider can be sent to.".to_string(),
        ),
        Some(ResolveError::SecretNotFound { .. }) => {
            ("False", "SecretNotFound", problem_text(problem))
        }
        Some(_) => ("False", "Invalid", problem_text(problem)),
    };
    let changed = fledge_core::conditions::set(
        &mut status,
        fledge_core::conditions::READY,
        value,
        reason,
        &message,
        jiff::Timestamp::now(),
    );
    if !changed {
        return;
    }
    let patch = serde_json::json!({"status": {"conditions": status.conditions}});
    let name = provider.metadata.name.clone().unwrap_or_default();
    if let Err(e) = api
        .patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(alertprovider = %name, error = %e, "cannot update the AlertProvider's status");
    }
}

fn problem_text(problem: Option<&ResolveError>) -> String {
    problem.map(ToString::to_string).unwrap_or_default()
}

/// Resolves a spec, with the data of its Secret (`(namespace/name, data)`) when it has one.
pub fn from_spec(
    label: &str,
    spec: &AlertProviderSpec,
    secret: Option<(&str, &BTreeMap<String, ByteString>)>,
) -> Result<Resolved, ResolveError> {
    let invalid = |field: String, message: String| ResolveError::Invalid {
        provider: label.to_string(),
        field,
        message,
    };
    if let Some(p) = validate_alert_provider_spec(spec).into_iter().next() {
        return Err(invalid(p.field, p.message));
    }
    let from_secret = |key: &str| -> Result<Option<String>, ResolveError> {
        let Some((name, data)) = secret else {
            return Ok(None);
        };
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone())
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| {
                    invalid(
                        format!("Secret {name} key {key}"),
                        "is not UTF-8 text".into(),
                    )
                }),
        }
    };
    let (address, address_field) = match (secret, from_secret("address")?) {
        (Some((name, _)), Some(a)) => (a, format!("Secret {name} key address")),
        (Some((name, _)), None) => {
            return Err(invalid(
                format!("Secret {name}"),
                "has no address key; put the webhook URL under the key address".into(),
            ));
        }
        (None, _) => (
            spec.address.clone().unwrap_or_default().trim().to_string(),
            "spec.address".to_string(),
        ),
    };
    let url = parse_url(&address).map_err(|m| invalid(address_field, m))?;
    let proxy = match from_secret("proxy")? {
        Some(p) => Some((
            p,
            format!("Secret {} key proxy", secret.map_or("", |s| s.0)),
        )),
        None => spec
            .proxy
            .clone()
            .filter(|p| !p.trim().is_empty())
            .map(|p| (p, "spec.proxy".to_string())),
    };
    let proxy = match proxy {
        Some((p, field)) => Some(Url::parse(p.trim()).map_err(|e| {
            invalid(
                field,
                format!("is not a valid URL ({e}): {}", redact_url(&p)),
            )
        })?),
        None => None,
    };
    let token = from_secret("token")?;
    let notifier = notifier_for(&spec.r#type, &url).ok_or_else(|| {
        invalid(
            "spec.type".into(),
            format!("{:?} is not supported", spec.r#type),
        )
    })?;
    let traffic_steps = spec.traffic_steps.unwrap_or(!notifier.is_chat());
    Ok(Resolved {
        provider: label.to_string(),
        destination: Destination {
            url: notifier.endpoint(&url),
            proxy,
            token,
        },
        notifier,
        channel: spec.channel.clone().filter(|c| !c.is_empty()),
        username: spec
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_USERNAME.to_string()),
        link_template: spec.link_template.clone().filter(|l| !l.is_empty()),
        traffic_steps,
    })
}

/// Parses a webhook URL; the error shows only its scheme and host.
pub fn parse_url(address: &str) -> Result<Url, String> {
    http_url(address).map_err(|m| format!("{m} (URL {})", redact_url(address)))?;
    Url::parse(address).map_err(|e| format!("is not a valid URL ({e}): {}", redact_url(address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "T0000/B0000/SECRETSECRETSECRET";

    #[test]
    fn link_local_and_metadata_addresses_are_refused_unless_allowed() {
        let dest = |url: &str, proxy: Option<&str>| crate::deliver::Destination {
            url: url.parse().unwrap(),
            proxy: proxy.map(|p| p.parse().unwrap()),
            token: None,
        };
        let policy = fledge_core::egress::DestinationPolicy::default();
        let (field, reason) =
            refused(&dest("http://169.254.169.254/latest/hook", None), &policy).unwrap();
        assert_eq!(field, "spec.address (or its Secret's address)");
        assert!(
            reason.contains("169.254.169.254 is refused") && reason.contains("--allow-destination"),
            "{reason}"
        );
        let (field, _) = refused(
            &dest(
                "https://hooks.slack.com/x",
                Some("http://[fd00:ec2::254]:3128"),
            ),
            &policy,
        )
        .unwrap();
        assert_eq!(field, "spec.proxy");
        assert_eq!(
            refused(&dest("http://127.0.0.1:8080/x", None), &policy),
            None
        );
        assert_eq!(
            refused(&dest("https://hooks.slack.com/x", None), &policy),
            None
        );
        let allowed = fledge_core::egress::DestinationPolicy {
            allowed: vec!["169.254.0.0/16".parse().unwrap()],
            api_server: Vec::new(),
        };
        assert_eq!(
            refused(&dest("http://169.254.169.254/latest/hook", None), &allowed),
            None
        );
    }

    fn spec(t: &str) -> AlertProviderSpec {
        AlertProviderSpec {
            r#type: t.into(),
            address: Some(format!("https://hooks.slack.com/services/{SECRET}")),
            ..Default::default()
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn an_address_in_the_spec_with_defaults() {
        let r = from_spec("shop/slack", &spec("slack"), None).unwrap();
        assert_eq!(r.notifier.kind(), "slack");
        assert_eq!(r.username, "fledge");
        assert_eq!(r.channel, None);
        assert!(!r.traffic_steps, "chat: no traffic steps by default");
        assert!(!format!("{r:?}").contains(SECRET));
        let hook = from_spec("shop/hook", &spec("webhook"), None).unwrap();
        assert!(hook.traffic_steps, "the generic webhook gets every step");
        assert!(hook.wants(NotifyKind::TrafficStep));
        assert!(!r.wants(NotifyKind::TrafficStep) && r.wants(NotifyKind::RolledBack));
    }

    #[test]
    fn the_secret_gives_address_proxy_and_token() {
        let mut s = spec("slack");
        s.address = None;
        s.secret_ref = Some(fledge_api::metric_template::SecretReference {
            name: "slack-url".into(),
        });
        s.channel = Some("#deploys".into());
        s.username = Some("rollouts".into());
        s.link_template = Some("https://dash.example.com/{namespace}/{name}".into());
        let d = data(&[
            ("address", "https://slack.com/api/chat.postMessage\n"),
            ("proxy", "http://proxy.internal:3128"),
            ("token", "xoxb-1"),
        ]);
        let r = from_spec("shop/slack", &s, Some(("shop/slack-url", &d))).unwrap();
        assert_eq!(
            r.destination.url.as_str(),
            "https://slack.com/api/chat.postMessage"
        );
        assert_eq!(
            r.destination.proxy.as_ref().map(Url::as_str),
            Some("http://proxy.internal:3128/")
        );
        assert_eq!(r.destination.token.as_deref(), Some("xoxb-1"));
        assert_eq!(r.username, "rollouts");
        let o = r.options(&crate::fixture::message());
        assert_eq!(o.channel.as_deref(), Some("#deploys"));
        assert_eq!(
            o.link.as_deref(),
            Some("https://dash.example.com/shop/podinfo")
        );
    }

    #[test]
    fn bad_input_names_the_object_and_field_and_never_the_secret() {
        let mut s = spec("slack");
        s.address = None;
        s.secret_ref = Some(fledge_api::metric_template::SecretReference {
            name: "slack-url".into(),
        });
        let no_key = from_spec(
            "shop/slack",
            &s,
            Some(("shop/slack-url", &data(&[("url", "x")]))),
        )
        .unwrap_err();
        assert_eq!(
            no_key.to_string(),
            "AlertProvider shop/slack: Secret shop/slack-url: has no address key; put the \
             webhook URL under the key address"
        );
        let bad = data(&[("address", &format!("hooks.slack.com/services/{SECRET}"))]);
        let e = from_spec("shop/slack", &s, Some(("shop/slack-url", &bad))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("AlertProvider shop/slack: Secret shop/slack-url key address: "),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{text}");
        let worse = data(&[("address", &format!("ftp://files.example.com/{SECRET}"))]);
        let text = from_spec("shop/slack", &s, Some(("shop/slack-url", &worse)))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("ftp://files.example.com") && !text.contains(SECRET),
            "{text}"
        );

        let mut inline = spec("slack");
        inline.address = Some(format!("https://hooks slack.com/{SECRET}"));
        let text = from_spec("shop/slack", &inline, None)
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("AlertProvider shop/slack: spec.address: "),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{text}");

        let e = from_spec("shop/x", &spec("teams"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AlertProvider shop/x: spec.type: "),
            "{e}"
        );
        assert!(e.is_user_error());
    }
}
