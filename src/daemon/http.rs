//! The health and metrics listener on `[http] listen`: `GET /healthz` (JSON, 200 while the
//! process is live) and `GET /metrics` (Prometheus text format 0.0.4). axum on HTTP/1 only, no
//! TLS (bind it to loopback or a management network). Stops with its token; requests in flight
//! finish first (axum's graceful shutdown).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::error;

use prometheus_client::registry::Registry;

use super::Daemon;
use super::metrics;
use super::status::health_json;

/// Binds the listener (an error here ends start-up with exit 1).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `token` is cancelled.
pub(crate) async fn serve(listener: TcpListener, daemon: Arc<Daemon>, token: CancellationToken) {
    let registry = Arc::new(metrics::registry(Arc::clone(&daemon)));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape))
        .with_state((daemon, registry));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await;
    if let Err(e) = result {
        error!("HTTP listener failed: {e}");
    }
}

/// What the handlers share: the daemon, and the registry built once at start.
type AppState = (Arc<Daemon>, Arc<Registry>);

async fn healthz(State((daemon, _)): State<AppState>) -> Response {
    let body = health_json(&daemon.status.snapshot(), &daemon.redirector.metrics());
    axum::Json(body).into_response()
}

async fn scrape(State((_, registry)): State<AppState>) -> Response {
    match metrics::text(&registry) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
