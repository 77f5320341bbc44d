//! What the built-in HTTPS services answer until their own issues give
//! them more: a health check, and for the console a page that says where
//! administration happens today. Nothing here reveals configuration.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const CONSOLE_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>switchboard</title></head>
<body><h1>switchboard</h1>
<p>The management console's pages are not available in this version.
Administer the appliance with the <code>switchboard</code> command on the appliance itself.</p>
</body></html>
";

async fn healthz() -> &'static str {
    "ok\n"
}

async fn console_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        ],
        CONSOLE_PAGE,
    )
}

/// The console listener's routes.
pub fn console() -> Router {
    Router::new()
        .route("/", get(console_page))
        .route("/healthz", get(healthz))
}

/// The smartphone web services listener's routes.
pub fn web() -> Router {
    Router::new().route("/healthz", get(healthz))
}
