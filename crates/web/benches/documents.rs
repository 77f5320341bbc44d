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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    BenchCert, CLIENT_THREADS, CONCURRENCY, NAME, Nginx, Outcome, Prefix, ROUNDS, SERVER_THREADS,
    Server, THREADS, failed, load, medians, rounds, runtime, thread_cpu, unverified_config,
    verifying_config,
};
use switchboard_domain::provisioning::ProvisioningSettings;
use switchboard_domain::{CertName, ServiceId};
use switchboard_engine::{Engine, EngineConfig, FirewallMode, Origin};
use switchboard_provision::{ActivationToken, NewAccount};
use switchboard_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// Requests per round and server.
const PER_ROUND: usize = 5000;
const WARM_UP: usize = 500;
/// Requests from one source address: the engine's limit per address and
/// minute, so none is refused and its table stays small.
const PER_SOURCE: usize = 20;
const MEDIA_TYPE: &str = "application/vnd.switchboard.sip-account+json";

fn main() {
    let cert = BenchCert::new();
    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);

    let data = tempfile::tempdir().expect("a temporary directory");
    let tokens_needed = 1 + WARM_UP + ROUNDS * PER_ROUND;
    let made = Instant::now();
    let (engine, mut tokens) =
        server_rt.block_on(engine(data.path(), cert.bundle().as_bytes(), tokens_needed));
    println!(
        "setup: {tokens_needed} activation tokens made in {:.1} s (each one FULL commit)",
        made.elapsed().as_secs_f64()
    );
    let all_tokens = tokens.clone();

    let server = Server::start(
        &server_rt,
        engine.tls_tables().web.clone(),
        switchboard_web::pages::web(engine.clone()),
    );
    let ours = server.addr;

    // One verifying fetch: the chain, the name, and the document.
    let checker = Client::new(verifying_config(&cert.ca.der));
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
    std::fs::create_dir_all(p.join("www")).expect("the prefix is writable");
    std::fs::write(p.join("www/doc"), &sample.body).expect("the prefix is writable");
    let site = format!(
        "root {}/www;\n        default_type {MEDIA_TYPE};\n        location / {{ }}",
        p.display()
    );
    let nginx = Nginx::start(p, &cert, &site, "bench-docs");
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
    let run = |addr: SocketAddr, paths: Vec<String>, cpu: &dyn Fn() -> f64| {
        client_rt.block_on(load.run(addr, paths, &source, cpu))
    };
    let warm_ours = run(ours, ours_paths(WARM_UP), &ours_cpu);
    let warm_nginx = run(nginx.addr, nginx_paths(WARM_UP), &nginx_cpu);
    println!("warm-up ours   {warm_ours}");
    println!("warm-up nginx  {warm_nginx}");
    let results = rounds(
        || run(ours, ours_paths(PER_ROUND), &ours_cpu),
        || run(nginx.addr, nginx_paths(PER_ROUND), &nginx_cpu),
    );
    drop(nginx);

    let (ours_rate, nginx_rate) = medians(&results, Outcome::per_second);
    let (ours_cost, nginx_cost) = medians(&results, Outcome::server_cpu_per_ok);
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
    let failed = warm_ours.failed + warm_nginx.failed + failed(&results);
    println!(
        "ours: {ours_ok} of {ours_sent} fetches answered 200 with the whole document{}",
        if failed > 0 {
            format!("; {failed} requests failed in all (see above)")
        } else {
            String::new()
        }
    );

    server.stop(&server_rt);
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

#[derive(Clone)]
struct Client {
    connector: TlsConnector,
    name: ServerName<'static>,
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Client {
    fn new(config: Arc<ClientConfig>) -> Client {
        Client {
            connector: TlsConnector::from(config),
            name: ServerName::try_from(NAME).expect("a valid name"),
        }
    }

    /// `paths`, [`CONCURRENCY`] at a time, each from the next source
    /// address; a request counts when it is a 200.
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
        let client = self.clone();
        load("fetches", server_cpu, move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let path = paths.get(i)?.clone();
            let client = client.clone();
            Some(async move {
                match client
                    .fetch(addr, &path, source_ip((first_source + i) / PER_SOURCE))
                    .await
                {
                    Ok(a) if a.status == 200 => Ok(()),
                    Ok(a) => Err(format!("status {}", a.status)),
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .await
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
