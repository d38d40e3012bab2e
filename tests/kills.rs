//! The controller killed in every phase of a rollout (one table, each case in its own namespace,
//! all at once): initializing, at a canary weight, at an A/B iteration, waiting at a gate,
//! promoting step by step, and between the failed checks of a rollback. After the restart the
//! rollout goes on from where it was: the weights and iterations the status shows move one step
//! at a time, in order, and the Events and chat alerts that say a step, a promotion or a
//! rollback happened are each said once.

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use fledge_e2e::dataplane::{GATEWAY_NAME, GATEWAY_NAMESPACE};
use fledge_e2e::{Hook, TestNs, deployment_json};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const DEADLINE: Duration = Duration::from_secs(240);

struct Case {
    name: &'static str,
    /// Edits the weighted Canary (stepWeight 20 up to 60, a passing `rollout` webhook).
    edit: fn(&mut Value, &Hook),
    /// When to kill the controller, read from the status.
    kill_when: fn(&CanaryStatus) -> bool,
    /// How the rollout ends.
    ends: CanaryPhase,
}

fn canary(host: &str, hook: &Hook) -> Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898, "hosts": [host],
                        "gatewayRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}]},
            "analysis": {
                "interval": "2s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                "webhooks": [{"name": "acceptance", "type": "rollout",
                              "url": hook.url("/rollout"), "timeout": "2s"}]
            }
        }
    })
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "initializing",
            edit: |_, _| {},
            kill_when: |s| s.phase == CanaryPhase::Initializing,
            ends: CanaryPhase::Succeeded,
        },
        Case {
            name: "weight",
            edit: |_, _| {},
            kill_when: |s| s.phase == CanaryPhase::Progressing && s.canary_weight == 40,
            ends: CanaryPhase::Succeeded,
        },
        Case {
            name: "ab",
            edit: |c, _| {
                let a = &mut c["spec"]["analysis"];
                a.as_object_mut().unwrap().remove("stepWeight");
                a.as_object_mut().unwrap().remove("maxWeight");
                a["iterations"] = json!(5);
                a["match"] = json!([{"headers": {"x-canary": {"exact": "insider"}}}]);
            },
            kill_when: |s| s.phase == CanaryPhase::Progressing && s.iterations == 2,
            ends: CanaryPhase::Succeeded,
        },
        Case {
            name: "gate",
            edit: |c, hook| {
                c["spec"]["analysis"]["webhooks"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "ship", "type": "confirm-promotion",
                                 "url": hook.url("/gate"), "timeout": "2s"}));
            },
            kill_when: |s| s.phase == CanaryPhase::WaitingPromotion,
            ends: CanaryPhase::Succeeded,
        },
        Case {
            name: "promoting",
            edit: |c, _| c["spec"]["analysis"]["stepWeightPromotion"] = json!(10),
            kill_when: |s| s.phase == CanaryPhase::Promoting && s.canary_weight <= 40,
            ends: CanaryPhase::Succeeded,
        },
        Case {
            name: "rollback",
            edit: |c, _| c["spec"]["analysis"]["threshold"] = json!(3),
            kill_when: |s| s.phase == CanaryPhase::Progressing && s.failed_checks == 1,
            ends: CanaryPhase::Failed,
        },
    ]
}

/// What a case saw.
#[derive(Debug, Default)]
struct Seen {
    /// Each (weight, iterations) the status showed while progressing, in order, without repeats.
    steps: Vec<(i32, i32)>,
    /// Each canary weight the status showed while promoting.
    promoting: Vec<i32>,
    killed_at: Option<String>,
}

