//! Schemathesis against the served OpenAPI document, with data in the
//! cluster.

use super::*;

/// The seed of the fuzz run: fixed, so that the test asks the same
/// questions every time (`REST_FUZZ_SEED` picks another; the script alone
/// draws a random one).
const FUZZ_SEED: &str = "20240601";

fn fuzz_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rest-fuzz.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_spec_violation() {
    let rest = Rest::start();
    let api = &rest.api;
    let c = &rest.cluster;
    rest.nodes_online().await;
    rest.make_pools().await;
    api.put_node_pool("node-1", "p1-b", pool_body(c.disk("p1-b", POOL)))
        .await
        .unwrap();
    // Data for the fuzzer to find: a published and an unpublished volume,
    // labels and a cordon.
    let published = new_id();
    api.put_volume(&published, volume_body(VOL, 2))
        .await
        .unwrap();
    api.put_volume_target(&published, publish_body("node-1"))
        .await
        .unwrap();
    api.put_volume(&new_id(), volume_body(VOL, 1))
        .await
        .unwrap();
    api.label_node("node-2", "zone", Some("b")).await.unwrap();
    api.label_pool("p3", "tier", Some("slow")).await.unwrap();
    api.put_node_cordon("node-3", "fuzz").await.unwrap();

    let script = fuzz_script();
    let url = rest.url();
    let seed = std::env::var("REST_FUZZ_SEED").unwrap_or_else(|_| FUZZ_SEED.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(&script)
            .arg(&url)
            .env("REST_FUZZ_SEED", seed)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", fuzz_script().display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "schemathesis is not installed: run `bash scripts/rest-fuzz.sh --install` \
             (scripts/test.sh does)\n{text}"
        ),
        code => panic!("scripts/rest-fuzz.sh failed ({code:?}):\n{text}"),
    }
    eprintln!("{text}");
    assert!(text.contains("No issues found"), "{text}");
    assert_no_server_error(&rest);
    // The cluster still answers.
    api.get_specs().await.unwrap();
}
