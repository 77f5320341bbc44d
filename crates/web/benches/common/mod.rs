//! What the HTTPS benchmarks share: the certificate, the runtime, our
//! server on `serve_https`, nginx (the reference server, in a prefix of its
//! own, stopped on drop), the client's TLS configurations (one that accepts
//! anything, for the load), the load loop and its outcome, and CPU
//! accounting from /proc.

#![allow(dead_code)] // each benchmark uses its own part

pub mod docs;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use switchboard_pki::CertTable;
use switchboard_pki::testpki::{Ca, Leaf};
use switchboard_web::https::{bind, serve_https};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The name both servers' certificate is for, and the clients ask for.
pub const NAME: &str = "bench.test";
/// Connections (or requests) the load keeps going at a time.
pub const CONCURRENCY: usize = 32;
/// Measured rounds, each one run of ours then one of nginx.
pub const ROUNDS: usize = 3;
/// Thread names, to find each side's CPU time in `/proc/self/task`.
pub const SERVER_THREADS: &str = "bench-https";
pub const CLIENT_THREADS: &str = "bench-client";
/// Worker threads of our server and of nginx (the machine has 2 cores).
pub const THREADS: usize = 2;
/// Where nginx's prefix goes when set (xtask sets it to clean up after a kill).
pub const PREFIX_VAR: &str = "SWITCHBOARD_BENCH_NGINX_PREFIX";
/// Clock ticks per second of /proc's CPU times.
pub const USER_HZ: f64 = 100.0;

pub fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The certificate both servers present: an ECDSA P-256 leaf for
/// [`NAME`] and 127.0.0.1, and its CA.
pub struct BenchCert {
    pub ca: Ca,
    pub leaf: Leaf,
    pub chain_pem: String,
    pub key_pem: String,
}

impl BenchCert {
    pub fn new() -> BenchCert {
        let ca = Ca::root("Bench CA");
        let leaf = ca.leaf(&[NAME, "127.0.0.1"]);
        let chain_pem = [leaf.pem(), ca.pem()].concat();
        let key_pem = leaf.key_pem();
        BenchCert {
            ca,
            leaf,
            chain_pem,
            key_pem,
        }
    }

    /// The chain and the key in one PEM bundle, as switchboard imports it.
    pub fn bundle(&self) -> String {
        [self.chain_pem.as_str(), &self.key_pem].concat()
    }
}

/// Our server: `serve_https` on 127.0.0.1 (a free port) on `rt`, until
/// [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: JoinHandle<io::Result<()>>,
}

impl Server {
    pub fn start(rt: &Runtime, table: Arc<CertTable>, app: Router) -> Server {
        let listeners = {
            let _runtime = rt.enter();
            bind(&["127.0.0.1:0".parse().expect("an address")]).expect("127.0.0.1 can be bound")
        };
        let addr = listeners[0].local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = rt.spawn(serve_https(listeners, table, app, async {
            stopped.await.ok();
        }));
        Server { addr, stop, done }
    }

    /// Shuts the server down and checks that it ended cleanly.
    pub fn stop(self, rt: &Runtime) {
        self.stop.send(()).expect("our server is running");
        rt.block_on(self.done)
            .expect("serve_https does not panic")
            .expect("our server shuts down cleanly");
    }
}

/// The client's crypto: TLS 1.3 with X25519 and one cipher suite only.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![ring::kx_group::X25519];
    provider.cipher_suites = vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    Arc::new(provider)
}

/// The load's client: TLS 1.3, X25519, no resumption, and no checks of
/// the certificate ([`Unverified`]).
pub fn unverified_config() -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// The checking client: as [`unverified_config`], verifying the chain to
/// `ca` and the name.
pub fn verifying_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA is usable");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// What one run of the load did.
#[derive(Debug)]
pub struct Outcome {
    /// What a request is, plural, for the figures (`handshakes`).
    pub unit: &'static str,
    pub ok: u64,
    pub failed: u64,
    /// Of the requests that failed, the first error.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub server_cpu: f64,
    pub client_cpu: f64,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn server_cpu_per_ok(&self) -> f64 {
        self.server_cpu / self.ok as f64
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{:>7.0} {}/s ({} in {secs:.2} s); server {:.2} cores, {:.0} us each; client {:.2} cores",
            self.per_second(),
            self.unit,
            self.ok,
            self.server_cpu / secs,
            self.server_cpu_per_ok() * 1e6,
            self.client_cpu / secs,
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "; {} failed, first: {e}", self.failed)?;
        }
        Ok(())
    }
}

