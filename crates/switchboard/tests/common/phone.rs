//! The phone of the story, from its own namespace: it fetches its
//! activation link with curl (verifying the web services certificate), and
//! speaks SIP to Kamailio over verified TLS (or UDP, as a legacy PBX).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use switchboard_system::testlab::{Lab, Netns};

pub const HOST: &str = "voip.example.test";

pub fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One SIP/TLS connection from the phone, verifying the server for HOST.
pub struct Phone {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    pub presented: Vec<u8>,
}

/// A TLS client of the SIP/TLS service as a phone is: it trusts only the
/// CA `ca_pem` and verifies the name [`HOST`].
pub fn tls_client(ca_pem: &[u8]) -> rustls::ClientConnection {
    let mut roots = rustls::RootCertStore::empty();
    for c in switchboard_pki::read_certificates(ca_pem).expect("CA") {
        roots.add(c).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
    rustls::ClientConnection::new(Arc::new(config), name).expect("client")
}

impl Phone {
    pub fn connect(ns: &Netns, ca_pem: &[u8], addr: &str) -> Phone {
        let conn = tls_client(ca_pem);
        let sock = ns.enter(|| {
            TcpStream::connect_timeout(
                &format!("{addr}:5061").parse().expect("addr"),
                Duration::from_secs(3),
            )
            .expect("connect to SIP/TLS")
        });
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("a verified TLS handshake");
        }
        let presented = tls.conn.peer_certificates().expect("certs")[0].to_vec();
        Phone { tls, presented }
    }

    /// Send a request, return (status code, headers).
    pub fn request(&mut self, msg: &str) -> (u16, String) {
        self.tls.write_all(msg.as_bytes()).expect("send");
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.tls.read_exact(&mut byte).expect("a SIP answer");
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        (code, head)
    }

    /// REGISTER with digest authentication using `ha1`; the final status.
    pub fn register(&mut self, user: &str, ha1: &str, cseq: u32) -> u16 {
        let base = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.2:5061;branch=z9hG4bK{user}{cseq}\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{HOST}>;tag=t{user}\r\nTo: <sip:{user}@{HOST}>\r\nCall-ID: c{user}@phone\r\nCSeq: {cseq} REGISTER\r\n\
                 Contact: <sip:{user}@198.51.100.2:5061;transport=tls>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let (code, head) = self.request(&base(cseq, ""));
        assert_eq!(code, 401, "a challenge first: {head}");
        let nonce = head
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a nonce");
        assert!(head.contains("realm=\"switchboard\""), "{head}");
        let uri = format!("sip:{HOST}");
        let response = md5_hex(&format!(
            "{ha1}:{nonce}:{}",
            md5_hex(&format!("REGISTER:{uri}"))
        ));
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5\r\n"
        );
        self.request(&base(cseq + 1, &auth)).0
    }
}

/// REGISTER over UDP from `ns` (a legacy PBX on the LAN) with digest
/// authentication; the final status, or `None` when nothing answers.
pub fn register_udp(ns: &Netns, to: &str, user: &str, ha1: &str) -> Option<u16> {
    ns.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        s.set_read_timeout(Some(Duration::from_millis(800))).expect("timeout");
        let local = s.local_addr().expect("addr").port();
        let msg = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:{local};branch=z9hG4bKu{cseq}\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{HOST}>;tag=u{user}\r\nTo: <sip:{user}@{HOST}>\r\nCall-ID: u{user}@pbx\r\nCSeq: {cseq} REGISTER\r\n\
                 Contact: <sip:{user}@192.0.2.2:{local}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let mut buf = [0u8; 4096];
        s.send_to(msg(1, "").as_bytes(), (to, 5060)).expect("send");
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let nonce = head.split("nonce=\"").nth(1)?.split('"').next()?.to_owned();
        let uri = format!("sip:{HOST}");
        let response = md5_hex(&format!("{ha1}:{nonce}:{}", md5_hex(&format!("REGISTER:{uri}"))));
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5\r\n"
        );
        s.send_to(msg(2, &auth).as_bytes(), (to, 5060)).expect("send");
        let (n, _) = s.recv_from(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1)?.parse().ok()
    })
}

/// GET `url` from the phone's namespace with curl, verifying the web
/// services certificate against the test CA: (body, "STATUS MEDIA-TYPE").
pub fn fetch(lab: &Lab, ca: &str, url: &str) -> (String, String) {
    let out = lab
        .wan
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code} %{content_type}",
            url,
        ])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, meta) = text.rsplit_once('\n').expect("status line");
    (body.to_owned(), meta.to_owned())
}

/// A new account (`--profile` `profile` when given) sent its activation
/// link by SMS (the outbox), the link fetched by a phone on the WAN side:
/// (username, the document, its metadata as `fetch` gives it).
pub fn activation_document(
    d: &super::Daemon,
    lab: &Lab,
    ca: &str,
    phone: &str,
    name: &str,
    profile: Option<&str>,
) -> (String, String, String) {
    let mut add = vec!["account", "add", "--phone", phone, "--name", name];
    if let Some(profile) = profile {
        add.extend(["--profile", profile]);
    }
    let user = d.json(&add)["username"].as_str().expect("user").to_owned();
    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let text = sms
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["username"] == user.as_str())
        .and_then(|m| m["text"].as_str())
        .expect("the outbox has the SMS")
        .to_owned();
    let (body, meta) = fetch(lab, ca, &link_in(&text));
    (user, body, meta)
}

pub fn link_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("https://voip.example.test/p/"))
        .expect("the link")
        .to_owned()
}
