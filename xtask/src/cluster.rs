//! The local control plane (placeholder until it lands).

/// Arguments of `cargo xtask cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {}

pub fn run(_args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::bail!("the local control plane is not built yet")
}
