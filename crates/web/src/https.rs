//! An axum router over HTTPS on TCP listeners, presenting the certificate
//! bound to the local address each connection arrived on.
//!
//! - [`Listeners`] are the daemon's built-in listeners (console, web
//!   services; and the `metrics` service, the one site without a
//!   certificate table, served in plain HTTP with the same limits: see
//!   [`Listeners::add_plain`]), one socket per service on every address (`[::]:PORT`),
//!   moved by [`ListenerControl::listen`] while they run: the new port is
//!   bound before the old one stops accepting (a port that cannot be bound
//!   changes nothing), and the old port's connections, including those the
//!   kernel had completed but not handed over yet, are served to the end of
//!   the request in flight.
//! - [`bind`] opens listeners with `SO_REUSEADDR`, so a restarted daemon
//!   does not wait for its old connections in TIME_WAIT, and
//!   [`serve_https`] serves a fixed set of them until shutdown (the
//!   benchmarks' server).
//!
//! Each accepted connection asks [`CertTable::server_config`] for its local
//! address once, before the handshake (nothing to present there: the
//! connection is closed). So a [`CertTable::swap`] reaches every later
//! handshake, while established connections keep the certificate they
//! started with. Every request carries [`ConnectInfo<HttpsPeer>`]: the
//! client, and the local address it reached (the anti-lockout rule needs
//! the arrival address).
//!
//! **Limits** ([`hygiene`] has the per-client ones), so that a client,
//! or many clients from one address, cannot take the service from others:
//!
//! - at most [`MAX_PER_ADDRESS`] connections at once per client address
//!   (IPv6: per /64) and service; a connection beyond that is closed as
//!   soon as it is accepted;
//! - at most 1,024 connections at once per service; beyond that the
//!   kernel's backlog holds new ones until one ends (so a flood of the
//!   console never takes the web services' room);
//! - the TLS handshake must finish within 10 s and each request head
//!   arrive within 30 s, which also closes a kept-alive connection idle
//!   for 30 s;
//! - a request body must arrive within [`BODY_GRACE`] (10 s), or at least
//!   at [`MIN_BODY_RATE`] (1 KiB/s) counted from the end of that grace:
//!   a slower one, or one that announced more than it sends, is answered
//!   `408` and the connection closed;
//! - a request announcing a `Content-Length` over [`MAX_REQUEST_BODY`] is
//!   answered `413` at once, before its body is read (routes with smaller
//!   limits refuse theirs the same way, see [`crate::api`]);
//! - the buffer hyper reads a connection into is bounded
//!   ([`MAX_BUFFER`]), and no table grows with anything but the
//!   connections open, so memory taken by a burst of connections is given
//!   back when they end.
//!
//! The failure of one connection (handshake, protocol, even a panicking
//! handler) ends only that connection.
//!
//! **Planes.** A service may be given a runtime of its own (a [`Plane`]):
//! its sockets are registered with that runtime's reactor and its accept
//! loops, handshakes and requests run on that runtime's threads, so no
//! work of another service (a console flood, an Update, a certificate
//! import waiting on the CPU pool) can keep them from being served. The
//! daemon runs the web services, which phones use, on the `phones` plane.
//!
//! **Stopping.** A socket no longer wanted (its port moved) closes at once;
//! its connections finish the request in flight (a connection still in its
//! handshake, or that has not sent its first request, gets to send one)
//! and close, idle ones close now. At shutdown the listeners close, idle
//! and handshaking connections are closed, requests in flight finish. Either
//! way connections get up to 10 s, and whatever is still open then is
//! dropped.
//!
//! **Limitations.** HTTP/1.1 only: the table's ALPN list should be
//! `http/1.1` (or empty). Handshake and connection errors are logged at
//! debug level only, with the peer's addresses, never key material. One
//! port serves one service (every address): two services cannot share a
//! port, even on different NICs. The limits are constants. A 413 is followed by a close
//! without lingering: a client still sending its body may see a reset
//! instead of the answer. A client connecting in the microseconds
//! between a retired socket's last accept and its close is reset.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_domain::ServiceId;
use switchboard_engine::{ListenSocket, ListenerControl};
use switchboard_pki::CertTable;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{Instrument, debug, debug_span, error, info, info_span, warn};

