//! Each view drawn from a fixed cluster state, at 80x24 and at 160x48,
//! checked by the text on screen.

mod common;

use common::*;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use tui::View;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn key(app: &mut tui::App, code: KeyCode) -> Option<tui::Action> {
    app.on_key(KeyEvent::from(code))
}

#[test]
fn overview_shows_nodes_pool_gauges_and_volume_counts() {
    let app = fixed_app();
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_eq!(s.len(), h as usize);
        assert_line(
            &s,
            &[
                "[1 Overview]",
                "2 Volumes",
                "5 Events",
                "connected, updated 10:00:00",
            ],
        );
        assert_line(&s, &["Nodes (3)"]);
        assert_line(&s, &["ID", "STATUS", "CORDON", "DRAIN"]);
        assert_line(&s, &["node-1", "Online", "-", "-"]);
        assert_line(&s, &["node-2", "Online", "Cordoned (maint)", "-"]);
        assert_line(&s, &["Pools (3): capacity"]);
        assert_line(
            &s,
            &["pool-1 Online", "used 40% · committed 60% · total 10.0 GiB"],
        );
        assert_line(&s, &["pool-2 Online", "used 50% · committed 50%"]);
        // thin over-commitment is shown as it is, above 100 %
        assert_line(&s, &["pool-3 Online", "used 10% · committed 150%"]);
        assert_line(&s, &["2 volumes: Online 1 · Degraded 1 · Faulted 0"]);
        assert_line(&s, &["rebuilds running: 1"]);
        assert_line(&s, &["Events (newest first, UTC)"]);
        assert_line(
            &s,
            &["10:00:00 connected to http://127.0.40.252:8081: 3 nodes, 3 pools, 2 volumes"],
        );
        assert_line(&s, &["q quit", "? help", "tab view"]);
    }
}

#[test]
fn volumes_list_and_replica_topology_tree() {
    let mut app = fixed_app();
    assert_eq!(key(&mut app, KeyCode::Tab), None);
    assert_eq!(app.view, View::Volumes);
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["[2 Volumes]"]);
        assert_line(&s, &["Volumes (2)"]);
        assert_line(
            &s,
            &["ID", "STATUS", "REPLICAS", "TARGET-NODE", "SIZE", "THIN"],
        );
        assert_line(
            &s,
            &[
                "> 1b4e28ba-2fa1",
                "Degraded",
                "3",
                "node-1",
                "1.0 GiB",
                "yes",
            ],
        );
        assert_line(&s, &["9f8e7d6c-5b4a", "Online", "1", "-", "2.0 GiB", "no"]);
        // the tree of the selected (first) volume
        assert_line(&s, &["Replica topology"]);
        assert_line(&s, &[&format!("volume {V1}")]);
        assert_line(
            &s,
            &["Degraded · 3 replicas · 1.0 GiB · thin · self-heal on"],
        );
        assert_line(
            &s,
            &["└─ nexus 5e3c1a2b on node-1: Degraded, published nvmf"],
        );
        assert_line(&s, &["   ├─ replica aaaaaaa1 on node-1 (pool-1): Online"]);
        assert_line(
            &s,
            &["   ├─ replica bbbbbbb2 on node-2 (pool-2): Faulted, io_failure"],
        );
        assert_line(
            &s,
            &["   └─ replica ccccccc3 on node-3 (pool-3): Degraded, out_of_sync"],
        );
        assert_line(&s, &["      rebuild [", "] 55% (measuring rate)"]);
    }
    // a 20-cell bar where the pane allows, 10 cells below 66 columns
    assert_line(
        &render(&app, 80, 24),
        &["rebuild [###########.........] 55%"],
    );
    assert_line(
        &render(&app, 160, 48),
        &["rebuild [###########.........] 55%"],
    );
    assert_line(&render(&app, 64, 24), &["rebuild [#####.....] 55%"]);
    assert_line(
        &render(&app, 160, 48),
        &["> 1b4e28ba-2fa1-11d2-883f-0016d3cca427", "Degraded"],
    );

    // the second volume: unpublished, its replica straight under it
    key(&mut app, KeyCode::Down);
    let s = render(&app, 80, 24);
    assert_line(&s, &["> 9f8e7d6c"]);
    assert_line(&s, &["Online · 1 replicas · 2.0 GiB · thick"]);
    assert_line(&s, &["├─ no target (not published)"]);
    assert_line(&s, &["└─ replica ddddddd4 on node-2 (pool-2): Online"]);
}

