//! End-to-end: the README's install lines, run as written against a control plane of their own
//! (`cargo xtask cluster up --dir …`, with kwok as the kubelet): `helm install …` and then, after
//! `helm uninstall`, `kubectl apply -k config/default`. Each must create the CRDs, the RBAC and
//! the controller Deployment, whose two replicas kwok makes ready. (kwok runs no container: the
//! `incluster` test runs the image itself.)

use std::path::{Path, PathBuf};
use std::process::Command;

use fledge_e2e::{OtherCluster, root};

/// The README's commands that install fledge: the lines of the "Installing" section's `sh`
/// blocks that start with `helm install` or `kubectl apply -k`.
fn readme_install_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let section = readme
        .split("\n## Installing\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has an Installing section");
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh
                && (l.starts_with("helm install ") || l.starts_with("kubectl apply -k ")) =>
            {
                lines.push(l.to_string())
            }
            _ => {}
        }
    }
    lines
}

/// Runs a README line with `helm` and `kubectl` resolved to the project's builds, in the
/// repository's root, against `kubeconfig`.
fn run_line(line: &str, kubeconfig: &Path, helm: &Path, kubectl: &Path) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let program: PathBuf = match words[0] {
        "helm" => helm.to_path_buf(),
        "kubectl" => kubectl.to_path_buf(),
        other => panic!("not an install command: {other}"),
    };
    let out = Command::new(&program)
        .args(&words[1..])
        .current_dir(root())
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{line}` failed:\n{text}");
    text
}

fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubectl {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// What both installs must leave: the CRDs, the RBAC, and the Deployment rolled out.
fn check_installed(kubectl_bin: &Path, kubeconfig: &Path, how: &str) {
    let k = |args: &[&str]| kubectl(kubectl_bin, kubeconfig, args);
    for crd in [
        "canaries.fledge.dev",
        "metrictemplates.fledge.dev",
        "alertproviders.fledge.dev",
    ] {
        k(&["get", "crd", crd, "-o", "name"]);
    }
    k(&["get", "clusterrole", "fledge", "-o", "name"]);
    k(&["get", "clusterrolebinding", "fledge", "-o", "name"]);
    k(&[
        "-n",
        "fledge-system",
        "get",
        "serviceaccount",
        "fledge",
        "-o",
        "name",
    ]);
    k(&[
        "-n",
        "fledge-system",
        "get",
        "service",
        "fledge",
        "-o",
        "name",
    ]);
    let status = k(&[
        "-n",
        "fledge-system",
        "rollout",
        "status",
        "deployment/fledge",
        "--timeout=120s",
    ]);
    assert!(
        status.contains("successfully rolled out"),
        "{how}: {status}"
    );
    let ready = k(&[
        "-n",
        "fledge-system",
        "get",
        "deployment",
        "fledge",
        "-o",
        "jsonpath={.status.readyReplicas}/{.spec.replicas}",
    ]);
    assert_eq!(ready.trim(), "2/2", "{how}: two replicas, both ready");
    let args = k(&[
        "-n",
        "fledge-system",
        "get",
        "deployment",
        "fledge",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(
        args.contains("--leader-elect") && args.contains("--metrics-addr=0.0.0.0:8080"),
        "{how}: {args}"
    );
}

#[test]
fn the_readmes_install_lines_work_as_written() {
    let helm = fledge_e2e::incluster::helm().unwrap_or_else(|e| panic!("{e:#}"));
    let kubectl_bin = root().join("target/cluster/bin/kubectl");
    assert!(
        kubectl_bin.is_file(),
        "no {}: run `cargo xtask cluster up` (it builds kubectl)",
        kubectl_bin.display()
    );
    let lines = readme_install_lines();
    let helm_line = lines
        .iter()
        .find(|l| l.starts_with("helm install "))
        .expect("the README's Installing section shows `helm install`");
    let kustomize_line = lines
        .iter()
        .find(|l| l.starts_with("kubectl apply -k "))
        .expect("the README's Installing section shows `kubectl apply -k`");

    let cluster = OtherCluster::start("install").unwrap_or_else(|e| panic!("{e:#}"));
    let kubeconfig = cluster.kubeconfig.clone();

    let out = run_line(helm_line, &kubeconfig, &helm, &kubectl_bin);
    assert!(out.contains("STATUS: deployed"), "{out}");
    check_installed(&kubectl_bin, &kubeconfig, helm_line);
    let notes = out.lines().filter(|l| l.contains("kubectl")).count();
    assert!(notes > 0, "NOTES.txt tells what to run next:\n{out}");

    // Helm keeps CRDs on uninstall (as it does for every chart's crds/); the rest goes.
    let out = Command::new(&helm)
        .args(["uninstall", "fledge", "-n", "fledge-system", "--wait"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("helm uninstall");
    assert!(
        out.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run_line(kustomize_line, &kubeconfig, &helm, &kubectl_bin);
    assert!(out.contains("deployment.apps/fledge"), "{out}");
    check_installed(&kubectl_bin, &kubeconfig, kustomize_line);
    drop(cluster);
}
