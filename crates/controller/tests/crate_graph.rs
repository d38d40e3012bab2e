//! The architecture's dependency rules, checked on the workspace's own manifests (see
//! ARCHITECTURE.md): the engine has no I/O, and each adapter crate depends on the API types and
//! the engine, never on another adapter or on the controller.

use std::collections::BTreeSet;
use std::process::Command;

/// The adapter crates: one per seam.
const ADAPTERS: &[&str] = &[
    "fledge-routers",
    "fledge-metrics-providers",
    "fledge-notifiers",
    "fledge-git",
];

/// Crates whose presence under the engine would mean I/O, a runtime or a client.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "hyper",
    "reqwest",
    "kube-client",
    "kube-runtime",
    "rustls",
    "async-trait",
    "futures",
    "futures-util",
];

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The names of every crate `package` builds on (normal dependencies, transitively).
fn tree(package: &str) -> BTreeSet<String> {
    cargo(&[
        "tree",
        "-q",
        "--offline",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
    ])
    .lines()
    .filter_map(|l| l.split_whitespace().next())
    .map(str::to_string)
    .collect()
}

#[test]
fn the_engine_has_no_io_crate_under_it() {
    // The listing is read right: the controller does build on a runtime and a client.
    let controller = tree("fledge-controller");
    assert!(controller.contains("tokio") && controller.contains("kube-client"));
    let deps = tree("fledge-core");
    let io: Vec<&&str> = IO_CRATES.iter().filter(|c| deps.contains(**c)).collect();
    assert!(io.is_empty(), "fledge-core builds on {io:?}");
    for a in ADAPTERS.iter().chain(&["fledge-controller"]) {
        assert!(!deps.contains(*a), "fledge-core depends on {a}");
    }
    let api = tree("fledge-api");
    for a in ADAPTERS.iter().chain(&["fledge-core", "fledge-controller"]) {
        assert!(!api.contains(*a), "fledge-api depends on {a}");
    }
}

#[test]
fn adapters_never_depend_on_each_other_or_on_the_controller() {
    for adapter in ADAPTERS {
        let deps = tree(adapter);
        for other in ADAPTERS.iter().chain(&["fledge-controller"]) {
            if other != adapter {
                assert!(!deps.contains(*other), "{adapter} depends on {other}");
            }
        }
    }
}

#[test]
fn the_plugin_and_the_dashboard_never_depend_on_the_controller() {
    let plugin = tree("fledge-plugin");
    assert!(
        plugin.contains("fledge-dashboard"),
        "the listing is read right"
    );
    assert!(
        !plugin.contains("fledge-controller"),
        "kubectl-fledge depends on the controller"
    );
    let dashboard = tree("fledge-dashboard");
    for other in ["fledge-controller", "fledge-plugin"] {
        assert!(
            !dashboard.contains(other),
            "fledge-dashboard depends on {other}"
        );
    }
}
