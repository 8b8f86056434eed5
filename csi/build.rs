//! Generates the CSI gRPC code (clients and servers of `Identity`,
//! `Controller` and `Node`) from `proto/csi.proto` with the vendored `protoc`
//! and its bundled well-known types (no system protoc is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // Build scripts are single-threaded, so setting the variable is sound.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/csi.proto");
    tonic_prost_build::configure().compile_protos(
        &[std::path::Path::new("proto/csi.proto")],
        &[std::path::Path::new("proto"), well_known.as_path()],
    )?;
    Ok(())
}
