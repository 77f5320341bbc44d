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

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use common::docs::{Client, MEDIA_TYPE, PER_SOURCE, engine};
use common::{
    BenchCert, CLIENT_THREADS, CONCURRENCY, Nginx, Outcome, Prefix, ROUNDS, SERVER_THREADS, Server,
    THREADS, failed, medians, rounds, runtime, thread_cpu, unverified_config, verifying_config,
};
use switchboard_provision::ActivationToken;
use switchboard_store::Store;

/// Requests per round and server.
const PER_ROUND: usize = 5000;
const WARM_UP: usize = 500;

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