mod hygiene;
pub(crate) use hygiene::announced_too_large;
use hygiene::{AddressPermit, PerAddress, TimedBody};
pub use hygiene::{BODY_GRACE, BodyDeadline, MAX_PER_ADDRESS, MIN_BODY_RATE};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request head, or a kept-alive
/// connection may stay idle.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, across all listeners.
const MAX_CONNECTIONS: usize = 1024;
/// The largest request body any built-in service reads (the console's
/// account file import); a larger announced body is refused at once.
pub const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024 + 64 * 1024;
/// The most hyper buffers of a connection's input: a request head must fit.
pub const MAX_BUFFER: usize = 64 * 1024;
/// How long the connections of a stopped listener have to finish.
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

/// The daemon's built-in HTTPS listeners: per service its certificate
/// table and router, and per [`ListenSocket`] a listener on `[::]:PORT`
/// (every address, IPv4 too) with its own accept loop. Moved by
/// [`ListenerControl::listen`]; [`Listeners::shutdown`] stops them all.
pub struct Listeners {
    services: BTreeMap<ServiceId, Site>,
    http: http1::Builder,
    sockets: Mutex<Sockets>,
    handshakes: Option<HandshakeCounter>,
}

/// Called once per completed TLS handshake, with the service's name.
pub type HandshakeCounter = Arc<dyn Fn(ServiceId) + Send + Sync>;

/// What one service serves.
#[derive(Clone)]
struct Site {
    /// The certificates it presents; `None`: plain HTTP (the metrics).
    table: Option<Arc<CertTable>>,
    app: Router,
    /// Connections per client address, across this service's sockets.
    per_address: Arc<PerAddress>,
    /// Connections at once, across this service's sockets.
    permits: Arc<Semaphore>,
    /// Where its sockets, accept loops and connections run (`None`: the
    /// runtime that asks it to listen).
    runtime: Option<Handle>,
}

/// A multi-threaded Tokio runtime of its own, for a service that must be
/// served whatever the rest of the daemon is doing (see "Planes" above).
/// Dropping it stops its threads without waiting (it may be dropped
/// inside another runtime); shut the [`Listeners`] down first.
pub struct Plane {
    runtime: Option<Runtime>,
    handle: Handle,
}

/// The nice value a plane's threads ask for: ahead of the management
/// plane (0) and far ahead of the CPU pool's jobs (10). Raising a thread's
/// priority needs `CAP_SYS_NICE` (the daemon runs as root); without it
/// the threads stay at 0.
pub const PLANE_NICE: i32 = -5;