#[test]
fn pools_view_shows_table_and_capacity_gauges() {
    let mut app = fixed_app();
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.view, View::Pools);
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["[3 Pools]"]);
        assert_line(
            &s,
            &["ID", "NODE", "STATUS", "TOTAL", "USED", "COMMITTED", "DISK"],
        );
        assert_line(
            &s,
            &[
                "> pool-1", "node-1", "Online", "10.0 GiB", "4.0 GiB", "6.0 GiB",
            ],
        );
        assert_line(
            &s,
            &[
                "pool-3", "node-3", "Online", "10.0 GiB", "1.0 GiB", "15.0 GiB",
            ],
        );
        assert_line(&s, &["Capacity of pool-1"]);
        assert_line(&s, &["used 40% (4.0 GiB of 10.0 GiB)"]);
        assert_line(&s, &["committed 60% (6.0 GiB of 10.0 GiB)"]);
    }
    key(&mut app, KeyCode::End);
    let s = render(&app, 80, 24);
    assert_line(&s, &["Capacity of pool-3"]);
    assert_line(&s, &["committed 150% (15.0 GiB of 10.0 GiB)"]);
}

#[test]
fn nodes_view_shows_status_cordon_and_detail() {
    let mut app = fixed_app();
    key(&mut app, KeyCode::Char('4'));
    key(&mut app, KeyCode::Down);
    let s = render(&app, 80, 24);
    assert_line(&s, &["[4 Nodes]"]);
    assert_line(&s, &["ID", "STATUS", "CORDON", "DRAIN"]);
    assert_absent(&s, "GRPC ENDPOINT");
    assert_line(&s, &["> node-2", "Online", "Cordoned (maint)"]);
    assert_line(
        &s,
        &["node-2: Online · grpc 127.0.40.11:10124 · version 0.1.0"],
    );
    assert_line(&s, &["cordon: Cordoned (maint) · drain: -"]);
    assert_line(&s, &["pools: pool-2 · volume targets: 0"]);
    assert_line(&s, &["c cordon  u uncordon  d drain"]);

    let s = render(&app, 160, 48);
    assert_line(
        &s,
        &[
            "ID",
            "STATUS",
            "GRPC ENDPOINT",
            "CORDON",
            "DRAIN",
            "VERSION",
        ],
    );
    assert_line(
        &s,
        &["node-3", "Online", "127.0.40.11:10124", "-", "-", "0.1.0"],
    );
}

#[test]
fn events_view_filter_help_and_dialogs() {
    let mut app = fixed_app();
    key(&mut app, KeyCode::Char('5'));
    let s = render(&app, 80, 24);
    assert_line(&s, &["[5 Events]"]);
    assert_line(&s, &["Events, newest first, UTC (1)"]);
    assert_line(&s, &["10:00:00 connected to"]);

    // filter the volumes list
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('/'));
    for c in "9f8e".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    let s = render(&app, 80, 24);
    assert_line(&s, &["filter: 9f8e_"]);
    assert_line(&s, &["Volumes (1 of 2, filter: 9f8e)"]);
    assert_absent(&s, "1b4e28ba-2fa1");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.selected_volume().map(|v| v.spec.uuid.as_str()),
        Some(V2)
    );
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");

    // help
    key(&mut app, KeyCode::Char('?'));
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["Help"]);
        assert_line(&s, &["/", "filter the list"]);
        assert_line(&s, &["q, ctrl-c", "quit"]);
    }
    key(&mut app, KeyCode::Esc);

    // scale dialog on the first volume
    key(&mut app, KeyCode::Home);
    key(&mut app, KeyCode::Char('s'));
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["Confirm: scale volume"]);
        assert_line(&s, &["Scale volume 1b4e28ba"]);
        assert_line(&s, &["replicas: 3 -> 4"]);
        assert_line(&s, &["Enter or y: confirm", "Esc or n: cancel"]);
    }
}

