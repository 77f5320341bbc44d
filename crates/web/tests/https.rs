//! `serve_https` over loopback: 127.0.0.1 and 127.0.0.2 present different
//! certificates to real clients (`openssl s_client`, `curl`) and to rustls
//! clients; rotation under load; silent and plain-HTTP clients; shutdown;
//! binding again over TIME_WAIT. The daemon's `Listeners`: a port moved
//! while a request is in flight on the old one; a port that cannot be
//! bound changes nothing. Needs no root, but runs the `openssl` and
//! `curl` binaries.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_domain::ServiceId;
use switchboard_engine::{ListenSocket, ListenerControl};
use switchboard_pki::testpki::Ca;
use switchboard_pki::{CertBindings, CertTable, TlsIdentity, import};
use switchboard_web::https::{
    BODY_GRACE, HttpsPeer, Listeners, MAX_PER_ADDRESS, MAX_REQUEST_BODY, PLANE_NICE, Plane, bind,
    serve_https,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const ONE: &str = "127.0.0.1";
const TWO: &str = "127.0.0.2";

/// A test CA, its PEM in a directory for the command-line clients.
struct Pki {
    ca: Ca,
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::root("Switchboard Test CA");
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("the directory is writable");
        Pki { ca, dir }
    }

    fn ca_file(&self) -> &Path {
        self.dir.path()
    }

    /// A new certificate (and key) for `name`, and its DER to compare with
    /// what a server presents.
    fn identity(&self, name: &str) -> (TlsIdentity, CertificateDer<'static>) {
        let leaf = self.ca.leaf(&[name]);
        let bundle = import(
            [leaf.pem(), leaf.key_pem(), self.ca.pem()]
                .concat()
                .as_bytes(),
            None,
            None,
        )
        .expect("the test certificate imports");
        (
            TlsIdentity::new(&bundle).expect("the bundle has its key"),
            leaf.der,
        )
    }

    /// A rustls client that trusts the CA and always makes full handshakes.
    fn client(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der.clone()).expect("the CA is usable");
        let mut config = ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.resumption = Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }
}

fn bindings(one: &TlsIdentity, two: &TlsIdentity) -> CertBindings {
    let mut bindings = CertBindings::new();
    bindings.bind(ONE.parse().expect("an address"), one.clone());
    bindings.bind(TWO.parse().expect("an address"), two.clone());
    bindings
}

fn table(bindings: CertBindings) -> Arc<CertTable> {
    Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings))
}

/// `GET /` answers the local address the request arrived on; `GET /slow`
/// answers after half a second.
fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<HttpsPeer>| async move { peer.local.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow"
            }),
        )
        .route(
            "/slow-body",
            axum::routing::post(|body: String| async move { body.len().to_string() }),
        )
}

struct Server {
    /// One listener per address asked for, in that order.
    addrs: Vec<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(table: Arc<CertTable>, locals: &[&str]) -> Server {
        let wanted: Vec<SocketAddr> = locals
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().expect("an address"), 0))
            .collect();
        let listeners = bind(&wanted).expect("loopback addresses can be bound");
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound"))
            .collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(serve_https(listeners, table, app(), async {
            stopped.await.ok();
        }));
        Server {
            addrs,
            stop: Some(stop),
            done,
        }
    }

    /// Asks for shutdown and waits until `serve_https` returned.
    async fn shut_down(mut self) -> io::Result<()> {
        self.stop
            .take()
            .expect("not stopped yet")
            .send(())
            .expect("the server is running");
        self.done.await.expect("serve_https does not panic")
    }
}

/// An HTTP/1.1 connection over TLS, and the certificate it was shown.
struct Client {
    sender: SendRequest<Empty<Bytes>>,
    presented: CertificateDer<'static>,
}

impl Client {
    async fn connect(tls: &TlsConnector, addr: SocketAddr, name: &str) -> io::Result<Client> {
        let stream = handshake(tls, addr, name).await?;
        let presented = presented(&stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(conn);
        Ok(Client { sender, presented })
    }

    async fn get(&mut self, path: &str) -> io::Result<(StatusCode, String)> {
        let request = Request::get(path)
            .header("host", "switchboard")
            .body(Empty::new())
            .expect("a valid request");
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

async fn handshake(
    tls: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("a valid server name");
    tls.connect(name, stream).await
}

fn presented(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("the server presented a certificate")[0]
        .clone()
}

async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

async fn run(program: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("these tests run {program}: install its package ({e})"))
}

async fn s_client(pki: &Pki, addr: SocketAddr, name: &str) -> std::process::Output {
    let connect = addr.to_string();
    let ca = pki.ca_file().join("ca.pem");
    run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-verify_return_error",
            "-verify_hostname",
            name,
            "-CAfile",
            ca.to_str().expect("a UTF-8 path"),
            "-brief",
        ],
    )
    .await
}

