//! An axum router over HTTPS on TCP listeners, presenting the certificate
//! bound to the local address each connection arrived on.
//!
//! - [`bind`] opens the listeners with `SO_REUSEADDR`, so a restarted daemon
//!   does not wait for its old connections in TIME_WAIT.
//! - [`serve_https`] accepts on all of them. Each accepted connection asks
//!   [`CertTable::server_config`] for its local address once, before the
//!   handshake (nothing to present there: the connection is closed). So a
//!   [`CertTable::swap`] reaches every later handshake, while established
//!   connections keep the certificate they started with. Every request
//!   carries [`ConnectInfo<HttpsPeer>`]: the client, and the local address it
//!   reached (the anti-lockout rule needs the arrival address).
//!
//! **Limits.** The TLS handshake must finish within 10 s and each request
//! head arrive within 30 s (which also closes a kept-alive connection idle
//! for 30 s), so a silent client cannot hold a connection. At most 1,024
//! connections at once across all listeners; beyond that the kernel's
//! backlog holds new ones until one ends. The failure of one connection
//! (handshake, protocol, even a panicking handler) ends only that
//! connection.
//!
//! **Shutdown.** When `shutdown` resolves the listeners close, idle
//! connections are closed, requests in flight get up to 10 s to finish,
//! and whatever is still open then is dropped.
//!
//! **Limitations.** HTTP/1.1 only: the table's ALPN list should be
//! `http/1.1` (or empty). Handshake and connection errors are logged at
//! debug level only, with the peer's addresses, never key material.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_pki::CertTable;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{Instrument, debug, debug_span, error, info, info_span, warn};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request head, or a kept-alive
/// connection may stay idle.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, across all listeners.
const MAX_CONNECTIONS: usize = 1024;
/// How long requests in flight at shutdown have to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;
/// The pause after an accept error that is not the client's (e.g. out of
/// file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The two ends of an HTTPS connection: lets handlers know the arrival
/// address (anti-lockout) and the client.
#[derive(Debug, Clone, Copy)]
pub struct HttpsPeer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// When the connection was accepted: a request over a connection older
    /// than a firewall change says nothing about whether new connections
    /// still get through (the console's trial confirmation needs to know).
    pub accepted: std::time::Instant,
}

/// Listeners on `addrs`, with `SO_REUSEADDR`. Call inside a Tokio runtime
/// (the listeners register with its reactor).
pub fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|&addr| {
            let context =
                |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(context)?;
            socket.set_reuseaddr(true).map_err(context)?;
            socket.bind(addr).map_err(context)?;
            socket.listen(BACKLOG).map_err(context)
        })
        .collect()
}

/// Serve `app` over TLS on every listener, with the certificates of
/// `table`, until `shutdown` resolves and the connections have drained (at
/// most 10 s). Fails only when there is no listener, or one has no local
/// address.
pub async fn serve_https(
    listeners: Vec<TcpListener>,
    table: Arc<CertTable>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener to serve HTTPS on",
        ));
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // A client may close its sending side (TLS close_notify, then FIN)
        // once its request is sent: it is still answered.
        .half_close(true);
    let shared = Shared {
        table,
        app,
        http,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        stop,
    };
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        info!(%addr, "serving HTTPS");
        accept_loops.spawn(
            accept_loop(listener, shared.clone()).instrument(info_span!("https", listen = %addr)),
        );
    }
    shutdown.await;
    info!("HTTPS shutting down: no new connections, letting requests in flight finish");
    stop_tx.send_replace(true);
    while let Some(done) = accept_loops.join_next().await {
        report(done);
    }
    Ok(())
}

/// What every listener and connection shares.
#[derive(Clone)]
struct Shared {
    table: Arc<CertTable>,
    app: Router,
    http: http1::Builder,
    permits: Arc<Semaphore>,
    /// Becomes true at shutdown.
    stop: watch::Receiver<bool>,
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let mut stop = shared.stop.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            Some(done) = connections.join_next() => report(done),
            (stream, remote, permit) = accept(&listener, &shared.permits) => {
                connections.spawn(connection(stream, remote, permit, shared.clone()));
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = connections.join_next().await {
            report(done);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "connections still busy after the shutdown grace period are dropped"
        );
    }
}

/// The next connection, once there is room for it. A connection that fails
/// before it is accepted is skipped; other errors (e.g. out of file
/// descriptors) pause accepting instead of spinning.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => return (stream, remote, permit),
            Err(e) if is_connection_error(&e) => {
                debug!(error = %e, "a connection failed before it was accepted");
            }
            Err(e) => {
                warn!(error = %e, "cannot accept connections; trying again in a second");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Holds its `permit` until the connection ends.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Shared,
) {
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(e) => {
            debug!(%remote, error = %e, "a connection closed before it could be served");
            return;
        }
    };
    // Responses written in pieces must not wait for the client's delayed ACK.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%remote, error = %e, "cannot set TCP_NODELAY");
    }
    let peer = HttpsPeer {
        remote,
        local,
        accepted: std::time::Instant::now(),
    };
    serve_connection(stream, peer, shared)
        .instrument(debug_span!("connection", %remote, %local))
        .await
}

async fn serve_connection(stream: TcpStream, peer: HttpsPeer, shared: Shared) {
    let Some(config) = shared.table.server_config(peer.local.ip()) else {
        debug!("no certificate for this address: connection closed");
        return;
    };
    let mut stop = shared.stop;
    let handshake =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream));
    let tls = tokio::select! {
        biased;
        // No request can be in flight before the handshake.
        () = stopped(&mut stop) => return,
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(timeout = ?HANDSHAKE_TIMEOUT, "no TLS handshake in time: connection closed");
                return;
            }
        },
    };
    let state = tls.get_ref().1;
    debug!(
        version = ?state.protocol_version(),
        suite = ?state.negotiated_cipher_suite().map(|s| s.suite()),
        sni = state.server_name(),
        "TLS handshake done"
    );
    let app = shared.app;
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    let conn = shared.http.serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match served {
        Ok(()) => debug!("connection closed"),
        Err(e) => debug!(error = %e, "connection closed"),
    }
}

/// Resolves at shutdown (or when the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The error means the sender is gone, which is a stop too.
    let _ = stop.wait_for(|stop| *stop).await;
}

fn report(done: Result<(), JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "an HTTPS task ended abnormally");
    }
}
