//! Unit tests of `share`.

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn nqn_and_uri() {
    let u = Uuid::parse_str("0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f").unwrap();
    assert_eq!(
        replica_nqn(&u),
        "nqn.2019-05.io.openebs:0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f"
    );
    assert_eq!(
        nvmf_uri("10.1.0.5:8420".parse().unwrap(), &u),
        format!("nvmf://10.1.0.5:8420/nqn.2019-05.io.openebs:{u}?uuid={u}")
    );
    assert_eq!(
        nvmf_uri("[fd00::5]:8420".parse().unwrap(), &u),
        format!("nvmf://[fd00::5]:8420/nqn.2019-05.io.openebs:{u}?uuid={u}")
    );
}

#[test]
fn advertised_address() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(advertised_ip(ip("10.0.0.1"), None), ip("10.0.0.1"));
    assert_eq!(advertised_ip(ip("0.0.0.0"), None), ip("127.0.0.1"));
    assert_eq!(advertised_ip(ip("::"), None), ip("::1"));
    assert_eq!(
        advertised_ip(ip("0.0.0.0"), Some(ip("192.168.1.7"))),
        ip("192.168.1.7")
    );
}

#[test]
fn host_nqns() {
    let ok = |h: &[&str]| check_host_nqns(h.iter().map(|s| s.to_string()).collect());
    assert!(ok(&[]).unwrap().is_empty());
    assert_eq!(
        ok(&[
            "nqn.2019-05.io.openebs:node-name:node-1",
            "nqn.2014-08.org.nvmexpress:uuid:0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f",
            "nqn.2019-05.io.openebs:node-name:node-1",
            "nqn.2020-12.com.example",
        ])
        .unwrap(),
        vec![
            "nqn.2019-05.io.openebs:node-name:node-1",
            "nqn.2014-08.org.nvmexpress:uuid:0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f",
            "nqn.2020-12.com.example",
        ]
    );
    let bad = [
        "",
        "node-1",
        "nqn.",
        "nqn.2019-13.io.openebs:x",
        "nqn.2019-00.io.openebs:x",
        "nqn.19-05.io.openebs:x",
        "nqn.2019-05:x",
        "nqn.2019-05.:x",
        "nqn.2019-05.io_openebs:x",
        "nqn.2019-05.io.openebs:a b",
        "nqn.2019-05.io.openebs:a\n",
    ];
    for h in bad {
        let err = ok(&[h]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{h:?}");
        assert!(
            err.to_string()
                .starts_with("invalid argument: allowed host '"),
            "{err}"
        );
    }
    let long = format!("nqn.2019-05.io.openebs:{}", "x".repeat(200));
    assert_eq!(long.len(), pool_format::MAX_NQN_LEN);
    assert!(ok(&[long.as_str()]).is_ok());
    let long = format!("{long}x");
    assert!(ok(&[long.as_str()]).is_err());
    let many: Vec<String> = (0..=pool_format::MAX_ALLOWED_HOSTS)
        .map(|i| format!("nqn.2019-05.io.openebs:node-name:n{i}"))
        .collect();
    assert!(check_host_nqns(many).is_err());
}

const HOST_A: &str = "nqn.2019-05.io.openebs:node-name:a";
const HOST_B: &str = "nqn.2019-05.io.openebs:node-name:b";

async fn manager() -> ShareManager {
    let target = Target::bind(nvmf_target::TargetConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let nvmf = NvmfEndpoint::new(target, "127.0.0.1".parse().unwrap());
    let registry = Arc::new(PoolRegistry::new(blockdev::OpenOptions::default()));
    ShareManager::new(registry, Some(nvmf))
}

fn pool_args(disk: &std::path::Path) -> CreatePoolArgs {
    CreatePoolArgs {
        name: "p".into(),
        uuid: None,
        disks: vec![format!("aio://{}?blk_size=512", disk.display())],
        cluster_size_bytes: Some(1 << 20),
    }
}

fn replica_args(name: &str, share: ShareProtocol, hosts: &[&str]) -> CreateReplicaArgs {
    CreateReplicaArgs {
        pool: "p".into(),
        name: name.into(),
        uuid: Uuid::new_v4(),
        size_bytes: 4 << 20,
        thin: false,
        share,
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
    }
}

fn disk(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("disk.img");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    path
}

fn subsystems(m: &ShareManager) -> usize {
    m.nvmf().unwrap().target.subsystems().len()
}

#[tokio::test]
async fn share_update_unshare_and_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager().await;
    m.create_pool(pool_args(&disk(&dir))).await.unwrap();
    let r = m
        .create_replica(replica_args("r1", ShareProtocol::None, &[]))
        .await
        .unwrap();
    assert!(r.uri.starts_with("bdev:///"));
    let sel = ReplicaSelector::Uuid(r.uuid);
    let port = m.nvmf().unwrap().advertised.port();

    let shared = m.share_replica(&sel, vec![HOST_A.into()]).await.unwrap();
    assert_eq!(shared.share, ShareProtocol::Nvmf);
    assert_eq!(shared.allowed_hosts, vec![HOST_A]);
    assert_eq!(
        shared.uri,
        format!(
            "nvmf://127.0.0.1:{port}/nqn.2019-05.io.openebs:{0}?uuid={0}",
            r.uuid
        )
    );
    assert_eq!(m.list_replicas()[0].uri, shared.uri);
    assert_eq!(subsystems(&m), 1);

    // Sharing again replaces the hosts and keeps the subsystem.
    let again = m
        .share_replica(&sel, vec![HOST_B.into(), HOST_B.into()])
        .await
        .unwrap();
    assert_eq!(again.allowed_hosts, vec![HOST_B]);
    assert_eq!(again.uri, shared.uri);
    assert_eq!(subsystems(&m), 1);

    // A bad host changes nothing.
    let err = m
        .share_replica(&sel, vec!["node-1".into()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        m.registry().replica(&sel).unwrap().allowed_hosts,
        vec![HOST_B]
    );

    let unshared = m.unshare_replica(&sel).await.unwrap();
    assert_eq!(unshared.share, ShareProtocol::None);
    assert!(unshared.uri.starts_with("bdev:///"));
    assert_eq!(subsystems(&m), 0);
    // Idempotent.
    assert!(m.unshare_replica(&sel).await.is_ok());

    m.share_replica(&sel, vec![]).await.unwrap();
    assert_eq!(subsystems(&m), 1);
    m.destroy_replica(&sel).await.unwrap();
    assert_eq!(subsystems(&m), 0);
    assert!(m.list_replicas().is_empty());
}

#[tokio::test]
async fn shares_come_back_with_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(&dir);
    let m = manager().await;
    m.create_pool(pool_args(&disk)).await.unwrap();
    let r1 = m
        .create_replica(replica_args("r1", ShareProtocol::Nvmf, &[HOST_A]))
        .await
        .unwrap();
    assert!(r1.uri.starts_with("nvmf://"), "{}", r1.uri);
    let r2 = m
        .create_replica(replica_args("r2", ShareProtocol::None, &[]))
        .await
        .unwrap();
    assert_eq!(subsystems(&m), 1);

    m.export_pool("p").await.unwrap();
    assert_eq!(subsystems(&m), 0);
    m.import_pool(pool_args(&disk)).await.unwrap();
    assert_eq!(subsystems(&m), 1);
    let list = m.list_replicas();
    assert_eq!(list[0].uuid, r1.uuid);
    assert_eq!(list[0].uri, r1.uri);
    assert_eq!(list[0].allowed_hosts, vec![HOST_A]);
    assert_eq!(list[1].uuid, r2.uuid);
    assert!(list[1].uri.starts_with("bdev:///"));
    // Creating the imported pool again changes nothing.
    m.create_pool(pool_args(&disk)).await.unwrap();
    assert_eq!(subsystems(&m), 1);

    // A fresh engine (same disk) shares it again too.
    m.shutdown().await;
    assert_eq!(subsystems(&m), 0);
    let fresh = manager().await;
    fresh.create_pool(pool_args(&disk)).await.unwrap();
    assert_eq!(subsystems(&fresh), 1);
    assert!(fresh.list_replicas()[0].uri.starts_with("nvmf://"));

    fresh.destroy_pool("p").await.unwrap();
    assert_eq!(subsystems(&fresh), 0);
}

#[tokio::test]
async fn create_shared_checks_first() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager().await;
    m.create_pool(pool_args(&disk(&dir))).await.unwrap();
    let err = m
        .create_replica(replica_args("r1", ShareProtocol::Nvmf, &["bad"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(m.list_replicas().is_empty());

    let registry = m.registry().clone();
    let no_target = ShareManager::new(registry, None);
    let err = no_target
        .create_replica(replica_args("r1", ShareProtocol::Nvmf, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ShareError::NoTarget));
    assert!(no_target.list_replicas().is_empty());
    let err = m
        .share_replica(&ReplicaSelector::Uuid(Uuid::new_v4()), vec![])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn without_a_target_nothing_is_shared() {
    let registry = Arc::new(PoolRegistry::new(blockdev::OpenOptions::default()));
    let share = ShareManager::new(registry, None);
    let err = share
        .share_replica(&ReplicaSelector::Uuid(Uuid::new_v4()), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, ShareError::NoTarget));
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let err = share
        .unshare_replica(&ReplicaSelector::Uuid(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
