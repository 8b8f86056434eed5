//! Helpers of the support-bundle tests: running `dump`, unpacking a
//! bundle (zip or tar.gz) into memory, and reading its manifest.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use supportability::manifest::Manifest;

/// An unpacked bundle: path -> bytes.
pub struct Bundle {
    pub path: PathBuf,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    pub fn open(path: &Path) -> Bundle {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut files = BTreeMap::new();
        if name.ends_with(".zip") {
            let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
            for i in 0..zip.len() {
                let mut f = zip.by_index(i).unwrap();
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes).unwrap();
                let entry = f.name().unwrap().to_string();
                assert!(
                    files.insert(entry.clone(), bytes).is_none(),
                    "{entry} twice"
                );
            }
        } else {
            assert!(name.ends_with(".tar.gz"), "{name}");
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
            let mut tar = tar::Archive::new(gz);
            for entry in tar.entries().unwrap() {
                let mut entry = entry.unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                let p = entry.path().unwrap().display().to_string();
                assert!(files.insert(p.clone(), bytes).is_none(), "{p} twice");
            }
        }
        Bundle {
            path: path.to_path_buf(),
            files,
        }
    }

    pub fn text(&self, path: &str) -> String {
        let bytes = self
            .files
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing; bundle has {:?}", self.names()));
        String::from_utf8(bytes.clone()).unwrap()
    }

    pub fn names(&self) -> Vec<&str> {
        self.files.keys().map(String::as_str).collect()
    }

    /// Names under `prefix`.
    pub fn under(&self, prefix: &str) -> Vec<&str> {
        self.names()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    pub fn manifest(&self) -> Manifest {
        serde_json::from_str(&self.text("manifest.json")).unwrap()
    }

    /// Whether `needle` occurs in any file (byte search).
    pub fn contains(&self, needle: &str) -> Vec<&str> {
        self.files
            .iter()
            .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The manifest's sizes are the files' sizes; every file but the
    /// manifest and README is listed by a collector or is the tool's log.
    pub fn check_manifest_sizes(&self) {
        let manifest = self.manifest();
        for c in &manifest.collectors {
            for f in &c.files {
                assert_eq!(
                    self.files.get(&f.path).map(|b| b.len() as u64),
                    Some(f.bytes),
                    "{}: size of {}",
                    c.name,
                    f.path
                );
            }
        }
        let listed: Vec<&str> = manifest
            .collectors
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.as_str()))
            .collect();
        for name in self.names() {
            assert!(
                listed.contains(&name)
                    || ["manifest.json", "README.txt", "support_tool_logs.log"].contains(&name),
                "{name} is in the bundle but no collector lists it"
            );
        }
    }
}

/// The files process `pid` holds open in `dir` that have no name there
/// (`O_TMPFILE`: `/proc/<pid>/fd/N` reads `<dir>/#<inode> (deleted)`).
pub fn unnamed_files_in(pid: u32, dir: &Path) -> Vec<String> {
    let prefix = format!("{}/#", dir.display());
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|t| t.starts_with(&prefix) && t.ends_with(" (deleted)"))
        .collect()
}

/// The bundle a successful `dump` printed the path of.
pub fn bundle_of(out: &Output) -> Bundle {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        !path.is_empty(),
        "no bundle path on stdout: {}\nstderr: {}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    Bundle::open(Path::new(&path))
}

/// Files in `dir` (names).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Asserts `out` succeeded; its stderr for messages.
pub fn assert_ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "kubectl-mayastor {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last stderr line of a failed run (progress lines come before it).
pub fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{stderr}");
    last
}

/// The first connection to `listener` from `child`, waiting at most
/// `limit`: a child that exits first (or never connects) fails the test
/// with its output instead of leaving it blocked in `accept`.
pub fn accept_from(
    listener: &std::net::TcpListener,
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let start = std::time::Instant::now();
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                listener.set_nonblocking(false).unwrap();
                conn.set_nonblocking(false).unwrap();
                return conn;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            panic!("the dump ended ({status}) before connecting:\n{stderr}");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the dump did not connect within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
