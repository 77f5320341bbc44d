//! A measurement, not a check, so the suite leaves it out (`#[ignore]`);
//! run it (as root, with the kamailio packages) with
//! `cargo test -p switchboard --test bans_bench -- --ignored --nocapture`.
//!
//! 1. Legitimate REGISTERs per second (digest authenticated, 4 clients on
//!    the LAN side over SIP/UDP) through the generated configuration with
//!    the ban policy on and off, alternating in the same run.
//! 2. Packets per second of a banned address that the kernel drops (the
//!    `banned: sip-udp` rule's counter) while it floods SIP/UDP.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::phone::{HOST, Phone, fetch, link_in, md5_hex, register_udp};
use serde_json::Value;
use switchboard_system::testlab::{Lab, Netns, is_root};

const CLIENTS: u16 = 4;
const ROUND: Duration = Duration::from_secs(4);

/// Authenticated REGISTERs from `clients` sockets for `ROUND`: 200 OKs/s.
fn registers_per_second(ns: &Netns, user: &str, ha1: &str, round: u32) -> f64 {
    let total: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            scope.spawn(move || {
                ns.enter(|| {
                    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
                    s.set_read_timeout(Some(Duration::from_millis(500)))
                        .expect("timeout");
                    let port = s.local_addr().expect("addr").port();
                    let mut buf = [0u8; 4096];
                    let (mut ok, mut cseq) = (0u64, 0u32);
                    let start = Instant::now();
                    while start.elapsed() < ROUND {
                        let msg = |cseq: u32, auth: &str| {
                            format!(
                                "REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:{port};branch=z9hG4bKb{round}x{i}x{cseq}\r\nMax-Forwards: 70\r\n\
                                 From: <sip:{user}@{HOST}>;tag=b{i}\r\nTo: <sip:{user}@{HOST}>\r\nCall-ID: b{round}x{i}@bench\r\nCSeq: {cseq} REGISTER\r\n\
                                 Contact: <sip:{user}@192.0.2.2:{port}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
                            )
                        };
                        cseq += 1;
                        s.send_to(msg(cseq, "").as_bytes(), ("192.0.2.1", 5060)).expect("send");
                        let Ok(n) = s.recv(&mut buf) else { continue };
                        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let Some(nonce) = head.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()) else {
                            continue;
                        };
                        let uri = format!("sip:{HOST}");
                        let response = md5_hex(&format!("{ha1}:{nonce}:{}", md5_hex(&format!("REGISTER:{uri}"))));
                        let auth = format!(
                            "Authorization: Digest username=\"{user}\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5\r\n"
                        );
                        cseq += 1;
                        s.send_to(msg(cseq, &auth).as_bytes(), ("192.0.2.1", 5060)).expect("send");
                        if let Ok(n) = s.recv(&mut buf)
                            && buf[..n].starts_with(b"SIP/2.0 200 ")
                        {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
        })
        .collect();
        threads.into_iter().map(|t| t.join().expect("client")).sum()
    });
    total as f64 / ROUND.as_secs_f64()
}

/// The packets counted by the `banned: sip-udp` IPv4 rule.
fn dropped(app: &Netns) -> u64 {
    let out = app
        .command("nft")
        .args(["-j", "list", "chain", "inet", "switchboard", "input"])
        .output()
        .expect("nft");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    v["nftables"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["rule"]["comment"] == "banned: sip-udp")
        .flat_map(|i| i["rule"]["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

#[test]
#[ignore = "a measurement, not a check: run it with --ignored"]
fn bench_registers_with_and_without_bans_and_kernel_drops() {
    assert!(
        is_root() && switchboard_system::kamailio::installed(),
        "needs root and kamailio"
    );
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    let user = d.json(&["account", "add", "--phone", "+15550100155", "--name", "Di"])["username"]
        .as_str()
        .expect("user")
        .to_owned();
    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let (body, _) = fetch(
        &lab,
        &files.path().join("ca.pem").display().to_string(),
        &link_in(sms[0]["text"].as_str().expect("outbox")),
    );
    let doc: Value = serde_json::from_str(&body).expect("document");
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();

    let set = |d: &Daemon, on: bool| {
        d.ok(&[
            "bans",
            "policy",
            "--enabled",
            if on { "true" } else { "false" },
        ]);
        d.ok(&["update", "-m", "bench"]);
        // Kamailio restarts with the new script.
        let deadline = Instant::now() + Duration::from_secs(20);
        while register_udp(&lab.lan, "192.0.2.1", &user, &ha1) != Some(200) {
            assert!(Instant::now() < deadline, "kamailio did not come back");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..3 {
        set(&d, true);
        on.push(registers_per_second(&lab.lan, &user, &ha1, round * 2));
        set(&d, false);
        off.push(registers_per_second(&lab.lan, &user, &ha1, round * 2 + 1));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "REGISTER/s (200 OK, {CLIENTS} clients over UDP): protection on {on:.0?} mean {:.0}; off {off:.0?} mean {:.0}; ratio {:.2}",
        mean(&on),
        mean(&off),
        mean(&on) / mean(&off)
    );

    // Ban the WAN neighbour (5 wrong digests over TLS: it never
    // registered; the LAN did, and is not counted against), then flood
    // SIP/UDP from it: the ban rule matches before anything else.
    set(&d, true);
    let ca = std::fs::read(files.path().join("ca.pem")).expect("ca");
    let wrong = "0".repeat(32);
    for _ in 0..5 {
        let mut guess = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
        guess.register(&user, &wrong, 1);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.json(&["bans"])["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .any(|b| b["in_kernel"] == true)
    {
        assert!(Instant::now() < deadline, "not banned: {}", d.ok(&["bans"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = dropped(&lab.appliance);
    let sent = lab.wan.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            if s.send_to(payload, (Lab::WAN_APPLIANCE, 5060)).is_ok() {
                n += 1;
            }
        }
        n
    });
    let drops = dropped(&lab.appliance) - before;
    eprintln!(
        "banned flood: {sent} packets sent in 3 s, {drops} dropped by the kernel's ban rule: {:.0} packets/s",
        drops as f64 / 3.0
    );
}
