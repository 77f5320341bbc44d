//! The media relay adapter: rtpengine run as a supervised child (like
//! Kamailio, see [`crate::kamailio::Supervisor`]), asked over its control
//! protocols on loopback.
//!
//! - [`supervisor`]: `rtpengine --config-file CONF -f -E`, userspace
//!   forwarding only (the configuration says `table = -1`: no kernel
//!   module, nothing of the host's firewall touched).
//! - [`ping`]: the ng protocol's `ping` (bencode over UDP), to know it
//!   answers.
//! - [`interfaces`]: `list interfaces` over the text CLI, to verify the
//!   interfaces it runs are the planned ones.
//! - [`calls`]: `list` then `query` per call over ng: the media of the
//!   calls in progress (interfaces, SRTP suite, packets relayed).
//!
//! Answers are parsed by a bounded bencode reader: a malformed or hostile
//! answer is an error, never a panic.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::kamailio::{Program, Supervisor};

const RTPENGINE: &str = "rtpengine";

#[derive(Debug, thiserror::Error)]
pub enum RtpengineError {
    #[error("rtpengine does not answer on {0} within 2 s")]
    Timeout(SocketAddr),
    #[error("cannot reach rtpengine on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("rtpengine answered something that does not parse: {0}")]
    Malformed(&'static str),
    #[error("rtpengine answered an error: {0}")]
    Refused(String),
}

/// Is rtpengine installed (Debian's `rtpengine-daemon`)?
pub fn installed() -> bool {
    Path::new("/usr/bin/rtpengine").exists()
}

/// rtpengine on `conf`, supervised: restarted with backoff when it dies;
/// its pid kept in `pidfile` (see [`crate::kamailio::kill_stale`]).
pub fn supervisor(conf: &Path, pidfile: PathBuf) -> Supervisor {
    Supervisor::run(Program {
        name: "rtpengine",
        program: RTPENGINE,
        args: vec![
            "--config-file".into(),
            conf.as_os_str().to_owned(),
            "--foreground".into(),
            "--log-stderr".into(),
        ],
        envs: Vec::new(),
        pidfile,
    })
}

// ---- bencode ---------------------------------------------------------------

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend(format!("{}:", b.len()).as_bytes());
                out.extend(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The value at `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// A byte string as text (lossy), cut to 256 characters.
    pub fn text(&self) -> Option<String> {
        match self {
            Bencode::Bytes(b) => Some(
                String::from_utf8_lossy(b)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(256)
                    .collect(),
            ),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Bencode::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn list(&self) -> &[Bencode] {
        match self {
            Bencode::List(l) => l,
            _ => &[],
        }
    }

    pub fn dict(&self) -> impl Iterator<Item = (&Vec<u8>, &Bencode)> {
        match self {
            Bencode::Dict(d) => Some(d.iter()),
            _ => None,
        }
        .into_iter()
        .flatten()
    }
}

/// How deep an answer may nest (rtpengine's go 8 deep).
const MAX_DEPTH: usize = 32;

/// Parse one bencoded value that is the whole of `input`.
pub fn decode(input: &[u8]) -> Result<Bencode, RtpengineError> {
    let (v, rest) = decode_at(input, 0)?;
    if !rest.is_empty() {
        return Err(RtpengineError::Malformed("trailing bytes"));
    }
    Ok(v)
}

fn decode_at(input: &[u8], depth: usize) -> Result<(Bencode, &[u8]), RtpengineError> {
    use RtpengineError::Malformed;
    if depth > MAX_DEPTH {
        return Err(Malformed("nested too deep"));
    }
    match input.first() {
        Some(b'i') => {
            let end = input
                .iter()
                .position(|&b| b == b'e')
                .ok_or(Malformed("unterminated integer"))?;
            let n = std::str::from_utf8(&input[1..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Malformed("bad integer"))?;
            Ok((Bencode::Int(n), &input[end + 1..]))
        }
        Some(b'l') => {
            let mut rest = &input[1..];
            let mut items = Vec::new();
            while rest.first() != Some(&b'e') {
                let (v, r) = decode_at(rest, depth + 1)?;
                items.push(v);
                rest = r;
            }
            Ok((Bencode::List(items), &rest[1..]))
        }
        Some(b'd') => {
            let mut rest = &input[1..];
            let mut items = BTreeMap::new();
            while rest.first() != Some(&b'e') {
                let (k, r) = decode_at(rest, depth + 1)?;
                let Bencode::Bytes(k) = k else {
                    return Err(Malformed("a dictionary key that is not a string"));
                };
                let (v, r) = decode_at(r, depth + 1)?;
                items.insert(k, v);
                rest = r;
            }
            Ok((Bencode::Dict(items), &rest[1..]))
        }
        Some(b'0'..=b'9') => {
            let colon = input
                .iter()
                .position(|&b| b == b':')
                .ok_or(Malformed("a string without length"))?;
            let len: usize = std::str::from_utf8(&input[..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Malformed("bad string length"))?;
            let body = &input[colon + 1..];
            if body.len() < len {
                return Err(Malformed("truncated string"));
            }
            Ok((Bencode::Bytes(body[..len].to_vec()), &body[len..]))
        }
        Some(_) => Err(Malformed("unknown type")),
        None => Err(Malformed("truncated")),
    }
}

fn dict(items: &[(&str, Bencode)]) -> Bencode {
    Bencode::Dict(
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    )
}

fn bytes(s: &str) -> Bencode {
    Bencode::Bytes(s.as_bytes().to_vec())
}

/// One ng command: `COOKIE <bencoded dict>` over UDP, the answer under the
/// same cookie; its `result` must be `ok` (or `pong`).
pub async fn ng(ng: SocketAddr, command: &Bencode) -> Result<Bencode, RtpengineError> {
    let io = |source| RtpengineError::Io { addr: ng, source };
    let sock = tokio::net::UdpSocket::bind(if ng.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })
    .await
    .map_err(io)?;
    // The cookie only has to be unique among the requests in flight:
    // rtpengine answers a repeated cookie from its cache.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cookie = format!(
        "sb{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut msg = format!("{cookie} ").into_bytes();
    command.encode(&mut msg);
    sock.send_to(&msg, ng).await.map_err(io)?;
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .map_err(|_| RtpengineError::Timeout(ng))?
            .map_err(io)?;
        let answer = &buf[..n];
        let Some(body) = answer.strip_prefix(format!("{cookie} ").as_bytes()) else {
            continue;
        };
        if from != ng {
            continue;
        }
        let v = decode(body)?;
        return match v.get("result").and_then(Bencode::text).as_deref() {
            Some("ok" | "pong") => Ok(v),
            Some(other) => Err(RtpengineError::Refused(format!(
                "{other}: {}",
                v.get("error-reason")
                    .and_then(Bencode::text)
                    .unwrap_or_default()
            ))),
            None => Err(RtpengineError::Malformed("no result")),
        };
    }
}

/// Does rtpengine answer `ping` on `ng`?
pub async fn ping(ng_addr: SocketAddr) -> Result<(), RtpengineError> {
    ng(ng_addr, &dict(&[("command", bytes("ping"))])).await?;
    Ok(())
}

/// The interfaces rtpengine runs (`list interfaces` over its text CLI):
/// name and address, in its order.
pub async fn interfaces(cli: SocketAddr) -> Result<Vec<(String, IpAddr)>, RtpengineError> {
    let io = |source| RtpengineError::Io { addr: cli, source };
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(cli).await.map_err(io)?;
        s.write_all(b"list interfaces\n").await.map_err(io)?;
        s.shutdown().await.map_err(io)?;
        let mut text = String::new();
        s.take(1 << 20)
            .read_to_string(&mut text)
            .await
            .map_err(io)?;
        Ok::<_, RtpengineError>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(2), talk)
        .await
        .map_err(|_| RtpengineError::Timeout(cli))??;
    Ok(parse_interfaces(&text))
}

/// `Interface 'NAME' address 'ADDR' (IPv4)` lines.
fn parse_interfaces(text: &str) -> Vec<(String, IpAddr)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Interface '")?;
            let (name, rest) = rest.split_once("' address '")?;
            let (addr, _) = rest.split_once('\'')?;
            Some((name.to_owned(), addr.parse().ok()?))
        })
        .collect()
}

/// The media of one call, as rtpengine relays it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMedia {
    pub call_id: String,
    /// The relay's local addresses the call's streams use (one per side).
    pub local_addresses: Vec<IpAddr>,
    /// The SRTP suites of its RTP streams (empty for a plain stream).
    pub crypto_suites: Vec<String>,
    /// Every RTP stream is SRTP with a suite that encrypts.
    pub srtp: bool,
    /// RTP and RTCP packets relayed, in all.
    pub packets: u64,
    /// Seconds since the epoch when the call began at the relay.
    pub created: i64,
}

/// The calls in progress at the relay, at most `limit`.
pub async fn calls(ng_addr: SocketAddr, limit: usize) -> Result<Vec<CallMedia>, RtpengineError> {
    let list = ng(
        ng_addr,
        &dict(&[
            ("command", bytes("list")),
            ("limit", Bencode::Int(limit as i64)),
        ]),
    )
    .await?;
    let mut out = Vec::new();
    for id in list
        .get("calls")
        .map(Bencode::list)
        .unwrap_or_default()
        .iter()
        .take(limit)
    {
        let Some(call_id) = id.text() else { continue };
        let q = match ng(
            ng_addr,
            &dict(&[
                ("command", bytes("query")),
                ("call-id", Bencode::Bytes(call_id.as_bytes().to_vec())),
            ]),
        )
        .await
        {
            Ok(q) => q,
            // Ended between the list and the query.
            Err(RtpengineError::Refused(_)) => continue,
            Err(e) => return Err(e),
        };
        out.push(call_media(call_id, &q));
    }
    Ok(out)
}

/// What a `query` answer says of a call's media.
fn call_media(call_id: String, q: &Bencode) -> CallMedia {
    let mut m = CallMedia {
        call_id,
        created: q.get("created").and_then(Bencode::int).unwrap_or(0),
        srtp: true,
        ..CallMedia::default()
    };
    let mut streams = 0;
    for (_, tag) in q.get("tags").map(Bencode::dict).into_iter().flatten() {
        for media in tag.get("medias").map(Bencode::list).unwrap_or_default() {
            let savp = media
                .get("protocol")
                .and_then(Bencode::text)
                .is_some_and(|p| p.contains("SAVP"));
            for s in media.get("streams").map(Bencode::list).unwrap_or_default() {
                let rtcp = s
                    .get("flags")
                    .map(Bencode::list)
                    .unwrap_or_default()
                    .iter()
                    .any(|f| f.text().as_deref() == Some("RTCP"));
                if let Some(a) = s
                    .get("local address")
                    .and_then(Bencode::text)
                    .and_then(|a| a.parse().ok())
                    && !m.local_addresses.contains(&a)
                {
                    m.local_addresses.push(a);
                }
                let packets = s
                    .get("stats")
                    .and_then(|st| st.get("packets"))
                    .and_then(Bencode::int)
                    .unwrap_or(0);
                m.packets += u64::try_from(packets).unwrap_or(0);
                if rtcp {
                    continue;
                }
                streams += 1;
                let suite = s.get("crypto suite").and_then(Bencode::text);
                let encrypts = suite
                    .as_deref()
                    .is_some_and(|c| !c.is_empty() && !c.starts_with("NULL"));
                if !(savp && encrypts) {
                    m.srtp = false;
                }
                if let Some(c) = suite
                    && !m.crypto_suites.contains(&c)
                {
                    m.crypto_suites.push(c);
                }
            }
        }
    }
    if streams == 0 {
        m.srtp = false;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trips_and_refuses_what_does_not_parse() {
        let v = dict(&[
            ("command", bytes("list")),
            ("limit", Bencode::Int(-3)),
            ("l", Bencode::List(vec![bytes("a"), Bencode::Int(1)])),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, b"d7:command4:list1:ll1:ai1ee5:limiti-3ee");
        assert_eq!(decode(&out).expect("decode"), v);
        for bad in [
            &b""[..],
            b"i12",
            b"ixe",
            b"5:abc",
            b"99999999999999999999:a",
            b"l",
            b"d1:a",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{}{}", "l".repeat(100), "e".repeat(100));
        assert!(decode(deep.as_bytes()).is_err(), "nesting is bounded");
    }

    #[test]
    fn a_query_answer_says_where_the_media_goes_and_whether_it_is_srtp() {
        // The shape of rtpengine 10.5's answer, cut down: two sides, each
        // an RTP and an RTCP stream.
        let side = |addr: &str, suite: &str, packets: i64| {
            let stream = |rtcp: bool| {
                dict(&[
                    ("local address", bytes(addr)),
                    ("crypto suite", bytes(suite)),
                    (
                        "flags",
                        Bencode::List(vec![bytes(if rtcp { "RTCP" } else { "RTP" })]),
                    ),
                    ("stats", dict(&[("packets", Bencode::Int(packets))])),
                ])
            };
            dict(&[(
                "medias",
                Bencode::List(vec![dict(&[
                    ("protocol", bytes("RTP/SAVP")),
                    ("streams", Bencode::List(vec![stream(false), stream(true)])),
                ])]),
            )])
        };
        let q = dict(&[
            ("created", Bencode::Int(1_700_000_000)),
            (
                "tags",
                dict(&[
                    ("a", side("198.51.100.1", "AES_CM_128_HMAC_SHA1_80", 50)),
                    ("b", side("192.0.2.1", "AES_CM_128_HMAC_SHA1_80", 40)),
                ]),
            ),
        ]);
        let m = call_media("c1".into(), &q);
        assert!(m.srtp);
        assert_eq!(m.packets, 180);
        assert_eq!(
            m.local_addresses,
            [
                "198.51.100.1".parse::<IpAddr>().expect("ip"),
                "192.0.2.1".parse().expect("ip")
            ]
        );
        let null = dict(&[(
            "tags",
            dict(&[("a", side("198.51.100.1", "NULL_HMAC_SHA1_80", 1))]),
        )]);
        assert!(
            !call_media("c2".into(), &null).srtp,
            "a NULL cipher is no SRTP"
        );
        assert!(
            !call_media("c3".into(), &dict(&[])).srtp,
            "no stream, no SRTP"
        );
    }

    #[test]
    fn the_cli_list_of_interfaces_is_read_by_its_lines() {
        let text = "Interface 'lan0' address '192.0.2.1' (IPv4)\n Port range: 30000 - 30999\nInterface 'wan0' address '198.51.100.1' (IPv4)\nInterface 'x' address 'nonsense' (IPv4)\n";
        assert_eq!(
            parse_interfaces(text),
            [
                ("lan0".to_owned(), "192.0.2.1".parse().expect("ip")),
                ("wan0".to_owned(), "198.51.100.1".parse().expect("ip"))
            ]
        );
    }
}
