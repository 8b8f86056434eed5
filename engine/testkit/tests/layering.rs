//! The dependency direction of the workspace (DESIGN.md section 1), read
//! from `cargo metadata`:
//!
//! ```text
//! engine  <-(engine/api only)-  agents  <-(REST client `openapi` only)-  tools
//! ```
//!
//! tools being `csi/`, `kubectl-mayastor/`, `tui/`, `supportability/`,
//! `upgrade/` and `deploy/`. Every crate may use the bottom-level crates
//! (`engine/common`, `engine/version`); the exceptions the design names are
//! listed in [`ALLOWED_EXCEPTIONS`], each with its reason. Dev-dependencies
//! may add the test kit and the host side of NVMe/TCP (tests act as a host).
//! Heavy or privileged external crates stay where they belong
//! ([`EXTERNAL_HOMES`]).

use std::{collections::BTreeMap, path::Path, process::Command};

/// Where a workspace crate sits in the layering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// `engine/common`, `engine/version`, `engine/testkit`: usable by all.
    Bottom,
    /// `engine/api`: the gRPC contract (and NQN builders, default ports).
    EngineApi,
    /// Every other crate under `engine/`.
    Engine,
    /// `agents/openapi`: the REST contract and its client.
    RestClient,
    /// Every other crate under `agents/`.
    Agents,
    /// `csi/`, `kubectl-mayastor/`, `tui/`, `supportability/`, `upgrade/`,
    /// `deploy/`.
    Tool,
}

/// Edges outside the plain rule, each named by the design.
const ALLOWED_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "mayastor-local",
        "nvmf-host",
        "the local cluster's demo acts as a host writing over NVMe/TCP",
    ),
    (
        "mayastor-local",
        "blockdev",
        "the local cluster's demo acts as a host writing over NVMe/TCP",
    ),
    (
        "mayastor-local",
        "io-engine-api",
        "the launcher's default ports and its host NQN are the engine's names \
         (DESIGN.md section 2), whose one home is engine/api; nvmf-host links it already",
    ),
    (
        "supportability",
        "io-engine-api",
        "the support bundle reads etcd, whose wire contract lives in engine/api",
    ),
];

/// External crates and the folders allowed to depend on them.
const EXTERNAL_HOMES: &[(&str, &[&str])] = &[
    ("etcd-client", &["agents/store"]),
    ("io-uring", &["engine/blockdev"]),
    (
        "kube",
        &[
            "kubectl-mayastor",
            "supportability",
            "upgrade",
            "csi",
            // The DiskPool operator watches DiskPool resources and writes
            // their status and events: its job is the Kubernetes API.
            "agents/operator-diskpool",
            "agents/ha",
            "deploy",
        ],
    ),
    (
        "k8s-openapi",
        &[
            "kubectl-mayastor",
            "supportability",
            "upgrade",
            "csi",
            // The DiskPool operator watches DiskPool resources and writes
            // their status and events: its job is the Kubernetes API.
            "agents/operator-diskpool",
            "agents/ha",
            "deploy",
        ],
    ),
];

fn layer_of(dir: &str) -> Layer {
    match dir {
        "engine/common" | "engine/version" | "engine/testkit" => Layer::Bottom,
        "engine/api" => Layer::EngineApi,
        "agents/openapi" => Layer::RestClient,
        d if d.starts_with("engine/") => Layer::Engine,
        d if d.starts_with("agents/") => Layer::Agents,
        _ => Layer::Tool,
    }
}

/// Whether a normal (or build) dependency from `from` to `to` keeps the
/// direction.
fn allowed(from: Layer, to: Layer) -> bool {
    use Layer::*;
    match (from, to) {
        (_, Bottom) => true,
        (Bottom, _) => false,
        (Engine | EngineApi, EngineApi | Engine) => true,
        (Engine | EngineApi, _) => false,
        (Agents | RestClient, EngineApi) => true,
        (Agents, Agents | RestClient) => true,
        (RestClient, RestClient) => true,
        (Agents | RestClient, _) => false,
        (Tool, RestClient | Tool) => true,
        (Tool, _) => false,
    }
}

