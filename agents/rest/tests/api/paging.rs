//! `GET /v0/volumes` paging: `max_entries` and `starting_token` reach the
//! API, `next_token` comes back, and walking the pages yields every volume
//! once.

use openapi::CoreApi;

use super::support::{get, TestServer};

#[tokio::test]
async fn all_volumes_reads_every_page() {
    let server = TestServer::open().await;
    let client = server.client();
    let all = client.get_volumes(0, None).await.expect("all");
    assert_eq!(all.entries.len(), 3);
    for page in [0, 1, 2, 3, 5] {
        let walked = client.all_volumes(page).await.expect("all_volumes");
        assert_eq!(walked, all.entries, "page {page}");
    }
    let calls = server.double.calls();
    for call in ["get_volumes(1, Some(2))", "get_volumes(2, Some(2))"] {
        assert!(calls.contains(&call.to_string()), "{call}: {calls:?}");
    }
}

#[tokio::test]
async fn pages_walk_every_volume_once() {
    let server = TestServer::open().await;
    let client = server.client();
    let all = client.get_volumes(0, None).await.expect("all");
    assert_eq!(all.entries.len(), 3);
    assert_eq!(all.next_token, None);

    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = client.get_volumes(2, token).await.expect("page");
        assert!(page.entries.len() <= 2);
        pages += 1;
        seen.extend(page.entries);
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, all.entries);

    let calls = server.double.calls();
    assert!(
        calls.contains(&"get_volumes(2, None)".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"get_volumes(2, Some(2))".to_string()),
        "{calls:?}"
    );
}

#[tokio::test]
async fn query_parameters_are_optional() {
    let server = TestServer::open().await;
    let answer = get(&format!("{}/v0/volumes", server.url())).await;
    assert_eq!(answer.status, reqwest::StatusCode::OK);
    assert_eq!(answer.body["entries"].as_array().map(Vec::len), Some(3));
    assert!(answer.body["next_token"].is_null());

    let answer = get(&format!("{}/v0/volumes?max_entries=1", server.url())).await;
    assert_eq!(answer.body["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(answer.body["next_token"], 1);
    assert_eq!(
        server.double.calls(),
        vec![
            "get_volumes(0, None)".to_string(),
            "get_volumes(1, None)".to_string()
        ]
    );
}
