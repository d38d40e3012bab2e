//! `fledge`: the controller and its command-line tools.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fledge",
    version,
    about = "fledge: progressive delivery for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the fledge CustomResourceDefinitions as one multi-document YAML stream.
    Crds {
        /// Write one file per CRD into this directory instead (as kept in `config/crd/`).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir: Some(dir) } => {
            for (file, yaml) in fledge_controller::crds::crds() {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("fledge crds: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Crds { out_dir: None } => {
            let mut out = std::io::stdout().lock();
            match out.write_all(fledge_controller::crds::crds_yaml().as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fledge crds: cannot write: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
