//! The `metrics` service: `GET /metrics`, the daemon's Prometheus
//! exposition ([`switchboard_engine::metrics`]) in the OpenMetrics text
//! format, over plain HTTP on the catalog's `metrics` port (9469 by
//! default; the matrix decides on which NICs it answers, and the production
//! preset keeps it on the internal one). Nothing else is served there, and
//! nothing in it is a secret.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switchboard_engine::Engine;
use tracing::warn;

/// The media type of the exposition (what prometheus-client writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router of the metrics listener.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            )
        })
        .with_state(engine)
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    match engine.metrics_text().await {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        Err(e) => {
            // Details stay in the log.
            warn!(error = %e, "the metrics could not be read");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be read; see the daemon's log\n",
            )
                .into_response()
        }
    }
}
