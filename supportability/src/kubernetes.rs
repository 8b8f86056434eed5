//! Kubernetes: the release's resources as YAML, its pods' logs through the
//! API server, and Loki through the API server's service proxy.
//!
//! ```text
//!  kubeconfig (-k, KUBECONFIG, ~/.kube/config) ──► Client (phase 1)
//!     │ its tokens, passwords, client keys ──► Redactor (never archived)
//!  Secrets of the namespace: values learnt ──► Redactor (never archived)
//!  DaemonSets, Deployments, StatefulSets ──► k8s_resources/configurations/<name>.yaml
//!  DiskPools ─────────────────────────────► k8s_resources/configurations/k8s_diskPools.yaml
//!  StorageClasses, PVs, PVCs (our provisioner), nodes ─► k8s_resources/configurations/k8s_*.yaml
//!  pods, events ──────────────────────────► k8s_resources/pods.yaml, k8s_events.{yaml,json}
//!  pod logs (current, previous) ──────────► logs/<group>/<node>-<pod>-<container>[-previous].log
//!  Service app=loki (service proxy) ──────► crate::loki
//! ```
//!
//! Modules: [`resources`] lists and renders objects; [`logs`] streams
//! container logs. Reading the kubeconfig is bad input when it fails
//! (nothing is written); everything after is a collector whose failure is
//! recorded and the dump goes on. Secrets are never collected: their
//! values are learnt by the redactor so that a pod printing one, or an
//! annotation holding one, is redacted too.

pub mod logs;
pub mod resources;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Secret, Service};

use crate::bundle::Bundle;
use crate::topology::Selection;
use crate::{DumpError, DumpOptions, KubeOptions};

/// The provisioner (CSI driver name) of our StorageClasses and PVs.
pub const PROVISIONER: &str = "io.openebs.csi-mayastor";

/// A connected Kubernetes cluster.
pub struct Kube {
    pub client: kube::Client,
    /// The API server's URL (for the manifest).
    pub server: String,
    pub namespace: String,
    /// Credentials read from the kubeconfig (for the redactor).
    pub credentials: Vec<String>,
}

/// The kubeconfig files in effect: `path`, else every file of
/// `KUBECONFIG`, else `~/.kube/config`.
fn kubeconfig_files(path: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = path {
        return vec![path.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).collect();
    }
    std::env::var_os("HOME")
        .map(|home| vec![PathBuf::from(home).join(".kube/config")])
        .unwrap_or_default()
}

/// Keys of a kubeconfig whose values are credentials.
const CREDENTIAL_KEYS: &[&str] = &[
    "token",
    "password",
    "client-key-data",
    "id-token",
    "refresh-token",
    "access-token",
    "secret",
];

/// Every credential a kubeconfig holds (and the content of its
/// `token-file`s), so the redactor removes them wherever they show up.
pub fn kubeconfig_credentials(text: &str) -> Vec<String> {
    fn walk(value: &serde_yaml::Value, out: &mut Vec<String>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (key, v) in map {
                    let key = key.as_str().unwrap_or_default();
                    match v.as_str() {
                        Some(s) if CREDENTIAL_KEYS.contains(&key) => {
                            out.push(s.to_string());
                            if key == "client-key-data" {
                                out.extend(decoded_lines(s));
                            }
                        }
                        Some(s) if key == "token-file" || key == "tokenFile" => {
                            if let Ok(token) = std::fs::read_to_string(s) {
                                out.push(token.trim().to_string());
                            }
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        walk(&value, &mut out);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The lines of a base64 value's decoded text (a PEM key's body lines).
fn decoded_lines(b64: &str) -> Vec<String> {
    base64_decode(b64)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(|text| pem_body_lines(&text))
        .unwrap_or_default()
}

/// Base64 (as Kubernetes writes `data` fields) decoded; `None` when it
/// is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    serde_json::from_value::<k8s_openapi::ByteString>(serde_json::Value::String(
        text.trim().to_string(),
    ))
    .ok()
    .map(|b| b.0)
}

/// Base64 as Kubernetes writes `data` fields.
pub fn base64_encode(bytes: &[u8]) -> String {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The client configuration of a kubeconfig: `path`, else `KUBECONFIG`,
/// else `~/.kube/config`, with `timeout` on connecting, reading and
/// writing. The one home of this rule for every tool that talks to the
/// Kubernetes API; the error is one line naming the file.
pub async fn client_config(
    path: Option<&Path>,
    timeout: std::time::Duration,
) -> Result<kube::Config, String> {
    let options = kube::config::KubeConfigOptions::default();
    let (kubeconfig, what) = match path {
        Some(path) => (
            kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?,
            format!("kubeconfig {}", path.display()),
        ),
        None => (
            kube::config::Kubeconfig::read()
                .map_err(|e| format!("no usable kubeconfig (KUBECONFIG or ~/.kube/config): {e}"))?,
            "kubeconfig".to_string(),
        ),
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Ok(config)
}

/// Phase 1: reads the kubeconfig and sets up the client (no request yet).
pub async fn connect(opts: &KubeOptions, timeout: std::time::Duration) -> Result<Kube, DumpError> {
    let bad = |e: String| DumpError::Kube(e);
    let config = client_config(opts.kubeconfig.as_deref(), timeout)
        .await
        .map_err(bad)?;
    let what = match &opts.kubeconfig {
        Some(path) => format!("kubeconfig {}", path.display()),
        None => "kubeconfig".to_string(),
    };
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config).map_err(|e| {
        bad(format!(
            "cannot set up a Kubernetes client from the {what}: {e}"
        ))
    })?;
    let mut credentials = Vec::new();
    for file in kubeconfig_files(opts.kubeconfig.as_deref()) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            credentials.extend(kubeconfig_credentials(&text));
        }
    }
    Ok(Kube {
        client,
        server,
        namespace: opts.namespace.clone(),
        credentials,
    })
}

