//! Runs one command against the io-engine and prints its result.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{anyhow, bail, Context};
use io_engine_api::v1::{
    self, host_rpc_client::HostRpcClient, nexus_rpc_client::NexusRpcClient,
    pool_rpc_client::PoolRpcClient, rebuild_rpc_client::RebuildRpcClient,
    replica_rpc_client::ReplicaRpcClient, stats_rpc_client::StatsRpcClient,
};
use serde::Serialize;
use tonic::{transport::Channel, Status};

use crate::{
    cli::{Cli, Command, HostCommand, Output, PoolCommand, ReplicaCommand, ReplicaRef},
    output,
};

mod nexus;
mod rebuild;
mod stats;

/// Time allowed to establish the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// io-engine gRPC port used when an endpoint names none.
const DEFAULT_PORT: u16 = io_engine_api::names::IO_ENGINE_GRPC_PORT;

/// Connects, runs `cli.command` and prints its result.
pub async fn execute(cli: &Cli) -> anyhow::Result<ExitCode> {
    let channel = connect(&cli.endpoint, cli.timeout).await?;
    let format = cli.output;
    match &cli.command {
        Command::Pool(cmd) => pool(PoolRpcClient::new(channel), cmd, format).await,
        Command::Replica(cmd) => replica(ReplicaRpcClient::new(channel), cmd, format).await,
        Command::Nexus(cmd) => nexus::run(NexusRpcClient::new(channel), cmd, format).await,
        Command::Rebuild(cmd) => rebuild::run(RebuildRpcClient::new(channel), cmd, format).await,
        Command::Stats(cmd) => stats::run(StatsRpcClient::new(channel), cmd, format).await,
        Command::Host(HostCommand::Info) => {
            let host = HostRpcClient::new(channel)
                .get_host_info(v1::GetHostInfoRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner();
            match format {
                Output::Json => print_json(&output::HostView::from(&host))?,
                Output::Table | Output::Wide => print(&output::host_table(&host)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens a channel to `endpoint` (`IP:PORT`, `HOST:PORT` or
/// `http://HOST:PORT`).
pub async fn connect(endpoint: &str, request_timeout: Duration) -> anyhow::Result<Channel> {
    let authority = match endpoint.split_once("://") {
        Some(("http", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => {
            bail!("unsupported endpoint scheme {scheme:?} in {endpoint:?} (use IP:PORT or http://HOST:PORT)")
        }
        None => endpoint,
    };
    let shown = with_default_port(authority);
    let target = tonic::transport::Endpoint::from_shared(format!("http://{shown}"))
        .map_err(|e| anyhow!("invalid endpoint {endpoint:?}: {}", root_cause(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout);
    target
        .connect()
        .await
        .map_err(|e| anyhow!("cannot connect to io-engine at {shown}: {}", root_cause(&e)))
}

/// `host` or `host:port` (`[v6]` or `[v6]:port`) with the engine's default
/// port added when none is given.
fn with_default_port(authority: &str) -> String {
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{DEFAULT_PORT}")
    }
}

/// The innermost message of an error chain (the OS error, usually).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// One line for a failed call: `pool 'x' not found (NotFound)`.
fn rpc_error(status: Status) -> anyhow::Error {
    let message = if status.message().is_empty() {
        status.code().description()
    } else {
        status.message()
    };
    anyhow!("{message} ({:?})", status.code())
}

async fn pool(
    mut client: PoolRpcClient<Channel>,
    cmd: &PoolCommand,
    format: Output,
) -> anyhow::Result<ExitCode> {
    match cmd {
        PoolCommand::Create {
            name,
            disk,
            uuid,
            cluster_size,
        } => {
            let request = v1::CreatePoolRequest {
                name: name.clone(),
                uuid: uuid.clone(),
                disks: vec![disk.clone()],
                cluster_size: *cluster_size,
            };
            let pool = client
                .create_pool(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::PoolView::from(&pool))?;
        }
        PoolCommand::Import { name, disk } => {
            let request = v1::CreatePoolRequest {
                name: name.clone(),
                uuid: None,
                disks: vec![disk.clone()],
                cluster_size: None,
            };
            let pool = client
                .import_pool(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::PoolView::from(&pool))?;
        }
        PoolCommand::List => {
            let mut pools = client
                .list_pools(v1::ListPoolsRequest { name: None })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .pools;
            pools.sort_by(|a, b| a.name.cmp(&b.name));
            match format {
                Output::Json => {
                    print_json(&pools.iter().map(output::PoolView::from).collect::<Vec<_>>())?
                }
                Output::Table | Output::Wide => print(&output::pool_table(&pools)),
            }
        }
        PoolCommand::Destroy { name } => {
            client
                .destroy_pool(v1::DestroyPoolRequest { name: name.clone() })
                .await
                .map_err(rpc_error)?;
        }
        PoolCommand::Export { name } => {
            client
                .export_pool(v1::ExportPoolRequest { name: name.clone() })
                .await
                .map_err(rpc_error)?;
        }
        PoolCommand::Check { name } => {
            let report = client
                .check_pool(v1::CheckPoolRequest { name: name.clone() })
                .await
                .map_err(rpc_error)?
                .into_inner();
            match format {
                Output::Json => print_json(&output::CheckView::from(&report))?,
                Output::Table | Output::Wide => print(&output::check_text(&report)),
            }
            if !report.problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn replica(
    mut client: ReplicaRpcClient<Channel>,
    cmd: &ReplicaCommand,
    format: Output,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ReplicaCommand::Create {
            pool,
            name,
            size,
            thin,
            uuid,
        } => {
            let uuid = match uuid {
                Some(u) => u.clone(),
                None => new_uuid()?,
            };
            let request = v1::CreateReplicaRequest {
                name: name.clone(),
                uuid,
                pool: pool.clone(),
                size: *size,
                thin: *thin,
                share: v1::ShareProtocol::None.into(),
                allowed_hosts: Vec::new(),
            };
            let replica = client
                .create_replica(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::ReplicaView::from(&replica))?;
        }
        ReplicaCommand::List => {
            let mut replicas = client
                .list_replicas(v1::ListReplicasRequest::default())
                .await
                .map_err(rpc_error)?
                .into_inner()
                .replicas;
            replicas.sort_by(|a, b| (&a.pool_name, &a.name).cmp(&(&b.pool_name, &b.name)));
            match format {
                Output::Json => print_json(
                    &replicas
                        .iter()
                        .map(output::ReplicaView::from)
                        .collect::<Vec<_>>(),
                )?,
                Output::Table => print(&output::replica_table(&replicas)),
                Output::Wide => print(&output::replica_table_wide(&replicas)),
            }
        }
        ReplicaCommand::Destroy(target) => {
            let selector = match wire_selector(target)? {
                Selector::Uuid(uuid) => v1::destroy_replica_request::Replica::Uuid(uuid),
                Selector::Name(name) => v1::destroy_replica_request::Replica::Name(name),
            };
            client
                .destroy_replica(v1::DestroyReplicaRequest {
                    replica: Some(selector),
                })
                .await
                .map_err(rpc_error)?;
        }
        ReplicaCommand::Share {
            replica,
            allowed_hosts,
        } => {
            let selector = match wire_selector(replica)? {
                Selector::Uuid(uuid) => v1::share_replica_request::Replica::Uuid(uuid),
                Selector::Name(name) => v1::share_replica_request::Replica::Name(name),
            };
            let replica = client
                .share_replica(v1::ShareReplicaRequest {
                    replica: Some(selector),
                    protocol: v1::ShareProtocol::Nvmf.into(),
                    allowed_hosts: allowed_hosts.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            match format {
                Output::Json => print_json(&output::ReplicaView::from(&replica))?,
                Output::Table | Output::Wide => print(&format!("{}\n", replica.uri)),
            }
        }
        ReplicaCommand::Unshare(target) => {
            let selector = match wire_selector(target)? {
                Selector::Uuid(uuid) => v1::unshare_replica_request::Replica::Uuid(uuid),
                Selector::Name(name) => v1::unshare_replica_request::Replica::Name(name),
            };
            let replica = client
                .unshare_replica(v1::UnshareReplicaRequest {
                    replica: Some(selector),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::ReplicaView::from(&replica))?;
        }
        ReplicaCommand::Resize { replica, size } => {
            let uuid = resolve_uuid(&mut client, replica).await?;
            let request = v1::ResizeReplicaRequest {
                uuid,
                requested_size: *size,
            };
            let replica = client
                .resize_replica(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::ReplicaView::from(&replica))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A replica named on the command line, in wire terms.
enum Selector {
    Uuid(String),
    Name(v1::ReplicaName),
}

fn wire_selector(target: &ReplicaRef) -> anyhow::Result<Selector> {
    match (&target.uuid, &target.pool, &target.name) {
        (Some(uuid), _, _) => Ok(Selector::Uuid(uuid.clone())),
        (None, Some(pool), Some(name)) => Ok(Selector::Name(v1::ReplicaName {
            pool: pool.clone(),
            name: name.clone(),
        })),
        _ => bail!("name the replica by POOL NAME or --uuid UUID"),
    }
}

/// The uuid of a replica named by pool and name (or given directly).
async fn resolve_uuid(
    client: &mut ReplicaRpcClient<Channel>,
    target: &ReplicaRef,
) -> anyhow::Result<String> {
    let (pool, name) = match (&target.uuid, &target.pool, &target.name) {
        (Some(uuid), _, _) => return Ok(uuid.clone()),
        (None, Some(pool), Some(name)) => (pool, name),
        _ => bail!("name the replica by POOL NAME or --uuid UUID"),
    };
    let found = client
        .list_replicas(v1::ListReplicasRequest {
            name: Some(name.clone()),
            pool: Some(pool.clone()),
            uuid: None,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .replicas;
    match found.as_slice() {
        [replica] => Ok(replica.uuid.clone()),
        [] => bail!("replica '{pool}/{name}' not found (NotFound)"),
        _ => bail!("several replicas named '{name}' in pool '{pool}'; use --uuid"),
    }
}

/// A random (version 4) uuid, from the kernel's random source.
fn new_uuid() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom to make a uuid (pass --uuid)")?;
    Ok(format_uuid_v4(bytes))
}

/// Formats 16 random bytes as a version-4, RFC 4122 variant uuid.
fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Create-like commands print nothing on success, or the object with
/// `-o json`.
fn print_created(format: Output, view: &impl Serialize) -> anyhow::Result<()> {
    if format == Output::Json {
        print_json(view)?;
    }
    Ok(())
}

fn print_json(view: &impl Serialize) -> anyhow::Result<()> {
    let mut text =
        serde_json::to_string_pretty(view).context("cannot encode the result as JSON")?;
    text.push('\n');
    print(&text);
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_format() {
        let u = format_uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let u = format_uuid_v4([0; 16]);
        assert_eq!(u, "00000000-0000-4000-8000-000000000000");
        let fresh = new_uuid().unwrap();
        assert_eq!(fresh.len(), 36);
        assert_eq!(&fresh[14..15], "4");
    }

    #[test]
    fn status_lines() {
        let e = rpc_error(Status::not_found("pool 'x' not found"));
        assert_eq!(e.to_string(), "pool 'x' not found (NotFound)");
        let e = rpc_error(Status::internal(""));
        assert_eq!(e.to_string(), "Internal error (Internal)");
    }

    #[test]
    fn default_port() {
        assert_eq!(with_default_port("127.0.0.1"), "127.0.0.1:10124");
        assert_eq!(with_default_port("127.0.0.1:4000"), "127.0.0.1:4000");
        assert_eq!(with_default_port("node-1"), "node-1:10124");
        assert_eq!(with_default_port("[::1]"), "[::1]:10124");
        assert_eq!(with_default_port("[::1]:4000"), "[::1]:4000");
        assert_eq!(with_default_port("::1"), "::1:10124");
    }

    #[tokio::test]
    async fn endpoint_forms() {
        let e = connect("https://127.0.0.1:1", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unsupported endpoint scheme \"https\""),
            "{e}"
        );
        // Port 1 on loopback: nothing listens there.
        let e = connect("127.0.0.1:1", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot connect to io-engine at 127.0.0.1:1: "),
            "{e}"
        );
        let e = connect("http://127.0.0.1:1/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot connect to io-engine at 127.0.0.1:1: "),
            "{e}"
        );
    }
}
