//! Runs a dump: checks its inputs, then runs each collector in turn into
//! one [`Archive`], records each outcome, and closes the bundle with
//! `support_tool_logs.log`, `manifest.json` and `README.txt`.
//!
//! Phase 1 (nothing written yet; any error is returned): read the REST
//! objects and find the asked resource, connect to the store, create the
//! archive's (unnamed) file. Phase 2: collectors; a failure is recorded and
//! the dump goes on. The archive gets its final name last.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use openapi::{CoreApi, RestClient, RestClientOptions};

use crate::archive::Archive;
use crate::local::LocalCluster;
use crate::logcut::{cut_file, Cut};
use crate::manifest::{readme, CollectorRecord, FileRecord, Manifest, Sources};
use crate::progress::{Outcome, Progress};
use crate::redact::{RedactingWriter, Redactor};
use crate::store::StoreClient;
use crate::topology::{self, Cluster, Resource, Selection};
use crate::{now_ns, rfc3339};
use crate::{DumpError, DumpOptions};

/// What a finished dump produced.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: std::path::PathBuf,
    pub manifest: Manifest,
}

impl Summary {
    /// Whether every collector succeeded (or was skipped).
    pub fn complete(&self) -> bool {
        !self.manifest.partial
    }
}

/// A collector's result before it is recorded.
pub(crate) type Collected = Result<Vec<FileRecord>, String>;

/// The state of a dump in phase 2.
pub(crate) struct Bundle<'a> {
    pub archive: Archive,
    pub redactor: Redactor,
    pub records: Vec<CollectorRecord>,
    tool_log: Vec<String>,
    progress: &'a dyn Progress,
    /// Collectors begun (or skipped) so far.
    begun: usize,
    /// Collectors known so far, begun or not ([`Progress::planned`]).
    planned: usize,
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

impl Bundle<'_> {
    /// A line of `support_tool_logs.log`.
    pub fn log(&mut self, line: impl AsRef<str>) {
        self.tool_log
            .push(format!("{} {}", rfc3339(now_ns()), line.as_ref()));
    }

    /// `n` more collectors are ahead that were not counted yet.
    pub fn plan_more(&mut self, n: usize) {
        if n > 0 {
            self.planned += n;
            self.progress.planned(self.planned);
        }
    }

    /// Counts a collector that starts (one not planned raises the plan).
    fn count_begun(&mut self) {
        self.begun += 1;
        if self.begun > self.planned {
            self.planned = self.begun;
            self.progress.planned(self.planned);
        }
    }

    pub fn begin(&mut self, name: &str) -> Instant {
        self.count_begun();
        self.progress.started(name);
        self.log(format!("{name}: started"));
        Instant::now()
    }

    /// Records a collector's end.
    pub fn end(&mut self, name: &str, source: &str, started: Instant, result: Collected) {
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (outcome, error, files) = match result {
            Ok(files) => {
                let bytes: u64 = files.iter().map(|f| f.bytes).sum();
                let note = format!("{} file(s), {}", files.len(), human_bytes(bytes));
                (Outcome::Ok(note), None, files)
            }
            Err(error) => (Outcome::Failed(error.clone()), Some(error), Vec::new()),
        };
        self.finish_record(name, source, duration_ms, outcome, error, files);
    }

    /// Records a collector that does not apply.
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.count_begun();
        self.progress.started(name);
        self.finish_record(
            name,
            "",
            0,
            Outcome::Skipped(reason.to_string()),
            Some(reason.to_string()),
            Vec::new(),
        );
    }

    fn finish_record(
        &mut self,
        name: &str,
        source: &str,
        duration_ms: u64,
        outcome: Outcome,
        error: Option<String>,
        files: Vec<FileRecord>,
    ) {
        self.progress.finished(name, &outcome);
        let (word, text) = match &outcome {
            Outcome::Ok(note) => ("ok", note.clone()),
            Outcome::Failed(e) => ("failed", e.clone()),
            Outcome::Skipped(why) => ("skipped", why.clone()),
        };
        self.log(format!("{name}: {word}: {text}"));
        self.records.push(CollectorRecord {
            name: name.to_string(),
            source: source.to_string(),
            outcome: word.to_string(),
            error,
            files,
            duration_ms,
        });
    }

    /// Adds what `cut` keeps of the log file `src` as `path`; its record.
    pub fn log_file(&mut self, path: &str, src: &Path, cut: Cut<'_>) -> Result<FileRecord, String> {
        let mut entry = self
            .archive
            .entry(path, &self.redactor)
            .map_err(|e| e.to_string())?;
        cut_file(src, cut, &mut entry)
            .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        let bytes = entry.finish().map_err(|e| e.to_string())?;
        Ok(FileRecord {
            path: path.to_string(),
            bytes,
        })
    }

    /// Adds a text file; its record.
    pub fn text(&mut self, path: &str, text: &str) -> Result<FileRecord, String> {
        let bytes = self
            .archive
            .add_text(path, text, &self.redactor)
            .map_err(|e| e.to_string())?;
        Ok(FileRecord {
            path: path.to_string(),
            bytes,
        })
    }
}

