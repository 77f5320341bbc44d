//! What the HTTPS benchmarks share: the runtime, nginx (the reference
//! server, in a prefix of its own, stopped on drop), a client verifier that
//! accepts anything, and CPU accounting from /proc.

#![allow(dead_code)] // each benchmark uses its own part

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

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
    pub fn start(prefix: &Path, site: &str, task: &str) -> Nginx {
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
