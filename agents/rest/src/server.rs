//! The `api-rest` server: the [`router`] over a [`RestClient`] that
//! forwards every call to the core agent, served over http and optionally
//! https (rustls with the ring provider).
//!
//! Both listeners are bound before anything is served, so a taken port is
//! reported at start. [`run`] returns when its shutdown future completes:
//! the listeners close at once and requests in flight get
//! [`GRACE_PERIOD`] to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use openapi::{CoreApi, RestClient, RestClientOptions, RestError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::router::{router, RouterOptions};

/// How long requests in flight may run on after shutdown was asked.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Where and how to serve.
#[derive(Clone)]
pub struct ServerConfig {
    /// Base URL of the core agent's REST endpoint.
    pub core_endpoint: String,
    /// Plain http listener.
    pub http: SocketAddr,
    /// Optional https listener.
    pub https: Option<TlsEndpoint>,
    /// Token clients must present (see [`RouterOptions`]); also sent to the
    /// core agent with every forwarded call.
    pub bearer_token: Option<String>,
    /// Timeout of one call forwarded to the core agent.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("core_endpoint", &self.core_endpoint)
            .field("http", &self.http)
            .field("https", &self.https)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// An https listener with its certificate chain and key (PEM files).
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the server could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid core agent endpoint: {0}")]
    CoreEndpoint(#[source] RestError),
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("invalid TLS certificate or key: {0}")]
    Tls(#[source] rustls::Error),
    #[error("cannot listen for {scheme} on {addr}: {source}")]
    Bind {
        scheme: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the {scheme} server on {addr} failed: {source}")]
    Serve {
        scheme: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves until `shutdown` completes (or a listener fails).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let client = RestClient::new(
        &config.core_endpoint,
        RestClientOptions {
            timeout: config.request_timeout,
            // The core agent, given the same token, refuses calls without it.
            bearer_token: config.bearer_token.clone(),
            ..Default::default()
        },
    )
    .map_err(ServeError::CoreEndpoint)?;
    let api: Arc<dyn CoreApi> = Arc::new(client);
    let app = router(
        api,
        RouterOptions {
            bearer_token: config.bearer_token.clone(),
            guard_every_route: false,
        },
    );

    let tls = match &config.https {
        Some(endpoint) => Some((endpoint.addr, tls_config(&endpoint.cert, &endpoint.key)?)),
        None => None,
    };

    let http_listener = bind("http", config.http)?;
    let https_listener = match &tls {
        Some((addr, _)) => Some(bind("https", *addr)?),
        None => None,
    };

    let mut servers = tokio::task::JoinSet::new();
    let mut handles = Vec::new();

    let handle = Handle::new();
    handles.push(handle.clone());
    let addr = local_addr(&http_listener, config.http);
    let server = axum_server::from_tcp(http_listener).map_err(|source| ServeError::Bind {
        scheme: "http",
        addr,
        source,
    })?;
    let service = app.clone().into_make_service();
    servers.spawn(async move {
        let result = server.handle(handle).serve(service).await;
        ("http", addr, result)
    });
    tracing::info!(%addr, core = %config.core_endpoint, "serving the REST API over http");

    if let (Some(listener), Some((configured, tls))) = (https_listener, tls) {
        let handle = Handle::new();
        handles.push(handle.clone());
        let addr = local_addr(&listener, configured);
        let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
            .map_err(|source| ServeError::Bind {
                scheme: "https",
                addr,
                source,
            })?;
        let service = app.into_make_service();
        servers.spawn(async move {
            let result = server.handle(handle).serve(service).await;
            ("https", addr, result)
        });
        tracing::info!(%addr, "serving the REST API over https");
    }

    tokio::pin!(shutdown);
    let failure = tokio::select! {
        () = &mut shutdown => None,
        Some(joined) = servers.join_next() => Some(joined),
    };
    for handle in &handles {
        handle.graceful_shutdown(Some(GRACE_PERIOD));
    }
    if let Some(joined) = failure {
        servers.abort_all();
        return match joined {
            Ok((scheme, addr, Err(source))) => Err(ServeError::Serve {
                scheme,
                addr,
                source,
            }),
            Ok((scheme, addr, Ok(()))) => Err(ServeError::Serve {
                scheme,
                addr,
                source: std::io::Error::other("stopped unexpectedly"),
            }),
            Err(join_error) => Err(ServeError::Serve {
                scheme: "http",
                addr: config.http,
                source: std::io::Error::other(join_error.to_string()),
            }),
        };
    }
    tracing::info!("shutting down the REST API");
    while let Some(joined) = servers.join_next().await {
        if let Ok((scheme, addr, Err(source))) = joined {
            return Err(ServeError::Serve {
                scheme,
                addr,
                source,
            });
        }
    }
    Ok(())
}

fn bind(scheme: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let bind_error = |source| ServeError::Bind {
        scheme,
        addr,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

fn local_addr(listener: &std::net::TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

/// The rustls server configuration of a PEM certificate chain and key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ServeError::Pem {
            what: "the certificate",
            path: cert.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ServeError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| ServeError::Pem {
        what: "the private key",
        path: key.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServeError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ServeError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
