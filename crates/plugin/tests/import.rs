//! `kubectl fledge import` on Flagger's own published manifests (the corpus in
//! `shared/reference/flagger-examples`, beside the repository, as the `fledge validate` tests
//! read it): every converted file passes `fledge validate`, or is refused only for something
//! fledge does not support yet; and nothing but the `apiVersion` line changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use fledge_controller::validate_cmd;
use fledge_plugin::import::{Outcome, convert_text};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/flagger-examples")
}

fn example_files() -> Vec<PathBuf> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "the Flagger examples are expected in {} (shared/reference/flagger-examples \
                 beside the repository): {e}",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected the whole corpus, found {}",
        files.len()
    );
    files
}

/// `fledge validate -` on `text`: (exit code, stdout).
fn validate(text: &str) -> (i32, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code =
        validate_cmd::run_with_stdin(&["-".to_string()], &mut text.as_bytes(), &mut out, &mut err);
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    (code, String::from_utf8(out).unwrap())
}

/// The reasons a converted example may be refused: something fledge does not support yet, the
/// documentation's skeleton whose values are all blank, its InfluxDB template without an
/// address (InfluxDB has no default one; Flagger refuses it too), or its Splunk template whose
/// address is a placeholder (`https://api.<REALM>.signalfx.com`).
fn refused_for_a_known_reason(problem: &str) -> bool {
    problem.contains("not supported by fledge yet")
        || problem.ends_with("spec.provider.secretRef.name: is required")
        || problem.ends_with("spec.provider.address: is required for the influxdb provider; write the base URL of its API")
        || problem.ends_with("spec.provider.address: is not a valid URL (invalid international domain name); write it as http://host[:port]/path")
        || problem.contains("spec.query: is empty")
}

#[test]
fn every_flagger_example_converts_to_a_manifest_fledge_validate_accepts_or_refuses_as_not_yet_supported()
 {
    let (mut accepted, mut refused, mut old) = (0, 0, 0);
    for path in example_files() {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let converted = convert_text(&text);
        // Only the apiVersion line changes.
        let changed: Vec<(&str, &str)> = text
            .lines()
            .zip(converted.text.lines())
            .filter(|(a, b)| a != b)
            .collect();
        match converted.documents[0].outcome {
            Outcome::Converted => {
                assert_eq!(
                    changed,
                    [(
                        "apiVersion: flagger.app/v1beta1",
                        "apiVersion: fledge.dev/v1beta1"
                    )],
                    "{file}"
                );
                assert_eq!(text.len(), converted.text.len() + 1, "{file}");
            }
            Outcome::OldFlaggerVersion(ref v) => {
                // flagger.app/v1alpha1, which Flagger itself no longer serves: left as it is.
                assert_eq!(v, "flagger.app/v1alpha1", "{file}");
                assert_eq!(converted.text, text, "{file}");
                old += 1;
                continue;
            }
            ref other => panic!("{file}: {other:?}"),
        }
        let (code, out) = validate(&converted.text);
        if code == 0 {
            assert!(
                out.ends_with("1 valid, 0 invalid, 0 skipped\n"),
                "{file}: {out}"
            );
            accepted += 1;
        } else {
            assert_eq!(code, 1, "{file}: {out}");
            let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("<stdin>")).collect();
            assert!(!problems.is_empty(), "{file}: {out}");
            for p in problems {
                assert!(refused_for_a_known_reason(p), "{file}: {p}");
            }
            refused += 1;
        }
    }
    eprintln!("{accepted} accepted, {refused} refused as not supported yet, {old} v1alpha1 left");
    assert!(accepted >= 30, "{accepted} accepted");
    assert_eq!(old, 1);
}

#[test]
fn the_whole_corpus_in_one_stream_converts_every_document() {
    let files = example_files();
    let stream: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let converted = convert_text(&stream);
    // (An example that opens with `---` adds an empty document.)
    let objects = converted.documents.iter().filter(|d| d.kind.is_some());
    assert_eq!(objects.count(), files.len());
    assert_eq!(converted.converted(), files.len() - 1);
    assert!(!converted.text.contains("flagger.app/v1beta1"));
}

/// The binary, as a user runs it: files to standard output, `-`, `--in-place`, and the errors
/// for what does not go together.
#[test]
fn the_command_converts_files_stdin_and_in_place() {
    let bin = env!("CARGO_BIN_EXE_kubectl-fledge");
    let dir = std::env::temp_dir().join(format!("fledge-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let canary = examples_dir().join("Canary-tutorials_kubernetes_blue_green-e438c384.yaml");
    let template =
        examples_dir().join("MetricTemplate-tutorials_kubernetes_blue_green-ae72091c.yaml");
    let a = dir.join("canary.yaml");
    let b = dir.join("template.yaml");
    std::fs::copy(&canary, &a).unwrap();
    std::fs::copy(&template, &b).unwrap();

    let out = Command::new(bin)
        .arg("import")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches("apiVersion: fledge.dev/v1beta1").count(), 2);
    assert_eq!(stdout.matches("\n---\n").count(), 1, "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("1 converted (Canary test/podinfo)"),
        "{stderr}"
    );

    let mut child = Command::new(bin)
        .args(["import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        std::fs::read_to_string(&canary).unwrap().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(
        String::from_utf8(piped.stdout).unwrap(),
        std::fs::read_to_string(&canary)
            .unwrap()
            .replace("flagger.app/v1beta1", "fledge.dev/v1beta1")
    );

    let out = Command::new(bin)
        .args(["import", "--in-place"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
    let rewritten = std::fs::read_to_string(&a).unwrap();
    assert_eq!(validate(&rewritten).0, 0, "{rewritten}");

    for (args, expected) in [
        (vec!["import"], "name the YAML files to convert"),
        (
            vec!["import", "--in-place", "-"],
            "standard input (-) cannot be rewritten",
        ),
        (
            vec!["import", "-A", "x.yaml"],
            "-A goes with --from-cluster",
        ),
        (vec!["import", "--from-cluster", "x.yaml"], "name no files"),
        (vec!["import", "nowhere.yaml"], "nowhere.yaml: cannot read"),
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
