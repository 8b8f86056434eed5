//! Rebuilds this crate (and only what links it) when `MAYASTOR_VERSION`
//! changes, so two builds differing in the version string share the rest.

fn main() {
    println!("cargo:rerun-if-env-changed=MAYASTOR_VERSION");
}
