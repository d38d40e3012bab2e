//! Developer tasks for fledge: `cargo xtask <task>`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod cluster;

#[derive(Parser)]
#[command(name = "xtask", about = "fledge developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kwok).
    Cluster(cluster::ClusterArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Cluster(args) => cluster::run(args),
    }
}
