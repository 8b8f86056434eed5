//! Real Helm for the chart's tests: the Python venv that
//! `deploy/helm/tests/run.sh --install` makes, whose helm-python-sdk
//! bundles Helm's own Go library.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

/// The venv's `python` (`$MAYASTOR_PY_VENV`, or `~/.cache/mayastor-py/venv`),
/// checked to import helm-python-sdk.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("MAYASTOR_PY_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/mayastor-py/venv")
        });
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import helm_python"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} has no helm-python-sdk: run deploy/helm/tests/run.sh --install",
        python.display()
    );
    python
}
