//! Generates the gRPC code from `proto/io_engine.proto` with the vendored
//! `protoc` (no system protoc is needed).
//! Also compiles the etcd v3 subset in `proto/etcd/` (the control plane's
//! store protocol) and `proto/ha.proto` (the HA agents).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded, so setting the variable is sound.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/io_engine.proto");
    tonic_prost_build::configure().compile_protos(&["proto/io_engine.proto"], &["proto"])?;
    // The high-availability agents' contract (and csi-node's path service).
    println!("cargo:rerun-if-changed=proto/ha.proto");
    tonic_prost_build::configure().compile_protos(&["proto/ha.proto"], &["proto"])?;
    // The etcd v3 subset used by the control plane's store (clients for
    // etcd, servers for the embedded store).
    println!("cargo:rerun-if-changed=proto/etcd");
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/etcd/mvccpb/kv.proto",
            "proto/etcd/etcdserverpb/rpc.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
