//! Phones served whatever happens on the management side: the latency of
//! configuration document fetches on the web services, idle and during
//! three kinds of management load, and the server's memory after them.
//!
//! Run it with `cargo bench -p switchboard-web --bench planes`. Not a test:
//! it prints figures (the goal: p99 under load at most 2x p99 idle, no
//! failure, VmRSS after the bursts within 64 MiB).
//!
//! **The server** is set up as `switchboard serve` sets it up, in this
//! process: an `Engine` on a store in a temporary directory (SQLite, WAL,
//! `synchronous=FULL`), the console and the web services from
//! `Listeners::for_engine`, the management plane on a runtime of 2
//! workers, the web services on their own `Plane` of 2 threads; one
//! account with an activation token per fetch (`common::docs::engine`).
//! Its VmRSS is read from `/proc/self/status`.
//!
//! **The probe**: [`PROBES`] document fetches, one after another, each a
//! new TCP connection, a full TLS 1.3 handshake and `GET /p/TOKEN` from
//! its own 127/8 source address (20 per address, under the per-address
//! fetch limit), on a client thread of its own.
//!
//! **The loads**, each started and in place before the probe, stopped
//! after it:
//! - `slow console`: 1,024 TLS connections to the console from 32 source
//!   addresses (as many as one address may hold), each a `POST /login`
//!   announcing 64 KiB and sending 16 KiB, then holding;
//! - `hostile import`: certificate imports, 3 at a time (one more than the
//!   CPU pool runs), of a bundle with an encrypted key at the accepted
//!   maximum of 1,000,000 PBKDF2 iterations and a wrong password, so each
//!   costs the whole key derivation and stores nothing (`Engine::import_cert`
//!   on the management runtime, as the console's import route calls it);
//! - `wrong sign-ins`: 50 concurrent clients signing in as `admin` with a
//!   wrong password, over and over, each attempt from a new source
//!   address so that throttling does not spare the argon2id check.
//!
//! The two network loads run in a child process (this program again, told
//! so by [`LOAD_VAR`]), so that their memory and threads are not the
//! server's; it says when its load is in place, and stops when its standard
//! input closes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::docs::{Client, PER_SOURCE, engine, source_ip};
use common::{BenchCert, NAME, unverified_config};
use switchboard_domain::ServiceId;
use switchboard_engine::Origin;
use switchboard_system::memory;
use switchboard_web::https::{Listeners, MAX_PER_ADDRESS, Plane};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Set in the child: `slow PORT` or `signins PORT`.
const LOAD_VAR: &str = "SWITCHBOARD_BENCH_PLANES_LOAD";
/// Document fetches per phase.
const PROBES: usize = 400;
/// Slow console connections.
const SLOW: usize = 1024;
/// Concurrent wrong sign-ins.
const SIGNINS: usize = 50;
/// Imports at once.
const IMPORTS: usize = 3;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    match std::env::var(LOAD_VAR) {
        Ok(spec) => child(&spec),
        Err(_) => measure(),
    }
}