struct Crate {
    dir: String,
    layer: Layer,
    /// (name, kind) of every dependency: kind is "normal", "build" or "dev".
    deps: Vec<(String, String)>,
}

fn workspace() -> BTreeMap<String, Crate> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&out.stdout, &root)
}

fn parse(json: &[u8], root: &Path) -> BTreeMap<String, Crate> {
    let meta: serde_json::Value = serde_json::from_slice(json).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let mut crates = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().expect("name").to_owned();
        let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(root).ok())
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or_default().to_owned(),
                    d["kind"].as_str().unwrap_or("normal").to_owned(),
                )
            })
            .collect();
        let layer = layer_of(&dir);
        crates.insert(name, Crate { dir, layer, deps });
    }
    crates
}

/// Every broken rule, one line each.
fn violations(crates: &BTreeMap<String, Crate>) -> Vec<String> {
    let mut found = Vec::new();
    for (name, c) in crates {
        for (dep, kind) in &c.deps {
            if let Some(target) = crates.get(dep) {
                let ok = if kind == "dev" {
                    allowed(c.layer, target.layer)
                        || matches!(dep.as_str(), "nvmf-host" | "blockdev" | "nvmf-target")
                } else {
                    allowed(c.layer, target.layer)
                        || ALLOWED_EXCEPTIONS
                            .iter()
                            .any(|(from, to, _)| from == name && to == dep)
                };
                if !ok {
                    found.push(format!(
                        "{name} ({}, {:?}) depends on {dep} ({}, {:?}) as a {kind} dependency",
                        c.dir, c.layer, target.dir, target.layer
                    ));
                }
                continue;
            }
            if kind == "dev" {
                continue;
            }
            for (external, homes) in EXTERNAL_HOMES {
                let at_home = homes
                    .iter()
                    .any(|h| c.dir == *h || c.dir.starts_with(&format!("{h}/")));
                if dep == external && !at_home {
                    found.push(format!(
                        "{name} ({}) depends on {dep}, which only {homes:?} may use",
                        c.dir
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn the_workspace_keeps_the_dependency_direction() {
    let crates = workspace();
    assert!(
        crates.len() >= 15,
        "only {} crates found: is the metadata read from the workspace root?",
        crates.len()
    );
    let found = violations(&crates);
    assert!(
        found.is_empty(),
        "forbidden dependencies (DESIGN.md section 1):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_forbidden_edge_is_caught() {
    // The rule itself, on a made-up workspace: a tool linking the core
    // agent, an agent linking the engine, the engine linking the REST
    // client, and kube in the engine are each reported; the allowed edges
    // are not.
    let json = serde_json::json!({ "packages": [
        pkg("kubectl-mayastor", "kubectl-mayastor", &[("agent-core", "normal"), ("openapi", "normal")]),
        pkg("agent-core", "agents/core", &[("io-engine", "normal"), ("io-engine-api", "normal")]),
        pkg("io-engine", "engine/io-engine", &[("openapi", "normal"), ("kube", "normal")]),
        pkg("io-engine-api", "engine/api", &[]),
        pkg("openapi", "agents/openapi", &[]),
        pkg("mayastor-local", "deploy/local", &[("nvmf-host", "normal")]),
        pkg("nvmf-host", "engine/nvmf-host", &[]),
    ]});
    let crates = parse(json.to_string().as_bytes(), Path::new("/ws"));
    let found = violations(&crates);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("agent-core") && found[0].contains("io-engine (engine/io-engine"));
    assert!(found
        .iter()
        .any(|l| l.starts_with("io-engine ") && l.contains("openapi")));
    assert!(found
        .iter()
        .any(|l| l.starts_with("io-engine ") && l.contains("kube")));
    assert!(found
        .iter()
        .any(|l| l.starts_with("kubectl-mayastor") && l.contains("agent-core")));
}

fn pkg(name: &str, dir: &str, deps: &[(&str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "manifest_path": format!("/ws/{dir}/Cargo.toml"),
        "dependencies": deps.iter().map(|(d, k)| serde_json::json!({
            "name": d,
            "kind": if *k == "normal" { serde_json::Value::Null } else { serde_json::json!(k) },
        })).collect::<Vec<_>>(),
    })
}
