//! `kubectl-fledge`: found by kubectl on PATH as the plugin `kubectl fledge`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use fledge_api::{Canary, Gate, RequestAction};
use fledge_plugin::ops::{self, Answer, Ask};
use fledge_plugin::{Error, render};
use futures::TryStreamExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};

/// Watch and steer fledge rollouts.
#[derive(Parser)]
#[command(name = "kubectl fledge", version)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Act as this user (impersonation, as kubectl's --as).
    #[arg(long = "as", global = true)]
    as_user: Option<String>,
    /// Act as this group (impersonation, as kubectl's --as-group); repeatable.
    #[arg(long = "as-group", global = true)]
    as_group: Vec<String>,
    /// The namespace (default: the context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A table of Canaries, or with NAME the tree of one rollout.
    Get {
        /// A Canary's name.
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Keep watching: redraw on a terminal, one line per change otherwise.
        #[arg(short, long)]
        watch: bool,
        /// Print the objects instead.
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Finish the rollout now, skipping the remaining analysis.
    Promote(Target),
    /// Roll the rollout back now.
    Abort(Target),
    /// Roll out the revision that failed again, without a new version.
    Retry(Target),
    /// Hold the Canary where it is until resumed.
    Pause(Target),
    /// Undo a pause.
    Resume(Target),
    /// Open a manual gate once, without a load tester.
    Approve {
        #[command(flatten)]
        target: Target,
        /// The gate (default: the one the Canary waits for).
        #[arg(long, value_parser = parse_gate)]
        gate: Option<Gate>,
    },
    /// Serve a web dashboard on this machine: every Canary you can list, live, each rollout
    /// as charts, and the actions above, all as you (your kubeconfig, your RBAC).
    Dashboard {
        /// The port to listen on (0: any free port).
        #[arg(long, default_value_t = 7979)]
        port: u16,
        /// The address to listen on; keep the loopback address unless something in front of
        /// it authenticates people (the dashboard acts as you).
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,
        /// A working copy of the repository of the Git ledger, to list past rollouts of
        /// Canaries that set spec.gitops (kept current with your own git pull).
        #[arg(long)]
        ledger: Option<std::path::PathBuf>,
        /// How long an action waits for the controller's answer, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Move Flagger's Canaries, MetricTemplates and AlertProviders to fledge.dev/v1beta1:
    /// from YAML files (only their apiVersion lines change; comments and order stay) or from
    /// the cluster (--from-cluster: printed as YAML ready to apply).
    Import {
        /// YAML files to convert (`-` reads standard input); printed to standard output unless
        /// --in-place.
        files: Vec<std::path::PathBuf>,
        /// Rewrite the files instead of printing them.
        #[arg(long)]
        in_place: bool,
        /// Read Flagger's objects from the cluster (the namespace of -n, or every namespace
        /// with -A) instead of files.
        #[arg(long)]
        from_cluster: bool,
        /// With --from-cluster: every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

#[derive(clap::Args)]
struct Target {
    /// The Canary's name.
    name: String,
    /// Do not wait for the controller's answer.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the controller's answer, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

fn parse_gate(s: &str) -> Result<Gate, String> {
    Gate::parse(s).ok_or_else(|| {
        format!(
            "unknown gate {s:?}: one of {}",
            Gate::ALL.map(|g| g.as_str()).join(", ")
        )
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn client(cli: &Cli) -> Result<(Client, String), Error> {
    let kubeconfig = match &cli.kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    }
    .map_err(|e| Error::Kube(format!("cannot read the kubeconfig: {e}")))?;
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Error::Kube(format!("cannot use the kubeconfig: {e}")))?;
    if let Some(user) = &cli.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !cli.as_group.is_empty() {
        config.auth_info.impersonate_groups = Some(cli.as_group.clone());
    }
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(Error::from)?;
    Ok((client, ns))
}

async fn run(cli: Cli) -> Result<(), Error> {
    let (target, action, gate) = match &cli.command {
        Command::Import {
            files,
            in_place,
            from_cluster,
            all_namespaces,
        } => return import(&cli, files, *in_place, *from_cluster, *all_namespaces).await,
        Command::Get {
            name,
            all_namespaces,
            watch,
            output,
        } => {
            if *all_namespaces && name.is_some() {
                return Err(Error::Usage(
                    "a NAME goes with one namespace (-n), not with -A".into(),
                ));
            }
            let (client, ns) = client(&cli).await?;
            let scope = (!*all_namespaces).then_some(ns.as_str());
            return get(&client, scope, name.as_deref(), *watch, *output).await;
        }
        Command::Dashboard {
            port,
            address,
            ledger,
            timeout,
        } => {
            let (client, _) = client(&cli).await?;
            return dashboard(
                &cli,
                client,
                std::net::SocketAddr::new(*address, *port),
                ledger.clone(),
                Duration::from_secs((*timeout).max(1)),
            )
            .await;
        }
        Command::Promote(t) => (t, RequestAction::Promote, None),
        Command::Abort(t) => (t, RequestAction::Abort, None),
        Command::Retry(t) => (t, RequestAction::Retry, None),
        Command::Pause(t) => (t, RequestAction::Pause, None),
        Command::Resume(t) => (t, RequestAction::Resume, None),
        Command::Approve { target, gate } => (target, RequestAction::Approve, *gate),
    };
    let (client, ns) = client(&cli).await?;
    request(&client, &ns, target, action, gate).await
}

/// `kubectl fledge dashboard`: serves the dashboard until interrupted. Every namespace unless
/// -n names one.
async fn dashboard(
    cli: &Cli,
    client: Client,
    addr: std::net::SocketAddr,
    ledger: Option<std::path::PathBuf>,
    wait: Duration,
) -> Result<(), Error> {
    if let Some(dir) = &ledger
        && !dir.is_dir()
    {
        return Err(Error::Usage(format!(
            "--ledger {}: not a directory (give a working copy of the ledger's Git repository)",
            dir.display()
        )));
    }
    let context = cli.context.clone().unwrap_or_else(|| {
        match &cli.kubeconfig {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .ok()
        .and_then(|k| k.current_context)
        .unwrap_or_default()
    });
    let options = fledge_dashboard::Options {
        addr,
        namespace: cli.namespace.clone(),
        context: match &cli.namespace {
            Some(ns) => format!("{context} · namespace {ns}"),
            None => format!("{context} · every namespace"),
        },
        ledger,
    };
    let actions = fledge_plugin::dashboard::PluginActions {
        client: client.clone(),
        wait,
    };
    let bound = fledge_dashboard::bind(client, options, Some(std::sync::Arc::new(actions)))
        .await
        .map_err(|e| Error::Usage(e.to_string()))?;
    println!(
        "fledge dashboard: {} (as your kubeconfig's user; Ctrl-C stops it)",
        bound.url()
    );
    let _ = std::io::stdout().flush();
    tokio::select! {
        r = bound.serve() => r.map_err(|e| Error::Kube(e.to_string())),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// `kubectl fledge import`: Flagger's objects to fledge's, from files or from the cluster.
async fn import(
    cli: &Cli,
    files: &[std::path::PathBuf],
    in_place: bool,
    from_cluster: bool,
    all_namespaces: bool,
) -> Result<(), Error> {
    if !from_cluster {
        if all_namespaces {
            return Err(Error::Usage(
                "-A goes with --from-cluster; files name their own namespaces".into(),
            ));
        }
        return import_files(files, in_place);
    }
    if !files.is_empty() || in_place {
        return Err(Error::Usage(
            "--from-cluster reads the cluster: name no files and leave out --in-place (the \
             output goes to standard output; redirect it to a file)"
                .into(),
        ));
    }
    let (client, ns) = client(cli).await?;
    let scope = (!all_namespaces).then_some(ns.as_str());
    let (text, labels) = fledge_plugin::import::from_cluster(&client, scope).await?;
    print!("{text}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "{} Flagger object{} converted{}{}",
        labels.len(),
        if labels.len() == 1 { "" } else { "s" },
        scope
            .map(|n| format!(" from namespace {n}"))
            .unwrap_or_default(),
        if labels.is_empty() {
            String::new()
        } else {
            format!(": {}", labels.join(", "))
        }
    );
    Ok(())
}

/// Sends an operator request (promote, abort, ...) and reports what became of it.
async fn request(
    client: &Client,
    ns: &str,
    target: &Target,
    action: RequestAction,
    gate: Option<Gate>,
) -> Result<(), Error> {
    let ask = Ask {
        namespace: ns.to_string(),
        name: target.name.clone(),
        action,
        gate,
        wait: (!target.no_wait).then(|| Duration::from_secs(target.timeout.max(1))),
    };
    match ops::send(client, &ask).await? {
        Answer::Sent(r) => println!(
            "{} of {ns}/{} requested by {}; the controller handles it at its next reconcile",
            r.describe(),
            target.name,
            r.who()
        ),
        Answer::Handled(o) => println!(
            "{ns}/{}: {} requested by {}: {}",
            target.name,
            o.request.describe(),
            o.request.who(),
            o.message
        ),
    }
    Ok(())
}

/// `kubectl fledge import FILE…`: each file converted, printed (one YAML stream, the files'
/// documents in order) or rewritten in place; a summary per file on standard error.
fn import_files(files: &[std::path::PathBuf], in_place: bool) -> Result<(), Error> {
    use fledge_plugin::import::{Outcome, convert_text};
    use std::io::Read;
    if files.is_empty() {
        return Err(Error::Usage(
            "name the YAML files to convert (- for standard input), or read the cluster with \
             --from-cluster"
                .into(),
        ));
    }
    let stdin = std::path::Path::new("-");
    if in_place && files.iter().any(|f| f == stdin) {
        return Err(Error::Usage(
            "--in-place rewrites files; standard input (-) cannot be rewritten".into(),
        ));
    }
    let mut out = String::new();
    for file in files {
        let name = if file == stdin {
            "<stdin>".to_string()
        } else {
            file.display().to_string()
        };
        let text = if file == stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Usage(format!("{name}: cannot read: {e}")))?;
            s
        } else {
            std::fs::read_to_string(file)
                .map_err(|e| Error::Usage(format!("{name}: cannot read: {e}")))?
        };
        let converted = convert_text(&text);
        let labels: Vec<String> = converted
            .documents
            .iter()
            .filter(|d| d.outcome == Outcome::Converted)
            .map(|d| d.label())
            .collect();
        eprintln!(
            "{name}: {} converted{}",
            labels.len(),
            if labels.is_empty() {
                String::new()
            } else {
                format!(" ({})", labels.join(", "))
            }
        );
        for d in &converted.documents {
            if let Outcome::OldFlaggerVersion(v) = &d.outcome {
                eprintln!(
                    "{name}:{}: {}: left as it is: {v} is not converted; move it to \
                     {} first (Flagger's own upgrade)",
                    d.number,
                    d.label(),
                    fledge_plugin::import::FLAGGER_API_VERSION
                );
            }
        }
        if in_place {
            if converted.text != text {
                std::fs::write(file, &converted.text)
                    .map_err(|e| Error::Usage(format!("{name}: cannot write: {e}")))?;
            }
        } else {
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("---\n");
            }
            out.push_str(&converted.text);
        }
    }
    if !in_place {
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

fn print_objects(objects: &[Canary], single: bool, output: Output, compact: bool) {
    let value = if single && objects.len() == 1 {
        serde_json::to_value(&objects[0])
    } else {
        serde_json::to_value(serde_json::json!({
            "apiVersion": "v1", "kind": "List", "items": objects,
        }))
    }
    .unwrap_or_default();
    match output {
        Output::Json if compact => println!("{value}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Output::Yaml => {
            if compact {
                println!("---");
            }
            print!("{}", serde_saphyr::to_string(&value).unwrap_or_default());
        }
    }
}

async fn get(
    client: &Client,
    ns: Option<&str>,
    name: Option<&str>,
    watch: bool,
    output: Option<Output>,
) -> Result<(), Error> {
    let now = jiff::Timestamp::now;
    if !watch {
        match (name, output) {
            (Some(n), Some(o)) => {
                let c = ops::get_canary(client, ns.unwrap_or_default(), n).await?;
                print_objects(&[c], true, o, false);
            }
            (Some(n), None) => {
                let c = ops::get_canary(client, ns.unwrap_or_default(), n).await?;
                print!("{}", render::tree(&ops::tree_input(client, c).await, now()));
            }
            (None, Some(o)) => {
                print_objects(&ops::list_canaries(client, ns).await?, false, o, false)
            }
            (None, None) => {
                let list = ops::list_canaries(client, ns).await?;
                if list.is_empty() {
                    eprintln!(
                        "No Canaries found{}.",
                        ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
                    );
                } else {
                    print!("{}", render::table(&list, ns.is_none(), now()));
                }
            }
        }
        return Ok(());
    }
    // Fail clearly before watching.
    match name {
        Some(n) => {
            ops::get_canary(client, ns.unwrap_or_default(), n).await?;
        }
        None => {
            ops::list_canaries(client, ns).await?;
        }
    }
    let terminal = std::io::stdout().is_terminal() && output.is_none();
    let mut seen: BTreeMap<(String, String), Canary> = BTreeMap::new();
    let mut last_lines: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut initial = true;
    let mut stream = Box::pin(ops::watch(client, ns, name));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let ev = tokio::select! {
            ev = stream.try_next() => ev.map_err(|e| Error::Kube(format!("watch: {e}")))?,
            _ = tick.tick(), if terminal && !initial => {
                // Ages and "due in" move on a terminal even without changes.
                redraw(client, &seen, ns.is_none(), name.is_some()).await;
                continue;
            }
        };
        let Some(ev) = ev else {
            return Err(Error::Kube("the watch ended".into()));
        };
        let mut changed: Vec<Canary> = Vec::new();
        match ev {
            watcher::Event::Init => {
                initial = true;
            }
            watcher::Event::InitApply(c) | watcher::Event::Apply(c) => {
                seen.insert((c.namespace().unwrap_or_default(), c.name_any()), c.clone());
                changed.push(c);
            }
            watcher::Event::Delete(c) => {
                let key = (c.namespace().unwrap_or_default(), c.name_any());
                seen.remove(&key);
                if !terminal && output.is_none() {
                    println!("{}/{} deleted", key.0, key.1);
                }
                last_lines.remove(&key);
            }
            watcher::Event::InitDone => {
                initial = false;
            }
        }
        if initial {
            continue;
        }
        if terminal {
            redraw(client, &seen, ns.is_none(), name.is_some()).await;
            continue;
        }
        // InitDone: print what the initial list held.
        if changed.is_empty() {
            changed = seen.values().cloned().collect();
        }
        for c in changed {
            let key = (c.namespace().unwrap_or_default(), c.name_any());
            match output {
                Some(o) => print_objects(&[c], true, o, true),
                None => {
                    let line = render::watch_line(&c);
                    if last_lines.get(&key) != Some(&line) {
                        println!("{line}");
                        last_lines.insert(key, line);
                    }
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// Redraws the table or the tree in place.
async fn redraw(
    client: &Client,
    seen: &BTreeMap<(String, String), Canary>,
    all_namespaces: bool,
    single: bool,
) {
    let now = jiff::Timestamp::now();
    let body = match (single, seen.values().next()) {
        (true, Some(c)) => render::tree(&ops::tree_input(client, c.clone()).await, now),
        (true, None) => "The Canary is gone.\n".into(),
        (false, _) => {
            let list: Vec<Canary> = seen.values().cloned().collect();
            render::table(&list, all_namespaces, now)
        }
    };
    let mut out = std::io::stdout().lock();
    // Home, clear the screen, draw.
    let _ = write!(out, "\x1b[H\x1b[2J{body}");
    let _ = out.flush();
}