async fn curl(pki: &Pki, addr: SocketAddr, name: &str) -> std::process::Output {
    let port = addr.port();
    let resolve = format!("{name}:{port}:{}", addr.ip());
    let url = format!("https://{name}:{port}/");
    let ca = pki.ca_file().join("ca.pem");
    run(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--cacert",
            ca.to_str().expect("a UTF-8 path"),
            "--resolve",
            &resolve,
            &url,
        ],
    )
    .await
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_and_curl_see_the_certificate_bound_to_the_address_they_reach_and_fail_for_the_other_name()
 {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE, TWO]).await;
    let [one, two] = server.addrs[..] else {
        panic!("two listeners")
    };

    for (addr, right, wrong) in [(one, "a.test", "b.test"), (two, "b.test", "a.test")] {
        let ok = s_client(&pki, addr, right).await;
        assert!(
            ok.status.success(),
            "openssl s_client to {addr} as {right}: {}",
            stderr(&ok)
        );
        assert!(stderr(&ok).contains("Verification: OK"), "{}", stderr(&ok));
        let refused = s_client(&pki, addr, wrong).await;
        assert!(
            !refused.status.success(),
            "openssl s_client to {addr} accepted {wrong}"
        );
        assert!(
            stderr(&refused).contains("hostname mismatch"),
            "{}",
            stderr(&refused)
        );

        let ok = curl(&pki, addr, right).await;
        assert!(
            ok.status.success(),
            "curl to {addr} as {right}: {}",
            stderr(&ok)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout), addr.to_string());
        let refused = curl(&pki, addr, wrong).await;
        // 60: the peer's certificate cannot be authenticated.
        assert_eq!(
            refused.status.code(),
            Some(60),
            "curl to {addr} as {wrong}: {}",
            stderr(&refused)
        );
    }
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_certificate_under_load_fails_no_handshake_and_keeps_established_connections()
{
    const CLIENTS: usize = 8;
    const SWAPS: usize = 5;
    let pki = Pki::new();
    let (a, a_der) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let table = table(bindings(&a, &b));
    let server = Server::start(table.clone(), &[ONE, TWO]).await;
    let one = server.addrs[0];
    let tls = pki.client();

    let mut established = Client::connect(&tls, one, "a.test")
        .await
        .expect("connects before the swaps");
    assert_eq!(established.presented, a_der);
    assert_eq!(
        established.get("/").await.expect("answers"),
        (StatusCode::OK, one.to_string())
    );

    let deadline = Instant::now() + Duration::from_secs(2);
    let handshakes = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let load: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (tls, handshakes, failures, seen) = (
                tls.clone(),
                handshakes.clone(),
                failures.clone(),
                seen.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match handshake(&tls, one, "a.test").await {
                        Ok(stream) => {
                            handshakes.fetch_add(1, Ordering::Relaxed);
                            seen.lock().await.insert(presented(&stream));
                        }
                        Err(e) => failures.lock().await.push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    let mut served = vec![a_der];
    for _ in 0..SWAPS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (renewed, renewed_der) = pki.identity("a.test");
        table.swap(bindings(&renewed, &b));
        served.push(renewed_der);
    }
    for client in load {
        client.await.expect("a load client does not panic");
    }

    let failures = failures.lock().await;
    assert!(failures.is_empty(), "failed handshakes: {failures:?}");
    let handshakes = handshakes.load(Ordering::Relaxed);
    assert!(handshakes >= 100, "only {handshakes} handshakes in 2 s");
    let seen = seen.lock().await;
    assert!(
        seen.iter().all(|der| served.contains(der)),
        "a certificate that was never bound was presented"
    );
    assert!(
        seen.len() >= 2,
        "the load saw {} certificate(s) across {SWAPS} swaps",
        seen.len()
    );
    let last = served.last().expect("swapped");
    let after = handshake(&tls, one, "a.test")
        .await
        .expect("handshakes after the swaps");
    assert_eq!(&presented(&after), last);
    assert_eq!(
        established
            .get("/")
            .await
            .expect("the connection from before the swaps still answers"),
        (StatusCode::OK, one.to_string())
    );
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_holds_up_nobody_and_is_disconnected_after_the_handshake_timeout() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let one = server.addrs[0];

    let since = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(one).await.expect("connects"));
    }
    let mut client = within(
        Duration::from_secs(2),
        "a handshake next to silent clients",
        Client::connect(&pki.client(), one, "a.test"),
    )
    .await
    .expect("connects");
    assert_eq!(
        client.get("/").await.expect("answers"),
        (StatusCode::OK, one.to_string())
    );

    let mut byte = [0u8; 1];
    let read = within(
        Duration::from_secs(15),
        "the server closing a silent connection",
        silent[0].read(&mut byte),
    )
    .await
    .expect("closed, not reset");
    assert_eq!(read, 0, "the server sent something to a silent client");
    assert!(
        since.elapsed() >= Duration::from_secs(9),
        "closed after {:?}, before the handshake timeout",
        since.elapsed()
    );
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_gets_the_connection_closed_and_breaks_nothing() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let one = server.addrs[0];

    let mut plain = TcpStream::connect(one).await.expect("connects");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("sends");
    let mut answer = Vec::new();
    match within(
        Duration::from_secs(5),
        "the server closing a plain-HTTP connection",
        plain.read_to_end(&mut answer),
    )
    .await
    {
        Ok(_) => assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP was answered: {}",
            String::from_utf8_lossy(&answer)
        ),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }

    let mut client = Client::connect(&pki.client(), one, "a.test")
        .await
        .expect("TLS still works");
    assert_eq!(
        client.get("/").await.expect("answers"),
        (StatusCode::OK, one.to_string())
    );
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_an_address_without_a_certificate_is_closed() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let mut only_one = CertBindings::new();
    only_one.bind(ONE.parse().expect("an address"), a);
    let server = Server::start(table(only_one), &[ONE, TWO]).await;

    let err = handshake(&pki.client(), server.addrs[1], "b.test")
        .await
        .expect_err("nothing to present on 127.0.0.2");
    // Closed without a handshake: a FIN, or a reset when the server closed
    // after the ClientHello had arrived (it is never read), as on a busy
    // machine.
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    Client::connect(&pki.client(), server.addrs[0], "a.test")
        .await
        .expect("127.0.0.1 still serves");
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish_closes_idle_connections_and_stops_listening() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let one = server.addrs[0];
    let tls = pki.client();

    let mut idle = Client::connect(&tls, one, "a.test")
        .await
        .expect("connects");
    idle.get("/").await.expect("answers");
    let mut busy = Client::connect(&tls, one, "a.test")
        .await
        .expect("connects");
    let in_flight = tokio::spawn(async move { busy.get("/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let since = Instant::now();
    within(Duration::from_secs(5), "shutdown", server.shut_down())
        .await
        .expect("shuts down cleanly");
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?}: for the idle connection?",
        since.elapsed()
    );
    assert_eq!(
        in_flight
            .await
            .expect("the request task does not panic")
            .expect("the request in flight is answered"),
        (StatusCode::OK, "slow".to_owned())
    );
    assert!(
        idle.get("/").await.is_err(),
        "the idle connection is closed"
    );
    let refused = TcpStream::connect(one).await.expect_err("no more listener");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn a_listener_binds_again_while_its_old_connections_are_in_time_wait() {
    let listener = bind(&[SocketAddr::new(ONE.parse().expect("an address"), 0)])
        .expect("binds")
        .remove(0);
    let addr = listener.local_addr().expect("bound");
    let mut client = TcpStream::connect(addr).await.expect("connects");
    let (accepted, _) = listener.accept().await.expect("accepts");
    // The server closes first, so its end of the connection waits in TIME_WAIT.
    drop(accepted);
    assert_eq!(client.read(&mut [0u8; 1]).await.expect("reads EOF"), 0);
    drop(client);
    drop(listener);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let without = TcpSocket::new_v4().expect("a socket");
    let err = without
        .bind(addr)
        .expect_err("TIME_WAIT blocks a bind without SO_REUSEADDR");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    bind(&[addr]).expect("binds again with SO_REUSEADDR");
}

/// `n` different ports nothing listens on (the kernel's picks, released).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("[::]:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound").port())
}