#[test]
fn disconnected_banner_keeps_last_data() {
    let mut app = fixed_app();
    app.unreachable(
        "Unavailable: cannot connect to http://127.0.40.252:8081/".into(),
        at(7),
    );
    app.unreachable(
        "Unavailable: cannot connect to http://127.0.40.252:8081/".into(),
        at(9),
    );
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["DISCONNECTED, retrying"]);
        assert_line(
            &s,
            &["API unreachable since 10:00:07 (2 failed polls); last data kept; Unavailable"],
        );
        assert_line(&s, &["node-2", "Cordoned (maint)"]);
        assert_line(
            &s,
            &["10:00:07 API unreachable: Unavailable: cannot connect"],
        );
    }
    let fresh = tui::App::new("http://127.0.40.252:8081");
    let s = render(&fresh, 80, 24);
    assert_line(&s, &["connecting..."]);
    assert_line(&s, &["connecting to http://127.0.40.252:8081..."]);
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = fixed_app();
    for _view in 0..5 {
        for (w, h) in [(1, 1), (10, 3), (20, 8), (80, 10), (200, 60)] {
            render(&app, w, h);
        }
        key(&mut app, KeyCode::Tab);
    }
    key(&mut app, KeyCode::Char('?'));
    render(&app, 5, 5);
}

/// Counters of one poll: `reads` and `writes` of 4 KiB so far, each read
/// taking 100 µs and each write 200 µs, sampled at `tick_s`.
fn io(tick_s: u64, reads: u64, writes: u64) -> openapi::models::IoStats {
    openapi::models::IoStats {
        num_read_ops: reads,
        bytes_read: reads * 4096,
        num_write_ops: writes,
        bytes_written: writes * 4096,
        read_latency_us: reads * 100,
        write_latency_us: writes * 200,
        tick_us: tick_s * 1_000_000,
    }
}

fn with_io(tick_s: u64, reads: u64, writes: u64) -> tui::Snapshot {
    let mut snapshot = fixed_snapshot();
    snapshot.volume_stats.insert(
        V1.to_string(),
        openapi::models::VolumeIoStats {
            volume_uuid: V1.to_string(),
            node: "node-1".into(),
            nexus_uuid: "5e3c1a2b-0000-0000-0000-000000000000".into(),
            stats: io(tick_s, reads, writes),
            replicas: vec![],
        },
    );
    snapshot
        .pool_stats
        .insert("pool-1".into(), io(tick_s, reads / 2, writes));
    snapshot
}

