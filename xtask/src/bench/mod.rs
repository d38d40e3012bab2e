//! Benchmarks: `cargo xtask bench …`. They print figures; they are not pass/fail tests.

mod measure;
mod scale;

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
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Scale(a) => scale::run(a),
    }
}
