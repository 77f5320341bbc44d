//! Full TLS 1.3 handshakes per second: our HTTPS listener
//! (`switchboard_web::https::serve_https`) next to nginx, with the same
//! certificate, on the same machine, in the same run.
//!
//! Run it with `cargo xtask bench-tls` (which installs nginx when it is
//! missing); `cargo bench -p switchboard-web --bench handshakes` works where
//! nginx is installed. Not a test: it prints figures and a ratio.
//!
//! **What is compared.** Both servers listen on 127.0.0.1 and present the
//! same ECDSA P-256 certificate (leaf and CA). Ours runs on a Tokio runtime
//! with 2 worker threads, nginx with `worker_processes 2`: one per core of
//! the machine this was written for. nginx is configured for TLS 1.3 only,
//! key exchange X25519 only, and no session tickets nor session cache. Our
//! listener takes its rustls configuration from `CertTable` unchanged; TLS
//! 1.3 and X25519 are all the client offers. Both still send two TLS 1.3
//! session tickets after each handshake (OpenSSL does so even with tickets
//! and cache off, `CertTable` keeps resumption on), which the client
//! ignores: the same work on both sides.
//!
//! **The load.** One client, the same for both servers: a Tokio runtime
//! with 2 worker threads in this process, 32 connections at a time, each a
//! new TCP connection (from 8 loopback source addresses in turn, as the
//! listener admits at most 32 per address) and a full handshake (TLS 1.3, X25519 only, one
//! cipher suite, no resumption, no ALPN), then close_notify, waiting for
//! the server to close. To leave the cores to the servers, the load
//! clients do not verify the certificate: one verifying client per server
//! checks the chain, name, version, group and the full handshake before
//! the runs. Rounds alternate ours and nginx, 5 s each, after a 1 s warm-up
//! of each.
//!
//! Client and servers share the machine, so handshakes per second depend
//! on both; the servers' CPU time per handshake (from `/proc`: our
//! runtime's threads, nginx's master and workers) is printed next to it.

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{
    BenchCert, CLIENT_THREADS, CONCURRENCY, NAME, Nginx, Outcome, Prefix, ROUNDS, SERVER_THREADS,
    Server, THREADS, failed, load, medians, rounds, runtime, thread_cpu, unverified_config,
    verifying_config,
};
use switchboard_pki::{CertBindings, CertTable, TlsIdentity, import};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, HandshakeKind, ProtocolVersion};

const RUN: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);

fn main() {
    let cert = BenchCert::new();
    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);

    let ours = {
        let bundle =
            import(cert.bundle().as_bytes(), None, None).expect("the bench certificate imports");
        let mut bindings = CertBindings::new();
        bindings.set_default(TlsIdentity::new(&bundle).expect("the bundle has its key"));
        let table = Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings));
        let app = Router::new().route("/", get(|| async { "ok" }));
        Server::start(&server_rt, table, app)
    };

    let prefix = Prefix::new();
    let nginx = Nginx::start(
        prefix.path(),
        &cert,
        "location / { return 200 ok; }",
        "bench-tls",
    );

    let connector = TlsConnector::from(unverified_config());
    let checker = verifying_config(&cert.ca.der);
    for (who, addr) in [("ours", ours.addr), ("nginx", nginx.addr)] {
        client_rt.block_on(check(&checker, addr, &cert.leaf.der, who));
    }

    println!(
        "full TLS 1.3 handshakes: ECDSA P-256 certificate, X25519, no resumption; \
         {CONCURRENCY} concurrent connections, {} s per run, {ROUNDS} rounds alternating",
        RUN.as_secs()
    );
    println!(
        "ours: serve_https, Tokio runtime with {THREADS} worker threads; {}: worker_processes {THREADS}; \
         client: {THREADS} threads; {} cores",
        nginx.version,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ours_cpu = || thread_cpu(SERVER_THREADS);
    let nginx_cpu = || nginx.cpu();
    let run = |addr: SocketAddr, time: Duration, cpu: &dyn Fn() -> f64| {
        client_rt.block_on(handshakes(&connector, addr, time, cpu))
    };
    run(ours.addr, WARM_UP, &ours_cpu);
    run(nginx.addr, WARM_UP, &nginx_cpu);
    let results = rounds(
        || run(ours.addr, RUN, &ours_cpu),
        || run(nginx.addr, RUN, &nginx_cpu),
    );

    let (ours_rate, nginx_rate) = medians(&results, Outcome::per_second);
    let (ours_cost, nginx_cost) = medians(&results, Outcome::server_cpu_per_ok);
    println!(
        "median  ours {ours_rate:.0}/s, nginx {nginx_rate:.0}/s: ours/nginx = {:.2}x",
        ours_rate / nginx_rate
    );
    println!(
        "server CPU per handshake (median): ours {:.0} us, nginx {:.0} us: nginx/ours = {:.2}x",
        ours_cost * 1e6,
        nginx_cost * 1e6,
        nginx_cost / ours_cost
    );
    let failed = failed(&results);
    if failed > 0 {
        println!("{failed} connections failed (see the rounds above)");
    }

    ours.stop(&server_rt);
    drop(nginx);
}

