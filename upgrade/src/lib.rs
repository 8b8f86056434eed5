//! Guided upgrades (`kubectl mayastor upgrade`, DESIGN.md section 6): roll
//! a cluster to the version of new binaries one component at a time, with
//! I/O running, and record where it stands.
//!
//! ```text
//!  validations ──► control plane ──► node 1 ──► node 2 ──► ... ──► Successful
//!  (path, rebuilds,  (store, core,    wait rebuilds; drain (label
//!   cordons, 1-rep)   REST)           mayastor-upgrade); restart engine;
//!                                     wait Online on the new version, pools,
//!                                     replicas, volumes Online; undrain
//! ```
//!
//! - [`version`]: version strings, ordering and the upgrade-path rules;
//! - [`validate`]: the validations, pure functions of REST objects;
//! - [`platform`]: what restarts components ([`platform::Platform`]); the
//!   local cluster ([`platform::local`]) drives the `mayastor-local`
//!   binary; Kubernetes ([`platform::kubernetes`]) patches the Helm
//!   chart's workloads to the target version's images and replaces the
//!   io-engine pods one node at a time;
//! - [`status`]: the durable `UpgradeStatus` record (in the store, through
//!   REST) and its table;
//! - [`rollout`]: the state machine that runs it all;
//! - [`progress`]: indicatif bars (hidden when stderr is not a terminal).
//!
//! Invariants: the record is written before and after every step, so a
//! killed upgrade resumes where it stood; a node whose engine already
//! reports the target version is never restarted; a node that does not come
//! back in time stops the roll-out with its drain label left on it. The
//! crate talks to the cluster through the REST client (`openapi`), and on
//! Kubernetes to the Kubernetes API for the workloads (`kube`).
//! Everything runs on the caller's tokio runtime (one task).

#![forbid(unsafe_code)]

pub mod cli;
pub mod platform;
pub mod progress;
pub mod rollout;
pub mod status;
pub mod validate;
pub mod version;

pub use rollout::{run, Options};

/// The drain label the upgrade puts on the node whose engine it restarts.
pub const DRAIN_LABEL: &str = "mayastor-upgrade";

/// Errors of an upgrade.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Bad input (flags, binaries); nothing was changed.
    #[error("{0}")]
    Input(String),
    /// A REST call failed.
    #[error("{doing}: {source}")]
    Rest {
        doing: String,
        #[source]
        source: openapi::RestError,
    },
    /// Validations refused the upgrade (one line per offending object).
    #[error("the upgrade is refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// A platform operation failed.
    #[error("{0}")]
    Platform(String),
    /// The roll-out stopped (recorded as `Failed` with this reason).
    #[error("the upgrade failed: {0}")]
    Failed(String),
}

impl UpgradeError {
    pub(crate) fn rest(doing: impl Into<String>) -> impl FnOnce(openapi::RestError) -> Self {
        let doing = doing.into();
        move |source| UpgradeError::Rest { doing, source }
    }
}

pub type Result<T, E = UpgradeError> = std::result::Result<T, E>;
