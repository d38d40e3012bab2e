//! The axum server: pages, server-sent events fed by a watch of Canaries, the action endpoint
//! (only with [`crate::Actions`]), and the two assets, all served from the binary.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use fledge_api::{Canary, Gate, RequestAction};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::pages::{self, CanaryInput, Flash, Frame, LedgerLink};
use crate::view::EventLine;
use crate::{ActionRequest, Actions, Error};

/// How the dashboard is served.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// Only this namespace's Canaries (`None`: every namespace).
    pub namespace: Option<String>,
    /// Shown in the header: the kubeconfig context, or the controller.
    pub context: String,
    /// A working copy of the ledger's Git repository, for past rollouts.
    pub ledger: Option<PathBuf>,
}

/// Which part of a page changed.
#[derive(Clone, Debug)]
enum Change {
    /// One Canary (namespace, name).
    One(String, String),
    /// The whole list (after a relist).
    All,
}

struct AppState {
    client: Client,
    store: Store<Canary>,
    changes: broadcast::Sender<Change>,
    actions: Option<Arc<dyn Actions>>,
    frame: Frame,
    token: String,
    ledger: Option<PathBuf>,
    watch_error: Mutex<Option<String>>,
    loopback_hosts: Option<Vec<String>>,
}

type Shared = Arc<AppState>;

/// A dashboard bound to its address, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    router: Router,
    addr: SocketAddr,
}

impl Bound {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}/", self.addr.port())
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<(), Error> {
        axum::serve(self.listener, self.router)
            .await
            .map_err(Error::Serve)
    }
}

fn random_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    (0..2)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(nanos ^ i);
            h.write_u32(std::process::id());
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// Binds the address and starts watching Canaries; [`Bound::serve`] serves the pages.
/// Without `actions` the dashboard is read-only: no button, no action endpoint.
pub async fn bind(
    client: Client,
    options: Options,
    actions: Option<Arc<dyn Actions>>,
) -> Result<Bound, Error> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: options.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: options.addr,
        source,
    })?;
    let (changes, _) = broadcast::channel(256);
    let (store, writer) = reflector::store::<Canary>();
    // A dashboard that acts as its user answers on its loopback address only; a read-only
    // one (the controller's, reached through a port-forward or a proxy) under any name.
    let loopback_hosts = (addr.ip().is_loopback() && actions.is_some()).then(|| {
        let port = addr.port();
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            format!("{addr}"),
        ]
    });
    let state = Arc::new(AppState {
        client: client.clone(),
        store,
        changes: changes.clone(),
        frame: Frame {
            context: options.context.clone(),
            read_only: actions.is_none(),
        },
        actions,
        token: random_token(),
        ledger: options.ledger.clone(),
        watch_error: Mutex::new(None),
        loopback_hosts,
    });
    tokio::spawn(watch(state.clone(), options.namespace.clone(), writer));
    let mut router = Router::new()
        .route("/", get(overview))
        .route("/stream", get(overview_stream))
        .route("/canaries/{ns}/{name}", get(canary))
        .route("/canaries/{ns}/{name}/stream", get(canary_stream))
        .route("/canaries/{ns}/{name}/rollouts/{file}", get(past_rollout))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style));
    if state.actions.is_some() {
        router = router.route("/canaries/{ns}/{name}/actions", post(act));
    }
    let router = router
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    Ok(Bound {
        listener,
        router,
        addr,
    })
}

/// Keeps the store of Canaries current and tells the open pages what changed.
async fn watch(state: Shared, namespace: Option<String>, writer: reflector::store::Writer<Canary>) {
    let api: Api<Canary> = match &namespace {
        Some(ns) => Api::namespaced(state.client.clone(), ns),
        None => Api::all(state.client.clone()),
    };
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::Delete(c)) => {
                let _ = state
                    .changes
                    .send(Change::One(c.namespace().unwrap_or_default(), c.name_any()));
            }
            Ok(watcher::Event::InitDone) => {
                *state.watch_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let _ = state.changes.send(Change::All);
            }
            Ok(_) => {}
            Err(e) => {
                let text = match &e {
                    watcher::Error::InitialListFailed(kube::Error::Api(s))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                        if s.code == 403 =>
                    {
                        format!(
                            "You may not list Canaries {}: the API server answered: {} (start \
                             the dashboard with -n NAMESPACE for one namespace you may list)",
                            namespace
                                .as_ref()
                                .map(|n| format!("in namespace {n}"))
                                .unwrap_or_else(|| "in every namespace".into()),
                            s.message
                        )
                    }
                    other => format!("Watching Canaries failed (retrying): {other}"),
                };
                tracing::warn!("{text}");
                *state.watch_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
                let _ = state.changes.send(Change::All);
            }
        }
    }
}

