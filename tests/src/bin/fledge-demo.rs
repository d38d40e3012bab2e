//! `fledge-demo`: the story `cargo xtask demo` tells (see `fledge_e2e::demo`), in a namespace
//! recreated for each run. Exits 0 when the story went as expected: the healthy version
//! promoted, the faulty one rolled back with the primary still on the healthy one. On exit
//! (Ctrl-C too) the controller and the podinfo processes it started are stopped; the namespace
//! is left for a look with kubectl.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use fledge_e2e::TestNs;
use fledge_e2e::demo::{self, NAMESPACE, Report};

const USAGE: &str = "usage: fledge-demo [--namespace NAME]   (default namespace: fledge-demo)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let namespace = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => NAMESPACE.to_string(),
        ["--namespace", ns] => ns.to_string(),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The harness reports what is missing by panicking; say it as one message, not a trace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        eprintln!("fledge demo: failed: {what}");
    }));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fledge demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = story(&namespace) => Some(r),
            () = interrupted() => None,
        }
    });
    // Dropping the runtime drops the story's tasks, which stops the podinfo processes.
    drop(runtime);
    match outcome {
        Some(Ok(report)) => {
            let problems = report.problems();
            if problems.is_empty() {
                println!("\nThe demo went as expected.");
                ExitCode::SUCCESS
            } else {
                eprintln!("\nfledge demo: the story did not go as expected:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                ExitCode::FAILURE
            }
        }
        Some(Err(e)) => {
            eprintln!("fledge demo: failed: {e:#}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("fledge demo: stopped; so are its controller and podinfo processes");
            ExitCode::FAILURE
        }
    }
}

async fn story(namespace: &str) -> anyhow::Result<Report> {
    println!("namespace {namespace}: made anew (what a previous run left there is deleted first)");
    let ns = TestNs::fresh(namespace).await?;
    demo::run(&ns, None).await
}

/// Returns when the process is asked to stop (Ctrl-C or SIGTERM).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
