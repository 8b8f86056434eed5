//! Where the REST API is, in this order:
//!
//! 1. `--rest URL`;
//! 2. a local cluster: the file
//!    `${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-local/rest-endpoint`
//!    (one line, `http://IP:PORT`), written by `mayastor-local up` and
//!    removed by `mayastor-local down`;
//! 3. the kubeconfig (`-k`, else `KUBECONFIG`, else `~/.kube/config`): the
//!    `api-rest` Service of the namespace (`-n`) and its Endpoints. A ready
//!    endpoint address with the Service's `http` port is used, else the
//!    Service's cluster IP and port.
//!
//! The Kubernetes API is the only thing this module talks to; it is only
//! asked when steps 1 and 2 give nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::{Endpoints, Service};

/// The Service in front of the REST API.
pub const SERVICE_NAME: &str = "api-rest";
/// The REST API's http port.
pub const REST_HTTP_PORT: i32 = 8081;

/// A REST endpoint and where it was found (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    LocalCluster(PathBuf),
    Kubernetes { namespace: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "given with --rest"),
            Source::LocalCluster(path) => {
                write!(f, "of the local cluster, from {}", path.display())
            }
            Source::Kubernetes { namespace } => {
                write!(f, "of the {SERVICE_NAME} Service in namespace {namespace}")
            }
        }
    }
}

/// How to pass the endpoint by hand, appended to discovery errors.
pub const REST_HINT: &str = "pass the REST endpoint with --rest http://IP:PORT";

/// The file a local cluster writes its endpoint to, under `data_home`
/// (`XDG_DATA_HOME`, else `$HOME/.local/share`).
pub fn local_endpoint_file() -> Option<PathBuf> {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".local/share"))
        })?;
    Some(data_home.join("mayastor-local").join("rest-endpoint"))
}

/// Steps 1 and 2: no network.
pub fn without_kubernetes(rest: Option<&str>) -> anyhow::Result<Option<Endpoint>> {
    if let Some(url) = rest {
        return Ok(Some(Endpoint {
            url: url.to_string(),
            source: Source::Flag,
        }));
    }
    let Some(path) = local_endpoint_file() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let url = text.lines().next().unwrap_or("").trim().to_string();
            if url.is_empty() {
                return Err(anyhow!(
                    "the local cluster's endpoint file {} is empty; {REST_HINT}",
                    path.display()
                ));
            }
            Ok(Some(Endpoint {
                url,
                source: Source::LocalCluster(path),
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(
            "cannot read the local cluster's endpoint file {}: {e}; {REST_HINT}",
            path.display()
        )),
    }
}

/// Step 3: the `api-rest` Service through the Kubernetes API.
pub async fn from_kubernetes(
    kubeconfig: Option<&Path>,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<Endpoint> {
    let config = supportability::kubernetes::client_config(kubeconfig, timeout)
        .await
        .map_err(|e| anyhow!(e))?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/');
    let client = kube::Client::try_from(config)
        .context("cannot set up a Kubernetes client from the kubeconfig")?;
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), namespace);
    let service = services
        .get_opt(SERVICE_NAME)
        .await
        .map_err(|e| anyhow!("cannot read Service {namespace}/{SERVICE_NAME} from {server}: {e}"))?
        .ok_or_else(|| {
            anyhow!(
                "no Service {SERVICE_NAME} in namespace {namespace} of {server} (use -n for another namespace)"
            )
        })?;
    let endpoints: kube::Api<Endpoints> = kube::Api::namespaced(client, namespace);
    let endpoints = endpoints.get_opt(SERVICE_NAME).await.map_err(|e| {
        anyhow!("cannot read Endpoints {namespace}/{SERVICE_NAME} from {server}: {e}")
    })?;
    let url = endpoint_url(&service, endpoints.as_ref()).ok_or_else(|| {
        anyhow!("Service {namespace}/{SERVICE_NAME} has neither a ready endpoint nor a cluster IP")
    })?;
    Ok(Endpoint {
        url,
        source: Source::Kubernetes {
            namespace: namespace.to_string(),
        },
    })
}

