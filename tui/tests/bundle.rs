//! The support-bundle key (`b`): its state and gauge drawn from the
//! dump's progress (pure, on a test backend), and end to end the real
//! `kubectl-mayastor tui` in tmux against a one-node local cluster on
//! 127.0.66.*: the key writes a system bundle into `--bundle-dir`, the
//! screen shows the archive's path, and the archive holds the cluster's
//! topology, store and logs with every collector succeeded.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::PathBuf;

use common::procs::bin;
use common::tmux::Session;
use common::{assert_absent, assert_line, fixed_app, render};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui::bundle::{BundleState, BundleUpdate};
use tui::{Action, Update};

const PREFIX: &str = "127.0.66";
const SESSION: &str = "tui-bundle-127-0-66";

fn key_b(app: &mut tui::App) -> Option<Action> {
    app.on_key(KeyEvent::from(KeyCode::Char('b')))
}

#[test]
fn bundle_key_gauge_path_and_refusal() {
    let mut app = fixed_app();
    assert_absent(&render(&app, 120, 30), "support bundle");
    assert_eq!(key_b(&mut app), Some(Action::Bundle));
    assert_eq!(app.bundle, Some(BundleState::starting()));

    app.update(Update::Bundle(BundleUpdate::Progress {
        done: 3,
        planned: 12,
        current: "logs/local/io-engine-1".into(),
    }));
    let state = app.bundle.clone().unwrap();
    assert!((state.ratio() - 0.25).abs() < 1e-9);
    let screen = render(&app, 120, 30);
    assert_line(
        &screen,
        &[
            "bundle [b]",
            "support bundle: 3/12 collectors, logs/local/io-engine-1",
        ],
    );

    // One bundle at a time.
    assert_eq!(key_b(&mut app), None);
    let message = app.message.clone().unwrap();
    assert!(message.error && message.text.contains("being written"));

    // Done: the path on screen and as an event; a late progress line does
    // not hide it.
    let path = PathBuf::from("/var/tmp/out/mayastor-2026-12-06--15-11-31-UTC.zip");
    app.update(Update::Bundle(BundleUpdate::Finished(Ok((
        path.clone(),
        0,
    )))));
    app.update(Update::Bundle(BundleUpdate::Progress {
        done: 12,
        planned: 12,
        current: "manifest".into(),
    }));
    assert_eq!(
        app.bundle,
        Some(BundleState::Done {
            path: path.clone(),
            failed: 0
        })
    );
    let screen = render(&app, 120, 30);
    assert_line(
        &screen,
        &["support bundle written: ", &path.display().to_string()],
    );
    assert!(app
        .events
        .iter()
        .any(|e| e.text == format!("support bundle written: {}", path.display())));

    // A partial bundle says so; a failure says why; either way `b` works
    // again.
    assert_eq!(key_b(&mut app), Some(Action::Bundle));
    app.update(Update::Bundle(BundleUpdate::Finished(Ok((
        path.clone(),
        2,
    )))));
    assert_line(
        &render(&app, 120, 30),
        &["support bundle partially collected (2 collector(s) failed): "],
    );
    assert_eq!(key_b(&mut app), Some(Action::Bundle));
    app.update(Update::Bundle(BundleUpdate::Finished(Err(
        "cannot write the bundle to /nope: it does not exist".into(),
    ))));
    assert_line(
        &render(&app, 120, 30),
        &["support bundle failed: cannot write the bundle to /nope"],
    );
    assert_eq!(key_b(&mut app), Some(Action::Bundle));
}

#[test]
fn bundle_key_writes_a_system_bundle_in_tmux() {
    let plugin = bin("kubectl-mayastor", "kubectl-mayastor");
    // The plugin finds the local cluster (its logs and store) through
    // XDG_DATA_HOME, as a user's would.
    let cluster = testkit::LocalCluster::up(PREFIX, 1, &[]);
    let data_home = cluster.data_home.clone();
    let url = cluster.rest_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("bundles");
    std::fs::create_dir_all(&out_dir).unwrap();

    let cmd = format!(
        "env XDG_DATA_HOME={} KUBECONFIG=/nonexistent {} --rest {url} tui --interval 500ms --bundle-dir {}",
        data_home.display(),
        plugin.display(),
        out_dir.display()
    );
    let session = Session::start(SESSION, 180, 32, &cmd);
    session.wait_screen("the connected dashboard", 30, |s| {
        s.contains("connected to")
    });
    assert!(session.screen().contains("b bundle"));

    session.keys(&["b"]);
    let screen = session.wait_screen("the bundle's path", 120, |s| {
        s.contains("support bundle written: ")
            || s.contains("support bundle failed")
            || s.contains("partially collected")
    });
    let line = screen
        .lines()
        .find(|l| l.starts_with("support bundle written: "))
        .unwrap_or_else(|| panic!("the bundle was not written completely:\n{screen}"));
    let path = PathBuf::from(line["support bundle written: ".len()..].trim());
    assert_eq!(path.parent(), Some(out_dir.as_path()), "{screen}");
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [path.file_name().unwrap().to_string_lossy().into_owned()]
    );
    // The event pane says it too.
    assert!(
        screen
            .lines()
            .filter(|l| l.contains(&format!("support bundle written: {}", path.display())))
            .count()
            >= 2,
        "{screen}"
    );

    // The archive: a system bundle of this cluster.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut text = |name: &str| {
        let mut s = String::new();
        zip.by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let node: serde_json::Value =
        serde_json::from_str(&text("topology/node/node-1-topology.json")).unwrap();
    assert_eq!(node["id"], "node-1");
    assert!(!text("etcd_dump").is_empty());
    let manifest: serde_json::Value = serde_json::from_str(&text("manifest.json")).unwrap();
    assert_eq!(manifest["resource"], "system");
    assert_eq!(manifest["partial"], false);
    let collectors = manifest["collectors"].as_array().unwrap();
    let outcome = |name: &str| {
        collectors
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["outcome"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no collector {name}: {manifest:#}"))
    };
    assert_eq!(outcome("topology"), "ok");
    assert_eq!(outcome("store"), "ok");
    let local_logs: Vec<_> = collectors
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with("logs/local/")
        })
        .collect();
    assert!(local_logs.len() >= 4, "{manifest:#}");
    assert!(
        local_logs.iter().all(|c| c["outcome"] == "ok"),
        "{manifest:#}"
    );

    session.keys(&["q"]);
}
