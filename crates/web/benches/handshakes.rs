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
//! new TCP connection and a full handshake (TLS 1.3, X25519 only, one
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{Nginx, Prefix, THREADS, Unverified, median, runtime, thread_cpu};
use switchboard_pki::testpki::Ca;
use switchboard_pki::{CertBindings, CertTable, TlsIdentity, import};
use switchboard_web::https::{bind, serve_https};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};

const NAME: &str = "bench.test";
const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(5);
const WARM_UP: Duration = Duration::from_secs(1);
const ROUNDS: usize = 3;
/// Thread names, to find each side's CPU time in `/proc/self/task`.
const SERVER_THREADS: &str = "bench-https";
const CLIENT_THREADS: &str = "bench-client";

fn main() {
    let ca = Ca::root("Bench CA");
    let leaf = ca.leaf(&[NAME, "127.0.0.1"]);
    let chain_pem = [leaf.pem(), ca.pem()].concat();
    let key_pem = leaf.key_pem();

    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);

    let ours = {
        let bundle = import(
            [chain_pem.as_str(), &key_pem].concat().as_bytes(),
            None,
            None,
        )
        .expect("the bench certificate imports");
        let mut bindings = CertBindings::new();
        bindings.set_default(TlsIdentity::new(&bundle).expect("the bundle has its key"));
        let table = Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings));
        let listeners = {
            let _runtime = server_rt.enter();
            bind(&["127.0.0.1:0".parse().expect("an address")]).expect("127.0.0.1 can be bound")
        };
        let addr = listeners[0].local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let done = server_rt.spawn(serve_https(listeners, table, app, async {
            stopped.await.ok();
        }));
        (addr, stop, done)
    };

    let prefix = Prefix::new();
    std::fs::write(prefix.path().join("chain.pem"), &chain_pem).expect("the prefix is writable");
    std::fs::write(prefix.path().join("key.pem"), &key_pem).expect("the prefix is writable");
    let nginx = Nginx::start(prefix.path(), "location / { return 200 ok; }", "bench-tls");

    let load = Load::new();
    let checker = verifying_client(&ca.der);
    for (who, addr) in [("ours", ours.0), ("nginx", nginx.addr)] {
        client_rt.block_on(check(&checker, addr, &leaf.der, who));
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
    for (addr, cpu) in [
        (ours.0, &ours_cpu as &dyn Fn() -> f64),
        (nginx.addr, &nginx_cpu),
    ] {
        client_rt.block_on(load.run(addr, WARM_UP, cpu));
    }
    let mut results: Vec<(Outcome, Outcome)> = Vec::new();
    for round in 1..=ROUNDS {
        let a = client_rt.block_on(load.run(ours.0, RUN, &ours_cpu));
        println!("round {round}  ours   {a}");
        let b = client_rt.block_on(load.run(nginx.addr, RUN, &nginx_cpu));
        println!("round {round}  nginx  {b}");
        results.push((a, b));
    }

    let rate = |f: fn(&(Outcome, Outcome)) -> &Outcome| {
        median(results.iter().map(|r| f(r).per_second()).collect())
    };
    let cost = |f: fn(&(Outcome, Outcome)) -> &Outcome| {
        median(
            results
                .iter()
                .map(|r| f(r).server_cpu_per_handshake())
                .collect(),
        )
    };
    let (ours_rate, nginx_rate) = (rate(|r| &r.0), rate(|r| &r.1));
    let (ours_cost, nginx_cost) = (cost(|r| &r.0), cost(|r| &r.1));
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
    let failed: u64 = results.iter().map(|(a, b)| a.failed + b.failed).sum();
    if failed > 0 {
        println!("{failed} connections failed (see the rounds above)");
    }

    ours.1.send(()).expect("our server is running");
    server_rt
        .block_on(ours.2)
        .expect("serve_https does not panic")
        .expect("our server shuts down cleanly");
    drop(nginx);
}

/// Full handshakes against one server for a fixed time.
struct Load {
    connector: TlsConnector,
    name: ServerName<'static>,
}

#[derive(Debug)]
struct Outcome {
    handshakes: u64,
    failed: u64,
    /// Of the connections that failed, the first error.
    first_error: Option<String>,
    elapsed: Duration,
    server_cpu: f64,
    client_cpu: f64,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.handshakes as f64 / self.elapsed.as_secs_f64()
    }

    fn server_cpu_per_handshake(&self) -> f64 {
        self.server_cpu / self.handshakes as f64
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{:>7.0} handshakes/s; server {:.2} cores, {:.0} us/handshake; client {:.2} cores",
            self.per_second(),
            self.server_cpu / secs,
            self.server_cpu_per_handshake() * 1e6,
            self.client_cpu / secs,
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; {} failed, first: {e}", self.failed)?;
        }
        Ok(())
    }
}

impl Load {
    fn new() -> Load {
        let mut provider = ring::default_provider();
        provider.kx_groups = vec![ring::kx_group::X25519];
        provider.cipher_suites = vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
        let provider = Arc::new(provider);
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        Load {
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::try_from(NAME).expect("a valid name"),
        }
    }

    async fn run(&self, addr: SocketAddr, time: Duration, server_cpu: &dyn Fn() -> f64) -> Outcome {
        let handshakes = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (cpu0, client0, start) = (server_cpu(), thread_cpu(CLIENT_THREADS), Instant::now());
        let deadline = start + time;
        let clients: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (connector, name) = (self.connector.clone(), self.name.clone());
                let (handshakes, failed) = (handshakes.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut first_error = None;
                    while Instant::now() < deadline {
                        match handshake(&connector, addr, name.clone()).await {
                            Ok(()) => handshakes.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                first_error.get_or_insert(e.to_string());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                    first_error
                })
            })
            .collect();
        let mut first_error = None;
        for client in clients {
            let error = client.await.expect("a load client does not panic");
            first_error = first_error.or(error);
        }
        Outcome {
            elapsed: start.elapsed(),
            server_cpu: server_cpu() - cpu0,
            client_cpu: thread_cpu(CLIENT_THREADS) - client0,
            handshakes: handshakes.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            first_error,
        }
    }
}

/// A new connection, a full handshake, close_notify, and the server's
/// close (after its session tickets, if it sends any). nginx answers a
/// close_notify by closing without one of its own: that is a clean close
/// here too.
async fn handshake(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
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

fn verifying_client(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![ring::kx_group::X25519];
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA is usable");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}