async fn run(case: Case) -> Result<(), String> {
    let ns = TestNs::new(&format!("kill-{}", case.name)).await;
    let host = format!("{}.fledge.test", ns.name);
    let hook = Hook::start(200).await.unwrap();
    let gate = Hook::start(403).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let chat = ns.chat().await;
    let mut c = canary(&host, &hook);
    c["spec"]["analysis"]["alerts"] =
        json!([{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}]);
    (case.edit)(&mut c, &gate);
    ns.create::<Canary>(c).await;
    let api = ns.api::<Canary>();
    let mut seen = Seen::default();
    let mut controller = ns.start_controller(&[]);
    let started = Instant::now();
    let mut released = false;
    let status = loop {
        let s = api
            .get("podinfo")
            .await
            .ok()
            .and_then(|c| c.status)
            .unwrap_or_default();
        if seen.killed_at.is_none() && (case.kill_when)(&s) {
            ns.kill_controller(controller);
            seen.killed_at = Some(format!(
                "{:?} at weight {} iteration {}, failed checks {}",
                s.phase, s.canary_weight, s.iterations, s.failed_checks
            ));
            tokio::time::sleep(Duration::from_secs(3)).await;
            controller = ns.start_controller(&[]);
            // The gate opens only once the restarted controller has found it closed.
            if case.name == "gate" {
                tokio::time::sleep(Duration::from_secs(4)).await;
                gate.set_status(200);
            }
            continue;
        }
        if !released && s.phase == CanaryPhase::Initialized {
            ns.set_image("podinfo", V2).await;
            released = true;
        }
        if case.name == "rollback" && s.phase == CanaryPhase::Progressing && s.canary_weight >= 20 {
            hook.set_status(500);
        }
        match s.phase {
            CanaryPhase::Progressing => {
                let step = (s.canary_weight, s.iterations);
                if seen.steps.last() != Some(&step) {
                    seen.steps.push(step);
                }
            }
            CanaryPhase::Promoting if seen.promoting.last() != Some(&s.canary_weight) => {
                seen.promoting.push(s.canary_weight);
            }
            _ => {}
        }
        if released && matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
            break s;
        }
        if started.elapsed() > DEADLINE {
            return Err(format!(
                "{}: no end in {DEADLINE:?}: {s:?}\nseen {seen:?}",
                case.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last = if case.ends == CanaryPhase::Succeeded {
        "Succeeded"
    } else {
        "RolledBack"
    };
    let events = ns
        .events_once_said("podinfo", &["NewRevision", "Initialized", last])
        .await;
    let fail = |what: String| {
        Err(format!(
            "{}: {what}\nseen {seen:?}\nEvents:\n{}",
            case.name,
            events.join("\n")
        ))
    };
    if seen.killed_at.is_none() {
        return fail("the controller was never killed".into());
    }
    if status.phase != case.ends {
        return fail(format!("ended {:?}", status.phase));
    }
    // Weights rise by the step, iterations by one: nothing repeated, nothing skipped.
    for w in seen.steps.windows(2) {
        let ((w0, i0), (w1, i1)) = (w[0], w[1]);
        let next = (w1 == w0 + 20 && i1 == i0) || (w1 == w0 && i1 == i0 + 1);
        if !next {
            return fail(format!("a step from {:?} to {:?}", w[0], w[1]));
        }
    }
    for w in seen.promoting.windows(2) {
        if w[1] >= w[0] {
            return fail(format!("promotion went from {} to {}", w[0], w[1]));
        }
    }
    // What happened once is said once.
    let once = |reason: &str, words: &str| {
        events
            .iter()
            .filter(|e| e.contains(&format!(" {reason}:")) && e.contains(words))
            .count()
    };
    for weight in [20, 40, 60] {
        let n = once("WeightAdvanced", &format!("weight {weight}"));
        if n > 1 {
            return fail(format!("weight {weight} advanced {n} times"));
        }
    }
    for reason in ["NewRevision", "Initialized"] {
        if once(reason, "") != 1 {
            return fail(format!("{reason} said {} times", once(reason, "")));
        }
    }
    if once(last, "") != 1 {
        return fail(format!("{last} said {} times", once(last, "")));
    }
    // Each chat alert once: no two with the same kind, message, weight and failed checks. The
    // last one may arrive a moment after the status says the rollout ended.
    let kind = if case.ends == CanaryPhase::Succeeded {
        "promoted"
    } else {
        "rolledBack"
    };
    let alerts = match chat
        .alerts_each_once(
            kind,
            &["eventMessage", "canaryWeight", "failedChecks"],
            &["newRevision", kind],
        )
        .await
    {
        Ok(alerts) => alerts,
        Err(e) => return fail(e),
    };
    eprintln!(
        "killed {}: {} -> {:?}; steps {:?}, promoting {:?}, {} alerts",
        case.name,
        seen.killed_at.as_deref().unwrap_or_default(),
        status.phase,
        seen.steps,
        seen.promoting,
        alerts.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_in_any_phase_goes_on_where_it_was() {
    let results = futures::future::join_all(cases().into_iter().map(run)).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