impl Plane {
    /// A runtime with `workers` threads named `name`, at [`PLANE_NICE`]
    /// where allowed.
    pub fn new(name: &str, workers: usize) -> io::Result<Plane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .on_thread_start(|| {
                // On Linux this changes the calling thread only.
                let _ = rustix::process::setpriority_process(None, PLANE_NICE);
            })
            .enable_all()
            .build()?;
        Ok(Plane {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Sockets {
    open: BTreeMap<ListenSocket, Running>,
    /// Sockets no longer wanted whose connections are still finishing.
    retiring: Vec<Running>,
    shut_down: bool,
}

/// An accept loop and the signal that stops it.
struct Running {
    stop: watch::Sender<Stop>,
    task: JoinHandle<()>,
}

impl Listeners {
    /// The console and the web services of `engine`, each with its
    /// certificate table and router, the web services on `phones`, handed
    /// to the engine, which moves them with every revision it installs
    /// (boot's first): what `serve` runs.
    pub fn for_engine(engine: &Arc<switchboard_engine::Engine>, phones: &Plane) -> Arc<Self> {
        let mut listeners = Listeners::new([
            (
                ServiceId::Console,
                engine.tls_tables().console.clone(),
                crate::console::router(engine.clone()),
            ),
            (
                ServiceId::Web,
                engine.tls_tables().web.clone(),
                crate::pages::web(engine.clone()),
            ),
        ]);
        listeners.run_on(ServiceId::Web, phones.handle().clone());
        listeners.add_plain(ServiceId::Metrics, crate::metrics::router(engine.clone()));
        listeners.add_plain(ServiceId::Http, crate::challenges::router(engine.clone()));
        let counters = engine.counters().clone();
        listeners.count_handshakes(Arc::new(move |service| {
            counters.handshake(service.as_str())
        }));
        let listeners = Arc::new(listeners);
        engine.set_listener_control(listeners.clone());
        listeners
    }

    /// Listeners for `services` (each with the certificates it presents
    /// and its router), listening nowhere yet.
    pub fn new(services: impl IntoIterator<Item = (ServiceId, Arc<CertTable>, Router)>) -> Self {
        Listeners {
            services: services
                .into_iter()
                .map(|(service, table, app)| {
                    let site = Site {
                        table: Some(table),
                        app,
                        per_address: PerAddress::new(MAX_PER_ADDRESS),
                        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                        runtime: None,
                    };
                    (service, site)
                })
                .collect(),
            http: http(),
            sockets: Mutex::new(Sockets::default()),
            handshakes: None,
        }
    }

    /// Serve `service` too, in plain HTTP (no certificate: the metrics,
    /// which carry no secret), with the same limits per client.
    pub fn add_plain(&mut self, service: ServiceId, app: Router) {
        let site = Site {
            table: None,
            app,
            per_address: PerAddress::new(MAX_PER_ADDRESS),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            runtime: None,
        };
        self.services.insert(service, site);
    }

    /// Count every completed TLS handshake with `counter`, from the next
    /// socket on.
    pub fn count_handshakes(&mut self, counter: HandshakeCounter) {
        self.handshakes = Some(counter);
    }

    /// Serve `service` on `runtime` (see "Planes" above), from its next
    /// socket on.
    pub fn run_on(&mut self, service: ServiceId, runtime: Handle) {
        if let Some(site) = self.services.get_mut(&service) {
            site.runtime = Some(runtime);
        }
    }

    /// Stop every listener, and wait until their connections have drained
    /// (at most 10 s). Later calls of `listen` fail.
    pub async fn shutdown(&self) {
        let running: Vec<Running> = {
            let mut sockets = self.lock();
            sockets.shut_down = true;
            let open = std::mem::take(&mut sockets.open);
            let retiring = std::mem::take(&mut sockets.retiring);
            open.into_values().chain(retiring).collect()
        };
        info!("HTTPS shutting down: no new connections, letting requests in flight finish");
        for r in &running {
            r.stop.send_replace(Stop::ShutDown);
        }
        for r in running {
            report(r.task.await);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`ListenerControl::listen`], which needs no waiting: binding is
    /// immediate, and stopping only signals the old accept loops. Call
    /// inside a Tokio runtime.
    fn listen_now(&self, wanted: &[ListenSocket]) -> Result<String, String> {
        let wanted: BTreeSet<ListenSocket> = wanted.iter().copied().collect();
        one_service_per_port(&wanted)?;
        let mut sockets = self.lock();
        if sockets.shut_down {
            return Err("the HTTPS listeners are shut down".into());
        }
        // Bind every new socket first; if one fails, those bound so far
        // close as they drop, and nothing changed.
        let mut bound = Vec::new();
        for &socket in wanted.iter().filter(|s| !sockets.open.contains_key(s)) {
            let site = self.services.get(&socket.service).ok_or_else(|| {
                format!(
                    "{} is not an HTTPS service switchboard serves",
                    socket.service
                )
            })?;
            // The socket belongs to the reactor of the runtime serving it.
            let _runtime = site.runtime.as_ref().map(Handle::enter);
            let listener = bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, socket.port)))
                .map_err(|e| format!("{}: {e}", socket.service))?;
            bound.push((socket, site, listener));
        }
        let new: Vec<ListenSocket> = bound.iter().map(|(socket, ..)| *socket).collect();
        for (socket, site, listener) in bound {
            let running = self.start(socket, site, listener);
            sockets.open.insert(socket, running);
        }
        let unwanted: Vec<ListenSocket> = sockets
            .open
            .keys()
            .filter(|s| !wanted.contains(s))
            .copied()
            .collect();
        for socket in &unwanted {
            if let Some(running) = sockets.open.remove(socket) {
                info!(service = %socket.service, port = socket.port, "HTTPS stops accepting; connections in flight finish");
                running.stop.send_replace(Stop::Retired);
                sockets.retiring.push(running);
            }
        }
        sockets.retiring.retain(|r| !r.task.is_finished());
        Ok(account(&wanted, &new, &unwanted))
    }

    /// The accept loop of a socket just bound.
    fn start(&self, socket: ListenSocket, site: &Site, listener: TcpListener) -> Running {
        let (stop, stopped) = watch::channel(Stop::Serving);
        let shared = Shared {
            table: site.table.clone(),
            handshakes: self.handshakes.clone().map(|count| {
                let service = socket.service;
                Arc::new(move || count(service)) as Arc<dyn Fn() + Send + Sync>
            }),
            app: site.app.clone(),
            http: self.http.clone(),
            permits: site.permits.clone(),
            per_address: site.per_address.clone(),
            stop: stopped,
        };
        info!(service = %socket.service, port = socket.port, "HTTPS listening on every address");
        let span = info_span!("https", service = %socket.service, port = socket.port);
        let serve = accept_loop(listener, shared).instrument(span);
        let task = match &site.runtime {
            Some(runtime) => runtime.spawn(serve),
            None => tokio::spawn(serve),
        };
        Running { stop, task }
    }
}

impl ListenerControl for Listeners {
    fn listen<'a>(
        &'a self,
        sockets: &'a [ListenSocket],
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move { self.listen_now(sockets) })
    }

    fn bound(&self) -> Vec<ListenSocket> {
        self.lock().open.keys().copied().collect()
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("bound", &self.bound())
            .finish_non_exhaustive()
    }
}

