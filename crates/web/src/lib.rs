//! Everything that speaks HTTP.
//!
//! - [`api`]: the JSON API, an axum router over the [engine](switchboard_engine).
//!   Every operation of the console and the CLI is one of its routes;
//!   [`contract`] holds its request documents, shared with the CLI.
//! - [`serve_unix`]: the API on the daemon's local Unix socket (mode 0600;
//!   peers other than root and the daemon's own user are refused, checked
//!   with `SO_PEERCRED`). The peer's uid and pid become the request's
//!   [`Origin`](switchboard_engine::Origin) (including the SSH session the
//!   client runs in, for the anti-lockout rule).
//! - [`serve_monitor_unix`]: the monitoring socket beside it: `GET
//!   /v1/monitor` only (no secret in it), for any peer its mode and group
//!   admit (an NRPE agent's user), so monitoring needs no root.
//! - [`client`]: the typed client the CLI uses over that socket.
//! - [`https`]: the built-in HTTPS listeners (console, web services): TLS
//!   with the certificate the [engine's tables](switchboard_engine::TlsTables)
//!   hold for the local address each connection arrived on, swapped by
//!   Updates without restarting anything; [`https::Listeners`] move to the
//!   ports of each revision the engine installs, the new one bound before
//!   the old one stops accepting. Each listener limits what one client
//!   costs: connections per address, the time and rate of request heads
//!   and bodies, the size of what is buffered (see [`https`]).
//! - [`console`]: the HTTPS management console: sign-in, sessions, CSRF,
//!   security headers, the pages (askama templates) and the same JSON API
//!   behind a session; [`map`] draws its SVG map of the appliance, [`qr`]
//!   the QR code of an activation link, [`openapi`] describes the API
//!   (generated from the route table and the types).
//! - [`pages`]: the web services listener (`/p/TOKEN`, `/install`).
//! - [`metrics`]: the `metrics` service, `GET /metrics` for Prometheus, in
//!   plain HTTP on the same listeners' machinery (no certificate).
//!
//! **Boundary.** The only crate that knows HTTP: status codes, headers and
//! routes stay here; engine errors become statuses in one exhaustive match
//! (`error.rs`). Internal error details are logged, never sent.

pub mod api;
pub mod challenges;
pub mod client;
pub mod console;
pub mod contract;
pub mod error;
pub mod https;
mod input;
pub mod map;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod qr;
pub mod roles;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::extract::connect_info::{self, ConnectInfo};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use switchboard_engine::{Engine, Origin};
use tokio::net::UnixListener;
use tokio::net::unix::UCred;
use tracing::{Instrument, info, info_span, warn};

use crate::api::Requester;
use crate::error::ApiError;

/// The peer of a Unix-socket connection.
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer {
    pub cred: Option<UCred>,
}

impl connect_info::Connected<IncomingStream<'_, UnixListener>> for UnixPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        UnixPeer {
            cred: stream.io().peer_cred().ok(),
        }
    }
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "another switchboard daemon is answering on {0}; stop it first, or give this one another --socket"
    )]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Bind the API socket at `path`: refuses a socket a live daemon answers
/// on, replaces a stale one, and leaves the socket readable and writable by
/// its owner only.
pub async fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServeError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // The socket is created with the umask applied; tighten it before any
    // client can be accepted (the peer check below covers the short window).
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Bind the monitoring socket at `path`: mode 0600, or 0660 and owned by
/// `group` when one is given (the NRPE agent's group).
pub async fn bind_monitor_unix(
    path: &Path,
    group: Option<u32>,
) -> Result<UnixListener, ServeError> {
    let listener = bind_unix(path).await?;
    if let Some(gid) = group {
        let io = |source| ServeError::Io {
            path: path.to_owned(),
            source,
        };
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(|e| io(e.into()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    }
    Ok(listener)
}

/// Serve the monitoring view (`GET /v1/monitor`, nothing else) on
/// `listener` until `shutdown` resolves. The socket's mode decides who
/// may connect; requests change nothing and are not audited.
pub async fn serve_monitor_unix(
    listener: UnixListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    async fn monitor(
        axum::extract::State(engine): axum::extract::State<Arc<Engine>>,
    ) -> Result<axum::Json<switchboard_engine::monitor::MonitorView>, ApiError> {
        Ok(axum::Json(engine.monitor().await?))
    }
    let app = axum::Router::new()
        .route("/v1/monitor", axum::routing::get(monitor))
        .with_state(engine);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A number for each request the daemon answers (API socket and HTTPS
/// listeners), carried by its tracing span as `id`, so that one request's
/// lines can be picked out of the journal.
pub fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve_unix(
    listener: UnixListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = api::router(engine).layer(middleware::from_fn(unix_origin));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<UnixPeer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Admit root and the daemon's own user; record who and from where; one
/// tracing span per request.
async fn unix_origin(
    ConnectInfo(peer): ConnectInfo<UnixPeer>,
    mut req: Request,
    next: Next,
) -> Response {
    let me = rustix::process::geteuid().as_raw();
    let Some(cred) = peer.cred else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the peer of this connection cannot be identified",
            "connect through the local Unix socket as root",
        )
        .into_response();
    };
    if cred.uid() != 0 && cred.uid() != me {
        warn!(
            uid = cred.uid(),
            "refused a client that is neither root nor the daemon's user"
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only root may use the switchboard API",
            "run the command as root (e.g. with sudo)",
        )
        .into_response();
    }
    let origin = Origin::local(cred.uid(), cred.pid().and_then(|p| u32::try_from(p).ok()));
    let span = info_span!("request", id = next_request_id(), method = %req.method(), path = %req.uri().path(), actor = %origin.actor, from = %origin.address);
    req.extensions_mut().insert(Requester(origin));
    async move {
        let response = next.run(req).await;
        info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}
