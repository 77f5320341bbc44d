//! A softphone for the call tests: a SIP user agent over verified TLS from
//! a namespace of the lab (REGISTER, INVITE with digest authentication,
//! answering, ACK, BYE, CANCEL), with SDES-keyed SRTP media on a UDP
//! socket of its own namespace.

#![allow(dead_code)] // the call test and the call benchmark use different parts

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use switchboard_system::testlab::Netns;

use serde_json::Value;
use switchboard_system::testlab::Lab;

use crate::common::Daemon;
use crate::common::phone::{HOST, activation_document, md5_hex, tls_client};

/// A SIP message read off the connection.
#[derive(Debug, Clone)]
pub struct Msg {
    pub first: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Msg {
    /// The status code of a response (0 for a request).
    pub fn code(&self) -> u16 {
        self.first
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    pub fn method(&self) -> &str {
        if self.code() != 0 {
            return "";
        }
        self.first.split(' ').next().unwrap_or("")
    }

    /// Every value of header `name` (comma-separated values split for the
    /// headers that list addresses).
    pub fn all(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case(name) {
                if ["via", "record-route", "route"].contains(&name.to_ascii_lowercase().as_str()) {
                    out.extend(v.split(',').map(|s| s.trim().to_owned()));
                } else {
                    out.push(v.clone());
                }
            }
        }
        out
    }

    pub fn header(&self, name: &str) -> String {
        self.all(name).into_iter().next().unwrap_or_default()
    }

    /// The address in `<...>` of a header (Contact).
    pub fn uri_of(&self, name: &str) -> String {
        let v = self.header(name);
        v.split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .unwrap_or(&v)
            .to_owned()
    }

    /// The `tag=` of a From or To header.
    pub fn tag_of(&self, name: &str) -> Option<String> {
        self.header(name)
            .split(";tag=")
            .nth(1)
            .map(|t| t.split(';').next().unwrap_or(t).to_owned())
    }
}

/// One phone: its TLS connection to the appliance and its media socket.
pub struct SoftPhone {
    pub user: String,
    ha1: String,
    /// The phone's own address (in its namespace).
    pub addr: String,
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    local_port: u16,
    pub media: UdpSocket,
    cseq: u32,
    branch: u32,
    /// Messages read while waiting for another.
    queue: Vec<Msg>,
}

/// The SDP of a phone's offer or answer: PCMU over SRTP (SDES key
/// `inline`), or plain RTP when `inline` is `None`.
pub fn sdp(addr: &str, port: u16, inline: Option<&str>) -> String {
    let (proto, crypto) = match inline {
        Some(k) => (
            "RTP/SAVP",
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{k}\r\n"),
        ),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=call\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto}a=sendrecv\r\n"
    )
}

/// The media address, port and SRTP key (`inline:`) of an SDP.
pub fn media_of(sdp: &str) -> (String, u16, Option<String>) {
    let mut addr = String::new();
    let mut port = 0;
    let mut key = None;
    for l in sdp.lines() {
        if let Some(a) = l.strip_prefix("c=IN IP4 ") {
            addr = a.trim().to_owned();
        } else if let Some(m) = l.strip_prefix("m=audio ") {
            port = m
                .split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
        } else if key.is_none()
            && l.starts_with("a=crypto:")
            && l.contains(" AES_CM_128_HMAC_SHA1_80 ")
        {
            key = l.split("inline:").nth(1).map(|k| k.trim().to_owned());
        }
    }
    (addr, port, key)
}

