//! A sequence of snapshots drives the dashboard: a child faults, its
//! rebuild starts at 10 %, goes to 55 %, completes, then a node goes
//! offline. The events pane and the progress bar are checked at each step;
//! then keys drive the confirmed actions and their reported outcomes.

mod common;

use common::*;
use openapi::models::*;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui::{Action, App, Snapshot, Update, View};

fn snapshot(volume_status: VolumeStatus, third: Child, node2: NodeStatus) -> Snapshot {
    let mut children = healthy_children();
    children[2].2 = third;
    let mut nodes = nodes();
    nodes[1] = node("node-2", node2, &["maint"]);
    Snapshot::new(nodes, pools(), vec![v1(volume_status, children), v2()])
}

fn third(state: ChildState, reason: &str, rebuild: Option<u8>) -> Child {
    child(R3, "node-3", state, reason, rebuild)
}

/// The events pane's lines (newest first), read from the 80x24 screen.
fn events_pane(app: &App) -> Vec<String> {
    let screen = render(app, 80, 24);
    let top = screen
        .iter()
        .position(|l| l.contains("Events (newest first, UTC)"))
        .expect("events pane");
    screen[top + 1..]
        .iter()
        .take_while(|l| !l.starts_with('└'))
        .map(|l| l.trim_matches('│').trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn volumes_screen(app: &mut App) -> Vec<String> {
    app.view = View::Volumes;
    render(app, 80, 24)
}

#[test]
fn fault_rebuild_and_node_offline_show_as_events_and_progress() {
    let mut app = App::new("http://127.0.40.252:8081");
    let online = || third(ChildState::Online, "none", None);

    // t=0: healthy
    app.apply(
        snapshot(VolumeStatus::Online, online(), NodeStatus::Online),
        at(0),
    );
    assert_eq!(
        events_pane(&app),
        ["10:00:00 connected to http://127.0.40.252:8081: 3 nodes, 3 pools, 2 volumes"]
    );

    // t=5: the child on node-3 faults
    app.apply(
        snapshot(
            VolumeStatus::Degraded,
            third(ChildState::Faulted, "io_failure", None),
            NodeStatus::Online,
        ),
        at(5),
    );
    assert_eq!(
        events_pane(&app),
        [
            "10:00:05 volume 1b4e28ba replica ccccccc3 on node-3 Faulted: io_failure (was O",
            "10:00:05 volume 1b4e28ba Degraded (was Online)",
            "10:00:00 connected to http://127.0.40.252:8081: 3 nodes, 3 pools, 2 volumes",
        ]
    );
    let s = volumes_screen(&mut app);
    assert_line(
        &s,
        &["└─ replica ccccccc3 on node-3 (pool-3): Faulted, io_failure"],
    );
    assert_absent(&s, "rebuild [");

    // t=10: rebuild starts at 10 % (one sample: no rate yet)
    app.apply(
        snapshot(
            VolumeStatus::Degraded,
            third(ChildState::Degraded, "out_of_sync", Some(10)),
            NodeStatus::Online,
        ),
        at(10),
    );
    let events = events_pane(&app);
    assert_eq!(
        events[0],
        "10:00:10 volume 1b4e28ba rebuild of replica ccccccc3 on node-3 started (10%)"
    );
    assert_eq!(
        events[1],
        "10:00:10 volume 1b4e28ba replica ccccccc3 on node-3 Degraded: out_of_sync (was"
    );
    let s = volumes_screen(&mut app);
    assert_line(
        &s,
        &["└─ replica ccccccc3 on node-3 (pool-3): Degraded, out_of_sync"],
    );
    assert_line(&s, &["rebuild [##..................] 10% (measuring rate)"]);

    // t=20: 55 %: 45 % of 1 GiB in 10 s = 46.1 MiB/s, 45 % left = 10 s
    app.apply(
        snapshot(
            VolumeStatus::Degraded,
            third(ChildState::Degraded, "out_of_sync", Some(55)),
            NodeStatus::Online,
        ),
        at(20),
    );
    let s = volumes_screen(&mut app);
    assert_line(
        &s,
        &["rebuild [###########.........] 55% 46.1 MiB/s ETA 10s"],
    );
    // progress alone is not an event
    assert!(events_pane(&app)[0].starts_with("10:00:10 "));

    // t=30: complete
    app.apply(
        snapshot(VolumeStatus::Online, online(), NodeStatus::Online),
        at(30),
    );
    let events = events_pane(&app);
    assert_eq!(
        events,
        [
            "10:00:30 volume 1b4e28ba rebuild of replica ccccccc3 on node-3 finished",
            "10:00:30 volume 1b4e28ba replica ccccccc3 on node-3 Online (was Degraded)",
            "10:00:30 volume 1b4e28ba Online (was Degraded)",
        ]
    );
    let s = volumes_screen(&mut app);
    assert_line(&s, &["└─ replica ccccccc3 on node-3 (pool-3): Online"]);
    assert_absent(&s, "rebuild [");
    app.view = View::Events;
    let s = render(&app, 80, 24);
    assert_line(
        &s,
        &["10:00:30 volume 1b4e28ba rebuild of replica ccccccc3 on node-3 finished"],
    );

    // t=35: node-2 goes offline
    app.apply(
        snapshot(VolumeStatus::Online, online(), NodeStatus::Offline),
        at(35),
    );
    app.view = View::Overview;
    assert_eq!(
        events_pane(&app)[0],
        "10:00:35 node node-2 Offline (was Online)"
    );
    assert_line(
        &render(&app, 80, 24),
        &["node-2", "Offline", "Cordoned (maint)"],
    );

    // the events view lists all of them, newest first
    app.view = View::Events;
    let s = render(&app, 160, 48);
    let order = [
        "10:00:35 node node-2 Offline (was Online)",
        "10:00:30 volume 1b4e28ba rebuild of replica ccccccc3 on node-3 finished",
        "10:00:10 volume 1b4e28ba rebuild of replica ccccccc3 on node-3 started (10%)",
        "10:00:05 volume 1b4e28ba replica ccccccc3 on node-3 Faulted: io_failure (was Online)",
        "10:00:00 connected to",
    ];
    let rows: Vec<usize> = order
        .iter()
        .map(|t| {
            s.iter()
                .position(|l| l.contains(t))
                .unwrap_or_else(|| panic!("{t:?} missing:\n{}", s.join("\n")))
        })
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "order {rows:?}");
}

#[test]
fn volume_and_child_lifecycle_events() {
    let mut app = App::new("x");
    app.apply(Snapshot::new(nodes(), pools(), vec![v2()]), at(0));
    // created with a rebuilding child straight away, scaled, moved
    let mut children = healthy_children();
    children.push((
        R4,
        "node-2",
        child(R4, "node-2", ChildState::Degraded, "out_of_sync", Some(3)),
    ));
    let mut moved = v1(VolumeStatus::Degraded, children);
    app.apply(
        Snapshot::new(nodes(), pools(), vec![moved.clone(), v2()]),
        at(1),
    );
    let texts: Vec<String> = app.events.iter().map(|e| e.text.clone()).collect();
    assert!(
        texts.contains(&"volume 1b4e28ba created (4 replicas, 1.0 GiB, Degraded)".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"volume 1b4e28ba replica ddddddd4 on node-2 added (Degraded)".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(
            &"volume 1b4e28ba rebuild of replica ddddddd4 on node-2 started (3%)".to_string()
        ),
        "{texts:?}"
    );

    moved.spec.num_replicas = 2;
    if let Some(n) = moved.state.target.as_mut() {
        n.node = "node-2".into();
        n.children.truncate(2);
    }
    app.apply(Snapshot::new(nodes(), pools(), vec![moved]), at(2));
    let last: Vec<&str> = app
        .events
        .iter()
        .rev()
        .take(5)
        .map(|e| e.text.as_str())
        .collect();
    assert!(last.contains(&"volume 9f8e7d6c deleted"), "{last:?}");
    assert!(
        last.contains(&"volume 1b4e28ba scaled to 2 replicas (was 4)"),
        "{last:?}"
    );
    assert!(
        last.contains(&"volume 1b4e28ba target moved to node-2 (was node-1)"),
        "{last:?}"
    );
    assert!(
        last.contains(&"volume 1b4e28ba replica ccccccc3 on node-3 removed"),
        "{last:?}"
    );
}

#[test]
fn disconnection_and_recovery_are_events() {
    let mut app = fixed_app();
    app.update(Update::Polled {
        result: Err("Unavailable: connection refused".into()),
        at: at(4),
    });
    app.update(Update::Polled {
        result: Err("Unavailable: connection refused".into()),
        at: at(6),
    });
    // one event for the outage, not one per failed poll
    assert_eq!(app.events.len(), 2);
    assert!(app.is_stale());
    app.update(Update::Polled {
        result: Ok(fixed_snapshot()),
        at: at(70),
    });
    assert!(!app.is_stale());
    assert_eq!(
        events_pane(&app)[0],
        "10:01:10 API reachable again (down for 1m06s)"
    );
}

fn key(app: &mut App, code: KeyCode) -> Option<Action> {
    app.on_key(KeyEvent::from(code))
}

#[test]
fn scale_cordon_and_drain_need_confirmation_and_report_results() {
    let mut app = fixed_app();
    assert_eq!(key(&mut app, KeyCode::Char('q')), Some(Action::Quit));
    assert_eq!(
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Quit)
    );

    // scale outside the volumes view is refused with a hint
    assert_eq!(key(&mut app, KeyCode::Char('s')), None);
    assert_line(
        &render(&app, 80, 24),
        &["error: scale: select a volume in the Volumes view (2)"],
    );

    // volumes view: s, +, Enter -> scale to 5; Esc cancels
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(key(&mut app, KeyCode::Esc), None);
    assert_line(&render(&app, 80, 24), &["cancelled"]);
    key(&mut app, KeyCode::Char('s'));
    assert_eq!(key(&mut app, KeyCode::Char('+')), None);
    assert_line(&render(&app, 80, 24), &["replicas: 3 -> 5"]);
    let scale = key(&mut app, KeyCode::Enter);
    assert_eq!(
        scale,
        Some(Action::Scale {
            volume: V1.into(),
            replicas: 5
        })
    );
    assert_eq!(app.in_flight, 1);
    assert_line(
        &render(&app, 80, 24),
        &["scale volume 1b4e28ba to 5 replicas..."],
    );
    let scale = scale.unwrap_or(Action::Refresh);
    app.update(Update::ActionDone {
        action: scale.clone(),
        result: Err("not enough usable pools for 5 replicas (ResourceExhausted)".into()),
        at: at(3),
    });
    let s = render(&app, 80, 24);
    assert_line(
        &s,
        &["error: scale volume 1b4e28ba to 5 replicas failed: not enough usable pools"],
    );
    assert_line(&s, &["10:00:03 scale volume 1b4e28ba to 5 replicas failed"]);
    // same count is no action; a digit sets the count
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(key(&mut app, KeyCode::Char('y')), None);
    assert_line(
        &render(&app, 80, 24),
        &["volume 1b4e28ba already has 3 replicas"],
    );
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(
        key(&mut app, KeyCode::Char('y')),
        Some(Action::Scale {
            volume: V1.into(),
            replicas: 2
        })
    );
    app.action_done(
        &Action::Scale {
            volume: V1.into(),
            replicas: 2,
        },
        Ok(()),
        at(4),
    );
    assert_line(
        &render(&app, 80, 24),
        &["volume 1b4e28ba scaled to 2 replicas"],
    );

    // nodes view: cordon node-1 with an edited label
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(key(&mut app, KeyCode::Char('u')), None);
    assert_line(
        &render(&app, 80, 24),
        &["error: node node-1 is not cordoned"],
    );
    key(&mut app, KeyCode::Char('c'));
    assert_line(&render(&app, 80, 24), &["Cordon node node-1"]);
    assert_line(&render(&app, 80, 24), &["label: tui_"]);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        None,
        "an empty label is not confirmed"
    );
    for c in "ops".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::Cordon {
            node: "node-1".into(),
            label: "ops".into()
        })
    );

    // uncordon node-2 proposes its label; drain proposes tui-drain
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char('u'));
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::Uncordon {
            node: "node-2".into(),
            label: "maint".into()
        })
    );
    key(&mut app, KeyCode::Char('d'));
    assert_line(
        &render(&app, 80, 24),
        &["moves volume targets off the node"],
    );
    let drain = key(&mut app, KeyCode::Enter);
    assert_eq!(
        drain,
        Some(Action::Drain {
            node: "node-2".into(),
            label: "tui-drain".into()
        })
    );
    app.action_done(
        &Action::Drain {
            node: "node-2".into(),
            label: "tui-drain".into(),
        },
        Ok(()),
        at(9),
    );
    assert_line(
        &render(&app, 80, 24),
        &["node node-2 drain started (label tui-drain)"],
    );
}

#[test]
fn selection_follows_the_resource_not_the_row() {
    let mut app = fixed_app();
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Down);
    assert_eq!(
        app.selected_volume().map(|v| v.spec.uuid.as_str()),
        Some(V2)
    );
    // a new volume sorting first does not move the cursor off V2
    let mut first = v2();
    first.spec.uuid = "00000000-0000-4000-8000-000000000000".into();
    let mut s = fixed_snapshot();
    s.volumes.push(first);
    let s = Snapshot::new(s.nodes, s.pools, s.volumes);
    app.apply(s, at(1));
    assert_eq!(
        app.selected_volume().map(|v| v.spec.uuid.as_str()),
        Some(V2)
    );
    // V2 deleted: the first row is selected
    app.apply(fixed_snapshot(), at(2));
    app.apply(Snapshot::new(nodes(), pools(), vec![]), at(3));
    assert!(app.selected_volume().is_none());
    assert_line(&render(&app, 80, 24), &["no volume selected"]);
}
