//! `fledge replay`'s arguments: a window it cannot read is refused before anything is asked of
//! the cluster, with what to write instead.

use std::process::Command;

fn replay(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fledge"))
        .arg("replay")
        .args(args)
        // No cluster: the argument errors must come first.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_window_it_cannot_read_is_refused_with_what_to_write() {
    let (code, err) = replay(&["podinfo", "--from", "yesterday"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "\"yesterday\" is neither a time (2026-12-01T14:00:00Z) nor a duration ago (2h, 90m)"
        ),
        "{err}"
    );
    let (code, err) = replay(&["podinfo", "--from", "1h", "--to", "someday"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"someday\" is neither a time"), "{err}");
}

#[test]
fn without_a_cluster_it_says_so() {
    let (code, err) = replay(&["podinfo", "--from", "2h", "--to", "1h"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("fledge replay: cannot reach the cluster"), "{err}");
}
