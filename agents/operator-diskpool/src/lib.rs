//! The DiskPool operator (`operator-diskpool`): watches the `DiskPool`
//! custom resources of one namespace and makes their pools exist through
//! the control plane's REST API, as an operator of Mayastor expects.
//!
//! ```text
//!  kube-apiserver ──watch DiskPools──> Controller ──reconcile──> REST /v0
//!        ▲                                  │        (GET/PUT/DELETE pools)
//!        └── status, finalizer, events ─────┘
//! ```
//!
//! Modules:
//! - [`crd`]: the resource's Rust types (schema home: the chart's CRD);
//! - [`reconcile`]: one resource's reconcile, the error policy and backoff;
//! - [`controller`]: the kube-rs runtime `Controller` and its watch filter.
//!
//! Invariants: a pool is created with the label
//! `openebs.io/created-by=operator-diskpool` and only such pools are ever
//! deleted by the operator; a DiskPool keeps its finalizer
//! `openebs.io/diskpool-protection` until its pool is gone. Dependency
//! rule: the operator is an agent that talks to the control plane only
//! through the REST client crate `openapi`.
//!
//! Threading: one tokio runtime; the controller runs reconciles of
//! different resources concurrently, never two of the same one.

#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod reconcile;
