//! The `operator-diskpool` binary refuses bad input before it touches
//! anything: a bad flag value is a usage error naming the flag (exit 2); a
//! missing kubeconfig, an unreadable or empty bearer token file and a bad
//! REST endpoint are one error line each (exit 1). Nothing is contacted.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_operator-diskpool"))
        .args(args)
        .env_remove("REST_BEARER_TOKEN")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap()
}

/// The one `operator-diskpool: error:` line of a failed start (exit 1).
fn error_line(args: &[&str]) -> String {
    let out = operator(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("operator-diskpool: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    errors[0].to_owned()
}

#[test]
fn bad_flag_values_are_usage_errors_naming_the_flag() {
    for (args, flag) in [
        (&["--interval", "soon"][..], "--interval"),
        (&["--interval", "0s"][..], "--interval"),
        (&["--request-timeout=-1s"][..], "--request-timeout"),
        (&["--log-format", "xml"][..], "--log-format"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = operator(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
    }
}

#[test]
fn missing_or_bad_inputs_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();

    let line = error_line(&["--kube-config-path", "/nonexistent/kubeconfig"]);
    assert!(
        line.contains("cannot read the kubeconfig /nonexistent/kubeconfig"),
        "{line}"
    );
    let line = error_line(&["--bearer-token-file", "/nonexistent/token"]);
    assert!(
        line.contains("cannot read the bearer token file /nonexistent/token"),
        "{line}"
    );
    let line = error_line(&["--bearer-token-file", empty]);
    assert!(line.contains("the bearer token is empty"), "{line}");
    let line = error_line(&["--endpoint", "not a url"]);
    assert!(line.contains("bad REST endpoint not a url"), "{line}");
    // No kubeconfig at all (not in a pod, KUBECONFIG missing).
    let line = error_line(&[]);
    assert!(line.contains("no Kubernetes configuration"), "{line}");
}