fn measure() {
    memory::configure();
    let cert = BenchCert::new();
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-main")
        .enable_all()
        .build()
        .expect("a runtime");
    main_rt.spawn(memory::give_back_every(memory::PERIOD));
    let phones = Plane::new("bench-phones", 2).expect("the phones' runtime");
    let data = tempfile::tempdir().expect("a temporary directory");
    let phases = ["idle", "slow console", "hostile import", "wrong sign-ins"];
    let needed = 1 + PROBES * phases.len();
    let (engine, mut tokens) =
        main_rt.block_on(engine(data.path(), cert.bundle().as_bytes(), needed));
    let [console_port, web_port] = free_ports();
    main_rt.block_on(async {
        let _ = Listeners::for_engine(&engine, &phones);
        for (service, port) in [
            (ServiceId::Console, console_port),
            (ServiceId::Web, web_port),
        ] {
            engine
                .set_port(service, port.to_string().parse().expect("a port"))
                .await
                .expect("the port is set");
        }
        engine
            .update(&Origin::local(0, None), "bench ports", None)
            .await
            .expect("the ports are applied");
        engine.ensure_admin().await.expect("an administrator");
    });
    let web = SocketAddr::from((Ipv4Addr::LOCALHOST, web_port));
    let console = SocketAddr::from((Ipv4Addr::LOCALHOST, console_port));
    let probe_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the probe's runtime");
    let client = Client::new(unverified_config());
    let source = AtomicUsize::new(0);
    // The first fetch pays for the document context.
    let _ = probe_rt.block_on(client.fetch(
        web,
        &format!("/p/{}", tokens.pop().expect("a token")),
        Ipv4Addr::LOCALHOST,
    ));
    let mut probe = || {
        let paths: Vec<String> = tokens.drain(tokens.len() - PROBES..).collect();
        probe_rt.block_on(async {
            let mut took = Vec::with_capacity(PROBES);
            let mut failed = 0;
            for token in paths {
                let from = source_ip(source.fetch_add(1, Ordering::Relaxed) / PER_SOURCE);
                let start = Instant::now();
                match client.fetch(web, &format!("/p/{token}"), from).await {
                    Ok(a) if a.status == 200 => took.push(start.elapsed()),
                    Ok(a) => {
                        failed += 1;
                        eprintln!("probe: status {}", a.status);
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("probe: {e}");
                    }
                }
            }
            Latency::of(took, failed)
        })
    };
    let rss_setup = vm_rss();
    println!(
        "document fetches on the web services (own plane, 2 threads), each a new TCP connection + \
         full TLS 1.3 handshake + GET, one at a time, {PROBES} per phase; management plane: 2 \
         workers; {} cores; VmRSS after setup {:.1} MiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rss_setup / MIB
    );
    let peak = Arc::new(std::sync::Mutex::new(0f64));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let mut p = peak.lock().expect("lock");
                *p = p.max(vm_rss());
                drop(p);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let idle = probe();
    println!("{:<16} {idle}", phases[0]);

    let load = Load::start("slow", console);
    let slow = probe();
    let rss_slow = vm_rss();
    drop(load);
    println!("{:<16} {slow}", phases[1]);

    let stop = Arc::new(AtomicBool::new(false));
    let imports = hostile_imports(&main_rt, &engine, data.path(), &stop);
    let import = probe();
    let rss_import = vm_rss();
    stop.store(true, Ordering::SeqCst);
    let attempts: usize = main_rt.block_on(async {
        let mut n = 0;
        for i in imports {
            n += i.await.expect("an import loop");
        }
        n
    });
    println!(
        "{:<16} {import}  ({attempts} imports refused meanwhile)",
        phases[2]
    );

    let load = Load::start("signins", console);
    let signins = probe();
    let rss_signins = vm_rss();
    let attempts = load.stop();
    println!("{:<16} {signins}  ({attempts})", phases[3]);

    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    let peak = *peak.lock().expect("lock");
    println!(
        "p99 under load / p99 idle: slow console {:.2}x, hostile import {:.2}x, wrong sign-ins {:.2}x (goal <= 2x); failures {}",
        slow.p99 / idle.p99,
        import.p99 / idle.p99,
        signins.p99 / idle.p99,
        idle.failed + slow.failed + import.failed + signins.failed
    );
    println!(
        "VmRSS at the end of each load: slow console {:.1} MiB, hostile import {:.1} MiB, wrong sign-ins {:.1} MiB",
        rss_slow / MIB,
        rss_import / MIB,
        rss_signins / MIB
    );
    for settle in [1, 5, 15] {
        std::thread::sleep(Duration::from_secs(settle));
        println!(
            "VmRSS: setup {:.1} MiB, peak {:.1} MiB, {settle} s later {:.1} MiB (goal <= 64 MiB)",
            rss_setup / MIB,
            peak / MIB,
            vm_rss() / MIB
        );
    }
    drop(phones);
}

/// p50, p99 and max of a phase, and its failures.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    ok: usize,
    failed: usize,
}