impl SoftPhone {
    /// Connect from `ns` (where the phone is `addr`) to the appliance's
    /// SIP/TLS at `appliance`, verifying it for voip.example.test.
    /// Alice on the WAN side and Bob on the LAN side, each over verified
    /// TLS to the appliance's address on its side, both registered.
    pub fn pair(
        lab: &Lab,
        ca_pem: &[u8],
        (alice, alice_ha1): (&str, &str),
        (bob, bob_ha1): (&str, &str),
    ) -> (SoftPhone, SoftPhone) {
        let mut a = SoftPhone::connect(
            &lab.wan,
            ca_pem,
            Lab::WAN_APPLIANCE,
            Lab::WAN_PHONE,
            alice,
            alice_ha1,
        );
        let mut b = SoftPhone::connect(
            &lab.lan,
            ca_pem,
            Lab::LAN_APPLIANCE,
            Lab::LAN_ADMIN,
            bob,
            bob_ha1,
        );
        assert_eq!(a.register(), 200, "Alice registers");
        assert_eq!(b.register(), 200, "Bob registers");
        (a, b)
    }

    pub fn connect(
        ns: &Netns,
        ca_pem: &[u8],
        appliance: &str,
        addr: &str,
        user: &str,
        ha1: &str,
    ) -> SoftPhone {
        let conn = tls_client(ca_pem);
        let (sock, media) = ns.enter(|| {
            let s = TcpStream::connect_timeout(
                &format!("{appliance}:5061").parse().expect("addr"),
                Duration::from_secs(3),
            )
            .expect("connect to SIP/TLS");
            let m = UdpSocket::bind(format!("{addr}:0")).expect("media socket");
            (s, m)
        });
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // A phone sends each message at once (no Nagle delay).
        sock.set_nodelay(true).expect("nodelay");
        media
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let local_port = sock.local_addr().expect("local").port();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("a verified TLS handshake");
        }
        SoftPhone {
            user: user.to_owned(),
            ha1: ha1.to_owned(),
            addr: addr.to_owned(),
            tls,
            local_port,
            media,
            cseq: 1,
            branch: 0,
            queue: Vec::new(),
        }
    }

    pub fn media_port(&self) -> u16 {
        self.media.local_addr().expect("media").port()
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!(
            "Via: SIP/2.0/TLS {}:{};branch=z9hG4bK{}{}\r\n",
            self.addr, self.local_port, self.user, self.branch
        )
    }

    fn contact(&self) -> String {
        format!(
            "Contact: <sip:{}@{}:{};transport=tls>\r\n",
            self.user, self.addr, self.local_port
        )
    }

    pub fn send(&mut self, msg: &str) {
        self.tls.write_all(msg.as_bytes()).expect("send");
        self.tls.flush().expect("flush");
    }

    /// The next message on the connection (or one read earlier), or
    /// `None` when nothing comes within the read timeout.
    pub fn read(&mut self) -> Option<Msg> {
        if !self.queue.is_empty() {
            return Some(self.queue.remove(0));
        }
        self.read_wire()
    }

    fn read_wire(&mut self) -> Option<Msg> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match self.tls.read(&mut byte) {
                Ok(1) => {
                    // Keep-alive CRLFs between messages.
                    if buf.is_empty() && (byte[0] == b'\r' || byte[0] == b'\n') {
                        continue;
                    }
                    buf.push(byte[0]);
                }
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length") || k == "l")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.tls.read_exact(&mut body).ok()?;
        Some(Msg {
            first,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Read until a message `pick` accepts (others are kept for later).
    pub fn wait(&mut self, what: &str, pick: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        if let Some(i) = self.queue.iter().position(&pick) {
            return self.queue.remove(i);
        }
        while std::time::Instant::now() < deadline {
            if let Some(m) = self.read_wire() {
                if pick(&m) {
                    return m;
                }
                self.queue.push(m);
            }
        }
        panic!(
            "{}: no {what} within 10 s (queued: {:?})",
            self.user, self.queue
        );
    }

    /// The final response to the request with CSeq `cseq`.
    pub fn final_response(&mut self, cseq: u32) -> Msg {
        self.wait("final response", |m| {
            m.code() >= 200 && m.header("CSeq").starts_with(&format!("{cseq} "))
        })
    }

    /// REGISTER with digest authentication; the final status.
    pub fn register(&mut self) -> u16 {
        let uri = format!("sip:{HOST}");
        let mut auth = String::new();
        for _ in 0..2 {
            self.cseq += 1;
            let cseq = self.cseq;
            let (via, contact) = (self.via(), self.contact());
            let msg = format!(
                "REGISTER {uri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{u}@{HOST}>;tag=r{u}\r\n\
                 To: <sip:{u}@{HOST}>\r\nCall-ID: reg-{u}@test\r\nCSeq: {cseq} REGISTER\r\n{contact}\
                 Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
                u = self.user
            );
            self.send(&msg);
            let r = self.final_response(cseq);
            if r.code() != 401 {
                return r.code();
            }
            auth = self.digest(
                "Authorization",
                &r.header("WWW-Authenticate"),
                "REGISTER",
                &uri,
                &self.ha1.clone(),
            );
        }
        401
    }

    fn digest(&self, header: &str, challenge: &str, method: &str, uri: &str, ha1: &str) -> String {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a nonce");
        let response = md5_hex(&format!(
            "{ha1}:{nonce}:{}",
            md5_hex(&format!("{method}:{uri}"))
        ));
        format!(
            "{header}: Digest username=\"{}\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5\r\n",
            self.user
        )
    }

    /// Send an INVITE to `ruri` with `body`, authenticating with `ha1` (the
    /// phone's own, or a wrong one) when challenged; returns the final
    /// response (after ACKing a failure) and the call's identity.
    pub fn invite(&mut self, ruri: &str, body: &str, ha1: &str) -> (Msg, Call) {
        self.invite_with(ruri, body, ha1, true)
            .map(|(m, c)| (m.expect("a final response"), c))
            .expect("an INVITE")
    }

    /// [`SoftPhone::invite`] that returns once the authenticated INVITE
    /// is sent (`wait_final` false), without its final response.
    pub fn invite_pending(&mut self, ruri: &str, body: &str, ha1: &str) -> Call {
        self.invite_with(ruri, body, ha1, false)
            .expect("an INVITE")
            .1
    }

    fn invite_with(
        &mut self,
        ruri: &str,
        body: &str,
        ha1: &str,
        wait_final: bool,
    ) -> Option<(Option<Msg>, Call)> {
        self.branch += 1;
        let call_id = format!("call-{}-{}@test", self.user, self.branch);
        let from_tag = format!("f{}{}", self.user, self.branch);
        let mut auth = String::new();
        let mut challenges = 0;
        loop {
            self.cseq += 1;
            let cseq = self.cseq;
            let via = self.via();
            let contact = self.contact();
            let msg = format!(
                "INVITE {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{u}@{HOST}>;tag={from_tag}\r\n\
                 To: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n{contact}{auth}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len(),
                u = self.user
            );
            self.send(&msg);
            if challenges > 0 && !wait_final {
                return Some((
                    None,
                    Call {
                        ruri: ruri.to_owned(),
                        call_id: call_id.clone(),
                        from_tag: from_tag.clone(),
                        to_tag: String::new(),
                        cseq,
                        route: Vec::new(),
                        remote: String::new(),
                        via: via.clone(),
                    },
                ));
            }
            let r = self.final_response(cseq);
            let call = Call {
                ruri: ruri.to_owned(),
                call_id: call_id.clone(),
                from_tag: from_tag.clone(),
                to_tag: r.tag_of("To").unwrap_or_default(),
                cseq,
                route: r.all("Record-Route").into_iter().rev().collect(),
                remote: r.uri_of("Contact"),
                via: via.clone(),
            };
            if r.code() >= 300 {
                self.ack_failure(&call, &r);
            }
            if r.code() == 407 && challenges == 0 {
                challenges += 1;
                auth = self.digest(
                    "Proxy-Authorization",
                    &r.header("Proxy-Authenticate"),
                    "INVITE",
                    ruri,
                    ha1,
                );
                continue;
            }
            return Some((Some(r), call));
        }
    }

    /// ACK of a failure `r` to the INVITE of `call`: the INVITE's branch,
    /// hop by hop.
    pub fn ack_failure(&mut self, call: &Call, r: &Msg) {
        let ack = format!(
            "ACK {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{u}@{HOST}>;tag={ft}\r\n\
             To: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            ruri = call.ruri,
            via = call.via,
            u = self.user,
            ft = call.from_tag,
            to = r.header("To"),
            cid = call.call_id,
            cseq = call.cseq,
        );
        self.send(&ack);
    }

    /// A request within the dialog `call` (ACK of a 2xx, BYE).
    pub fn in_dialog(&mut self, call: &Call, method: &str, cseq: u32) {
        self.in_dialog_with(call, method, cseq, "");
    }

    /// A request within the dialog `call`, with an SDP `body` when not
    /// empty (a re-INVITE).
    pub fn in_dialog_with(&mut self, call: &Call, method: &str, cseq: u32, body: &str) {
        let via = self.via();
        let tail = if body.is_empty() {
            "Content-Length: 0\r\n\r\n".to_owned()
        } else {
            format!(
                "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                self.contact(),
                body.len()
            )
        };
        let routes: String = call
            .route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let msg = format!(
            "{method} {remote} SIP/2.0\r\n{via}{routes}Max-Forwards: 70\r\nFrom: <sip:{u}@{HOST}>;tag={ft}\r\n\
             To: <{ruri}>;tag={tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{tail}",
            remote = call.remote,
            u = self.user,
            ft = call.from_tag,
            ruri = call.ruri,
            tt = call.to_tag,
            cid = call.call_id,
        );
        self.send(&msg);
    }

    /// CANCEL the INVITE of `call` (same branch and CSeq number).
    pub fn cancel(&mut self, call: &Call) {
        let msg = format!(
            "CANCEL {ruri} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:{u}@{HOST}>;tag={ft}\r\n\
             To: <{ruri}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} CANCEL\r\nContent-Length: 0\r\n\r\n",
            ruri = call.ruri,
            via = call.via,
            u = self.user,
            ft = call.from_tag,
            cid = call.call_id,
            cseq = call.cseq,
        );
        self.send(&msg);
    }

    /// Answer request `req` with `code` (a 2xx of an INVITE carries `body`
    /// and the phone's Contact); returns the To tag given.
    pub fn respond(&mut self, req: &Msg, code: u16, reason: &str, body: &str) -> String {
        let tag = format!("t{}", self.user);
        let to = if req.tag_of("To").is_some() {
            req.header("To")
        } else {
            format!("{};tag={tag}", req.header("To"))
        };
        let mut msg = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.all("Via") {
            msg.push_str(&format!("Via: {v}\r\n"));
        }
        for r in req.all("Record-Route") {
            msg.push_str(&format!("Record-Route: {r}\r\n"));
        }
        msg.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            req.header("From"),
            req.header("Call-ID"),
            req.header("CSeq")
        ));
        if body.is_empty() {
            msg.push_str("Content-Length: 0\r\n\r\n");
        } else {
            msg.push_str(&self.contact());
            msg.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        self.send(&msg);
        tag
    }

    pub fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }
}

/// What a caller keeps of a call.
#[derive(Debug, Clone)]
pub struct Call {
    pub ruri: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub cseq: u32,
    /// The route set (the Record-Route of the answer, reversed).
    pub route: Vec<String>,
    /// The callee's Contact.
    pub remote: String,
    /// The INVITE's Via (for a CANCEL).
    pub via: String,
}

/// An account activated through its link: (username, HA1).
pub fn activated(d: &Daemon, lab: &Lab, ca: &str, phone: &str, name: &str) -> (String, String) {
    let (user, body, _) = activation_document(d, lab, ca, phone, name, None);
    let doc: Value = serde_json::from_str(&body).expect("document");
    assert_eq!(doc["srtp"], "mandatory", "{doc}");
    (user, doc["ha1"].as_str().expect("ha1").to_owned())
}
