//! Helpers shared by the integration tests that drive the real
//! `kubectl-mayastor` binary against real local clusters started with
//! `mayastor-local`: building the cluster's binaries, a [`Cluster`] guard
//! that runs `down --wipe` however the test ends, and parsers for the
//! plugin's tables and error lines.

// Each test binary uses a part of this kit.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubectl_mayastor::table::Table;
use openapi::models::*;
use openapi::{CoreApi, RestClient, RestClientOptions};
use testkit::LocalCluster;

#[allow(unused_imports)]
pub use testkit::local_cluster::{binary as cluster_binary, launcher, print_logs};

/// A running local cluster (the process test kit's), with the fields the
/// plugin's tests read; `down --wipe` when dropped.
pub struct Cluster {
    pub launcher: PathBuf,
    /// XDG_DATA_HOME of the launcher and of the plugin runs.
    pub data_home: PathBuf,
    pub state_dir: PathBuf,
    pub rest: String,
    local: LocalCluster,
}

impl Cluster {
    /// `up --nodes N --ip-prefix PREFIX` with the state directory where the
    /// plugin finds the endpoint file.
    pub fn up(prefix: &str, nodes: u32) -> Cluster {
        Cluster::up_with(prefix, nodes, &[])
    }

    /// `up` with more flags (e.g. `--store etcd`).
    pub fn up_with(prefix: &str, nodes: u32, extra: &[&str]) -> Cluster {
        let local = LocalCluster::up(prefix, nodes, extra);
        assert_eq!(local.rest_url, format!("http://{prefix}.252:8081"));
        Cluster {
            launcher: local.launcher_path().to_path_buf(),
            data_home: local.data_home.clone(),
            state_dir: local.state_dir.clone(),
            rest: local.rest_url.clone(),
            local,
        }
    }

    pub fn client(&self) -> RestClient {
        RestClient::new(&self.rest, RestClientOptions::default()).unwrap()
    }

    /// Runs the plugin with this cluster's data home (so it finds the
    /// endpoint file) and no kubeconfig.
    pub fn plugin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kubectl-mayastor"))
            .args(args)
            .envs(self.local.envs())
            .env("KUBECONFIG", self.data_home.join("no-kubeconfig"))
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    }

    /// The plugin's stdout; the command must succeed with nothing on
    /// stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.plugin(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() && stderr.is_empty(),
            "kubectl-mayastor {args:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        stdout
    }

    /// The plugin's single stderr line; the command must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        failing_line(self.plugin(args), args)
    }

    /// The table printed by `args`, split into cells at the header's
    /// column starts (so a misaligned cell shows up garbled), with uuids
    /// and the state directory masked in each cell, data rows sorted
    /// (replica order follows random uuids), and aligned again.
    pub fn table(&self, args: &[&str]) -> String {
        let text = self.ok(args);
        let header: Vec<String> = header_columns(&text);
        let mut cells: Vec<Vec<String>> = rows(&text)
            .into_iter()
            .map(|row| {
                header
                    .iter()
                    .map(|name| mask(&row[name], &self.state_dir))
                    .collect()
            })
            .collect();
        cells.sort();
        let mut table = Table::new(&header);
        for row in cells {
            table.push(row);
        }
        table.render()
    }

    pub fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    pub fn create_volume(&self, id: &str, replicas: u8, publish_on: Option<&str>) -> Volume {
        let client = self.client();
        self.block_on(async {
            let mut volume = client
                .put_volume(id, CreateVolumeBody::new(64 << 20, replicas))
                .await
                .unwrap();
            if let Some(node) = publish_on {
                volume = client
                    .put_volume_target(id, PublishVolumeBody::nvmf(Some(node), None))
                    .await
                    .unwrap();
            }
            volume
        })
    }

    pub fn volume(&self, id: &str) -> Volume {
        let client = self.client();
        self.block_on(async { client.get_volume(id).await.unwrap() })
    }
}

pub fn failing_line(out: Output, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "kubectl-mayastor {args:?} should fail with exit code 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "{args:?}: nothing on stdout: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{args:?}: {stderr}"
    );
    lines[0].to_string()
}

pub fn is_uuid_at(bytes: &[u8], at: usize) -> bool {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    bytes.len() >= at + 36
        && (0..36).all(|i| {
            let c = bytes[at + i];
            if DASHES.contains(&i) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Replaces every uuid with `<uuid>` and the state directory with
/// `<state>`.
pub fn mask(text: &str, state_dir: &Path) -> String {
    let text = text.replace(&state_dir.display().to_string(), "<state>");
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if is_uuid_at(bytes, i) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Where each column of a table starts, from its header: column names
/// hold single spaces ("GRPC ENDPOINT"), columns are two or more apart.
pub fn column_starts(header: &str) -> Vec<usize> {
    let bytes = header.as_bytes();
    let mut starts = vec![0];
    for i in 2..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    starts
}

pub fn header_columns(table: &str) -> Vec<String> {
    let header = table.lines().next().unwrap();
    let starts = column_starts(header);
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let end = starts.get(k + 1).copied().unwrap_or(header.len());
            header[s..end].trim().to_string()
        })
        .collect()
}

/// The cells of a table's data rows by column name.
pub fn rows(table: &str) -> Vec<BTreeMap<String, String>> {
    let header = table.lines().next().unwrap();
    let starts = column_starts(header);
    let names = header_columns(table);
    table
        .lines()
        .skip(1)
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let start = starts[k].min(line.len());
                    let end = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    let cell = &line[start..end];
                    // A cell starts exactly at its column and ends with the
                    // padding before the next one.
                    assert!(
                        !cell.starts_with(' ') || cell.trim().is_empty(),
                        "misaligned cell {cell:?} in column {name}:\n{table}"
                    );
                    (name.clone(), cell.trim().to_string())
                })
                .collect()
        })
        .collect()
}

#[allow(unused_imports)]
pub use testkit::wait_until;

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
