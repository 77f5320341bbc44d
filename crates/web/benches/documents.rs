//! Configuration documents fetched per second, each over a new TLS
//! connection (how phones behave): the `web` service (`pages::web` on
//! `serve_https`, backed by a real `Engine` on a store in a temporary
//! directory) next to nginx serving a static file of the same size with
//! the same certificate, in the same run.
//!
//! Run it with `cargo xtask bench-docs` (which installs nginx when it is
//! missing); `cargo bench -p switchboard-web --bench documents` works where
//! nginx is installed. Not a test: it prints figures and a ratio.
//!
//! **Ours.** An `Engine` on `Store::open_dir` (SQLite, WAL,
//! `synchronous=FULL` unchanged), a P-256 certificate imported and bound to
//! `web` and `sip-tls`, provisioning settings, one account, an Update, and
//! one activation token per request (`Engine::activate`, read back from the
//! outbox). Every request uses its own token, so every 200 is a real,
//! committed consumption. The per-address rate limit (20 fetches a minute)
//! would throttle a loopback client, so requests come from many source
//! addresses in 127/8 (all loopback), 20 from each (`PER_SOURCE`): the
//! limit is checked on every fetch but refuses none, and any 429 would be
//! counted as a failure (and fail the final check).
//!
//! **nginx.** Same certificate, TLS 1.3 only, X25519 only, no session
//! tickets nor cache, `worker_processes 2`, `access_log off`, serving a
//! file holding a document fetched from ours (same size, same media type).
//!
//! **The load.** One client for both: 2 Tokio threads in this process,
//! 32 requests at a time, each a new TCP connection (source addresses as
//! above, for nginx too), a full TLS 1.3 handshake (X25519, no resumption, no ALPN, the
//! certificate not verified; one verifying fetch per server checks it
//! first), `GET` with `Connection: close`, and the whole answer read to the
//! server's close. A request counts when it is a 200 whose body has its
//! `Content-Length`. Rounds alternate ours and nginx with the same number
//! of requests each, after a warm-up of each.
//!
//! Afterwards the engine is dropped, the store opened again from disk, and
//! every token of ours checked used there.

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Nginx, Prefix, THREADS, Unverified, median, runtime, thread_cpu};
use switchboard_domain::provisioning::ProvisioningSettings;
use switchboard_domain::{CertName, ServiceId};
use switchboard_engine::{Engine, EngineConfig, FirewallMode, Origin};
use switchboard_pki::testpki::Ca;
use switchboard_provision::{ActivationToken, NewAccount};
use switchboard_store::Store;
use switchboard_web::https::{bind, serve_https};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const NAME: &str = "bench.test";
const CONCURRENCY: usize = 32;
/// Requests per round and server.
const PER_ROUND: usize = 5000;
const WARM_UP: usize = 500;
/// Requests from one source address: the engine's limit per address and
/// minute, so none is refused and its table stays small.
const PER_SOURCE: usize = 20;
const ROUNDS: usize = 3;
const SERVER_THREADS: &str = "bench-https";
const CLIENT_THREADS: &str = "bench-client";
const MEDIA_TYPE: &str = "application/vnd.switchboard.sip-account+json";

