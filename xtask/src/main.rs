//! Developer tasks for fledge: `cargo xtask <task>`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod bench;
mod browser;
mod charts;
mod cluster;
mod code_order;
mod crds;
mod dataplane;
mod demo;
mod deny;
mod flagger;
mod fuzz;
mod gitservers;
mod image;
mod lanes;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "xtask", about = "fledge developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The demo: a healthy and a faulty rollout on the local control plane with real traffic.
    Demo(demo::DemoArgs),
    /// Check the Helm chart (charts/fledge) and the kustomize base (config/default): helm lint,
    /// helm template and kustomize build validated by kubeconform -strict, bad values refused,
    /// RBAC equal to config/rbac/, CRDs equal to config/crd/.
    Charts,
    /// The local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kwok).
    Cluster(cluster::ClusterArgs),
    /// Every check CI runs: fmt, clippy, and all tests.
    Test(test::TestArgs),
    /// The end-to-end tests alone, two test binaries at a time, on the local planes already up
    /// (`cluster up`, `git-servers`, `dataplane up`, and `image`, `browser` and `flagger` built),
    /// as `cargo xtask test` runs them.
    E2e,
    /// Regenerate `config/crd/` from the API types.
    Crds,
    /// Benchmarks on the local control plane; they print figures, they do not pass or fail.
    Bench(bench::BenchArgs),
    /// The local data plane: Traefik serving a Gateway, podinfo apps, EndpointSlices to them.
    Dataplane(dataplane::DataplaneArgs),
    /// Make sure the Git servers of the ledger tests are here (installs OpenSSH's sshd when
    /// missing).
    GitServers,
    /// The fledge and fledge-loadgen container images as OCI archives under `target/images/`,
    /// built here with umoci (no registry, no daemon), with their SBOMs.
    Image(image::ImageArgs),
    /// What the dashboard's browser tests need: Debian's chromium and chromium-driver (installed
    /// with apt-get when missing) and axe-core from npm (into ~/.cache/fledge/).
    Browser,
    /// Build (once per version) Flagger, the reference of the cut-over test, from its Go
    /// module; print the binary's path and its CRD file's.
    Flagger,
    /// Run each cargo-fuzz target of `fuzz/` for a bounded time (nightly toolchain; installs
    /// cargo-fuzz under the cache when missing).
    Fuzz(fuzz::FuzzArgs),
    /// `cargo deny check licenses bans sources` (deny.toml; installs cargo-deny under the cache
    /// when missing).
    Deny,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo(args) => demo::run_demo(args),
        Task::Charts => charts::run(),
        Task::Cluster(args) => cluster::run(args),
        Task::Test(args) => test::run_all(args),
        Task::E2e => lanes::run_standalone(),
        Task::Crds => crds::regenerate(),
        Task::Bench(args) => bench::run(args),
        Task::Dataplane(args) => dataplane::run(args),
        Task::GitServers => gitservers::ensure(),
        Task::Image(args) => image::run_image(args),
        Task::Flagger => flagger::run(),
        Task::Browser => browser::ensure(),
        Task::Fuzz(args) => fuzz::run_fuzz(args),
        Task::Deny => deny::check(),
    }
}
