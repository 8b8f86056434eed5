//! The HTTP server: `GET /metrics` asks the engine and renders the page;
//! every other path is 404. The engine's answers are never cached: a
//! failed or late answer gives a page with `io_engine_up 0` and nothing
//! else, and one log line when the engine goes away (and one when it
//! comes back), not one per scrape.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use tokio::net::TcpListener;

use crate::{engine::EngineClient, metrics};

/// What the exporter serves.
pub struct ExporterConfig {
    /// The `node` label; `None`: the node name the engine reports.
    pub node_name: Option<String>,
    pub engine: EngineClient,
}

struct Exporter {
    config: ExporterConfig,
    /// Whether the last scrape reached the engine ([`UNKNOWN`], [`UP`],
    /// [`DOWN`]), for one log line per transition.
    engine: AtomicU8,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Exporter {
    async fn page(&self) -> String {
        let engine = &self.config.engine;
        let answer = async {
            let node = match &self.config.node_name {
                Some(node) => node.clone(),
                None => engine.node_name().await?,
            };
            Ok::<_, crate::EngineError>((node, engine.snapshot().await?))
        }
        .await;
        match answer {
            Ok((node, snapshot)) => {
                if self.engine.swap(UP, Ordering::Relaxed) != UP {
                    tracing::info!(endpoint = engine.endpoint(), "io-engine answers");
                }
                metrics::render(&node, Some(&snapshot))
            }
            Err(error) => {
                if self.engine.swap(DOWN, Ordering::Relaxed) != DOWN {
                    tracing::warn!(%error, "io-engine does not answer: serving no figures until it does");
                } else {
                    tracing::debug!(%error, "io-engine still does not answer");
                }
                let node = self.config.node_name.as_deref().unwrap_or("");
                metrics::render(node, None)
            }
        }
    }
}

async fn metrics_page(State(exporter): State<Arc<Exporter>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, metrics::content_type())],
        exporter.page().await,
    )
}

/// The exporter's routes.
fn router(config: ExporterConfig) -> Router {
    let exporter = Arc::new(Exporter {
        config,
        engine: AtomicU8::new(UNKNOWN),
    });
    Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(exporter)
}

/// Serves on `listen` until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    config: ExporterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(
        %listen,
        engine = config.engine.endpoint(),
        node = config.node_name.as_deref().unwrap_or("(the engine's)"),
        "serving GET /metrics"
    );
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("the HTTP server failed: {e}"))
}