/// Makes the bundle described by `opts`; see the module header.
pub async fn dump(opts: &DumpOptions, progress: &dyn Progress) -> Result<Summary, DumpError> {
    let started_ns = now_ns();
    let since_ns =
        started_ns.saturating_sub(i64::try_from(opts.since.as_nanos()).unwrap_or(i64::MAX));
    let local = opts.local_state_dir.as_ref().map(LocalCluster::new);

    // ---- phase 1: inputs
    let mut cluster = None;
    let mut client = None;
    if opts.resource != Resource::Etcd {
        let url = opts.rest_url.as_deref().ok_or_else(|| {
            DumpError::NoRest("pass the REST endpoint with --rest http://IP:PORT".into())
        })?;
        let rest = RestClient::new(
            url,
            RestClientOptions {
                timeout: opts.timeout,
                bearer_token: opts.bearer_token.clone(),
                ..Default::default()
            },
        )
        .map_err(|e| DumpError::NoRest(format!("invalid REST endpoint {url}: {}", e.message)))?;
        let read = Cluster::read(&rest).await.map_err(|e| match e {
            DumpError::Rest { what, error } => DumpError::Rest {
                what: format!("{what} (at {url})"),
                error,
            },
            other => other,
        })?;
        cluster = Some(read);
        client = Some(rest);
    }
    let selection = match &cluster {
        Some(c) => topology::select(c, &opts.resource)?,
        None => Selection {
            everything: true,
            ..Selection::default()
        },
    };
    let store_endpoint = opts
        .store_endpoint
        .clone()
        .or_else(|| local.as_ref().and_then(LocalCluster::store_endpoint));
    let store = match &store_endpoint {
        Some(endpoint) => Some(StoreClient::connect(endpoint, opts.timeout).await?),
        None if opts.resource == Resource::Etcd => {
            return Err(DumpError::NoStore(
                "pass the store's address with -e HOST:PORT".into(),
            ))
        }
        None => None,
    };
    let kube = match &opts.kube {
        Some(k) if opts.resource != Resource::Etcd => {
            Some(crate::kubernetes::connect(k, opts.timeout).await?)
        }
        _ => None,
    };
    let stem = format!(
        "mayastor-{}",
        mayastor_common::time::format_for_file_name(started_ns / 1_000_000)
    );
    let archive = Archive::create(&opts.output_dir, &stem, opts.format)?;

    // ---- phase 2: collectors
    let mut known = Vec::new();
    known.extend(opts.bearer_token.clone());
    known.extend(kube.iter().flat_map(|k| k.credentials.iter().cloned()));
    let mut bundle = Bundle {
        archive,
        redactor: Redactor::new(known),
        records: Vec::new(),
        tool_log: Vec::new(),
        progress,
        begun: 0,
        planned: 0,
    };
    bundle.log(format!(
        "dump {} version {} into {}",
        opts.resource,
        env!("CARGO_PKG_VERSION"),
        bundle.archive.final_path().display()
    ));
    let logs_wanted = opts.collect_logs && opts.resource != Resource::Etcd;
    let local_logs = match (&local, logs_wanted) {
        (Some(local), true) => local.logs().map_or(1, |logs| {
            logs.iter()
                .filter(|l| match &l.node {
                    Some(node) => selection.everything || selection.nodes.contains(node),
                    None => true,
                })
                .count()
        }),
        _ => 0,
    };
    let loki_containers = match (&opts.loki_endpoint, logs_wanted) {
        (Some(_), true) => crate::loki::DEFAULT_CONTAINERS.len(),
        _ => 0,
    };
    bundle.plan_more(
        usize::from(cluster.is_some())
            + usize::from(cluster.is_some() && !selection.volumes.is_empty())
            + 1
            + usize::from(!logs_wanted && opts.resource != Resource::Etcd)
            + local_logs
            + loki_containers,
    );
    let markers = selection.markers(&opts.resource);
    let kube_source: Option<String> = kube.as_ref().map(|k| k.server.clone());
    if let (Some(cluster), Some(client)) = (&cluster, &client) {
        collect_topology(&mut bundle, cluster, client, &selection, opts).await;
    }
    if let Some(mut store) = store {
        collect_store(&mut bundle, &mut store, markers.as_deref()).await;
    } else {
        bundle.skip(
            "store",
            "no store endpoint (pass -e HOST:PORT to include the store)",
        );
    }
    if let Some(kube) = &kube {
        crate::kubernetes::collect(&mut bundle, kube, opts, &selection, since_ns).await;
    }
    if !logs_wanted {
        if opts.resource != Resource::Etcd {
            bundle.skip("logs", "log collection disabled");
        }
    } else {
        if let Some(local) = &local {
            collect_local_logs(
                &mut bundle,
                local,
                &selection,
                markers.as_deref(),
                since_ns,
                opts,
            )
            .await;
        }
        if let Some(url) = &opts.loki_endpoint {
            let loki = crate::loki::LokiSource::Url(url.clone());
            let containers: Vec<String> = crate::loki::DEFAULT_CONTAINERS
                .iter()
                .map(|c| c.to_string())
                .collect();
            crate::loki::collect(&mut bundle, &loki, opts, &selection, since_ns, &containers).await;
        }
    }

    // ---- closing files
    let manifest = Manifest {
        tool: "kubectl-mayastor dump".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        created: rfc3339(started_ns),
        resource: opts.resource.to_string(),
        archive_format: opts.format.extension().into(),
        logs_since: rfc3339(since_ns),
        max_log_bytes: opts.max_log_bytes,
        sources: Sources {
            rest: opts.rest_url.clone(),
            store: store_endpoint.clone(),
            local_state_dir: opts
                .local_state_dir
                .as_ref()
                .map(|p| p.display().to_string()),
            kubernetes: kube_source,
            loki: opts.loki_endpoint.clone(),
        },
        collectors: bundle.records.clone(),
        redactions: bundle.redactor.counts(),
        partial: bundle.records.iter().any(|r| r.outcome == "failed"),
    };
    let failed = manifest.failures().count();
    bundle.log(if failed == 0 {
        "all collectors succeeded".to_string()
    } else {
        format!("partially collected: {failed} collector(s) failed")
    });
    let tool_log = bundle.tool_log.join("\n") + "\n";
    bundle
        .archive
        .add_text("support_tool_logs.log", &tool_log, &bundle.redactor)?;
    let mut manifest = manifest;
    // The closing files' own redactions are counted too.
    let readme_text = readme(&manifest);
    bundle
        .archive
        .add_text("README.txt", &readme_text, &bundle.redactor)?;
    manifest.redactions = bundle.redactor.counts();
    let json =
        serde_json::to_string_pretty(&manifest).map_err(|e| DumpError::Internal(e.to_string()))?;
    bundle
        .archive
        .add_text("manifest.json", &(json + "\n"), &bundle.redactor)?;
    let path = bundle.archive.finish()?;
    Ok(Summary { path, manifest })
}