fn console(port: u16) -> ListenSocket {
    ListenSocket {
        service: ServiceId::Console,
        port,
    }
}

fn web(port: u16) -> ListenSocket {
    ListenSocket {
        service: ServiceId::Web,
        port,
    }
}

fn metrics(port: u16) -> ListenSocket {
    ListenSocket {
        service: ServiceId::Metrics,
        port,
    }
}

fn http(port: u16) -> ListenSocket {
    ListenSocket {
        service: ServiceId::Http,
        port,
    }
}

/// One plain HTTP/1.1 exchange on 127.0.0.1:`port`: the whole answer.
async fn plain_http(port: u16, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics port answers");
    tcp.write_all(request).await.expect("request");
    let mut answer = Vec::new();
    within(
        Duration::from_secs(5),
        "a plain HTTP answer",
        tcp.read_to_end(&mut answer),
    )
    .await
    .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

fn one(port: u16) -> SocketAddr {
    SocketAddr::new(ONE.parse().expect("an address"), port)
}

/// The local address a request to [`one`] reports: the listener is
/// dual-stack (`[::]`), so IPv4 arrives mapped.
fn one_mapped(port: u16) -> String {
    format!("[::ffff:{ONE}]:{port}")
}

/// A request the test holds in flight: `GET /held` tells `arrived`, then
/// waits for `release`.
#[derive(Default)]
struct Held {
    arrived: Notify,
    release: Notify,
}

fn held_app(held: Arc<Held>) -> Router {
    app().route(
        "/held",
        get(move || async move {
            held.arrived.notify_one();
            held.release.notified().await;
            "held"
        }),
    )
}

/// Connecting to `addr` is refused, once its listener has closed (the old
/// accept loop closes it soon after `listen` returned).
async fn refused_soon(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connecting to {addr}: {e}, expected a refusal"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts connections"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_port_binds_the_new_one_and_lets_connections_on_the_old_one_finish() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let held = Arc::new(Held::default());
    let listeners = Listeners::new([(
        ServiceId::Console,
        table(bindings(&a, &b)),
        held_app(held.clone()),
    )]);
    let [old, new] = free_ports();
    let tls = pki.client();

    let account = listeners
        .listen(&[console(old)])
        .await
        .expect("the old port binds");
    assert!(
        account.contains(&format!("console on {old} (new)")),
        "{account}"
    );
    assert_eq!(listeners.bound(), [console(old)]);
    // A request in flight, and a connection whose request is still to come.
    let mut busy = Client::connect(&tls, one(old), "a.test")
        .await
        .expect("connects to the old port");
    let in_flight = tokio::spawn(async move { busy.get("/held").await });
    within(
        Duration::from_secs(10),
        "the held request",
        held.arrived.notified(),
    )
    .await;
    let mut quiet = Client::connect(&tls, one(old), "a.test")
        .await
        .expect("connects to the old port");

    let account = listeners
        .listen(&[console(new)])
        .await
        .expect("the new port binds");
    assert!(
        account.contains(&format!("console on {new} (new)"))
            && account.contains(&format!("stopped accepting: console on {old}")),
        "{account}"
    );
    assert_eq!(listeners.bound(), [console(new)]);
    let mut fresh = Client::connect(&tls, one(new), "a.test")
        .await
        .expect("the new port answers at once");
    assert_eq!(
        fresh.get("/").await.expect("answers"),
        (StatusCode::OK, one_mapped(new))
    );
    refused_soon(one(old)).await;

    // The old port's connections are served to the end of their request.
    held.release.notify_one();
    assert_eq!(
        within(Duration::from_secs(10), "the held request", in_flight)
            .await
            .expect("the request task does not panic")
            .expect("the request in flight on the old port is answered"),
        (StatusCode::OK, "held".to_owned())
    );
    assert_eq!(
        quiet
            .get("/")
            .await
            .expect("a connection accepted before the move gets its request answered"),
        (StatusCode::OK, one_mapped(old))
    );

    within(Duration::from_secs(15), "shutdown", listeners.shutdown()).await;
    refused_soon(one(new)).await;
    assert!(listeners.listen(&[console(new)]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_cannot_be_bound_changes_nothing() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let listeners = Listeners::new([
        (ServiceId::Console, table(bindings(&a, &b)), app()),
        (ServiceId::Web, table(bindings(&b, &a)), app()),
    ]);
    let [port, other] = free_ports();
    let tls = pki.client();
    listeners
        .listen(&[console(port)])
        .await
        .expect("a free port binds");
    let taken = std::net::TcpListener::bind("[::]:0").expect("a port for someone else");
    let taken = taken.local_addr().expect("bound").port();

    let err = listeners
        .listen(&[console(taken)])
        .await
        .expect_err("a port in use cannot be bound");
    assert!(err.contains(&format!("[::]:{taken}")), "{err}");
    // The web services' new port binds, the console's does not: neither.
    let err = listeners
        .listen(&[console(port), web(other), web(taken)])
        .await
        .expect_err("one port of two is in use");
    assert!(err.contains(&format!("[::]:{taken}")), "{err}");
    let err = listeners
        .listen(&[console(other), web(other)])
        .await
        .expect_err("one port for two services");
    assert!(err.contains("both want port"), "{err}");

    assert_eq!(listeners.bound(), [console(port)]);
    let mut client = Client::connect(&tls, one(port), "a.test")
        .await
        .expect("the console's port still answers");
    assert_eq!(client.get("/").await.expect("answers").0, StatusCode::OK);
    let refused = TcpStream::connect(one(other))
        .await
        .expect_err("nothing of a failed listen stays bound");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    within(Duration::from_secs(15), "shutdown", listeners.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_binds_what_it_can_at_boot_moves_ports_at_update_and_fails_an_update_on_a_busy_port()
 {
    use switchboard_domain::Facts;
    use switchboard_domain::testing::nic;
    use switchboard_engine::{Engine, EngineError, Origin};

    let engine = Arc::new(Engine::in_memory().expect("an engine"));
    engine.set_facts(Facts {
        nics: vec![nic("lan0", Some("192.0.2.1"))],
        ..Facts::default()
    });
    let phones = Plane::new("phones", 1).expect("a runtime");
    let listeners = Listeners::for_engine(&engine, &phones);
    let port = |p: u16| p.to_string().parse().expect("a port");
    let [console_port, moved, metrics_port, http_port] = free_ports();
    engine
        .set_port(ServiceId::Metrics, port(metrics_port))
        .await
        .expect("edit");
    // Not port 80 of the machine running the tests.
    engine
        .set_port(ServiceId::Http, port(http_port))
        .await
        .expect("edit");
    let busy = std::net::TcpListener::bind("[::]:0").expect("a port for someone else");
    let busy_port = busy.local_addr().expect("bound").port();
    engine
        .set_port(ServiceId::Console, port(console_port))
        .await
        .expect("edit");
    engine
        .set_port(ServiceId::Web, port(busy_port))
        .await
        .expect("edit");

    // Boot listens on what it can; the busy port is reported, not fatal.
    engine
        .boot()
        .await
        .expect("boot starts despite a busy port");
    assert_eq!(
        listeners.bound(),
        [
            console(console_port),
            metrics(metrics_port),
            http(http_port)
        ]
    );

    // Once the port is free, an Update binds it.
    drop(busy);
    let root = Origin::local(0, None);
    engine.update(&root, "", None).await.expect("an Update");
    assert_eq!(
        listeners.bound(),
        [
            console(console_port),
            web(busy_port),
            metrics(metrics_port),
            http(http_port)
        ]
    );

    // The metrics, in plain HTTP: the exposition, and nothing else.
    let answer = plain_http(
        metrics_port,
        b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(
            "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{answer}"
    );
    assert!(answer.contains("\nswitchboard_revision 1\n"), "{answer}");
    assert!(
        answer.contains("\nswitchboard_update_duration_seconds_count 1\n"),
        "{answer}"
    );
    let other = plain_http(
        metrics_port,
        b"GET /v1/status HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    let post = plain_http(
        metrics_port,
        b"POST /metrics HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let garbage = plain_http(metrics_port, b"\x16\x03\x01\x00\x05hello\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
        "{garbage}"
    );

    // A new console port, without a restart.
    engine
        .set_port(ServiceId::Console, port(moved))
        .await
        .expect("edit");
    let done = engine.update(&root, "", None).await.expect("an Update");
    assert!(
        done.detail.contains(&format!("console on {moved} (new)")),
        "{}",
        done.detail
    );
    assert_eq!(
        listeners.bound(),
        [
            console(moved),
            web(busy_port),
            metrics(metrics_port),
            http(http_port)
        ]
    );

    // A port in use fails the Update, which changes nothing.
    let taken = std::net::TcpListener::bind("[::]:0").expect("a port for someone else");
    let taken = taken.local_addr().expect("bound").port();
    engine
        .set_port(ServiceId::Console, port(taken))
        .await
        .expect("edit");
    match engine.update(&root, "", None).await {
        Err(EngineError::ApplyFailed { detail, .. }) => assert!(
            detail.contains(&format!("[::]:{taken}"))
                && detail.contains("the previous revision is running"),
            "{detail}"
        ),
        other => panic!("expected a failed Update, got {other:?}"),
    }
    assert_eq!(
        listeners.bound(),
        [
            console(moved),
            web(busy_port),
            metrics(metrics_port),
            http(http_port)
        ]
    );
    listeners.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_is_answered() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let one = server.addrs[0];

    for path in ["/", "/slow"] {
        let mut tls = handshake(&pki.client(), one, "a.test")
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nhost: switchboard\r\n\r\n");
        tls.write_all(request.as_bytes()).await.expect("request");
        // close_notify, then FIN: this side sends nothing more.
        tls.shutdown().await.expect("half-close");
        let mut answer = Vec::new();
        within(
            Duration::from_secs(5),
            "the answer to a half-closed request",
            tls.read_to_end(&mut answer),
        )
        .await
        .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{path}: {answer:?}"
        );
        let body = if path == "/" {
            one.to_string()
        } else {
            "slow".into()
        };
        assert!(answer.ends_with(&body), "{path}: {answer:?}");
    }
    server.shut_down().await.expect("shuts down cleanly");
}

/// The address the flooding client sends from, and another client's.
const FLOODER: &str = "127.0.0.2";
const NEIGHBOUR: &str = "127.0.0.3";

/// A TLS connection to `addr` from the local address `from`.
async fn handshake_from(
    tls: &TlsConnector,
    from: &str,
    addr: SocketAddr,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().expect("an address"), 0))?;
    let stream = socket.connect(addr).await?;
    let name = ServerName::try_from("a.test").expect("a valid server name");
    tls.connect(name, stream).await
}

/// Send `request` over a new connection from `from` and read the answer
/// (the whole connection: every request here closes it).
async fn exchange(tls: &TlsConnector, from: &str, addr: SocketAddr, request: &str) -> String {
    let mut stream = handshake_from(tls, from, addr).await.expect("connects");
    stream.write_all(request.as_bytes()).await.expect("sends");
    // What TLS could not write yet waits in the stream until flushed.
    stream.flush().await.expect("sends");
    let mut answer = Vec::new();
    // A reset after the answer (the server closed with unread input) is fine.
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET /login` from `from` over a new connection, `n` times in a row: how
/// long each took (connection, handshake and answer).
async fn probe(tls: &TlsConnector, from: &str, addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let answer = within(
            Duration::from_secs(30),
            "a request from another address",
            exchange(
                tls,
                from,
                addr,
                "GET /login HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        took.push(start.elapsed());
    }
    took
}

/// The `q`-quantile of `took`.
fn quantile(took: &[Duration], q: f64) -> Duration {
    let mut sorted = took.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[at - 1]
}

/// What became of one slow `POST /login` of the flood.
enum Slow {
    /// Closed at accept: the address had as many connections as it may.
    Refused,
    /// Admitted; the answer it got in the end.
    Answered(String),
}

/// `POST /login` announcing 1,000 bytes and sending one, from [`FLOODER`];
/// tells `holding` once it is in place (or refused).
async fn slow_login(
    tls: TlsConnector,
    addr: SocketAddr,
    holding: tokio::sync::mpsc::Sender<()>,
) -> Slow {
    let Ok(mut stream) = handshake_from(&tls, FLOODER, addr).await else {
        holding.send(()).await.ok();
        return Slow::Refused;
    };
    let head = "POST /login HTTP/1.1\r\nhost: a.test\r\n\
                content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nu";
    stream.write_all(head.as_bytes()).await.expect("sends");
    stream.flush().await.expect("sends");
    holding.send(()).await.ok();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    Slow::Answered(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_bodies_from_one_address_is_limited_and_answered_408_while_others_are_served()
 {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let mut only_a = CertBindings::new();
    only_a.bind(ONE.parse().expect("an address"), a);
    let engine = Arc::new(switchboard_engine::testing::booted().await);
    let listeners = Listeners::new([(
        ServiceId::Console,
        table(only_a),
        switchboard_web::console::router(engine.clone()),
    )]);
    let [port] = free_ports();
    listeners.listen(&[console(port)]).await.expect("binds");
    let tls = pki.client();
    let target = one(port);

    let idle = probe(&tls, NEIGHBOUR, target, 40).await;

    // Twice as many slow bodies as one address may hold connections.
    let flood_size = 2 * MAX_PER_ADDRESS;
    let (holding, mut in_place) = tokio::sync::mpsc::channel(flood_size);
    let flood_started = Instant::now();
    let flood: Vec<JoinHandle<Slow>> = (0..flood_size)
        .map(|_| tokio::spawn(slow_login(tls.clone(), target, holding.clone())))
        .collect();
    for _ in 0..flood_size {
        within(
            Duration::from_secs(30),
            "the flood in place",
            in_place.recv(),
        )
        .await;
    }
    let during = probe(&tls, NEIGHBOUR, target, 40).await;
    let probes_done = flood_started.elapsed();

    let mut refused = 0;
    let mut timed_out = 0;
    for slow in flood {
        match within(Duration::from_secs(60), "the flood's answers", slow)
            .await
            .expect("no panic")
        {
            Slow::Refused => refused += 1,
            Slow::Answered(answer) => {
                assert!(
                    answer.starts_with("HTTP/1.1 408 Request Timeout\r\n")
                        && answer.contains("\"body-timeout\""),
                    "{answer:?}"
                );
                timed_out += 1;
            }
        }
    }
    let flood_answered = flood_started.elapsed();
    // Refused before it could change anything: not a row in the audit log.
    let audit = engine.audit_log(1000).await.expect("the audit log");
    assert!(
        audit.iter().all(|row| row.action != "POST /login"),
        "{audit:?}"
    );
    assert_eq!(
        timed_out, MAX_PER_ADDRESS,
        "admitted from the flooding address"
    );
    assert_eq!(refused, flood_size - MAX_PER_ADDRESS);
    assert!(
        flood_answered >= BODY_GRACE,
        "408 only after the grace period, not after {flood_answered:?}"
    );
    // Figures, not assertions: the machine may be busy.
    eprintln!(
        "GET /login from another address, {} requests each: idle p50 {:?} p99 {:?}; \
         during {} slow bodies from one address p50 {:?} p99 {:?} (probes done {:?} into the flood, \
         its 408s {:?} into it)",
        idle.len(),
        quantile(&idle, 0.5),
        quantile(&idle, 0.99),
        flood_size,
        quantile(&during, 0.5),
        quantile(&during, 0.99),
        probes_done,
        flood_answered,
    );
    listeners.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_over_the_limit_is_refused_at_once_and_a_slow_one_gets_408() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let addr = server.addrs[0];
    let tls = pki.client();

    let too_large = format!(
        "POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: {}\r\n\r\n",
        MAX_REQUEST_BODY + 1
    );
    let answer = within(
        Duration::from_secs(5),
        "the refusal of a body too large",
        exchange(&tls, NEIGHBOUR, addr, &too_large),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n")
            && answer.contains("\"too-large\""),
        "{answer:?}"
    );

    // One byte a second: slower than the minimum rate, but never silent.
    let started = Instant::now();
    let mut stream = handshake_from(&tls, NEIGHBOUR, addr)
        .await
        .expect("connects");
    stream
        .write_all(b"POST /slow-body HTTP/1.1\r\nhost: a.test\r\ncontent-length: 100\r\n\r\n")
        .await
        .expect("sends");
    let dribble = async {
        for _ in 0..100 {
            if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    within(Duration::from_secs(60), "the slow body's end", dribble).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer:?}"
    );
    assert!(started.elapsed() >= BODY_GRACE);
    server.shut_down().await.expect("shuts down cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_closes() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let addr = server.addrs[0];
    let tls = pki.client();
    // A kept-alive connection that sends nothing after its first answer.
    let mut client = Client::connect(&tls, addr, "a.test")
        .await
        .expect("connects");
    assert_eq!(client.get("/").await.expect("answered").0, StatusCode::OK);
    within(
        Duration::from_secs(60),
        "the idle connection's close",
        async {
            while !client.sender.is_closed() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;
    server.shut_down().await.expect("shuts down cleanly");
}

/// An RSA 2048 certificate for `name` (openssl makes the key), for the
/// suites with RSA authentication or RSA key transport.
fn rsa_identity(pki: &Pki, name: &str) -> TlsIdentity {
    let (pem, key) = (pki.ca_file().join("rsa.pem"), pki.ca_file().join("rsa.der"));
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ][..],
        &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"],
    ] {
        let out = std::process::Command::new("openssl")
            .args(args)
            .arg(&pem)
            .args(if args[0] == "pkcs8" {
                vec!["-out".as_ref(), key.as_os_str()]
            } else {
                vec![]
            })
            .output()
            .expect("these tests run openssl");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let der = std::fs::read(&key).expect("openssl wrote the key");
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &der.as_slice().into(),
        &rcgen::PKCS_RSA_SHA256,
    )
    .expect("rcgen loads the RSA key");
    let leaf = pki
        .ca
        .leaf_with(switchboard_pki::testpki::leaf_params(&[name]), key);
    let bundle = import(
        [leaf.pem(), leaf.key_pem(), pki.ca.pem()]
            .concat()
            .as_bytes(),
        None,
        None,
    )
    .expect("the RSA certificate imports");
    TlsIdentity::new(&bundle).expect("the bundle has its key")
}

/// `openssl s_client` with `args` (a version, a suite or a group).
async fn s_client_with(
    pki: &Pki,
    addr: SocketAddr,
    name: &str,
    args: &[&str],
) -> std::process::Output {
    let connect = addr.to_string();
    let ca = pki.ca_file().join("ca.pem");
    let mut all = vec![
        "s_client",
        "-connect",
        &connect,
        "-verify_return_error",
        "-verify_hostname",
        name,
        "-CAfile",
        ca.to_str().expect("a UTF-8 path"),
        "-brief",
    ];
    all.extend_from_slice(args);
    run("openssl", &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_policy_refuses_cbc_rsa_key_transport_old_versions_and_other_groups() {
    let pki = Pki::new();
    let rsa = rsa_identity(&pki, "rsa.test");
    let (ecdsa, _) = pki.identity("ecdsa.test");
    let server = Server::start(table(bindings(&rsa, &ecdsa)), &[ONE, TWO]).await;
    let [rsa_addr, ecdsa_addr] = server.addrs[..] else {
        panic!("two listeners")
    };
    // SECLEVEL=0 so that the client itself is willing to offer what is refused.
    let weak: [(SocketAddr, &str, &[&str]); 7] = [
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
        ),
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_2", "-cipher", "AES128-GCM-SHA256"],
        ),
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:@SECLEVEL=0"],
        ),
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        ),
        (rsa_addr, "rsa.test", &["-tls1_3", "-groups", "X448:P-521"]),
        (
            ecdsa_addr,
            "ecdsa.test",
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"],
        ),
        (ecdsa_addr, "ecdsa.test", &["-tls1_2", "-groups", "P-521"]),
    ];
    for (addr, name, args) in weak {
        let out = s_client_with(&pki, addr, name, args).await;
        assert!(
            !out.status.success(),
            "{args:?} to {addr} was accepted: {}",
            stderr(&out)
        );
    }
    let strong: [(SocketAddr, &str, &[&str], &str); 6] = [
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"],
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
        (
            rsa_addr,
            "rsa.test",
            &["-tls1_3", "-groups", "P-384"],
            "TLSv1.3",
        ),
        (
            ecdsa_addr,
            "ecdsa.test",
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            ecdsa_addr,
            "ecdsa.test",
            &["-tls1_2", "-groups", "P-256"],
            "TLSv1.2",
        ),
        (
            ecdsa_addr,
            "ecdsa.test",
            &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
    ];
    for (addr, name, args, shown) in strong {
        let out = s_client_with(&pki, addr, name, args).await;
        assert!(
            out.status.success() && stderr(&out).contains(shown),
            "{args:?} to {addr}: {}",
            stderr(&out)
        );
    }
    server.shut_down().await.expect("shuts down cleanly");
}

/// The runtime that asked the listeners to listen (the daemon's main one,
/// which also runs the console, the API and Updates) has every worker
/// blocked; the web services, on their own plane, are still served, while
/// the console waits for a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_its_own_plane_is_served_while_every_main_worker_is_blocked() {
    const WORKERS: usize = 2;
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let phones = Plane::new("phones", 1).expect("a runtime");
    let mut listeners = Listeners::new([
        (ServiceId::Console, table(bindings(&a, &b)), app()),
        (ServiceId::Web, table(bindings(&a, &b)), app()),
    ]);
    listeners.run_on(ServiceId::Web, phones.handle().clone());
    let [console_port, web_port] = free_ports();
    listeners
        .listen(&[console(console_port), web(web_port)])
        .await
        .expect("binds");

    // Block every worker of this runtime until `release`.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (release, released_rx) = std::sync::mpsc::channel::<()>();
    let released_rx = Arc::new(std::sync::Mutex::new(released_rx));
    let started = Arc::new(std::sync::Barrier::new(WORKERS + 1));
    let blockers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (rx, started, released) = (released_rx.clone(), started.clone(), released.clone());
            tokio::spawn(async move {
                started.wait();
                let _ = rx.lock().expect("lock").recv();
                released.store(true, Ordering::SeqCst);
            })
        })
        .collect();
    started.wait();

    // A client on a thread and runtime of its own.
    let tls = pki.client();
    let (answers, answered) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a client runtime");
        for port in [web_port, console_port] {
            let tls = tls.clone();
            let answers = answers.clone();
            rt.block_on(async move {
                let mut c = Client::connect(&tls, one(port), "a.test")
                    .await
                    .expect("connects");
                let got = c.get("/").await.expect("answered");
                answers.send((port, got)).expect("the test listens");
            });
        }
    });
    let (port, (status, _)) = answered
        .recv_timeout(Duration::from_secs(30))
        .expect("the web services answer while the main workers are blocked");
    assert_eq!((port, status), (web_port, StatusCode::OK));
    assert!(!released.load(Ordering::SeqCst));
    // The console is stuck behind the blocked workers (this is what makes
    // the web services' answer above meaningful) ...
    assert!(
        answered.recv_timeout(Duration::from_millis(500)).is_err(),
        "the console answered with every worker of its runtime blocked"
    );
    // ... and is answered once they are free.
    for _ in 0..WORKERS {
        release.send(()).expect("a blocker waits");
    }
    let (port, (status, _)) = answered
        .recv_timeout(Duration::from_secs(30))
        .expect("the console answers once its workers are free");
    assert_eq!((port, status), (console_port, StatusCode::OK));
    client.join().expect("the client thread");
    for b in blockers {
        b.await.expect("a blocker");
    }
    within(Duration::from_secs(15), "shutdown", listeners.shutdown()).await;
}

/// A plane's threads run ahead of the management plane where the daemon
/// may raise their priority (root), and at the default otherwise.
#[tokio::test]
async fn a_plane_runs_at_a_higher_priority_where_it_may() {
    let before = rustix::process::getpriority_process(None).expect("nice");
    let phones = Plane::new("phones", 1).expect("a runtime");
    let nice = phones
        .handle()
        .spawn(async { rustix::process::getpriority_process(None).expect("nice") })
        .await
        .expect("ran");
    let may = rustix::process::geteuid().is_root();
    assert_eq!(nice, if may { PLANE_NICE } else { before });
}

/// A request head that does not fit the buffer is refused with 431 and the
/// connection closed. The buffer bounds what is held, not the exact size
/// refused: a head is parsed once complete, and the last read may take the
/// buffer past [`MAX_BUFFER`] by one read's worth, so the head here is
/// four times over. The client writes and reads at once, as a real one
/// does: the server stops reading when it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_buffer_is_refused_with_431() {
    let pki = Pki::new();
    let (a, _) = pki.identity("a.test");
    let (b, _) = pki.identity("b.test");
    let server = Server::start(table(bindings(&a, &b)), &[ONE]).await;
    let stream = handshake(&pki.client(), server.addrs[0], "a.test")
        .await
        .expect("handshake");
    let (mut read, mut write) = tokio::io::split(stream);
    let head = format!(
        "GET / HTTP/1.1\r\nhost: a.test\r\nx-filler: {}\r\n\r\n",
        "a".repeat(4 * switchboard_web::https::MAX_BUFFER)
    );
    let writer = tokio::spawn(async move {
        // The server may close before it has read it all.
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.flush().await;
        write
    });
    let mut answer = Vec::new();
    let _ = within(
        Duration::from_secs(60),
        "the refusal",
        read.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer:?}"
    );
    drop(within(Duration::from_secs(60), "the writer", writer).await);
    server.shut_down().await.expect("shuts down cleanly");
}

/// The daemon's set-up (the web services on their own plane, the engine on
/// a store in a directory): while one address floods the web services with
/// connections that never finish their request, and certificate imports
/// that cost the most a key may cost run on the management side, a phone
/// from another address fetches its configuration documents: every fetch
/// is answered, the flooding address gets no more than its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_fetch_their_documents_during_a_flood_and_a_hostile_import() {
    use std::sync::atomic::AtomicBool;
    use switchboard_domain::provisioning::ProvisioningSettings;
    use switchboard_engine::Origin;
    use switchboard_pki::testpki;

    /// Fetches of the phone: the per-address limit of a minute.
    const FETCHES: usize = 20;
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("a data directory");
    let store = switchboard_store::Store::open_dir(data.path()).expect("a store");
    let engine = Arc::new(
        switchboard_engine::testing::booted_on(store, switchboard_system::sms::Gateway::Outbox)
            .await,
    );
    engine.set_facts(switchboard_domain::testing::facts(&[(
        "lo0",
        Some("127.0.0.1"),
    )]));
    let leaf = pki.ca.leaf(&["a.test"]);
    let name = "phones".parse().expect("a name");
    engine
        .import_cert(
            &name,
            [leaf.pem(), leaf.key_pem(), pki.ca.pem()]
                .concat()
                .as_bytes(),
            None,
            None,
        )
        .await
        .expect("imports");
    for service in [ServiceId::Web, ServiceId::SipTls] {
        engine
            .bind(service, None, &name, false)
            .await
            .expect("binds");
    }
    engine
        .set_provisioning(ProvisioningSettings {
            sip_tls_hostname: Some("a.test".parse().expect("a name")),
            web_uri: Some("https://a.test".parse().expect("a URI")),
            ..ProvisioningSettings::default()
        })
        .await
        .expect("provisioning");
    let phones = Plane::new("phones", 1).expect("a runtime");
    let listeners = Listeners::for_engine(&engine, &phones);
    let [console_port, web_port] = free_ports();
    for (service, port) in [
        (ServiceId::Console, console_port),
        (ServiceId::Web, web_port),
    ] {
        engine
            .set_port(service, port.to_string().parse().expect("a port"))
            .await
            .expect("a port");
    }
    let root = Origin::local(0, None);
    engine.update(&root, "", None).await.expect("an Update");
    let account = engine
        .add_account(switchboard_provision::NewAccount {
            username: None,
            display_name: None,
            phone: "+15550100199".parse().expect("a number"),
            group: None,
            profile: Default::default(),
        })
        .await
        .expect("an account");
    for _ in 0..FETCHES {
        engine.activate(&account.username).await.expect("a link");
    }
    let tokens: Vec<String> = engine
        .sms()
        .await
        .expect("the outbox")
        .into_iter()
        .filter_map(|m| Some(m.text?.split("/p/").nth(1)?[..22].to_owned()))
        .collect();
    assert_eq!(tokens.len(), FETCHES);
    let web = one(web_port);
    let tls = pki.client();

    // The flood: twice what one address may hold, each sending half a head.
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..2 * MAX_PER_ADDRESS {
        match handshake_from(&tls, FLOODER, web).await {
            Ok(mut held) => {
                held.write_all(b"GET /p/").await.expect("sends");
                held.flush().await.expect("sends");
                flood.push(held);
            }
            Err(_) => refused += 1,
        }
    }
    // Imports that cost all a key may: each derives a key at 1,000,000
    // PBKDF2 iterations, for a wrong password.
    let keys = testpki::tempdir();
    testpki::write(keys.path(), "key.pem", leaf.key_pem());
    testpki::encrypt_key(keys.path(), "key.pem", "key.enc.pem", 1_000_000);
    let key = Arc::new(testpki::read(keys.path(), "key.enc.pem"));
    let stop = Arc::new(AtomicBool::new(false));
    let imports: Vec<JoinHandle<usize>> = (0..3)
        .map(|i| {
            let (engine, key, stop, bundle) =
                (engine.clone(), key.clone(), stop.clone(), leaf.pem());
            tokio::spawn(async move {
                let name = format!("hostile{i}").parse().expect("a name");
                let mut refused = 0;
                while !stop.load(Ordering::SeqCst) {
                    let import =
                        engine.import_cert(&name, bundle.as_bytes(), Some(&key), Some("wrong"));
                    assert!(import.await.is_err(), "a wrong password is refused");
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    while engine.cpu().busy() < switchboard_engine::cpu::CPU_PERMITS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut took = Vec::new();
    for token in &tokens {
        let start = Instant::now();
        let answer = within(
            Duration::from_secs(30),
            "a document fetch",
            exchange(
                &tls,
                NEIGHBOUR,
                web,
                &format!("GET /p/{token} HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n"),
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
        took.push(start.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    let mut imported = 0;
    for i in imports {
        imported += within(Duration::from_secs(120), "the imports' end", i)
            .await
            .expect("no panic");
    }
    assert_eq!(
        (flood.len(), refused),
        (MAX_PER_ADDRESS, MAX_PER_ADDRESS),
        "the flooding address holds its share, no more"
    );
    eprintln!(
        "{FETCHES} document fetches from another address during a flood of {} held connections \
         and {imported} hostile imports: p50 {:?} p99 {:?}",
        flood.len(),
        quantile(&took, 0.5),
        quantile(&took, 0.99)
    );
    drop(flood);
    within(Duration::from_secs(15), "shutdown", listeners.shutdown()).await;
}
