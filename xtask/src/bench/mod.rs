//! Benchmarks: `cargo xtask bench …`. They print figures; they are not pass/fail tests.

mod apiserver;
mod flood;
mod hook;
mod judge;
mod loadgen;
mod measure;
mod scale;
mod soak;
mod watch;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// N Deployments with Canaries on the local control plane: the controller's memory, CPU and
    /// API requests at initialization, in steady state and in a wave where every target gets a
    /// new revision at once, and how late the analysis steps run during the wave.
    Scale(scale::ScaleArgs),
    /// N Canaries rolling out continuously (every tenth rollout failing its webhook and rolled
    /// back) until thousands of rollouts have completed: the controller's resident memory,
    /// file descriptors, tasks and API connections sampled over the rollouts, against
    /// no-growth targets, with an SVG plot of memory.
    Soak(soak::SoakArgs),
    /// fledge-loadgen beside wrk, oha and hey against one hyper hello-world server on
    /// loopback: requests per second, client CPU per 100k requests, p99 latency.
    Loadgen(loadgen::LoadgenArgs),
    /// The statistical judge against fixed thresholds on simulated traffic with a known
    /// answer: false rollbacks and detections of +1 percentage point errors and +20% latency.
    Judge(judge::JudgeArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Scale(a) => scale::run(a),
        BenchCommand::Soak(a) => soak::run(a),
        BenchCommand::Loadgen(a) => loadgen::run(a),
        BenchCommand::Judge(a) => judge::run(a),
    }
}