/// The REST URL from the Service and its Endpoints: the first ready
/// address of a subset that has the Service's `http` port, with that
/// port's number there; else the cluster IP with the Service's `http`
/// port.
///
/// The Service's `http` port is the one named `http`, else the one
/// numbered 8081, else its only port. Endpoints name their ports as the
/// Service does, so a subset's port is matched by that name (a Service
/// with a single unnamed port has a single unnamed port in its
/// Endpoints); a subset without it (only `https`, say) is not used.
pub fn endpoint_url(service: &Service, endpoints: Option<&Endpoints>) -> Option<String> {
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let service_port = service_ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| service_ports.iter().find(|p| p.port == REST_HTTP_PORT))
        .or(match service_ports {
            [only] => Some(only),
            _ => None,
        });
    let port_name = |name: Option<&str>| name.filter(|n| !n.is_empty()).map(str::to_string);
    // Without a Service port to match (none declared), the Endpoints' own
    // `http` port, else 8081.
    let wanted = service_port.map(|sp| port_name(sp.name.as_deref()));

    for subset in endpoints
        .and_then(|e| e.subsets.as_deref())
        .unwrap_or_default()
    {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = match &wanted {
            Some(name) => ports.iter().find(|p| port_name(p.name.as_deref()) == *name),
            None => ports
                .iter()
                .find(|p| p.name.as_deref() == Some("http"))
                .or_else(|| ports.iter().find(|p| p.port == REST_HTTP_PORT)),
        };
        let address = subset
            .addresses
            .as_deref()
            .and_then(<[_]>::first)
            .map(|a| a.ip.as_str());
        if let (Some(ip), Some(port)) = (address, port) {
            return Some(http_url(ip, port.port));
        }
    }

    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")?;
    let port = service_port.map_or(REST_HTTP_PORT, |p| p.port);
    Some(http_url(cluster_ip, port))
}

fn http_url(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec,
    };

    fn service(cluster_ip: Option<&str>, ports: &[(&str, i32)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(str::to_string),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| ServicePort {
                            name: Some(name.to_string()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoints(ready: &[&str], not_ready: &[&str], ports: &[(&str, i32)]) -> Endpoints {
        let addresses = |ips: &[&str]| {
            Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            )
        };
        Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: addresses(ready),
                not_ready_addresses: addresses(not_ready),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| EndpointPort {
                            name: Some(name.to_string()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ready_endpoint_with_http_port() {
        let svc = service(Some("10.0.0.9"), &[("https", 8080), ("http", 8081)]);
        let eps = endpoints(&["127.0.0.5"], &[], &[("https", 8080), ("http", 8081)]);
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://127.0.0.5:8081")
        );
    }

    #[test]
    fn cluster_ip_without_ready_endpoints() {
        let svc = service(Some("10.0.0.9"), &[("http", 8081)]);
        let eps = endpoints(&[], &["127.0.0.5"], &[("http", 8081)]);
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://10.0.0.9:8081")
        );
        assert_eq!(
            endpoint_url(&svc, None).as_deref(),
            Some("http://10.0.0.9:8081")
        );
        let headless = service(Some("None"), &[("http", 8081)]);
        assert_eq!(endpoint_url(&headless, None), None);
    }

    #[test]
    fn subset_without_the_http_port_is_not_used() {
        let svc = service(Some("10.0.0.9"), &[("https", 8080), ("http", 8081)]);
        let https_only = endpoints(&["10.1.1.1"], &[], &[("https", 8080)]);
        let both = endpoints(&["10.1.1.2"], &[], &[("https", 8080), ("http", 8081)]);
        let mut eps = https_only.clone();
        eps.subsets.as_mut().unwrap().extend(both.subsets.unwrap());
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://10.1.1.2:8081")
        );
        // Not the https port as plain http: the cluster IP instead.
        assert_eq!(
            endpoint_url(&svc, Some(&https_only)).as_deref(),
            Some("http://10.0.0.9:8081")
        );
    }

    #[test]
    fn single_unnamed_port() {
        // Service port 80 to target port 8081: the Endpoints hold 8081.
        let svc = service(Some("10.0.0.9"), &[("", 80)]);
        let eps = endpoints(&["10.1.1.1"], &[], &[("", 8081)]);
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://10.1.1.1:8081")
        );
        let not_ready = endpoints(&[], &["10.1.1.1"], &[("", 8081)]);
        assert_eq!(
            endpoint_url(&svc, Some(&not_ready)).as_deref(),
            Some("http://10.0.0.9:80")
        );
    }

    #[test]
    fn service_without_ports() {
        let svc = service(Some("10.0.0.9"), &[]);
        let eps = endpoints(&["10.1.1.1"], &[], &[("metrics", 9090), ("", 8081)]);
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://10.1.1.1:8081")
        );
        assert_eq!(
            endpoint_url(&svc, None).as_deref(),
            Some("http://10.0.0.9:8081")
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let svc = service(None, &[("http", 8081)]);
        let eps = endpoints(&["::1"], &[], &[("http", 9000)]);
        assert_eq!(
            endpoint_url(&svc, Some(&eps)).as_deref(),
            Some("http://[::1]:9000")
        );
    }
}
