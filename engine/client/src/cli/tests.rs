//! Unit tests of `cli`.

#![allow(clippy::unwrap_used)]

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("0").is_err());
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn replica_ref_forms() {
    let by_name = Cli::try_parse_from(["c", "replica", "destroy", "p", "r"]);
    assert!(by_name.is_ok());
    let by_uuid = Cli::try_parse_from(["c", "replica", "destroy", "--uuid", "u"]);
    assert!(by_uuid.is_ok());
    assert!(Cli::try_parse_from(["c", "replica", "destroy"]).is_err());
    assert!(Cli::try_parse_from(["c", "replica", "destroy", "p"]).is_err());
    assert!(Cli::try_parse_from(["c", "replica", "destroy", "p", "r", "--uuid", "u"]).is_err());
    assert!(
        Cli::try_parse_from(["c", "replica", "create", "p", "r", "--size=10", "--thin"]).is_ok()
    );
    assert!(Cli::try_parse_from(["c", "-o", "json", "pool", "list"]).is_ok());
    assert!(Cli::try_parse_from(["c", "pool", "list", "-o", "wide"]).is_ok());
    assert!(Cli::try_parse_from(["c", "-o", "yaml", "pool", "list"]).is_err());
}

#[test]
fn share_forms() {
    let cli = Cli::try_parse_from([
        "c",
        "replica",
        "share",
        "p",
        "r",
        "--allowed-host",
        "nqn.2019-05.io.openebs:node-name:n1",
        "--allowed-host=nqn.2019-05.io.openebs:node-name:n2",
    ])
    .unwrap();
    match cli.command {
        Command::Replica(ReplicaCommand::Share {
            replica,
            allowed_hosts,
        }) => {
            assert_eq!(replica.pool.as_deref(), Some("p"));
            assert_eq!(replica.name.as_deref(), Some("r"));
            assert_eq!(allowed_hosts.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(Cli::try_parse_from(["c", "replica", "share", "--uuid", "u"]).is_ok());
    assert!(Cli::try_parse_from(["c", "replica", "share", "p"]).is_err());
    assert!(Cli::try_parse_from(["c", "replica", "unshare", "p", "r"]).is_ok());
    assert!(Cli::try_parse_from(["c", "replica", "unshare"]).is_err());
}

const U: &str = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
const CHILD: &str =
    "bdev:///11111111-1111-4111-8111-111111111111?uuid=11111111-1111-4111-8111-111111111111";

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("c").chain(args.iter().copied()))
}

fn error_text(args: &[&str]) -> String {
    parse(args).unwrap_err().to_string()
}

#[test]
fn uuids_are_checked_and_normalised() {
    assert_eq!(parse_uuid(U), Ok(U.to_string()));
    assert_eq!(
        parse_uuid("0B1A4B8E3F5D4A579D8E1C2B3A4D5E6F"),
        Ok(U.to_string())
    );
    assert!(parse_uuid("nexus-1").unwrap_err().contains("is not a uuid"));
    assert!(parse_uuid("").is_err());
    let e = error_text(&["nexus", "destroy", "nexus-1"]);
    assert!(e.contains("\"nexus-1\" is not a uuid"), "{e}");
    let e = error_text(&["nexus", "create", U, "--size=64", "--name=vol", CHILD]);
    assert!(e.contains("\"vol\" is not a uuid"), "{e}");
    let e = error_text(&["rebuild", "history", "x"]);
    assert!(e.contains("is not a uuid"), "{e}");
}

#[test]
fn child_uris_need_a_scheme() {
    assert!(parse_child_uri(CHILD).is_ok());
    assert!(parse_child_uri("nvmf://10.0.0.2:8420/nqn.2019-05.io.openebs:r?uuid=r").is_ok());
    assert!(parse_child_uri("malloc:///m0?size_mb=64").is_ok());
    assert!(parse_child_uri(U).is_err());
    assert!(parse_child_uri("://x").is_err());
    assert!(parse_child_uri("bdev://").is_err());
    // Arguments in the wrong order are caught by one check or the other.
    assert!(parse(&["nexus", "add", CHILD, U]).is_err());
    let e = error_text(&["nexus", "remove", U, "replica1"]);
    assert!(e.contains("is not a child URI"), "{e}");
}

#[test]
fn nexus_create_forms() {
    let cli = parse(&["nexus", "create", U, "--size", "64", CHILD, CHILD]).unwrap();
    match cli.command {
        Command::Nexus(NexusCommand::Create {
            size,
            children,
            name,
            ..
        }) => {
            assert_eq!(size, 64 << 20);
            assert_eq!(children.len(), 2);
            assert_eq!(name, None);
        }
        other => panic!("{other:?}"),
    }
    // A size, a child and a uuid are required; the size must be > 0.
    assert!(parse(&["nexus", "create", U, CHILD]).is_err());
    assert!(parse(&["nexus", "create", U, "--size=64"]).is_err());
    assert!(parse(&["nexus", "create", "--size=64", CHILD]).is_err());
    let e = error_text(&["nexus", "create", U, "--size=0", CHILD]);
    assert!(e.contains("greater than 0"), "{e}");
    // Reservation flags: the type and the preempt key need a key; keys
    // are non-zero; the type is one of the NVMe ones.
    assert!(parse(&[
        "nexus",
        "create",
        U,
        "--size=64",
        "--resv-key=1",
        "--preempt-key=2",
        "--resv-type=write-exclusive-all-regs",
        CHILD,
    ])
    .is_ok());
    assert!(parse(&[
        "nexus",
        "create",
        U,
        "--size=64",
        "--resv-type=exclusive-access",
        CHILD
    ])
    .is_err());
    assert!(parse(&["nexus", "create", U, "--size=64", "--preempt-key=2", CHILD]).is_err());
    assert!(parse(&["nexus", "create", U, "--size=64", "--resv-key=0", CHILD]).is_err());
    let e = error_text(&[
        "nexus",
        "create",
        U,
        "--size=64",
        "--resv-key=1",
        "--resv-type=shared",
        CHILD,
    ]);
    assert!(e.contains("exclusive-access"), "{e}");
}

#[test]
fn nexus_publish_forms() {
    let cli = parse(&[
        "nexus",
        "publish",
        U,
        "--allowed-host",
        "nqn.2019-05.io.openebs:node-name:n1",
        "--min-cntlid=1",
        "--max-cntlid=100",
        "--resv-key=9",
        "--resv-type=exclusive-access",
        "--preempt-key=8",
    ])
    .unwrap();
    assert!(cli.validate().is_ok());
    match &cli.command {
        Command::Nexus(NexusCommand::Publish {
            nexus,
            allowed_hosts,
            min_cntlid,
            max_cntlid,
            reservation,
        }) => {
            assert_eq!(nexus.uuid, U);
            assert_eq!(allowed_hosts.len(), 1);
            assert_eq!((*min_cntlid, *max_cntlid), (Some(1), Some(100)));
            assert_eq!(reservation.resv_key, Some(9));
            assert_eq!(reservation.preempt_key, Some(8));
            assert_eq!(
                reservation.resv_type,
                Some(ReservationType::ExclusiveAccess)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(parse(&["nexus", "publish", U]).unwrap().validate().is_ok());
    assert!(parse(&["nexus", "publish", U, "--min-cntlid=0"]).is_err());
    assert!(parse(&["nexus", "publish", U, "--max-cntlid=65520"]).is_err());
    assert!(parse(&["nexus", "publish", U, "--max-cntlid=65519"]).is_ok());
    let swapped = parse(&["nexus", "publish", U, "--min-cntlid=10", "--max-cntlid=9"]).unwrap();
    assert_eq!(
        swapped.validate(),
        Err("--min-cntlid 10 is greater than --max-cntlid 9".to_string())
    );
}

#[test]
fn nexus_child_forms() {
    let cli = parse(&["nexus", "add", U, CHILD, "--norebuild"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Nexus(NexusCommand::Add {
            norebuild: true,
            ..
        })
    ));
    assert!(parse(&["nexus", "remove", U, CHILD]).is_ok());
    for (word, action) in [
        ("online", ChildAction::Online),
        ("offline", ChildAction::Offline),
        ("fault", ChildAction::Fault),
    ] {
        match parse(&["nexus", "child-op", U, CHILD, word])
            .unwrap()
            .command
        {
            Command::Nexus(NexusCommand::ChildOp { action: a, .. }) => assert_eq!(a, action),
            other => panic!("{other:?}"),
        }
    }
    let e = error_text(&["nexus", "child-op", U, CHILD, "retire"]);
    assert!(
        e.contains("invalid value 'retire'") && e.contains("offline"),
        "{e}"
    );
    assert!(parse(&["nexus", "child-op", U, CHILD]).is_err());
    assert_eq!(
        v1::ChildAction::from(ChildAction::Fault),
        v1::ChildAction::Fault
    );
    assert_eq!(
        v1::NvmeReservation::from(ReservationType::ExclusiveAccessAllRegs),
        v1::NvmeReservation::ExclusiveAccessAllRegs
    );
}

#[test]
fn nexus_list_and_plain_forms() {
    assert!(matches!(
        parse(&["nexus", "list"]).unwrap().command,
        Command::Nexus(NexusCommand::List {
            show_children: false
        })
    ));
    assert!(matches!(
        parse(&["nexus", "ls", "-c"]).unwrap().command,
        Command::Nexus(NexusCommand::List {
            show_children: true
        })
    ));
    assert!(parse(&["-o", "wide", "nexus", "list"]).is_ok());
    assert!(parse(&["nexus", "children", U, "-o", "json"]).is_ok());
    for verb in ["unpublish", "shutdown", "destroy", "children"] {
        assert!(parse(&["nexus", verb, U]).is_ok(), "{verb}");
        assert!(parse(&["nexus", verb]).is_err(), "{verb}");
    }
}

#[test]
fn rebuild_forms() {
    match parse(&["rebuild", "start", U, CHILD, "--max-bandwidth", "10"])
        .unwrap()
        .command
    {
        Command::Rebuild(RebuildCommand::Start {
            child,
            max_bandwidth,
        }) => {
            assert_eq!(child.uuid, U);
            assert_eq!(child.uri, CHILD);
            assert_eq!(max_bandwidth, Some(10 << 20));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["rebuild", "start", U, CHILD]).unwrap().command,
        Command::Rebuild(RebuildCommand::Start {
            max_bandwidth: None,
            ..
        })
    ));
    assert!(parse(&["rebuild", "start", U, CHILD, "--max-bandwidth=0"]).is_err());
    for verb in ["stop", "pause", "resume", "progress", "stats"] {
        assert!(parse(&["rebuild", verb, U, CHILD]).is_ok(), "{verb}");
        assert!(parse(&["rebuild", verb, U]).is_err(), "{verb}");
    }
    assert!(parse(&["rebuild", "history", U]).is_ok());
    assert!(parse(&["rebuild", "history"]).is_err());
    assert!(parse(&["rebuild", "restart", U, CHILD]).is_err());
}

#[test]
fn replica_sizes_take_units() {
    match parse(&["replica", "create", "p", "r", "--size=1GiB"])
        .unwrap()
        .command
    {
        Command::Replica(ReplicaCommand::Create { size, .. }) => assert_eq!(size, 1 << 30),
        other => panic!("{other:?}"),
    }
    match parse(&["replica", "resize", "p", "r", "--size=10"])
        .unwrap()
        .command
    {
        Command::Replica(ReplicaCommand::Resize { size, .. }) => assert_eq!(size, 10 << 20),
        other => panic!("{other:?}"),
    }
    // The engine refuses a 0 size itself (InvalidArgument, exit code 1).
    assert!(parse(&["replica", "create", "p", "r", "--size=0"]).is_ok());
    assert!(parse(&["replica", "create", "p", "r", "--size=10MB"]).is_err());
}