/// Runs every Kubernetes collector.
pub(crate) async fn collect(
    bundle: &mut Bundle<'_>,
    kube: &Kube,
    opts: &DumpOptions,
    selection: &Selection,
    since_ns: i64,
) {
    // The Secrets, then the resource collectors.
    bundle.plan_more(1 + resources::COLLECTORS);
    learn_secrets(bundle, kube).await;
    resources::collect(bundle, kube).await;
    if !opts.collect_logs || opts.resource == crate::Resource::Etcd {
        return;
    }
    let containers = logs::collect(bundle, kube, opts, selection).await;
    if opts.loki_endpoint.is_none() {
        match find_loki(kube).await {
            Ok(Some(source)) => {
                let mut containers = containers;
                if containers.is_empty() {
                    containers = crate::loki::DEFAULT_CONTAINERS
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                }
                crate::loki::collect(bundle, &source, opts, selection, since_ns, &containers).await;
            }
            Ok(None) => bundle.skip(
                "logs/loki",
                &format!(
                    "no Service labelled app=loki in namespace {} (pass --loki-endpoint)",
                    kube.namespace
                ),
            ),
            Err(e) => {
                let t = bundle.begin("logs/loki");
                bundle.end("logs/loki", &kube.server, t, Err(e));
            }
        }
    }
}

/// Keys of Secrets whose values are public or ordinary words (learning
/// them would redact every mention of the namespace or a user name).
const NOT_SECRET_KEYS: &[&str] = &["ca.crt", "tls.crt", "namespace", "username", "user"];

/// The lines of a multi-line value long enough to be key material (a PEM
/// body), without its `-----` markers.
fn pem_body_lines(text: &str) -> Vec<String> {
    if !text.trim().contains('\n') {
        return Vec::new();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        .map(String::from)
        .collect()
}

/// The values of the namespace's Secrets go to the redactor: never to the
/// archive, even when a pod prints one.
async fn learn_secrets(bundle: &mut Bundle<'_>, kube: &Kube) {
    let name = "k8s/Secret";
    let t = bundle.begin(name);
    let api: kube::Api<Secret> = kube::Api::namespaced(kube.client.clone(), &kube.namespace);
    let result = match api.list(&Default::default()).await {
        Ok(list) => {
            let mut learnt = 0usize;
            for secret in &list.items {
                let mut values: Vec<String> = Vec::new();
                let secret_entries = secret
                    .data
                    .iter()
                    .flatten()
                    .filter(|(k, _)| !NOT_SECRET_KEYS.contains(&k.as_str()));
                for (_, v) in secret_entries {
                    let raw = &v.0;
                    if let Ok(text) = std::str::from_utf8(raw) {
                        values.push(text.trim().to_string());
                        values.extend(pem_body_lines(text));
                    }
                    values.push(base64_encode(raw));
                }
                values.extend(
                    secret
                        .string_data
                        .iter()
                        .flatten()
                        .filter(|(k, _)| !NOT_SECRET_KEYS.contains(&k.as_str()))
                        .map(|(_, v)| v.clone()),
                );
                for value in values {
                    bundle.redactor.learn(&value);
                    learnt += 1;
                }
            }
            bundle.log(format!(
                "k8s/Secret: {} Secret(s), {learnt} value(s) learnt for redaction; Secrets are not collected",
                list.items.len()
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(format!(
            "cannot list Secrets of namespace {} (their values could not be redacted from logs): {e}",
            kube.namespace
        )),
    };
    bundle.end(name, &kube.server, t, result);
}

/// The Service labelled `app=loki` in the namespace, as a service-proxy
/// path.
async fn find_loki(kube: &Kube) -> Result<Option<crate::loki::LokiSource>, String> {
    let api: kube::Api<Service> = kube::Api::namespaced(kube.client.clone(), &kube.namespace);
    let list = api
        .list(&kube::api::ListParams::default().labels("app=loki"))
        .await
        .map_err(|e| format!("cannot list Services of namespace {}: {e}", kube.namespace))?;
    let Some(service) = list.items.first() else {
        return Ok(None);
    };
    let name = service.metadata.name.clone().unwrap_or_default();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.port == 3100 || p.name.as_deref() == Some("http-metrics"))
        .or_else(|| ports.first())
        .map(|p| p.port)
        .unwrap_or(3100);
    let path = format!(
        "/api/v1/namespaces/{}/services/{name}:{port}/proxy",
        kube.namespace
    );
    Ok(Some(crate::loki::LokiSource::Proxy(
        kube.client.clone(),
        path,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_a_kubeconfig() {
        let text = r#"
apiVersion: v1
kind: Config
users:
- name: admin
  user:
    token: abcdef0123456789
- name: basic
  user:
    username: me
    password: hunter2hunter2
- name: cert
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UUlCQURBTkJna3Foa2lHOXcwQkFRRUZBQVNDCi0tLS0tRU5EIFBSSVZBVEUgS0VZLS0tLS0K
"#;
        let found = kubeconfig_credentials(text);
        assert!(found.contains(&"abcdef0123456789".to_string()), "{found:?}");
        assert!(found.contains(&"hunter2hunter2".to_string()), "{found:?}");
        assert!(
            found.contains(&"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC".to_string()),
            "{found:?}"
        );
        assert!(!found.iter().any(|f| f == "me" || f == "Q0VSVA=="));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("a b"), None);
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }
}
