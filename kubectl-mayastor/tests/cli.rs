//! The binary's command line without a cluster: help, completions, usage
//! errors.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn plugin(args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"))
        .args(args)
        .env("XDG_DATA_HOME", empty.path())
        .env("HOME", empty.path())
        .env("KUBECONFIG", empty.path().join("none"))
        .output()
        .unwrap()
}

fn stdout(args: &[&str]) -> String {
    let out = plugin(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_commands_and_global_flags() {
    let help = stdout(&["--help"]);
    for word in [
        "get",
        "scale",
        "cordon",
        "uncordon",
        "drain",
        "label",
        "tui",
        "completions",
        "--rest",
        "--kube-config-path",
        "--namespace",
        "--output",
        "--timeout",
        "--jaeger",
        "[default: mayastor]",
        "[default: 10s]",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let get = stdout(&["get", "--help"]);
    for word in [
        "volumes",
        "volume",
        "pools",
        "pool",
        "nodes",
        "node",
        "volume-replica-topologies",
        "volume-replica-topology",
        "rebuild-history",
        "cordon",
        "drain",
    ] {
        assert!(get.contains(word), "{word} missing from:\n{get}");
    }
    assert!(stdout(&["drain", "node", "--help"]).contains("--drain-timeout"));
    assert!(stdout(&["label", "node", "--help"]).contains("--overwrite"));
    assert!(stdout(&["tui", "--help"]).contains("[default: 2s]"));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        assert!(script.contains("kubectl-mayastor"), "{shell}");
        assert!(script.contains("volume-replica-topology"), "{shell}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["get", "widgets"][..],
        &["get", "volume"],
        &["-o", "xml", "get", "nodes"],
        &["-t", "soon", "get", "nodes"],
    ] {
        let out = plugin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
    }
}
