//! The example StorageClasses under `deploy/storageclasses/` name our
//! provisioner and only parameters the controller accepts, with the replica
//! count, thin setting and filesystem their names promise.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use csi::controller::params::{FsType, VolumeParams};

fn class(name: &str) -> VolumeParams {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/storageclasses")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("StorageClass"), "{name}");
    assert_eq!(doc["metadata"]["name"].as_str(), Some(name));
    assert_eq!(
        doc["provisioner"].as_str(),
        Some(csi::PLUGIN_NAME),
        "{name}"
    );
    let mut params: HashMap<String, String> =
        serde_yaml::from_value(doc["parameters"].clone()).unwrap();
    // What the external provisioner adds with --extra-create-metadata.
    params.insert("csi.storage.k8s.io/pvc/name".into(), "data-db-0".into());
    params.insert("csi.storage.k8s.io/pvc/namespace".into(), "shop".into());
    VolumeParams::parse(&params).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_storage_class_is_accepted_and_says_what_its_name_says() {
    let one = class("mayastor-1");
    assert_eq!(
        (one.replicas, one.thin, one.fs_type),
        (1, false, FsType::Ext4)
    );
    let three = class("mayastor-3");
    assert_eq!((three.replicas, three.thin), (3, false));
    assert_eq!(three.affinity_group.as_deref(), Some("shop/data-db"));
    let thin = class("mayastor-thin");
    assert!(thin.thin);
    let xfs = class("mayastor-xfs");
    assert_eq!(xfs.fs_type, FsType::Xfs);
    let listed = std::fs::read_dir(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/storageclasses"),
    )
    .unwrap()
    .count();
    assert_eq!(listed, 4, "a new example gets a check here");
}
