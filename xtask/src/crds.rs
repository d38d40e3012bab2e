//! `cargo xtask crds`: regenerate `config/crd/` from the API types, and copy it and the RBAC
//! rules of `config/rbac/` into the Helm chart.

use crate::util::{cargo, root, run};

pub fn regenerate() -> anyhow::Result<()> {
    let dir = root().join("config/crd");
    std::fs::create_dir_all(&dir)?;
    run(
        "fledge crds --out-dir config/crd",
        cargo()
            .args([
                "run",
                "--quiet",
                "-p",
                "fledge-controller",
                "--bin",
                "fledge",
                "--",
            ])
            .arg("crds")
            .arg("--out-dir")
            .arg(&dir),
    )?;
    crate::charts::sync_chart_copies(&root())
}
