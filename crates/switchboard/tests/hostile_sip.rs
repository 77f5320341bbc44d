//! Hostile SIP never wedges Kamailio (needs root and the kamailio
//! packages): garbage, oversize, malformed and truncated messages over
//! SIP/UDP and SIP/TLS from one neighbour, then Kamailio still answers the
//! other neighbour at once, with the same pid (no crash, no restart), and
//! an oversize message is answered 513; a request flood gets its address
//! banned.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::kamailio_pid;
use common::phone::{HOST, Phone};
use switchboard_system::testlab::{Lab, Netns, is_root, require_or_skip};

/// Send `msg` over UDP from `ns` to the LAN side's SIP/UDP; the answer's
/// first line, if any within 500 ms.
fn udp(ns: &Netns, msg: &[u8]) -> Option<String> {
    ns.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s.send_to(msg, (Lab::LAN_APPLIANCE, 5060)).expect("send");
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_owned)
    })
}

fn options(port_tag: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:5999;rport;branch=z9hG4bK{port_tag}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{HOST}>;tag={port_tag}\r\nTo: <sip:{HOST}>\r\nCall-ID: {port_tag}@probe\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn hostile_sip_never_wedges_kamailio() {
    if !require_or_skip(
        "hostile_sip::hostile_sip_never_wedges_kamailio",
        is_root() && switchboard_system::kamailio::installed(),
        "needs root and the kamailio packages",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    // The LAN neighbour sends the garbage; it is trusted so that a ban does
    // not hide whether Kamailio itself copes.
    d.ok(&["bans", "policy", "--trusted", "192.0.2.0/24"]);
    d.ok(&["update", "-m", "trust the LAN for the hostile SIP test"]);
    // The Update restarted Kamailio (a new script): wait for it.
    let since = std::time::Instant::now();
    while !udp(&lab.lan, options("ok0", "").as_bytes())
        .is_some_and(|l| l.starts_with("SIP/2.0 200"))
    {
        assert!(since.elapsed() < Duration::from_secs(15), "served before");
    }
    let pid = kamailio_pid(&d).expect("kamailio runs");

    let big = options("big", &format!("X-Pad: {}\r\n", "a".repeat(20_000)));
    assert_eq!(
        udp(&lab.lan, big.as_bytes()).as_deref(),
        Some("SIP/2.0 513 Message Too Large"),
        "an oversize message is refused"
    );
    let many_vias: String = (0..300)
        .map(|i| format!("Via: SIP/2.0/UDP 192.0.2.2:{i};branch=z9hG4bKv{i}\r\n"))
        .collect();
    let hostile: Vec<Vec<u8>> = vec![
        vec![0u8; 1400],
        (0..=255u8).cycle().take(3000).collect(),
        b"\r\n\r\n".to_vec(),
        b"OPTIONS\r\n\r\n".to_vec(),
        b"OPTIONS sip:x SIP/2.0\r\nVia: \r\n\r\n".to_vec(),
        options("cl", "").replace("Content-Length: 0", "Content-Length: -1").into_bytes(),
        options("cl2", "").replace("Content-Length: 0", "Content-Length: 99999999999").into_bytes(),
        options("cseq", "").replace("CSeq: 1 OPTIONS", "CSeq: 99999999999999999999 OPTIONS").into_bytes(),
        options("mf", "").replace("Max-Forwards: 70", "Max-Forwards: -5").into_bytes(),
        options("vias", &many_vias).into_bytes(),
        options("nul", "X-Nul: a\0b\r\n").into_bytes(),
        options("utf", "X-Bad: \u{fffd}\u{202e}\r\n").into_bytes(),
        format!("REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:5999;branch=z9hG4bKr\r\nAuthorization: Digest username=\"{}\", realm=\"x\", nonce=\"\", uri=\"\", response=\"\"\r\n\r\n", "u".repeat(4000)).into_bytes(),
    ];
    for (i, m) in hostile.iter().enumerate() {
        let _ = udp(&lab.lan, m);
        assert!(
            udp(&lab.lan, options(&format!("after{i}"), "").as_bytes())
                .is_some_and(|l| l.starts_with("SIP/2.0 200")),
            "not answered after hostile message {i}"
        );
    }

    // Over TLS: a head that never ends and garbage, on connections left
    // open, while the phone side still gets answers on a new connection.
    let ca = std::fs::read(files.path().join("ca.pem")).expect("ca");
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let mut p = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
        let _ = p.tls.write_all(
            b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.2;branch=z9hG4bKs\r\nX-Never: ",
        );
        let _ = p.tls.write_all(&[0xffu8; 2000]);
        let _ = p.tls.flush();
        stuck.push(p);
    }
    let mut phone = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    let (code, _) = phone.request(&options("tls", "").replace(
        "SIP/2.0/UDP 192.0.2.2:5999",
        "SIP/2.0/TLS 198.51.100.2:5061",
    ));
    assert_eq!(code, 200, "answered over TLS beside 20 stuck connections");
    drop(stuck);

    assert_eq!(
        kamailio_pid(&d),
        Some(pid),
        "the same Kamailio: no crash, no restart"
    );

    // A REGISTER flood from the WAN side (never registered, not trusted):
    // 300 REGISTERs on one TLS connection at once; pike bans the address.
    let flood: String = (0..300)
        .map(|i| {
            options(&format!("fl{i}"), "")
                .replace(
                    "SIP/2.0/UDP 192.0.2.2:5999;rport",
                    "SIP/2.0/TLS 198.51.100.2:5061",
                )
                .replace("OPTIONS sip:", "REGISTER sip:")
                .replace("CSeq: 1 OPTIONS", "CSeq: 1 REGISTER")
        })
        .collect();
    let _ = phone.tls.write_all(flood.as_bytes());
    let _ = phone.tls.flush();
    let since = std::time::Instant::now();
    while !d.json(&["bans"])["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .any(|b| b["address"] == Lab::WAN_PHONE && b["reason"] == "flood")
    {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the flood was not banned: {}",
            d.ok(&["bans"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = lab.wan.enter(|| {
        std::net::TcpStream::connect_timeout(
            &format!("{}:5061", Lab::WAN_APPLIANCE)
                .parse()
                .expect("addr"),
            Duration::from_secs(2),
        )
        .is_err()
    });
    assert!(refused, "a flooder's new connection is dropped");
    assert!(
        udp(&lab.lan, options("end", "").as_bytes()).is_some_and(|l| l.starts_with("SIP/2.0 200"))
    );
}