/// [`CONCURRENCY`] clients, each running the requests `next` gives until
/// it gives none, on the current runtime (the client's); counts the
/// requests that succeed and fail, and measures the time, the server's CPU
/// (`server_cpu`) and the client threads'.
pub async fn load<F, R>(unit: &'static str, server_cpu: &dyn Fn() -> f64, next: F) -> Outcome
where
    F: Fn() -> Option<R> + Clone + Send + 'static,
    R: Future<Output = Result<(), String>> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (cpu0, client0, start) = (server_cpu(), thread_cpu(CLIENT_THREADS), Instant::now());
    let clients: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, ok, failed) = (next.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut first_error = None;
                while let Some(request) = next() {
                    match request.await {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            first_error.get_or_insert(e);
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
        unit,
        elapsed: start.elapsed(),
        server_cpu: server_cpu() - cpu0,
        client_cpu: thread_cpu(CLIENT_THREADS) - client0,
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_error,
    }
}

/// [`ROUNDS`] rounds of a run of ours then one of nginx, each printed.
pub fn rounds(
    mut ours: impl FnMut() -> Outcome,
    mut nginx: impl FnMut() -> Outcome,
) -> Vec<(Outcome, Outcome)> {
    (1..=ROUNDS)
        .map(|round| {
            let a = ours();
            println!("round {round}  ours   {a}");
            let b = nginx();
            println!("round {round}  nginx  {b}");
            (a, b)
        })
        .collect()
}

/// The medians of `f` over the rounds: (ours, nginx).
pub fn medians(results: &[(Outcome, Outcome)], f: fn(&Outcome) -> f64) -> (f64, f64) {
    (
        median(results.iter().map(|r| f(&r.0)).collect()),
        median(results.iter().map(|r| f(&r.1)).collect()),
    )
}

/// Requests that failed in `results`.
pub fn failed(results: &[(Outcome, Outcome)]) -> u64 {
    results.iter().map(|(a, b)| a.failed + b.failed).sum()
}

/// Accepts any certificate and signature: the load generator's, so that
/// its CPU goes to handshakes, not to checks done once by [`check`].
#[derive(Debug)]
pub struct Unverified(pub Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where nginx keeps its configuration, certificate, logs and pid file.
pub struct Prefix {
    path: PathBuf,
    _temporary: Option<tempfile::TempDir>,
}

impl Prefix {
    pub fn new() -> Prefix {
        match std::env::var_os(PREFIX_VAR) {
            Some(path) => {
                let path = PathBuf::from(path);
                std::fs::create_dir_all(&path).expect("the nginx prefix can be created");
                Prefix {
                    path,
                    _temporary: None,
                }
            }
            None => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                Prefix {
                    path: dir.path().to_owned(),
                    _temporary: Some(dir),
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// nginx in the foreground, as this process's child; stopped on drop,
/// also when the bench panics.
pub struct Nginx {
    pub master: Child,
    pub addr: SocketAddr,
    pub version: String,
}

impl Nginx {
    /// nginx serving `cert` and `site` (the rest of its `server` block)
    /// from `prefix`; `task` is the xtask that installs it.
    pub fn start(prefix: &Path, cert: &BenchCert, site: &str, task: &str) -> Nginx {
        let version = Command::new("nginx").arg("-v").output().unwrap_or_else(|e| {
            panic!("the benchmark compares with nginx: run `cargo xtask {task}`, which installs it ({e})")
        });
        let version = String::from_utf8_lossy(&version.stderr)
            .trim()
            .trim_start_matches("nginx version: ")
            .to_owned();
        let addr = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1");
        std::fs::write(prefix.join("chain.pem"), &cert.chain_pem).expect("the prefix is writable");
        std::fs::write(prefix.join("key.pem"), &cert.key_pem).expect("the prefix is writable");
        let p = prefix.display();
        let config = format!(
            "worker_processes {THREADS};
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen {addr} ssl;
        ssl_certificate {p}/chain.pem;
        ssl_certificate_key {p}/key.pem;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_tickets off;
        ssl_session_cache off;
        {site}
    }}
}}
"
        );
        std::fs::write(prefix.join("nginx.conf"), config).expect("the prefix is writable");
        let master = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            master,
            addr,
            version,
        };
        let since = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            let exited = nginx.master.try_wait().expect("nginx can be waited for");
            if exited.is_some() || since.elapsed() > Duration::from_secs(10) {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                panic!("nginx does not listen on {addr} ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    /// CPU seconds of the master and its workers so far.
    pub fn cpu(&self) -> f64 {
        let master = self.master.id();
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc")
            .expect("/proc is mounted")
            .flatten()
        {
            let Some(stat) = entry
                .file_name()
                .to_str()
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|_| std::fs::read_to_string(entry.path().join("stat")).ok())
            else {
                continue;
            };
            if let Some((pid, ppid, cpu)) = parse_stat(&stat)
                && (pid == master || ppid == master)
            {
                total += cpu;
            }
        }
        total
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then itself.
        let master = rustix::process::Pid::from_child(&self.master);
        if rustix::process::kill_process(master, rustix::process::Signal::TERM).is_ok() {
            let since = Instant::now();
            while since.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.master.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.master.kill().ok();
        self.master.wait().ok();
    }
}

/// CPU seconds so far of this process's threads named `name`.
pub fn thread_cpu(name: &str) -> f64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc is mounted")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter(|stat| stat.contains(&format!("({name})")))
        .filter_map(|stat| parse_stat(&stat).map(|(_, _, cpu)| cpu))
        .sum()
}

/// pid, parent pid and CPU seconds (user and system) from a `stat` file
/// of `/proc`.
fn parse_stat(stat: &str) -> Option<(u32, u32, f64)> {
    let (pid, rest) = stat.split_once(" (")?;
    // The command name may contain anything, so fields count from its end.
    let (_, fields) = rest.rsplit_once(") ")?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((
        pid.parse().ok()?,
        fields.get(1)?.parse().ok()?,
        (ticks(11)? + ticks(12)?) as f64 / USER_HZ,
    ))
}
