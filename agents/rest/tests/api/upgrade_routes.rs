//! `GET /versions` and `GET|PUT|DELETE /upgrade-status` through
//! `RestClient` -> router -> double: the record round-trips whole, the
//! answering server reports its own version, a missing record is
//! NotFound and a record with an empty version is refused before the API.

use openapi::models::*;
use openapi::{CoreApi, ErrorKind};

use super::support::TestServer;

fn record() -> UpgradeStatus {
    UpgradeStatus {
        from_version: "0.1.0".into(),
        to_version: "0.2.0".into(),
        stage: UpgradeStage::UpgradingDataPlane,
        started_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:10Z".into(),
        finished_at: None,
        nodes: vec![NodeUpgradeStatus {
            node: "node-1".into(),
            state: NodeUpgradeState::Upgraded,
            from_version: "0.1.0".into(),
            started_at: Some("2026-01-01T00:00:01Z".into()),
            finished_at: Some("2026-01-01T00:00:09Z".into()),
        }],
        reason: None,
    }
}

#[tokio::test]
async fn versions_carry_the_answering_server() {
    let server = TestServer::open().await;
    let versions = server.client().get_versions().await.expect("versions");
    assert_eq!(versions.rest, mayastor_version::version());
    assert_eq!(versions.core, "double");
    assert_eq!(versions.store, "double");
}

#[tokio::test]
async fn upgrade_status_round_trips() {
    let server = TestServer::open().await;
    let client = server.client();
    let missing = client.get_upgrade_status().await.expect_err("none yet");
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert_eq!(
        client.put_upgrade_status(record()).await.expect("put"),
        record()
    );
    assert_eq!(client.get_upgrade_status().await.expect("get"), record());
    client.del_upgrade_status().await.expect("delete");
    let gone = client.del_upgrade_status().await.expect_err("deleted");
    assert_eq!(gone.kind, ErrorKind::NotFound);

    let mut bad = record();
    bad.to_version = " ".into();
    let refused = client.put_upgrade_status(bad).await.expect_err("refused");
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    let puts = server
        .double
        .calls()
        .iter()
        .filter(|c| *c == "put_upgrade_status()")
        .count();
    assert_eq!(puts, 1, "the refused record reached the API");
}
