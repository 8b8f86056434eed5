//! Generates the CSI gRPC code (clients and servers of `Identity`,
//! `Controller` and `Node`) from `proto/csi.proto` with the vendored `protoc`
//! and its bundled well-known types (no system protoc is needed), and the
//! server side of the HA contract's `NodePathRpc`.

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
    // csi-node serves `NodePathRpc` of the HA contract (agent-ha-node
    // calls it to connect one more path of a staged volume). The contract's
    // one home is engine/api/proto/ha.proto; only the server side is
    // generated here, so no crate of the engine is linked.
    println!("cargo:rerun-if-changed=../engine/api/proto/ha.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(
            &[std::path::Path::new("../engine/api/proto/ha.proto")],
            &[std::path::Path::new("../engine/api/proto")],
        )?;
    Ok(())
}