async fn collect_topology(
    bundle: &mut Bundle<'_>,
    cluster: &Cluster,
    client: &RestClient,
    selection: &Selection,
    opts: &DumpOptions,
) {
    let source = opts.rest_url.clone().unwrap_or_default();
    let t = bundle.begin("topology");
    let result = (|| {
        let mut files = Vec::new();
        for file in topology::files(cluster, selection).map_err(|e| e.to_string())? {
            files.push(bundle.text(&file.path, &file.json)?);
        }
        Ok(files)
    })();
    bundle.end("topology", &source, t, result);

    if selection.volumes.is_empty() {
        return;
    }
    let t = bundle.begin("rebuild-history");
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for id in &selection.volumes {
        match client.get_rebuild_history(id).await {
            Ok(history) => match topology::rebuild_history_file(&history) {
                Ok(file) => match bundle.text(&file.path, &file.json) {
                    Ok(rec) => files.push(rec),
                    Err(e) => errors.push(format!("volume {id}: {e}")),
                },
                Err(e) => errors.push(format!("volume {id}: {e}")),
            },
            Err(e) => errors.push(format!("volume {id}: {e}")),
        }
    }
    let result = if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors.join("; "))
    };
    bundle.end("rebuild-history", &source, t, result);
}

async fn collect_store(
    bundle: &mut Bundle<'_>,
    store: &mut StoreClient,
    markers: Option<&[String]>,
) {
    let t = bundle.begin("store");
    let endpoint = store.endpoint().to_string();
    let keep = |key: &[u8], value: &[u8]| match markers {
        None => true,
        Some(markers) => markers.iter().any(|m| {
            let m = m.as_bytes();
            contains(key, m) || contains(value, m)
        }),
    };
    let result = async {
        let mut entry = bundle
            .archive
            .entry("etcd_dump", &bundle.redactor)
            .map_err(|e| e.to_string())?;
        let stats = store
            .dump(&mut entry, &keep)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = entry.finish().map_err(|e| e.to_string())?;
        Ok::<_, String>((stats, bytes))
    }
    .await;
    let result = result.map(|(stats, bytes)| {
        bundle.log(format!(
            "store: {} keys in {} page(s)",
            stats.keys, stats.pages
        ));
        vec![FileRecord {
            path: "etcd_dump".into(),
            bytes,
        }]
    });
    bundle.end("store", &endpoint, t, result);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

async fn collect_local_logs(
    bundle: &mut Bundle<'_>,
    local: &LocalCluster,
    selection: &Selection,
    markers: Option<&[String]>,
    since_ns: i64,
    opts: &DumpOptions,
) {
    let logs = match local.logs() {
        Ok(logs) => logs,
        Err(e) => {
            let t = bundle.begin("logs/local");
            let dir = local.logs_dir().display().to_string();
            bundle.end(
                "logs/local",
                &dir,
                t,
                Err(format!("cannot list {dir}: {e}")),
            );
            return;
        }
    };
    let filter =
        |line: &str| markers.is_some_and(|m| m.iter().any(|id| line.contains(id.as_str())));
    for log in logs {
        // Engine logs of the concerned nodes whole; the control plane's
        // only where they mention the concerned objects.
        let line_filter: Option<&(dyn Fn(&str) -> bool + Sync)> = match (&log.node, markers) {
            (Some(node), _) if !selection.everything && !selection.nodes.contains(node) => continue,
            (Some(_), _) | (None, None) => None,
            (None, Some(_)) => Some(&filter),
        };
        let name = format!("logs/local/{}", log.component);
        let t = bundle.begin(&name);
        let cut = Cut {
            since_ns,
            max_bytes: opts.max_log_bytes,
            line_filter,
        };
        let result = bundle
            .log_file(&log.archive_path, &log.path, cut)
            .map(|f| vec![f]);
        bundle.end(&name, &log.path.display().to_string(), t, result);
        // Let a Ctrl-C through between files.
        tokio::task::yield_now().await;
    }
}

/// `dump etcd --stdout`: the store dump, redacted, to `out`.
pub async fn dump_store_to(
    endpoint: &str,
    timeout: std::time::Duration,
    out: &mut dyn Write,
) -> Result<crate::store::StoreStats, DumpError> {
    let mut store = StoreClient::connect(endpoint, timeout).await?;
    let redactor = Redactor::default();
    let mut writer = RedactingWriter::new(out, &redactor);
    let stats = store.dump(&mut writer, &|_, _| true).await?;
    writer.finish().map_err(|e| DumpError::Archive {
        what: "standard output".into(),
        source: e,
    })?;
    Ok(stats)
}
