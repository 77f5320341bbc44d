//! What the benchmarks that fetch configuration documents share: an
//! engine on a store in a directory with activation tokens to spend, and a
//! client that fetches a document over a new TLS connection from a given
//! source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_domain::provisioning::ProvisioningSettings;
use switchboard_domain::{CertName, ServiceId};
use switchboard_engine::{Engine, EngineConfig, FirewallMode, Origin};
use switchboard_provision::NewAccount;
use switchboard_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{NAME, Outcome, load};

/// Requests from one source address: the engine's limit per address and
/// minute, so none is refused and its table stays small.
pub const PER_SOURCE: usize = 20;
pub const MEDIA_TYPE: &str = "application/vnd.switchboard.sip-account+json";

/// A booted engine on `dir` serving `bundle` for `web` and `sip-tls`, and
/// `n` activation tokens of one account.
pub async fn engine(dir: &Path, bundle: &[u8], n: usize) -> (Arc<Engine>, Vec<String>) {
    let engine = Engine::new(
        EngineConfig {
            data_dir: dir.to_owned(),
            firewall: FirewallMode::Plan,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: false,
            media: false,
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
pub fn source_ip(i: usize) -> Ipv4Addr {
    let a = 1 + (i % 250) as u8;
    let b = ((i / 250) % 250) as u8;
    let c = 1 + (i / 62_500) as u8;
    Ipv4Addr::new(127, c, b, a)
}

#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    name: ServerName<'static>,
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(config: Arc<ClientConfig>) -> Client {
        Client {
            connector: TlsConnector::from(config),
            name: ServerName::try_from(NAME).expect("a valid name"),
        }
    }

    /// `paths`, [`super::CONCURRENCY`] at a time, each from the next source
    /// address; a request counts when it is a 200.
    pub async fn run(
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
    pub async fn fetch(&self, addr: SocketAddr, path: &str, from: Ipv4Addr) -> io::Result<Answer> {
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
