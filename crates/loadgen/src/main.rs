//! `fledge-loadgen`: `run` sends load and prints a summary; `serve` is the load tester
//! service with Flagger's webhook API.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use fledge_loadgen::service::{Config, Service};
use fledge_loadgen::{HttpVersion, Model, Plan, Progress, Target, TlsOptions};
use hyper::Method;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "fledge-loadgen",
    version,
    about = "fledge's load generator: send HTTP load, or serve Flagger's load tester webhook API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send load to one or more URLs and print a summary.
    Run(Box<RunArgs>),
    /// Serve the load tester webhook API (compatible with Flagger's load tester).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The URLs; each request goes to one, picked at random by --weights.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// Stop after this long (e.g. 30s, 1m).
    #[arg(short = 'z', long = "duration", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(short = 'n', long = "requests")]
    requests: Option<u64>,
    /// Workers, each with its own connection.
    #[arg(short = 'c', long = "concurrency", default_value_t = 50)]
    concurrency: usize,
    /// Open loop at this many requests per second per worker (as hey's -q).
    #[arg(short = 'q', long = "qps", conflicts_with = "rate")]
    qps: Option<f64>,
    /// Open loop at this many requests per second in total.
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// A header, "Name: value"; repeat for more.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body.
    #[arg(short = 'd', long = "body", conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body from a file.
    #[arg(short = 'D', long = "body-file")]
    body_file: Option<PathBuf>,
    /// Host header (and TLS server name) instead of the URL's host.
    #[arg(long)]
    host: Option<String>,
    /// HTTP/2 (prior knowledge on http://, ALPN on https://).
    #[arg(long = "http2", alias = "h2")]
    http2: bool,
    /// Time limit of one request (0 for none).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    timeout: Duration,
    /// A new connection for every request.
    #[arg(long = "disable-keepalive")]
    disable_keepalive: bool,
    /// Weights of the URLs, in their order (e.g. 3,1).
    #[arg(long, value_delimiter = ',')]
    weights: Vec<u32>,
    /// Accept any TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// PEM file of CA certificates to trust besides the system's.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Runtime threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    /// Run commands that are not hey command lines in a shell (`sh -c` for type cmd,
    /// `bash -c` for type bash), as Flagger's load tester does. Off by default.
    #[arg(long)]
    allow_commands: bool,
    /// File holding the token callers must present (Bearer, or as a Basic password). The
    /// environment variable FLEDGE_LOADGEN_TOKEN is read when this is not given.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The longest a job may run.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    timeout: Duration,
    /// Log format.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    fledge_api::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line, not the usage text.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "fledge-loadgen: {} (see --help)",
                line.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fledge-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn plan_of(args: &RunArgs) -> anyhow::Result<Plan> {
    if !args.weights.is_empty() && args.weights.len() != args.urls.len() {
        anyhow::bail!(
            "--weights has {} values for {} URLs",
            args.weights.len(),
            args.urls.len()
        );
    }
    let targets = args
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| Target::parse(u, args.weights.get(i).copied().unwrap_or(1)))
        .collect::<Result<Vec<_>, _>>()?;
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(path)) => Bytes::from(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        (None, None) => Bytes::new(),
    };
    let mut plan = Plan {
        targets,
        method: Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("invalid method {:?}", args.method))?,
        headers: Default::default(),
        host: args.host.clone(),
        body,
        concurrency: args.concurrency,
        model: match (args.qps, args.rate) {
            (Some(q), _) => Model::OpenLoop {
                rate: q * args.concurrency as f64,
            },
            (None, Some(r)) => Model::OpenLoop { rate: r },
            (None, None) => Model::ClosedLoop,
        },
        requests: args.requests,
        duration: args.duration,
        timeout: (!args.timeout.is_zero()).then_some(args.timeout),
        http: if args.http2 {
            HttpVersion::Http2
        } else {
            HttpVersion::Http1
        },
        keepalive: !args.disable_keepalive,
        tls: TlsOptions {
            insecure: args.insecure,
            ca_file: args.cacert.clone(),
        },
    };
    for h in &args.headers {
        plan.add_header_line(h)?;
    }
    plan.check()?;
    Ok(plan)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_of(&args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        fledge_loadgen::probe(&plan, Duration::from_secs(10)).await?;
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let progress = Arc::new(Progress::default());
        let show = !args.json && !args.no_progress && std::io::stderr().is_terminal();
        let ticker = show.then(|| {
            let progress = progress.clone();
            let total = plan.duration;
            let n = plan.requests;
            tokio::spawn(async move {
                let start = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let done = progress.done();
                    let secs = start.elapsed().as_secs_f64();
                    let of = match (n, total) {
                        (Some(n), _) => format!("{done}/{n} requests"),
                        (None, Some(d)) => {
                            format!("{done} requests, {secs:.0}s/{:.0}s", d.as_secs_f64())
                        }
                        (None, None) => format!("{done} requests"),
                    };
                    eprint!("\r\x1b[2K{of}, {:.0} req/s", done as f64 / secs.max(1e-3));
                    let _ = std::io::stderr().flush();
                }
            })
        });
        let report = fledge_loadgen::run(&plan, cancel, Some(progress), None).await?;
        if let Some(t) = ticker {
            t.abort();
            eprint!("\r\x1b[2K");
        }
        let labels: Vec<String> = plan.targets.iter().map(|t| t.label()).collect();
        if args.json {
            println!("{}", report.to_json(&labels));
        } else {
            print!("{}", report.to_text(&labels));
        }
        Ok(if report.requests() > 0 && report.answers() == 0 {
            // Nothing answered: say so in one line besides the summary.
            eprintln!(
                "fledge-loadgen: no request was answered ({})",
                report
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{n} {}", k.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_format);
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("FLEDGE_LOADGEN_TOKEN").ok(),
    }
    .filter(|t| !t.is_empty());
    if args.token_file.is_some() && token.is_none() {
        anyhow::bail!("the token file is empty");
    }
    let config = Config {
        allow_commands: args.allow_commands,
        token,
        job_timeout: args.timeout,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = SocketAddr::new(args.address, args.port);
        let listener = fledge_loadgen::service::bind(addr).await?;
        tracing::info!(
            address = %listener.local_addr()?,
            allow_commands = config.allow_commands,
            auth = config.token.is_some(),
            "fledge-loadgen serving"
        );
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: cancelling jobs");
            on_signal.cancel();
        });
        Service::new(config).serve(listener, stop).await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().init();
    }
}