/// A port listened on every address serves one service.
fn one_service_per_port(wanted: &BTreeSet<ListenSocket>) -> Result<(), String> {
    let mut by_port: BTreeMap<u16, ServiceId> = BTreeMap::new();
    for s in wanted {
        if let Some(other) = by_port.insert(s.port, s.service) {
            return Err(format!(
                "{other} and {} both want port {}: switchboard listens on every address, so they need different ports",
                s.service, s.port
            ));
        }
    }
    Ok(())
}

/// One line: where the listeners are, which sockets are new, which stopped.
fn account(
    wanted: &BTreeSet<ListenSocket>,
    new: &[ListenSocket],
    stopped: &[ListenSocket],
) -> String {
    let listening: Vec<String> = wanted
        .iter()
        .map(|s| {
            if new.contains(s) {
                format!("{s} (new)")
            } else {
                s.to_string()
            }
        })
        .collect();
    let mut account = format!("HTTPS listening: {}", listening.join(", "));
    if !stopped.is_empty() {
        let stopped: Vec<String> = stopped.iter().map(ToString::to_string).collect();
        account.push_str("; stopped accepting: ");
        account.push_str(&stopped.join(", "));
        account.push_str(" (connections in flight finish)");
    }
    account
}

/// Listeners on `addrs`, with `SO_REUSEADDR`. Call inside a Tokio runtime
/// (the listeners register with its reactor).
pub fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    addrs.iter().map(|&addr| bind_one(addr)).collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(context)?;
    socket.set_reuseaddr(true).map_err(context)?;
    socket.bind(addr).map_err(context)?;
    socket.listen(BACKLOG).map_err(context)
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
    let (stop_tx, stop) = watch::channel(Stop::Serving);
    let shared = Shared {
        table: Some(table),
        handshakes: None,
        app,
        http: http(),
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        per_address: PerAddress::new(MAX_PER_ADDRESS),
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
    stop_tx.send_replace(Stop::ShutDown);
    while let Some(done) = accept_loops.join_next().await {
        report(done);
    }
    Ok(())
}

