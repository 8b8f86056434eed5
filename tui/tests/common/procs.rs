//! Real processes for the tests: the workspace's one process test kit.

#[allow(unused_imports)]
pub use testkit::{bin, free_port, wait_port, Proc};