fn main() {
    let ca = Ca::root("Bench CA");
    let leaf = ca.leaf(&[NAME, "127.0.0.1"]);
    let chain_pem = [leaf.pem(), ca.pem()].concat();
    let key_pem = leaf.key_pem();

    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);

    let data = tempfile::tempdir().expect("a temporary directory");
    let tokens_needed = 1 + WARM_UP + ROUNDS * PER_ROUND;
    let made = Instant::now();
    let (engine, mut tokens) = server_rt.block_on(engine(
        data.path(),
        [chain_pem.as_str(), &key_pem].concat().as_bytes(),
        tokens_needed,
    ));
    println!(
        "setup: {tokens_needed} activation tokens made in {:.1} s (each one FULL commit)",
        made.elapsed().as_secs_f64()
    );
    let all_tokens = tokens.clone();

    let (ours, stop, done) = {
        let listeners = {
            let _runtime = server_rt.enter();
            bind(&["127.0.0.1:0".parse().expect("an address")]).expect("127.0.0.1 can be bound")
        };
        let addr = listeners[0].local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let app = switchboard_web::pages::web(engine.clone());
        let done = server_rt.spawn(serve_https(
            listeners,
            engine.tls_tables().web.clone(),
            app,
            async {
                stopped.await.ok();
            },
        ));
        (addr, stop, done)
    };

    // One verifying fetch: the chain, the name, and the document.
    let checker = Client::new(verifying_config(&ca.der));
    let sample = client_rt
        .block_on(checker.fetch(
            ours,
            &format!("/p/{}", tokens.pop().expect("a token")),
            Ipv4Addr::LOCALHOST,
        ))
        .expect("the first document fetch works and verifies");
    assert_eq!(sample.status, 200, "ours: the sample fetch");
    assert!(sample.content_type.starts_with(MEDIA_TYPE));
    let doc_len = sample.body.len();

    let prefix = Prefix::new();
    let p = prefix.path();
    std::fs::write(p.join("chain.pem"), &chain_pem).expect("the prefix is writable");
    std::fs::write(p.join("key.pem"), &key_pem).expect("the prefix is writable");
    std::fs::create_dir_all(p.join("www")).expect("the prefix is writable");
    std::fs::write(p.join("www/doc"), &sample.body).expect("the prefix is writable");
    let site = format!(
        "root {}/www;\n        default_type {MEDIA_TYPE};\n        location / {{ }}",
        p.display()
    );
    let nginx = Nginx::start(p, &site, "bench-docs");
    let nginx_sample = client_rt
        .block_on(checker.fetch(nginx.addr, "/doc", Ipv4Addr::LOCALHOST))
        .expect("nginx serves the document and verifies");
    assert_eq!(nginx_sample.status, 200, "nginx: the sample fetch");
    assert_eq!(nginx_sample.body, sample.body);

    println!(
        "document fetches, each a new TCP connection + full TLS 1.3 handshake (ECDSA P-256, X25519, \
         no resumption) + GET + the whole answer: document {doc_len} bytes ({MEDIA_TYPE}); \
         {CONCURRENCY} concurrent, {PER_ROUND} requests per run, {ROUNDS} rounds alternating"
    );
    println!(
        "ours: Engine + pages::web on serve_https, Tokio runtime with {THREADS} worker threads, \
         store on {} (synchronous=FULL); {}: worker_processes {THREADS}, static file; \
         client: {THREADS} threads, {PER_SOURCE} requests per 127/8 source address; {} cores",
        data.path().display(),
        nginx.version,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let load = Client::new(unverified_config());
    let source = AtomicUsize::new(0);
    let ours_cpu = || thread_cpu(SERVER_THREADS);
    let nginx_cpu = || nginx.cpu();
    let mut ours_paths = |n: usize| -> Vec<String> {
        tokens
            .drain(tokens.len() - n..)
            .map(|t| format!("/p/{t}"))
            .collect()
    };
    let nginx_paths = |n: usize| vec!["/doc".to_owned(); n];
    let warm_ours = client_rt.block_on(load.run(ours, ours_paths(WARM_UP), &source, &ours_cpu));
    let warm_nginx =
        client_rt.block_on(load.run(nginx.addr, nginx_paths(WARM_UP), &source, &nginx_cpu));
    println!("warm-up ours   {warm_ours}");
    println!("warm-up nginx  {warm_nginx}");
    let mut results: Vec<(Outcome, Outcome)> = Vec::new();
    for round in 1..=ROUNDS {
        let a = client_rt.block_on(load.run(ours, ours_paths(PER_ROUND), &source, &ours_cpu));
        println!("round {round}  ours   {a}");
        let b =
            client_rt.block_on(load.run(nginx.addr, nginx_paths(PER_ROUND), &source, &nginx_cpu));
        println!("round {round}  nginx  {b}");
        results.push((a, b));
    }
    drop(nginx);

    let rate = |f: fn(&(Outcome, Outcome)) -> &Outcome| {
        median(results.iter().map(|r| f(r).per_second()).collect())
    };
    let cost = |f: fn(&(Outcome, Outcome)) -> &Outcome| {
        median(results.iter().map(|r| f(r).server_cpu_per_ok()).collect())
    };
    let (ours_rate, nginx_rate) = (rate(|r| &r.0), rate(|r| &r.1));
    let (ours_cost, nginx_cost) = (cost(|r| &r.0), cost(|r| &r.1));
    println!(
        "median  ours {ours_rate:.0} fetches/s, nginx {nginx_rate:.0} fetches/s: ours/nginx = {:.2}x (goal >= 1.0x)",
        ours_rate / nginx_rate
    );
    println!(
        "server CPU per fetch (median): ours {:.0} us, nginx {:.0} us",
        ours_cost * 1e6,
        nginx_cost * 1e6,
    );
    let ours_sent = WARM_UP + ROUNDS * PER_ROUND;
    let ours_ok = warm_ours.ok + results.iter().map(|r| r.0.ok).sum::<u64>();
    let failed: u64 = warm_ours.failed
        + warm_nginx.failed
        + results
            .iter()
            .map(|(a, b)| a.failed + b.failed)
            .sum::<u64>();
    println!(
        "ours: {ours_ok} of {ours_sent} fetches answered 200 with the whole document{}",
        if failed > 0 {
            format!("; {failed} requests failed in all (see above)")
        } else {
            String::new()
        }
    );

    stop.send(()).expect("our server is running");
    server_rt
        .block_on(done)
        .expect("serve_https does not panic")
        .expect("our server shuts down cleanly");
    // Release the store (the engine is shared with connection tasks until
    // they end), then check every token on disk.
    let since = Instant::now();
    while Arc::strong_count(&engine) > 1 && since.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server_rt.block_on(engine.shutdown());
    drop(engine);
    // The token consumer lets go of the store once it sees the engine gone.
    let since = Instant::now();
    let mut store = loop {
        match Store::open_dir(data.path()) {
            Ok(store) => break store,
            Err(e) if since.elapsed() > Duration::from_secs(10) => {
                panic!("the store opens again: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let now = jiff::Timestamp::now();
    let mut unused = 0;
    for t in &all_tokens {
        let hash = ActivationToken::parse_path_segment(t)
            .expect("a token")
            .hash()
            .to_string();
        // Consumes nothing that was used: an unused token would show here.
        if store
            .consume_token(&hash, now)
            .expect("the store answers")
            .is_some()
        {
            unused += 1;
        }
    }
    println!(
        "store reopened from disk: {} of {} tokens used ({} fetched: the sample + warm-up + rounds)",
        all_tokens.len() - unused,
        all_tokens.len(),
        1 + ours_sent
    );
    assert_eq!(ours_ok as usize, ours_sent, "every fetch of ours is a 200");
    assert_eq!(unused, all_tokens.len() - 1 - ours_sent);
}

/// A booted engine on `dir` serving `bundle` for `web` and `sip-tls`, and
/// `n` activation tokens of one account.
async fn engine(dir: &Path, bundle: &[u8], n: usize) -> (Arc<Engine>, Vec<String>) {
    let engine = Engine::new(
        EngineConfig {
            data_dir: dir.to_owned(),
            firewall: FirewallMode::Plan,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: false,
        },
        Store::open_dir(dir).expect("the store opens"),
    )
    .expect("the engine starts");
    engine.set_facts(switchboard_domain::testing::facts(&[(
        "lo0",
        Some("127.0.0.1"),
    )]));
    engine.boot().await.expect("boot");
    let cert: CertName = "bench".parse().expect("a certificate name");
    engine
        .import_cert(&cert, bundle, None, None)
        .await
        .expect("the bench certificate imports");
    for service in [ServiceId::Web, ServiceId::SipTls] {
        engine
            .bind(service, None, &cert, false)
            .await
            .expect("the certificate binds");
    }
    engine
        .set_provisioning(ProvisioningSettings {
            sip_tls_hostname: Some(NAME.parse().expect("a host name")),
            web_uri: Some(format!("https://{NAME}").parse().expect("a URI")),
            ..ProvisioningSettings::default()
        })
        .await
        .expect("the certificate covers the names");
    engine
        .update(&Origin::local(0, None), "bench", None)
        .await
        .expect("update");
    let account = engine
        .add_account(NewAccount {
            username: None,
            display_name: Some("Bench".parse().expect("a name")),
            phone: "+15550100199".parse().expect("a phone number"),
            group: None,
            profile: Default::default(),
        })
        .await
        .expect("the account is added");
    for _ in 0..n {
        engine
            .activate(&account.username)
            .await
            .expect("activation");
    }
    let tokens: Vec<String> = engine
        .sms()
        .await
        .expect("the outbox")
        .into_iter()
        .filter_map(|m| {
            let text = m.text?;
            let token = text.split("/p/").nth(1)?.split_whitespace().next()?;
            Some(token.to_owned())
        })
        .collect();
    assert_eq!(tokens.len(), n, "one link per activation in the outbox");
    (Arc::new(engine), tokens)
}

/// The `i`th source address: 127.c.b.a, every one distinct (for `i` below
/// about 15 million), never 127.0.0.1.
fn source_ip(i: usize) -> Ipv4Addr {
    let a = 1 + (i % 250) as u8;
    let b = ((i / 250) % 250) as u8;
    let c = 1 + (i / 62_500) as u8;
    Ipv4Addr::new(127, c, b, a)
}

struct Client {
    connector: TlsConnector,
    name: ServerName<'static>,
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Outcome {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    elapsed: Duration,
    server_cpu: f64,
    client_cpu: f64,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn server_cpu_per_ok(&self) -> f64 {
        self.server_cpu / self.ok as f64
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{:>6.0} fetches/s ({} in {:.2} s); server {:.2} cores, {:.0} us/fetch; client {:.2} cores",
            self.per_second(),
            self.ok,
            secs,
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

impl Client {
    fn new(config: Arc<ClientConfig>) -> Client {
        Client {
            connector: TlsConnector::from(config),
            name: ServerName::try_from(NAME).expect("a valid name"),
        }
    }

    /// `paths`, `CONCURRENCY` at a time, each from the next source address.
    async fn run(
        &self,
        addr: SocketAddr,
        paths: Vec<String>,
        source: &AtomicUsize,
        server_cpu: &dyn Fn() -> f64,
    ) -> Outcome {
        let paths = Arc::new(paths);
        let next = Arc::new(AtomicUsize::new(0));
        let first_source = source.fetch_add(paths.len(), Ordering::Relaxed);
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (cpu0, client0, start) = (server_cpu(), thread_cpu(CLIENT_THREADS), Instant::now());
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let client = Client {
                    connector: self.connector.clone(),
                    name: self.name.clone(),
                };
                let (paths, next, ok, failed) =
                    (paths.clone(), next.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let mut first_error = None;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        match client
                            .fetch(addr, path, source_ip((first_source + i) / PER_SOURCE))
                            .await
                        {
                            Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(a) => {
                                first_error.get_or_insert(format!("status {}", a.status));
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
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
        for w in workers {
            let error = w.await.expect("a load client does not panic");
            first_error = first_error.or(error);
        }
        Outcome {
            elapsed: start.elapsed(),
            server_cpu: server_cpu() - cpu0,
            client_cpu: thread_cpu(CLIENT_THREADS) - client0,
            ok: ok.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            first_error,
        }
    }

    /// A new connection from `from`, a full handshake, one `GET`, and the
    /// whole answer up to the server's close. An answer whose body is not
    /// its `Content-Length` is an error.
    async fn fetch(&self, addr: SocketAddr, path: &str, from: Ipv4Addr) -> io::Result<Answer> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self.connector.connect(self.name.clone(), tcp).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // A server that closes without close_notify after a complete
        // answer: the length check below decides.
        if let Err(e) = tls.read_to_end(&mut answer).await
            && e.kind() != io::ErrorKind::UnexpectedEof
        {
            return Err(e);
        }
        parse(&answer)
    }
}

fn parse(answer: &[u8]) -> io::Result<Answer> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete header"))?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad("a header not UTF-8"))?;
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let (mut length, mut content_type) = (None, String::new());
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = v.trim().to_owned();
            }
        }
    }
    if length != Some(body.len()) {
        return Err(bad(&format!(
            "a body of {} bytes, Content-Length {length:?}",
            body.len()
        )));
    }
    Ok(Answer {
        status,
        content_type,
        body: body.to_vec(),
    })
}

fn provider() -> CryptoProvider {
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![ring::kx_group::X25519];
    provider.cipher_suites = vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    provider
}

fn unverified_config() -> Arc<ClientConfig> {
    let provider = Arc::new(provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

fn verifying_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("the CA is usable");
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}
