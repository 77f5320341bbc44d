//! The `http` service: the answers to an ACME CA's `http-01` challenges
//! (RFC 8555 §8.3), `GET /.well-known/acme-challenge/TOKEN`, over plain
//! HTTP on the catalog's `http` port (80), and nothing else. The answers
//! exist only while a CA checks them (see `switchboard_engine::acme`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switchboard_engine::Engine;

const NOTHING: &str = "nothing here: this port answers ACME http-01 challenges only\n";

/// The router of the `http` listener.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .fallback(|| async { (StatusCode::NOT_FOUND, NOTHING) })
        .with_state(engine)
}

async fn answer(State(engine): State<Arc<Engine>>, Path(token): Path<String>) -> Response {
    match engine.http01().get(&token) {
        Some(key_authorization) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            key_authorization,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, NOTHING).into_response(),
    }
}