/// Full handshakes against one server for `time`.
async fn handshakes(
    connector: &TlsConnector,
    addr: SocketAddr,
    time: Duration,
    server_cpu: &dyn Fn() -> f64,
) -> Outcome {
    let deadline = Instant::now() + time;
    let connector = connector.clone();
    let name = ServerName::try_from(NAME).expect("a valid name");
    let count = Arc::new(AtomicUsize::new(0));
    load("handshakes", server_cpu, move || {
        let (connector, name) = (connector.clone(), name.clone());
        let from = source(count.fetch_add(1, Ordering::Relaxed));
        (Instant::now() < deadline).then_some(async move {
            handshake(&connector, from, addr, name)
                .await
                .map_err(|e| e.to_string())
        })
    })
    .await
}

/// The source address of the `i`-th connection: [`SOURCES`] addresses in
/// 127.0.2.0/24 (all loopback) in turn, so that the load's connections,
/// some of them still closing on the server's side, stay well under the
/// listener's limit per client address.
fn source(i: usize) -> IpAddr {
    let host = u8::try_from(1 + i % SOURCES).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, host))
}

/// Addresses the load's connections come from.
const SOURCES: usize = 8;

/// A new connection, a full handshake, close_notify, and the server's
/// close (after its session tickets, if it sends any). nginx answers a
/// close_notify by closing without one of its own: that is a clean close
/// here too.
async fn handshake(
    connector: &TlsConnector,
    from: IpAddr,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.shutdown().await?;
    let mut rest = Vec::new();
    match tls.read_to_end(&mut rest).await {
        Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        _ => Ok(()),
    }
}

/// Checks that a server presents `leaf` with a valid chain for [`NAME`],
/// over a full TLS 1.3 handshake with X25519.
async fn check(config: &Arc<ClientConfig>, addr: SocketAddr, leaf: &CertificateDer<'_>, who: &str) {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{who} at {addr}: {e}"));
    let tls = TlsConnector::from(config.clone())
        .connect(ServerName::try_from(NAME).expect("a valid name"), tcp)
        .await
        .unwrap_or_else(|e| panic!("{who} at {addr}: the handshake fails verification: {e}"));
    let state = tls.get_ref().1;
    assert_eq!(
        state.peer_certificates().map(|c| &c[0]),
        Some(leaf),
        "{who}: another certificate"
    );
    assert_eq!(
        state.protocol_version(),
        Some(ProtocolVersion::TLSv1_3),
        "{who}"
    );
    assert_eq!(state.handshake_kind(), Some(HandshakeKind::Full), "{who}");
    assert_eq!(
        state.negotiated_key_exchange_group().map(|g| g.name()),
        Some(tokio_rustls::rustls::NamedGroup::X25519),
        "{who}"
    );
}
