//! The server's memory (VmRSS) before, during and after a burst of 1,000
//! slow connections, and the latency of another address's requests idle
//! and during the burst.
//!
//! Run it with `cargo bench -p switchboard-web --bench burst`. Not a test:
//! it prints figures.
//!
//! **The server.** The console (`console::router` over an `Engine` from
//! `switchboard_engine::testing`) on `serve_https`, 127.0.0.1, in this
//! process; its VmRSS is read from `/proc/self/status`.
//!
//! **The burst** runs in a child process (this program again, told so by
//! [`CLIENT_VAR`]), so that its memory is not counted: 1,000 TLS
//! connections from 32 source addresses in 127.0.1.0/24 (as many as one
//! address may hold, so none is refused), each sending a `POST /login`
//! that announces 64 KiB and sends 16 KiB of it, then holding. Once they
//! are all in place the child says so; when its standard input closes it
//! exits, and its connections close with it.
//!
//! **The neighbour**: 200 `GET /login` from 127.0.0.3, one after another,
//! each over a new connection (handshake included), idle and during each
//! burst.
//!
//! The burst is repeated ([`ROUNDS`]): memory that is reused, not leaked,
//! stops growing after the first bursts, and the open file descriptors
//! come back to where they were. What glibc's allocator keeps of freed
//! memory stays in VmRSS: run with `MALLOC_MMAP_THRESHOLD_=8192` to see how
//! much of it is the connections' buffers, given back when they are freed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BenchCert, CLIENT_THREADS, NAME, SERVER_THREADS, Server, runtime, unverified_config};
use switchboard_pki::{CertBindings, CertTable, TlsIdentity, import};
use switchboard_web::https::MAX_PER_ADDRESS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Set in the child: the server's address.
const CLIENT_VAR: &str = "SWITCHBOARD_BENCH_BURST_TARGET";
/// Connections of the burst.
const BURST: usize = 1000;
/// Requests of the neighbour, idle and during each burst.
const PROBES: usize = 200;
/// Bursts, one after another: memory that is reused, not leaked, does
/// not grow from one to the next.
const ROUNDS: usize = 5;

fn main() {
    match std::env::var(CLIENT_VAR) {
        Ok(target) => burst(target.parse().expect("the server's address")),
        Err(_) => measure(),
    }
}

fn measure() {
    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);
    let cert = BenchCert::new();
    let bundle = import(cert.bundle().as_bytes(), None, None).expect("the bench certificate");
    let mut bindings = CertBindings::new();
    bindings.bind(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        TlsIdentity::new(&bundle).expect("the bundle has its key"),
    );
    let table = Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings));
    let engine = Arc::new(server_rt.block_on(switchboard_engine::testing::booted()));
    let server = Server::start(
        &server_rt,
        table,
        switchboard_web::console::router(engine.clone()),
    );
    let tls = TlsConnector::from(unverified_config());

    client_rt.block_on(probe(&tls, server.addr, PROBES)); // warm-up
    let before = vm_rss_kib();
    let idle = client_rt.block_on(probe(&tls, server.addr, PROBES));

    let fds_before = open_fds();
    let mut during = Vec::new();
    for round in 1..=ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env(CLIENT_VAR, server.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the burst's process starts");
        let started = Instant::now();
        let mut said = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut said)
            .expect("the burst says when it is in place");
        let in_place = started.elapsed();
        let during_rss = vm_rss_kib();
        let fds_during = open_fds();
        during.extend(client_rt.block_on(probe(&tls, server.addr, PROBES)));
        let during_rss = during_rss.max(vm_rss_kib());
        drop(child.stdin.take()); // the burst lets go
        child.wait().expect("the burst's process ends");
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "burst {round}: {} ({in_place:.1?} to set up); server VmRSS before {before} KiB, \
             during {during_rss} KiB, 3 s after {} KiB; open files before {fds_before}, during \
             {fds_during}, after {}",
            said.trim(),
            vm_rss_kib(),
            open_fds(),
        );
    }
    println!(
        "GET /login from 127.0.0.3: idle p50 {:.2?} p99 {:.2?} ({} requests); during the bursts p50 {:.2?} p99 {:.2?} ({} requests)",
        quantile(&idle, 0.5),
        quantile(&idle, 0.99),
        idle.len(),
        quantile(&during, 0.5),
        quantile(&during, 0.99),
        during.len(),
    );
    server.stop(&server_rt);
}

/// `GET /login` `n` times in a row, each over a new connection from
/// 127.0.0.3: how long each took.
async fn probe(tls: &TlsConnector, addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut stream = connect(tls, Ipv4Addr::new(127, 0, 0, 3), addr)
            .await
            .expect("the neighbour connects");
        stream
            .write_all(b"GET /login HTTP/1.1\r\nhost: bench.test\r\nconnection: close\r\n\r\n")
            .await
            .expect("sends");
        stream.flush().await.expect("sends");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "the neighbour got {:?}",
            String::from_utf8_lossy(&answer)
        );
        took.push(start.elapsed());
    }
    took
}

async fn connect(
    tls: &TlsConnector,
    from: Ipv4Addr,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    let stream = socket.connect(addr).await?;
    let name = ServerName::try_from(NAME).expect("a server name");
    tls.connect(name, stream).await
}

/// The child: [`BURST`] slow `POST /login` held until stdin closes.
fn burst(target: SocketAddr) {
    let rt = runtime(CLIENT_THREADS);
    let tls = TlsConnector::from(unverified_config());
    let held = rt.block_on(async {
        let at_once = Arc::new(Semaphore::new(64));
        let tasks: Vec<_> = (0..BURST)
            .map(|i| {
                let (tls, at_once) = (tls.clone(), at_once.clone());
                let from = Ipv4Addr::new(127, 0, 1, (1 + i / MAX_PER_ADDRESS) as u8);
                tokio::spawn(async move {
                    let _turn = at_once.acquire_owned().await.expect("open");
                    let mut stream = connect(&tls, from, target).await.ok()?;
                    let head = "POST /login HTTP/1.1\r\nhost: bench.test\r\n\
                                content-type: application/x-www-form-urlencoded\r\n\
                                content-length: 65536\r\n\r\n";
                    stream.write_all(head.as_bytes()).await.ok()?;
                    stream.write_all(&[b'x'; 16 * 1024]).await.ok()?;
                    stream.flush().await.ok()?;
                    Some(stream)
                })
            })
            .collect();
        let mut held = Vec::new();
        for task in tasks {
            if let Ok(Some(stream)) = task.await {
                held.push(stream);
            }
        }
        held
    });
    let mut out = std::io::stdout();
    writeln!(out, "{} of {BURST} connections held", held.len()).expect("the parent reads");
    out.flush().expect("the parent reads");
    // Hold until the parent closes stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

fn quantile(took: &[Duration], q: f64) -> Duration {
    let mut sorted = took.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[at - 1]
}

/// This process's open file descriptors (its sockets among them).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// This process's resident memory, from `/proc/self/status`.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc is mounted");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}