impl Latency {
    fn of(mut took: Vec<Duration>, failed: usize) -> Latency {
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| {
            took.get(((took.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or(f64::NAN, |d| ms(*d))
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: took.last().map_or(f64::NAN, |d| ms(*d)),
            ok: took.len(),
            failed,
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:6.2} ms  p99 {:6.2} ms  max {:7.2} ms  {} ok, {} failed",
            self.p50, self.p99, self.max, self.ok, self.failed
        )
    }
}

/// [`IMPORTS`] loops of refused imports on the management runtime, until
/// `stop`; each returns how many it made.
fn hostile_imports(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<switchboard_engine::Engine>,
    dir: &std::path::Path,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    use switchboard_pki::testpki;
    let pki = tempfile::tempdir_in(dir).expect("a directory for the hostile bundle");
    let leaf = testpki::Ca::root("Hostile CA").leaf(&["hostile.test"]);
    testpki::write(pki.path(), "key.pem", leaf.key_pem());
    testpki::encrypt_key(pki.path(), "key.pem", "key.enc.pem", 1_000_000);
    let bundle = Arc::new(leaf.pem().into_bytes());
    let key = Arc::new(testpki::read(pki.path(), "key.enc.pem"));
    (0..IMPORTS)
        .map(|i| {
            let (engine, bundle, key, stop) =
                (engine.clone(), bundle.clone(), key.clone(), stop.clone());
            rt.spawn(async move {
                let name = format!("hostile{i}").parse().expect("a name");
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let refused = engine
                        .import_cert(&name, &bundle, Some(&key), Some("wrong"))
                        .await;
                    assert!(refused.is_err(), "a wrong password is refused");
                    n += 1;
                }
                n
            })
        })
        .collect()
}

/// A load running in a child process, stopped on drop.
struct Load {
    child: std::process::Child,
}

impl Load {
    fn start(kind: &str, console: SocketAddr) -> Load {
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env(LOAD_VAR, format!("{kind} {}", console.port()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the load starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut ready)
            .expect("the load says it is ready");
        assert!(ready.starts_with("ready"), "the load: {ready}");
        Load { child }
    }

    /// Stops the load; what it says it did.
    fn stop(mut self) -> String {
        drop(self.child.stdin.take());
        let mut said = String::new();
        let _ = BufReader::new(self.child.stdout.as_mut().expect("piped")).read_line(&mut said);
        said.trim().to_owned()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The child: run the load named by `spec` until standard input closes.
fn child(spec: &str) {
    let (kind, port) = spec.split_once(' ').expect("KIND PORT");
    let console = SocketAddr::from((Ipv4Addr::LOCALHOST, port.parse().expect("a port")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let stopped = Arc::new(AtomicBool::new(false));
    let done = match kind {
        "slow" => rt.block_on(slow_connections(console)),
        "signins" => {
            let count = Arc::new(AtomicUsize::new(0));
            let clients: Vec<_> = (0..SIGNINS)
                .map(|i| rt.spawn(wrong_signins(console, i, count.clone(), stopped.clone())))
                .collect();
            println!("ready");
            std::io::stdout().flush().expect("stdout");
            wait_for_stdin_close();
            stopped.store(true, Ordering::SeqCst);
            rt.block_on(async {
                for c in clients {
                    let _ = c.await;
                }
            });
            Some(format!(
                "{} wrong sign-ins answered",
                count.load(Ordering::SeqCst)
            ))
        }
        other => panic!("unknown load {other}"),
    };
    if let Some(said) = done {
        println!("{said}");
    }
    rt.shutdown_background();
}

fn wait_for_stdin_close() {
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
}

/// [`SLOW`] connections holding an unfinished `POST /login`, then ready;
/// they close when standard input does.
async fn slow_connections(console: SocketAddr) -> Option<String> {
    let connector = TlsConnector::from(unverified_config());
    let name = ServerName::try_from(NAME).expect("a name");
    let mut held = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let from = Ipv4Addr::new(127, 0, 1, 1 + (i / MAX_PER_ADDRESS) as u8);
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(from), 0))
            .expect("a loopback source");
        let tcp = socket.connect(console).await.expect("connects");
        let mut tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake");
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: {NAME}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 65536\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.expect("the head");
        tls.write_all(&[b'a'; 16 * 1024])
            .await
            .expect("part of the body");
        tls.flush().await.expect("sent");
        held.push(tls);
    }
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    tokio::task::spawn_blocking(wait_for_stdin_close)
        .await
        .expect("waited");
    None
}

/// Signs in as `admin` with a wrong password until `stop`, each attempt a
/// new connection from a new source address (127.2.x.y, by `client`).
async fn wrong_signins(
    console: SocketAddr,
    client: usize,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let connector = TlsConnector::from(unverified_config());
    let name = ServerName::try_from(NAME).expect("a name");
    let body = "csrf=bench&username=admin&password=wrong-password";
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {NAME}\r\nCookie: __Host-switchboard-login=bench\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut attempt = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let n = attempt * SIGNINS + client;
        attempt += 1;
        let from = Ipv4Addr::new(127, 2, (n / 250) as u8, 1 + (n % 250) as u8);
        let Ok(socket) = TcpSocket::new_v4() else {
            continue;
        };
        if socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).is_err() {
            continue;
        }
        let Ok(tcp) = socket.connect(console).await else {
            continue;
        };
        let Ok(mut tls) = connector.connect(name.clone(), tcp).await else {
            continue;
        };
        if tls.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        if answer.starts_with(b"HTTP/1.1 401") || answer.starts_with(b"HTTP/1.1 200") {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("[::]:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound").port())
}

/// This process's resident memory, in bytes.
fn vm_rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc is mounted");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0)
}
