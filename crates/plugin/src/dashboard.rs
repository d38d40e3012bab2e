//! `kubectl fledge dashboard`: the web dashboard's actions are this plugin's own requests
//! ([`crate::ops::send`]): the same checks, the same write to `canaries/status` as the user, the
//! same wait for the controller's answer.

use std::time::Duration;

use fledge_dashboard::{ActionFuture, ActionRequest, Actions};
use kube::Client;

use crate::ops::{self, Answer, Ask};

/// The dashboard's actions, as `kubectl fledge promote/abort/retry/pause/resume/approve`.
pub struct PluginActions {
    /// The user's client.
    pub client: Client,
    /// How long to wait for the controller's answer.
    pub wait: Duration,
}

impl Actions for PluginActions {
    fn act(&self, r: ActionRequest) -> ActionFuture {
        let client = self.client.clone();
        let wait = self.wait;
        Box::pin(async move {
            let ask = Ask {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                action: r.action,
                gate: r.gate,
                wait: Some(wait),
            };
            match ops::send(&client, &ask).await {
                Ok(Answer::Sent(req)) => Ok(format!(
                    "{} of {}/{} requested by {}",
                    req.describe(),
                    r.namespace,
                    r.name,
                    req.who()
                )),
                Ok(Answer::Handled(o)) => Ok(format!(
                    "{} requested by {}: {}",
                    o.request.describe(),
                    o.request.who(),
                    o.message
                )),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
