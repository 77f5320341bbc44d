//! The console's Accounts page at 1,000, 10,000 and 100,000 accounts: the
//! latency (p50, p99) of the first page, a search, a filter by state and
//! the last page, each a whole request through the console's router (its
//! session, CSRF and security middleware, the engine, the store's SQL and
//! the page's rendering; no TLS, no socket). The peer, in the same run:
//! the whole list of accounts (`GET /v1/accounts`), which is what the page
//! read before it was paged.
//!
//! `cargo bench -p switchboard-web --bench accounts`. Not a test: it
//! prints figures and ratios. The goal: p99 ≤ 200 ms at 100,000 accounts.
//!
//! The store is a file (`Store::open_dir`: WAL, `synchronous=FULL`), the
//! accounts come from CSV imports of 10,000 rows (the most one file
//! holds), one in 20 has an activation link made (for the state filters).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use switchboard_engine::{Engine, Origin};
use switchboard_web::console;
use switchboard_web::https::HttpsPeer;
use tower::ServiceExt as _;

const PASSWORD: &str = "a long bench password 1";
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Requests per kind and size (the peer gets fewer at large sizes: it is
/// slow by design).
const REQUESTS: usize = 200;

struct Console {
    app: axum::Router,
    cookie: String,
}

impl Console {
    async fn send(
        &self,
        path: &str,
        cookie: Option<&str>,
        req: Request<Body>,
    ) -> (u16, Vec<u8>, Option<String>) {
        let _ = path;
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(HttpsPeer {
            remote: "192.0.2.2:40000".parse::<SocketAddr>().expect("address"),
            local: "192.0.2.1:8443".parse::<SocketAddr>().expect("address"),
            accepted: Instant::now(),
        }));
        if let Some(c) = cookie {
            req.headers_mut()
                .insert(header::COOKIE, c.parse().expect("cookie"));
        }
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
            .find(|v| !v.ends_with('='));
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body.to_vec(), set_cookie)
    }

    async fn get(&self, path: &str) -> Duration {
        let started = Instant::now();
        let req = Request::get(path).body(Body::empty()).expect("request");
        let (status, body, _) = self.send(path, Some(&self.cookie), req).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        took
    }

    /// The console signed in, through its own sign-in form.
    async fn signed_in(engine: Arc<Engine>) -> Console {
        let mut c = Console {
            app: console::router(engine),
            cookie: String::new(),
        };
        let (_, _, pre) = c
            .send(
                "/login",
                None,
                Request::get("/login").body(Body::empty()).expect("request"),
            )
            .await;
        let pre = pre.expect("the sign-in page's cookie");
        let token = pre.split_once('=').expect("name=value").1.to_owned();
        let body = format!(
            "csrf={token}&username=admin&password={}",
            PASSWORD.replace(' ', "+")
        );
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        let (status, _, session) = c.send("/login", Some(&pre), req).await;
        assert_eq!(status, 303, "signed in");
        c.cookie = session.expect("a session cookie");
        c
    }
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

async fn fill(engine: &Engine, accounts: usize) {
    let mut made = 0;
    while made < accounts {
        let chunk = (accounts - made).min(switchboard_provision::MAX_CSV_ROWS);
        let mut csv = String::from("phone,name,group\n");
        for i in made..made + chunk {
            let group = if i % 3 == 0 { "sales" } else { "field" };
            csv.push_str(&format!("+1555{i:07},Person {i},{group}\n"));
        }
        engine
            .import_accounts(csv.as_bytes())
            .await
            .expect("import");
        made += chunk;
    }
    for a in engine
        .accounts()
        .await
        .expect("accounts")
        .iter()
        .step_by(20)
    {
        engine
            .activate_in_person(&a.username)
            .await
            .expect("a link");
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("Accounts page, {REQUESTS} requests of each kind, one at a time (ms)");
    println!(
        "{:>8}  {:<28} {:>8} {:>8}",
        "accounts", "request", "p50", "p99"
    );
    for size in SIZES {
        let data = tempfile::tempdir().expect("a temporary directory");
        rt.block_on(async {
            let store = switchboard_store::Store::open_dir(data.path()).expect("store");
            let engine = Arc::new(
                switchboard_engine::testing::booted_on(store, switchboard_system::sms::Gateway::Outbox).await,
            );
            let root = Origin::local(0, None);
            engine.set_admin_password(&root, "admin", PASSWORD).await.expect("password");
            let host = switchboard_system::dns::hostname();
            engine
                .set_provisioning(switchboard_domain::provisioning::ProvisioningSettings {
                    sip_tls_hostname: Some(host.parse().expect("host name")),
                    web_uri: Some(format!("https://{host}").parse().expect("uri")),
                    ..Default::default()
                })
                .await
                .expect("provisioning");
            engine.update(&root, "", None).await.expect("update");
            let made = Instant::now();
            fill(&engine, size).await;
            let fill_time = made.elapsed();
            let c = Console::signed_in(engine.clone()).await;
            let last = size.div_ceil(50);
            let kinds = [
                ("first page".to_owned(), "/accounts".to_owned()),
                ("search (one match)".to_owned(), format!("/accounts?q=Person+{}", size / 2 + 1)),
                ("search (a third)".to_owned(), "/accounts?q=sales".to_owned()),
                ("filter link-sent, page 3".to_owned(), "/accounts?state=link-sent&page=3".to_owned()),
                ("sort by name, last page".to_owned(), format!("/accounts?sort=name&page={last}")),
            ];
            let mut p99_max: f64 = 0.0;
            let mut page_p50 = 0.0;
            for (name, path) in &kinds {
                c.get(path).await; // warm
                let mut samples = Vec::with_capacity(REQUESTS);
                for _ in 0..REQUESTS {
                    samples.push(c.get(path).await);
                }
                let (p50, p99) = percentiles(samples);
                if page_p50 == 0.0 {
                    page_p50 = p50;
                }
                p99_max = p99_max.max(p99);
                println!("{size:>8}  {name:<28} {p50:>8.1} {p99:>8.1}");
            }
            let peer_requests = (REQUESTS * 1_000 / size).clamp(5, REQUESTS);
            let mut samples = Vec::with_capacity(peer_requests);
            c.get("/v1/accounts").await;
            for _ in 0..peer_requests {
                samples.push(c.get("/v1/accounts").await);
            }
            let (p50, p99) = percentiles(samples);
            println!(
                "{size:>8}  {:<28} {p50:>8.1} {p99:>8.1}   (peer, {peer_requests} requests; first page {:.1}x faster at p50)",
                "whole list (GET /v1/accounts)",
                p50 / page_p50
            );
            println!(
                "{size:>8}  worst p99 of the page: {p99_max:.1} ms (goal 200 at 100,000); filled in {:.1} s",
                fill_time.as_secs_f64()
            );
        });
    }
}
