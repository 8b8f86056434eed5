//! The version string every component of the project reports (engine host
//! info and registration, core agent, REST API, store, `--version` flags).
//!
//! It is fixed at build time: `MAYASTOR_VERSION` from the environment of
//! the build when set (a release, or a test building a second version),
//! else the workspace package version. This crate is the one home of that
//! fact and depends on nothing, so changing the variable recompiles this
//! crate and relinks the binaries; it may be used by every crate.

#![forbid(unsafe_code)]

/// The version of this build.
pub const VERSION: &str = match option_env!("MAYASTOR_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_not_empty() {
        assert!(!super::VERSION.trim().is_empty());
    }
}