/// HTTP/1.1, with the request head timeout and a bounded read buffer. A
/// client may close its sending side (TLS close_notify, then FIN) once its
/// request is sent: it is still answered.
fn http() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUFFER)
        .half_close(true);
    http
}

/// What an accept loop and its connections are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Serving,
    /// The socket is no longer wanted: no new connection; those accepted
    /// (handshaking or not) serve the request in flight, or their first
    /// one, and close.
    Retired,
    /// Shutdown: no new connection; requests in flight finish, handshakes
    /// are abandoned.
    ShutDown,
}

/// What every listener and connection shares.
#[derive(Clone)]
struct Shared {
    /// `None`: plain HTTP.
    table: Option<Arc<CertTable>>,
    /// Counts a completed handshake of this socket's service.
    handshakes: Option<Arc<dyn Fn() + Send + Sync>>,
    app: Router,
    http: http1::Builder,
    permits: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    stop: watch::Receiver<Stop>,
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let mut stop = shared.stop.clone();
    let mut connections = JoinSet::new();
    let why = loop {
        tokio::select! {
            biased;
            why = stopping(&mut stop) => break why,
            Some(done) = connections.join_next() => report(done),
            (stream, remote, permit) = accept(&listener, &shared.permits) => {
                if let Some(admitted) = admit(&shared, remote) {
                    connections.spawn(connection(stream, remote, (permit, admitted), shared.clone()));
                }
            }
        }
    };
    if why == Stop::Retired {
        // Connections the kernel completed before the close are clients
        // that reached the port while it was wanted: serve them too.
        for (stream, remote) in adopt_backlog(listener) {
            match shared.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    if let Some(admitted) = admit(&shared, remote) {
                        connections.spawn(connection(
                            stream,
                            remote,
                            (permit, admitted),
                            shared.clone(),
                        ));
                    }
                }
                Err(_) => debug!(%remote, "no room for a connection waiting in the backlog"),
            }
        }
    } else {
        drop(listener);
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = connections.join_next().await {
            report(done);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "connections still busy after the grace period are dropped"
        );
    }
}