/// Refuses requests whose Host is not the loopback address the dashboard listens on (a page
/// elsewhere cannot reach it through DNS rebinding), and actions that do not come from the
/// dashboard's own pages.
async fn guard(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(hosts) = &state.loopback_hosts
        && !hosts.iter().any(|h| h == &host)
    {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers on its loopback address only",
        )
            .into_response();
    }
    if req.method() == axum::http::Method::POST {
        let headers = req.headers();
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|o| o == format!("http://{host}"));
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|o| o.to_str().ok())
            .is_none_or(|s| s == "same-origin" || s == "none");
        if !origin_ok || !site_ok {
            return (
                StatusCode::FORBIDDEN,
                "actions are taken from the dashboard's own pages only",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn canaries(state: &AppState) -> Vec<Canary> {
    state.store.state().iter().map(|c| (**c).clone()).collect()
}

fn watch_error(state: &AppState) -> Option<String> {
    state
        .watch_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn page_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(format!(
            "<!doctype html><html lang=\"en\"><title>Error · fledge</title><main><h1>Error</h1>\
             <p>{}</p></main></html>",
            escape(&e.to_string())
        )),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
struct Filter {
    #[serde(default)]
    q: String,
}

async fn overview(State(state): State<Shared>, Query(f): Query<Filter>) -> Response {
    let now = jiff::Timestamp::now();
    let err = watch_error(&state);
    let render = pages::overview_table(&canaries(&state), &f.q, err.as_deref(), now)
        .and_then(|table| pages::overview(&state.frame, &f.q, &table));
    match render {
        Ok(html) => Html(html).into_response(),
        Err(e) => page_error(e),
    }
}

fn fragment(id: &str, html: &str) -> SseEvent {
    SseEvent::default()
        .event("fragment")
        .data(serde_json::json!({"id": id, "html": html, "hash": crate::digest(html)}).to_string())
}

/// Waits for the next change that `wanted` keeps (or a tick, to move ages on), then lets a
/// burst of changes settle.
async fn next_change(
    rx: &mut broadcast::Receiver<Change>,
    wanted: &(dyn Fn(&Change) -> bool + Send + Sync),
    tick: Duration,
) -> bool {
    let deadline = tokio::time::sleep(tick);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(c) if wanted(&c) => break,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            _ = &mut deadline => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    while rx.try_recv().is_ok() {}
    true
}

async fn overview_stream(
    State(state): State<Shared>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.changes.subscribe();
    let stream = futures::stream::unfold((state, rx, true), |(state, mut rx, first)| async move {
        if !first && !next_change(&mut rx, &|_| true, Duration::from_secs(30)).await {
            return None;
        }
        let err = watch_error(&state);
        let html = pages::overview_table(
            &canaries(&state),
            "",
            err.as_deref(),
            jiff::Timestamp::now(),
        )
        .unwrap_or_else(|e| {
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                escape(&e.to_string())
            )
        });
        Some((Ok(fragment("overview", &html)), (state, rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A Canary from the watch's store, else from the API server (with its refusal).
async fn find(state: &AppState, ns: &str, name: &str) -> Result<Canary, (StatusCode, String)> {
    if let Some(c) = state.store.get(&ObjectRef::new(name).within(ns)) {
        return Ok((*c).clone());
    }
    let api: Api<Canary> = Api::namespaced(state.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err((
            StatusCode::NOT_FOUND,
            format!("No Canary {name:?} in namespace {ns:?}."),
        )),
        Err(kube::Error::Api(s)) => Err((
            StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY),
            format!("The API server answered {}: {}", s.code, s.message),
        )),
        Err(e) => Err((
            StatusCode::BAD_GATEWAY,
            format!("Cannot reach the API server: {e}"),
        )),
    }
}

/// The Events of a Canary, oldest first (none when the user may not list them).
pub async fn events(client: &Client, canary: &Canary) -> Vec<EventLine> {
    let ns = canary.namespace().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let mut selector = format!(
        "involvedObject.kind=Canary,involvedObject.name={}",
        canary.name_any()
    );
    if let Some(uid) = canary.uid() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out: Vec<EventLine> = list
        .into_iter()
        .map(|e| EventLine {
            at: e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
                .or(e.last_timestamp.as_ref().map(|t| t.0))
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.first_timestamp.as_ref().map(|t| t.0)),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e.message.unwrap_or_default(),
        })
        .collect();
    out.sort_by_key(|e| e.at);
    out
}

/// The ledger's links of a Canary, and a note when there are none to show.
fn ledger_links(state: &AppState, c: &Canary) -> (Vec<LedgerLink>, String) {
    if c.spec.gitops.is_none() {
        return (Vec::new(), String::new());
    }
    let Some(checkout) = &state.ledger else {
        return (
            Vec::new(),
            "This Canary records its rollouts in Git. Start the dashboard with --ledger DIR \
             (a working copy of the ledger's repository, kept current with git pull) to list \
             them here."
                .into(),
        );
    };
    let Some(dir) = crate::ledger::dir(checkout, c) else {
        return (Vec::new(), String::new());
    };
    let base = crate::canary_path(&c.namespace().unwrap_or_default(), &c.name_any());
    match crate::ledger::list(&dir) {
        Ok(list) if list.is_empty() => (
            Vec::new(),
            format!("No ledger file in {} yet.", dir.display()),
        ),
        Ok(list) => (
            list.iter()
                .map(|(file, r)| LedgerLink {
                    href: format!("{base}/rollouts/{file}"),
                    label: crate::ledger::label(r),
                })
                .collect(),
            String::new(),
        ),
        Err(e) => (Vec::new(), e),
    }
}

async fn canary_fragments(state: &AppState, c: &Canary) -> Result<(String, String), String> {
    let evs = events(&state.client, c).await;
    let (ledger, note) = ledger_links(state, c);
    let body = pages::canary_body(&CanaryInput {
        canary: c,
        events: &evs,
        ledger: &ledger,
        ledger_note: &note,
        now: jiff::Timestamp::now(),
    })
    .map_err(|e| e.to_string())?;
    let actions =
        pages::actions(c, state.frame.read_only, &state.token).map_err(|e| e.to_string())?;
    Ok((actions, body))
}

async fn canary_response(
    state: &AppState,
    ns: &str,
    name: &str,
    flash: Option<Flash>,
    code: StatusCode,
) -> Response {
    let c = match find(state, ns, name).await {
        Ok(c) => c,
        Err((code, text)) => {
            let html = pages::canary_page(
                &state.frame,
                ns,
                name,
                name,
                "",
                Some(&Flash { ok: false, text }),
                "",
                "",
            );
            return match html {
                Ok(h) => (code, Html(h)).into_response(),
                Err(e) => page_error(e),
            };
        }
    };
    let (actions, body) = match canary_fragments(state, &c).await {
        Ok(f) => f,
        Err(e) => return page_error(e),
    };
    let stream = format!("{}/stream", crate::canary_path(ns, name));
    match pages::canary_page(
        &state.frame,
        ns,
        name,
        &format!("{ns}/{name}"),
        &stream,
        flash.as_ref(),
        &actions,
        &body,
    ) {
        Ok(h) => (code, Html(h)).into_response(),
        Err(e) => page_error(e),
    }
}

async fn canary(State(state): State<Shared>, Path((ns, name)): Path<(String, String)>) -> Response {
    canary_response(&state, &ns, &name, None, StatusCode::OK).await
}

async fn canary_stream(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = state.changes.subscribe();
    let key = (ns, name);
    let stream = futures::stream::unfold(
        (state, rx, key, true, HashMap::<&'static str, String>::new()),
        |(state, mut rx, key, mut first, mut sent)| async move {
            loop {
                if !first {
                    let k = key.clone();
                    let wanted = move |c: &Change| match c {
                        Change::One(ns, name) => ns == &k.0 && name == &k.1,
                        Change::All => true,
                    };
                    if !next_change(&mut rx, &wanted, Duration::from_secs(10)).await {
                        return None;
                    }
                }
                first = false;
                let events: Vec<SseEvent> = match find(&state, &key.0, &key.1).await {
                    Ok(c) => match canary_fragments(&state, &c).await {
                        Ok((actions, body)) => {
                            let mut out = Vec::new();
                            for (id, html) in [("actions", actions), ("canary", body)] {
                                if sent.get(id) != Some(&html) {
                                    out.push(fragment(id, &html));
                                    sent.insert(id, html);
                                }
                            }
                            out
                        }
                        Err(e) => vec![fragment(
                            "canary",
                            &format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&e)),
                        )],
                    },
                    Err((_, text)) => {
                        let html =
                            format!("<p class=\"error\" role=\"alert\">{}</p>", escape(&text));
                        sent.insert("canary", html.clone());
                        vec![fragment("canary", &html)]
                    }
                };
                if !events.is_empty() {
                    let stream = futures::stream::iter(events.into_iter().map(Ok));
                    return Some((stream, (state, rx, key, false, sent)));
                }
            }
        },
    )
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    token: String,
    action: String,
    #[serde(default)]
    gate: String,
}

fn parse_action(s: &str) -> Option<RequestAction> {
    RequestAction::ALL.into_iter().find(|a| a.as_str() == s)
}

async fn act(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if form.token != state.token {
        return (
            StatusCode::FORBIDDEN,
            "the form is not from this dashboard (reload the page)",
        )
            .into_response();
    }
    let Some(actions) = state.actions.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(action) = parse_action(&form.action) else {
        let text = format!(
            "unknown action {:?}: one of {}",
            form.action,
            RequestAction::ALL.map(|a| a.as_str()).join(", ")
        );
        return canary_response(
            &state,
            &ns,
            &name,
            Some(Flash { ok: false, text }),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let gate = if form.gate.is_empty() {
        None
    } else {
        match Gate::parse(&form.gate) {
            Some(g) => Some(g),
            None => {
                let text = format!(
                    "unknown gate {:?}: one of {}",
                    form.gate,
                    Gate::ALL.map(|g| g.as_str()).join(", ")
                );
                return canary_response(
                    &state,
                    &ns,
                    &name,
                    Some(Flash { ok: false, text }),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        }
    };
    let outcome = actions
        .act(ActionRequest {
            namespace: ns.clone(),
            name: name.clone(),
            action,
            gate,
        })
        .await;
    let (flash, code) = match outcome {
        Ok(text) => (Flash { ok: true, text }, StatusCode::OK),
        Err(text) => (Flash { ok: false, text }, StatusCode::CONFLICT),
    };
    canary_response(&state, &ns, &name, Some(flash), code).await
}

async fn past_rollout(
    State(state): State<Shared>,
    Path((ns, name, file)): Path<(String, String, String)>,
) -> Response {
    let c = match find(&state, &ns, &name).await {
        Ok(c) => c,
        Err((code, text)) => return (code, text).into_response(),
    };
    let Some(dir) = state
        .ledger
        .as_ref()
        .and_then(|checkout| crate::ledger::dir(checkout, &c))
    else {
        return (
            StatusCode::NOT_FOUND,
            "no ledger: the Canary sets no spec.gitops, or the dashboard was started without \
             --ledger",
        )
            .into_response();
    };
    let record = match crate::ledger::read(&dir, &file) {
        Ok(r) => r,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    let rollout = crate::ledger::rollout(&record);
    let body = match pages::past_rollout_body(&rollout, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(e) => return page_error(e),
    };
    match pages::canary_page(
        &state.frame,
        &ns,
        &name,
        &format!("{ns}/{name}: {}", crate::ledger::label(&record)),
        "",
        None,
        "",
        &body,
    ) {
        Ok(h) => Html(h).into_response(),
        Err(e) => page_error(e),
    }
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/app.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/app.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An API server that has nothing: every request is answered 404.
    fn empty_cluster() -> Client {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(404)
                    .body(kube::client::Body::from(
                        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not here","reason":"NotFound","code":404}"#
                            .to_vec(),
                    ))
                    .unwrap(),
            )
        });
        Client::new(svc, "default")
    }

    struct Done;
    impl Actions for Done {
        fn act(&self, r: ActionRequest) -> crate::ActionFuture {
            Box::pin(async move { Ok(format!("{} done", r.action)) })
        }
    }

    async fn started(actions: Option<Arc<dyn Actions>>) -> SocketAddr {
        let bound = bind(
            empty_cluster(),
            Options {
                addr: "127.0.0.1:0".parse().unwrap(),
                namespace: Some("shop".into()),
                context: "test".into(),
                ledger: None,
            },
            actions,
        )
        .await
        .unwrap();
        let addr = bound.local_addr();
        tokio::spawn(bound.serve());
        addr
    }

    /// One HTTP/1.1 exchange: the status code and the body.
    async fn exchange(addr: SocketAddr, request: String) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, out)
    }

    fn get(host: &str, path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    fn post(host: &str, path: &str, headers: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn pages_and_assets_come_from_the_binary() {
        let addr = started(Some(Arc::new(Done))).await;
        let host = addr.to_string();
        let (code, js) = exchange(addr, get(&host, "/assets/app.js")).await;
        assert_eq!(code, 200);
        assert!(js.contains("text/javascript"));
        assert!(js.contains("EventSource"));
        let (code, css) = exchange(addr, get(&host, "/assets/app.css")).await;
        assert_eq!(code, 200);
        assert!(css.contains("text/css"));
        let (code, page) = exchange(addr, get(&host, "/")).await;
        assert_eq!(code, 200);
        assert!(page.contains("<h1>Canaries</h1>"), "{page}");
        assert!(page.contains(r#"data-stream="/stream""#));
        // A Canary the API server does not have: its answer, on the page.
        let (code, page) = exchange(addr, get(&host, "/canaries/shop/nope")).await;
        assert_eq!(code, 404);
        assert!(
            page.contains("No Canary &#34;nope&#34; in namespace &#34;shop&#34;"),
            "{page}"
        );
    }

    #[tokio::test]
    async fn a_dashboard_that_acts_answers_on_its_loopback_address_only() {
        let addr = started(Some(Arc::new(Done))).await;
        let (code, _) = exchange(addr, get("attacker.example:80", "/")).await;
        assert_eq!(code, 421);
        let (code, _) = exchange(addr, get(&format!("localhost:{}", addr.port()), "/")).await;
        assert_eq!(code, 200);
    }

    #[tokio::test]
    async fn actions_come_only_from_the_dashboards_own_forms() {
        let addr = started(Some(Arc::new(Done))).await;
        let host = addr.to_string();
        let path = "/canaries/shop/podinfo/actions";
        // Another site's form.
        let (code, body) = exchange(
            addr,
            post(
                &host,
                path,
                "Origin: http://attacker.example\r\n",
                "action=abort",
            ),
        )
        .await;
        assert_eq!(code, 403, "{body}");
        let (code, _) = exchange(
            addr,
            post(
                &host,
                path,
                "Sec-Fetch-Site: cross-site\r\n",
                "action=abort",
            ),
        )
        .await;
        assert_eq!(code, 403);
        // The right origin without the page's token.
        let (code, body) = exchange(
            addr,
            post(
                &host,
                path,
                &format!("Origin: http://{host}\r\n"),
                "token=guess&action=abort",
            ),
        )
        .await;
        assert_eq!(code, 403);
        assert!(body.contains("not from this dashboard"), "{body}");
    }

    #[tokio::test]
    async fn a_read_only_dashboard_has_no_action_endpoint() {
        let addr = started(None).await;
        let host = addr.to_string();
        let (code, _) = exchange(
            addr,
            post(&host, "/canaries/shop/podinfo/actions", "", "action=abort"),
        )
        .await;
        assert!(matches!(code, 404 | 405), "{code}");
        // Read-only, it answers under any name (a port-forward or a proxy in front of it).
        let (code, page) = exchange(addr, get("fledge.example.com", "/")).await;
        assert_eq!(code, 200);
        assert!(page.contains("read-only"));
    }
}
