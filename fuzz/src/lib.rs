//! What each fuzz target does with its input, as plain functions: the targets in
//! `fuzz_targets/` hand libFuzzer's bytes to them, and a crash they find becomes a regression
//! test in the crate the code belongs to.
//!
//! Each function feeds the input to the real code and checks what must hold for any input:
//! no panic, and the answers' own promises (an exit code of the three, a record that reads
//! back as written, a revert that names the image it wrote).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

/// `fledge validate`'s reader, compiled here from its own source file: the controller crate
/// it belongs to brings the whole Kubernetes and cloud client stack, which a fuzz build does
/// not need to instrument. The file depends only on `fledge-api` and serde.
#[path = "../../crates/controller/src/validate_cmd.rs"]
#[allow(dead_code)]
mod validate_cmd;

/// `fledge validate -` over `data` as standard input.
pub fn validate(data: &[u8]) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = validate_cmd::run_with_stdin(&["-".to_string()], &mut &data[..], &mut out, &mut err);
    assert!(
        [
            validate_cmd::EXIT_VALID,
            validate_cmd::EXIT_INVALID,
            validate_cmd::EXIT_UNREADABLE
        ]
        .contains(&code),
        "exit code {code}"
    );
    assert!(
        !out.is_empty() || !err.is_empty(),
        "fledge validate said nothing (exit code {code})"
    );
}

/// The input split at NUL bytes into at most `n` UTF-8 fields (lossily); missing ones empty.
fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}

/// A MetricTemplate query rendered with fixed variables and `variables.NAME` values.
/// Input: `query \0 variable value`.
pub fn template(data: &[u8]) {
    let f = fields(data, 2);
    let vars_map: BTreeMap<String, String> = [
        ("app".to_string(), f[1].clone()),
        ("x_y".to_string(), "z".to_string()),
    ]
    .into();
    let vars = fledge_api::template::TemplateVars {
        namespace: "shop",
        name: "podinfo",
        target: "podinfo",
        service: "podinfo",
        ingress: "podinfo",
        route: "podinfo",
        interval: "1m",
        canary_pods: "podinfo-3|podinfo-4",
        stable_pods: "podinfo-0|podinfo-1|podinfo-2",
        variables: Some(&vars_map),
    };
    let rendered = fledge_api::template::render(&f[0], &vars);
    if !f[0].contains("{{") {
        assert_eq!(
            rendered.as_deref(),
            Ok(f[0].as_str()),
            "text without actions renders as itself"
        );
    }
}

/// A load tester webhook's `cmd`: `hey` command lines.
pub fn hey(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let _ = fledge_loadgen::hey::is_hey(&line);
    if let Ok(words) = fledge_loadgen::hey::split_words(&line) {
        let _ = fledge_loadgen::hey::parse_args(&words);
    }
    let _ = fledge_loadgen::hey::parse_command(&line);
}

/// The Git revert's edit of a GitOps source file. Input: `text \0 from \0 to \0 imagePath`
/// (an empty imagePath is none).
pub fn revert(data: &[u8]) {
    let f = fields(data, 4);
    let path = (!f[3].is_empty()).then_some(f[3].as_str());
    if let Ok(fledge_git::revert::Reverted::Changed(new)) =
        fledge_git::revert::revert(&f[0], &f[1], &f[2], path)
    {
        assert_ne!(new, f[0], "a change leaves the text different");
        // An image line is rewritten to the image as given (a kustomization's `images:` entry
        // is split into newName and newTag instead).
        let kustomization = f[0].lines().any(|l| l.trim() == "images:");
        if path.is_none() && !kustomization && fledge_api::ImageRef::parse(&f[2]).is_ok() {
            assert!(
                new.contains(f[2].as_str()),
                "the reverted text names the image it reverted to"
            );
        }
    }
}

/// The ledger reader: a ledger file (YAML) and a queued record (the ConfigMap's JSON). A file
/// read is written and read back to the same record.
pub fn ledger(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(record) = fledge_git::ledger::RolloutRecord::from_yaml(&text) {
        let written = record
            .to_yaml()
            .expect("a record that was read can be written");
        let again = fledge_git::ledger::RolloutRecord::from_yaml(&written)
            .unwrap_or_else(|e| panic!("a written record reads back: {e}\n{written}"));
        // Compared as written (a value may be NaN, which equals nothing).
        let rewritten = again.to_yaml().expect("written again");
        assert_eq!(rewritten, written, "the record reads back as written");
    }
    if let Ok(queued) = serde_json::from_slice::<fledge_git::record::QueuedRecord>(data) {
        let _ = queued.message();
    }
}