/// Close `listener`, returning the connections waiting in its backlog.
fn adopt_backlog(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => {
            debug!(error = %e, "cannot take the backlog over");
            return Vec::new();
        }
    };
    let mut waiting = Vec::new();
    // `into_std` leaves the listener non-blocking: this ends when the
    // backlog is empty.
    loop {
        match listener.accept() {
            Ok((stream, remote)) => {
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => waiting.push((stream, remote)),
                    Err(e) => debug!(%remote, error = %e, "a waiting connection cannot be served"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if is_connection_error(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!(error = %e, "cannot take the rest of the backlog over");
                break;
            }
        }
    }
    waiting
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

/// A permit for a connection from `remote`, or none when its address has
/// as many open as it may (the caller drops the connection: closed).
fn admit(shared: &Shared, remote: SocketAddr) -> Option<AddressPermit> {
    let admitted = shared.per_address.admit(remote.ip());
    if admitted.is_none() {
        debug!(%remote, limit = MAX_PER_ADDRESS, "too many connections from this address: closed");
    }
    admitted
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Holds its permits (global, per address) until the connection ends.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    _permits: (OwnedSemaphorePermit, AddressPermit),
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
    let Some(table) = shared.table.clone() else {
        // A plain HTTP service (metrics): no handshake.
        let stop = shared.stop.clone();
        return serve_http(TokioIo::new(stream), peer, shared, stop).await;
    };
    let Some(config) = table.server_config(peer.local.ip()) else {
        debug!("no certificate for this address: connection closed");
        return;
    };
    let mut stop = shared.stop.clone();
    let handshake =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream));
    let tls = tokio::select! {
        biased;
        // No request can be in flight before the handshake. (A retired
        // socket's client is still sending its request: it gets served.)
        () = shut_down(&mut stop) => return,
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
    if let Some(counted) = &shared.handshakes {
        counted();
    }
    if state.alpn_protocol() == Some(switchboard_pki::acme::ACME_TLS_ALPN) {
        // An ACME validation: the handshake was the answer (RFC 8737).
        info!(
            sni = state.server_name(),
            "ACME tls-alpn-01 validation answered"
        );
        return;
    }
    serve_http(TokioIo::new(tls), peer, shared, stop).await
}

/// HTTP/1.1 on an established connection (TLS or plain), until it closes
/// or the socket stops.
async fn serve_http<I>(io: I, peer: HttpsPeer, shared: Shared, mut stop: watch::Receiver<Stop>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let app = shared.app;
    let requested = Arc::new(AtomicBool::new(false));
    let service = {
        let (requested, stop) = (requested.clone(), stop.clone());
        service_fn(move |request: Request<Incoming>| {
            requested.store(true, Ordering::Relaxed);
            let app = app.clone();
            let stop = stop.clone();
            async move {
                let Ok(mut response) = answer(app, request, peer).await;
                // Once the socket stopped, a response is the connection's last.
                if *stop.borrow() != Stop::Serving {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = shared.http.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        why = stopping(&mut stop) => {
            // A retired socket's client that has not sent its first
            // request yet is still coming: answer it (that answer closes
            // the connection), unless the daemon shuts down meanwhile.
            let first_request_to_come =
                why == Stop::Retired && !requested.load(Ordering::Relaxed);
            let served = if first_request_to_come {
                tokio::select! {
                    served = conn.as_mut() => Some(served),
                    () = shut_down(&mut stop) => None,
                }
            } else {
                None
            };
            match served {
                Some(served) => served,
                None => {
                    // Idle: closed now; otherwise after the request in flight.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    match served {
        Ok(()) => debug!("connection closed"),
        Err(e) => debug!(error = %e, "connection closed"),
    }
}

/// `app`'s answer to `request`, unless its announced body is too large
/// (413 at once) or its body does not arrive in time (408).
async fn answer(
    mut app: Router,
    request: Request<Incoming>,
    peer: HttpsPeer,
) -> Result<Response, Infallible> {
    if let Some(announced) = hygiene::announced_too_large(request.headers(), MAX_REQUEST_BODY) {
        debug!(
            announced,
            "the request announces a body over the limit: 413"
        );
        let refused = hygiene::too_large(MAX_REQUEST_BODY);
        // A browser sending a console form gets the console's page.
        if crate::console::wants_page(request.headers(), request.uri().path()) {
            return Ok(crate::console::pages::html_error(refused));
        }
        return Ok(refused);
    }
    let expired = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|body| TimedBody::new(body, expired.clone()));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
        .extensions_mut()
        .insert(BodyDeadline(expired.clone()));
    // Never the path: a web services path may hold an activation token.
    let span = info_span!("request", id = crate::next_request_id(), method = %request.method());
    let response = app.call(request).instrument(span).await?;
    if expired.load(Ordering::Relaxed) {
        debug!("the request body did not arrive in time: 408");
        return Ok(hygiene::body_timeout());
    }
    Ok(response)
}

/// Resolves when the socket stops serving, saying why (a server gone is a
/// shutdown).
async fn stopping(stop: &mut watch::Receiver<Stop>) -> Stop {
    match stop.wait_for(|s| *s != Stop::Serving).await {
        Ok(why) => *why,
        Err(_) => Stop::ShutDown,
    }
}

/// Resolves at shutdown (or when the server is gone).
async fn shut_down(stop: &mut watch::Receiver<Stop>) {
    // The error means the sender is gone, which is a shutdown too.
    let _ = stop.wait_for(|s| *s == Stop::ShutDown).await;
}

fn report(done: Result<(), JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "an HTTPS task ended abnormally");
    }
}