#[test]
fn live_io_rates_of_volumes_and_pools() {
    let mut app = tui::App::new("http://127.0.40.252:8081");
    app.apply(with_io(100, 1000, 500), at(0));
    // one poll: no interval yet, so no rate
    key(&mut app, KeyCode::Char('2'));
    let s = render(&app, 160, 48);
    assert_line(
        &s,
        &[
            "ID",
            "STATUS",
            "REPLICAS",
            "TARGET-NODE",
            "SIZE",
            "THIN",
            "IOPS",
        ],
    );
    assert_line(&s, &["> 1b4e28ba", "Degraded", "yes", "-"]);
    assert_absent(&s, "I/O r ");

    // two seconds of the engine's clock later: 2000 reads, 1000 writes
    app.apply(with_io(102, 3000, 1500), at(2));
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["> 1b4e28ba", "Degraded", "yes", "1.5k"]);
        assert_line(&s, &["9f8e7d6c", "Online", "no", "-"]);
        assert_line(
            &s,
            &["I/O r 1.0k/s 3.9 MiB/s 100µs  w 500/s 2.0 MiB/s 200µs"],
        );
    }
    key(&mut app, KeyCode::Char('3'));
    for (w, h) in SIZES {
        let s = render(&app, w, h);
        assert_line(&s, &["IOPS"]);
        assert_line(&s, &["> pool-1", "node-1", "Online", "1.0k"]);
        assert_line(
            &s,
            &["I/O r 500/s 2.0 MiB/s 100µs  w 500/s 2.0 MiB/s 200µs"],
        );
    }

    // a new target (republished elsewhere) counts from zero: no rate
    let mut moved = with_io(104, 10, 10);
    if let Some(v) = moved.volume_stats.get_mut(V1) {
        v.nexus_uuid = "another".into();
    }
    app.apply(moved, at(4));
    key(&mut app, KeyCode::Char('2'));
    let s = render(&app, 160, 48);
    assert_line(&s, &["> 1b4e28ba", "Degraded", "yes", "-"]);
    assert_absent(&s, "I/O r ");
}

fn upgrade_record(
    stage: openapi::models::UpgradeStage,
    states: &[openapi::models::NodeUpgradeState],
) -> openapi::models::UpgradeStatus {
    openapi::models::UpgradeStatus {
        from_version: "0.1.0".into(),
        to_version: "0.2.0".into(),
        stage,
        started_at: "2026-01-01T10:00:00.000Z".into(),
        updated_at: "2026-01-01T10:00:30.000Z".into(),
        finished_at: None,
        nodes: states
            .iter()
            .enumerate()
            .map(|(i, state)| openapi::models::NodeUpgradeStatus {
                node: format!("node-{}", i + 1),
                state: *state,
                from_version: "0.1.0".into(),
                started_at: None,
                finished_at: None,
            })
            .collect(),
        reason: (stage == openapi::models::UpgradeStage::Failed)
            .then(|| "node node-2: the io-engine did not come back".into()),
    }
}

#[test]
fn upgrade_line_shows_stage_and_node_k_of_n() {
    use openapi::models::{NodeUpgradeState as N, UpgradeStage as S};
    let mut app = fixed_app();
    let s = render(&app, 80, 24);
    assert_absent(&s, "upgrade 0.1.0");

    let cases = [
        (S::UpgradingControlPlane, vec![], "upgrade 0.1.0 → 0.2.0: UpgradingControlPlane"),
        (
            S::UpgradingDataPlane,
            vec![N::Upgraded, N::Draining, N::Pending],
            "upgrade 0.1.0 → 0.2.0: UpgradingDataPlane, node 2 of 3 (node-2 Draining)",
        ),
        (
            S::Failed,
            vec![N::Upgraded, N::Failed, N::Pending],
            "upgrade 0.1.0 → 0.2.0: Failed, node 2 of 3 (node-2 Failed): node node-2: the io-engine did not come back",
        ),
    ];
    for (stage, states, expected) in cases {
        let mut snapshot = fixed_snapshot();
        snapshot.upgrade = Some(Box::new(upgrade_record(stage, &states)));
        app.apply(snapshot, at(1));
        let s = render(&app, 160, 48);
        assert_eq!(s[1], expected, "the line under the header");
        // The view is still drawn below it.
        assert_line(&s, &["Nodes (3)"]);
        // A narrow terminal cuts the line, never the layout.
        let s = render(&app, 80, 24);
        assert!(s[1].starts_with("upgrade 0.1.0 → 0.2.0"), "{s:?}");
    }

    // Finished upgrades show nothing.
    for stage in [S::Successful, S::ValidationFailed] {
        let mut snapshot = fixed_snapshot();
        snapshot.upgrade = Some(Box::new(upgrade_record(stage, &[N::Upgraded; 3])));
        app.apply(snapshot, at(2));
        assert_absent(&render(&app, 160, 48), "upgrade 0.1.0");
    }
}
