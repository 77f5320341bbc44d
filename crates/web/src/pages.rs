//! What the built-in HTTPS services answer: for the smartphone web
//! services: the configuration document behind an activation link
//! (`/p/TOKEN`), the installation link, and a health check. (The console's
//! pages are in [`crate::console`].)

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use switchboard_engine::{Engine, EngineError};
use tracing::error;

use crate::https::HttpsPeer;

async fn healthz() -> &'static str {
    "ok\n"
}

/// The smartphone web services listener's routes.
pub fn web(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            &format!("{}{{token}}", switchboard_provision::ActivationLink::PATH),
            get(document),
        )
        .route("/install", get(install))
        .with_state(engine)
}

/// `GET /install`: to the app store of the phone's platform.
async fn install(State(engine): State<Arc<Engine>>, headers: axum::http::HeaderMap) -> Response {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match engine.install_link(ua).await {
        Ok(Some(url)) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no app is configured for this platform; ask your administrator\n",
        )
            .into_response(),
        Err(e) => {
            error!(error = %e, "the installation link failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

const GONE_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link not valid</title></head>
<body><p>This activation link is not valid (any more). Ask your administrator for a new one.</p></body></html>
";

/// `GET /p/TOKEN`: the account's configuration document, once. Unknown,
/// used, expired and malformed tokens all get the same answer; the token
/// is never logged.
async fn document(
    State(engine): State<Arc<Engine>>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    // A token that is not even UTF-8 is malformed: the same answer as any
    // other link that is not valid.
    let token = token.map(|Path(t)| t).unwrap_or_default();
    let private = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    match engine.fetch_document(&token, peer.remote.ip()).await {
        Ok(doc) => {
            engine.counters().document();
            let disposition = format!("inline; filename=\"{}\"", doc.filename);
            (
                private,
                [
                    (header::CONTENT_TYPE, doc.media_type.to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                doc.body,
            )
                .into_response()
        }
        Err(EngineError::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            private,
            "too many requests\n",
        )
            .into_response(),
        Err(EngineError::LinkGone) => (
            StatusCode::NOT_FOUND,
            private,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            GONE_PAGE,
        )
            .into_response(),
        Err(e) => {
            error!(error = %e, "serving a configuration document failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                private,
                "the service cannot answer now; try again later\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn fetch(app: &Router, path: &str) -> (StatusCode, String) {
        let mut req = Request::get(path).body(Body::empty()).expect("request");
        req.extensions_mut().insert(ConnectInfo(HttpsPeer {
            remote: "198.51.100.2:40000".parse().expect("addr"),
            local: "198.51.100.1:443".parse().expect("addr"),
            accepted: std::time::Instant::now(),
        }));
        let resp = app.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_link_that_is_not_utf8_gets_the_answer_of_any_invalid_link() {
        let app = web(Arc::new(Engine::in_memory().expect("engine")));
        let unknown = fetch(&app, "/p/AAAAAAAAAAAAAAAAAAAAAA").await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND, "{}", unknown.1);
        assert_eq!(fetch(&app, "/p/%FF").await, unknown);
    }
}
