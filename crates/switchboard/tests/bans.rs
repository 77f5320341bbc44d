//! The SIP edge's bans with the real Kamailio and a real attack tool
//! (needs root, the kamailio packages and sipvicious): `svcrack` guessing
//! an account's password over SIP/UDP from the LAN neighbour is banned
//! after the policy's failures — counted on the wire by an nftables counter
//! in the attacker's own namespace: no answer after the ban — while the
//! phone on the WAN side still registers over TLS; an Update during the ban
//! keeps it; the ban expires by itself; a repeat offence is banned longer;
//! `unban` lifts it at once; a trusted network is never banned. Over SIP/TLS
//! a guesser on the WAN side is banned the same way (its next TCP
//! handshake is dropped), and an address that registered is not counted
//! against while registered.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use common::phone::{Phone, fetch, link_in};
use serde_json::Value;
use switchboard_system::testlab::{Lab, Netns, is_root, require_or_skip};

const ATTACKER: &str = "192.0.2.2";
const FAILURES: u64 = 5;

fn svcrack_installed() -> bool {
    std::path::Path::new("/usr/bin/svcrack").exists()
}

/// Counters in the attacker's namespace: SIP requests it sent to the
/// appliance, and answers it received from it.
fn count_on_the_wire(lan: &Netns, dir: &std::path::Path) {
    let script = dir.join("probe.nft");
    std::fs::write(
        &script,
        format!(
            "table inet probe\ndelete table inet probe\ntable inet probe {{
\tcounter requests {{ }}
\tcounter answers {{ }}
\tchain output {{ type filter hook output priority 0; ip daddr {a} udp dport 5060 counter name requests; }}
\tchain input {{ type filter hook input priority 0; ip saddr {a} udp sport 5060 counter name answers; }}
}}
",
            a = Lab::LAN_APPLIANCE
        ),
    )
    .expect("write");
    let out = lan
        .command("nft")
        .arg("-f")
        .arg(&script)
        .output()
        .expect("nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (requests sent, answers received) since the counters were set up.
fn wire(lan: &Netns) -> (u64, u64) {
    let out = lan
        .command("nft")
        .args(["-j", "list", "counters", "table", "inet", "probe"])
        .output()
        .expect("nft");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut counts = (0, 0);
    for item in v["nftables"].as_array().expect("list") {
        let c = &item["counter"];
        match c["name"].as_str() {
            Some("requests") => counts.0 = c["packets"].as_u64().expect("n"),
            Some("answers") => counts.1 = c["packets"].as_u64().expect("n"),
            _ => {}
        }
    }
    counts
}

/// `svcrack` guessing `user`'s password (1..=30) against SIP/UDP on the
/// LAN side; it gives up after 3 s without an answer.
fn attack(lan: &Netns, user: &str) -> String {
    let out = lan
        .command("timeout")
        .args([
            "90",
            "svcrack",
            "-u",
            user,
            "-r",
            "1-30",
            "--maximumtime",
            "3",
            "-p",
            "5060",
            Lab::LAN_APPLIANCE,
        ])
        .output()
        .expect("svcrack");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether an OPTIONS from `ns` to the appliance's SIP/UDP is answered
/// within 800 ms.
fn answered(ns: &Netns, from: &str) -> bool {
    ns.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .expect("timeout");
        let port = s.local_addr().expect("addr").port();
        let msg = format!(
            "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {from}:{port};branch=z9hG4bKo{port}\r\nMax-Forwards: 70\r\n\
             From: <sip:probe@{from}>;tag=p{port}\r\nTo: <sip:{a}>\r\nCall-ID: o{port}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            a = Lab::LAN_APPLIANCE
        );
        s.send_to(msg.as_bytes(), (Lab::LAN_APPLIANCE, 5060))
            .expect("send");
        let mut buf = [0u8; 2048];
        s.recv_from(&mut buf).is_ok()
    })
}

/// The daemon's log lines about bans (for failure messages).
fn ban_log(d: &Daemon) -> String {
    d.log_text()
        .lines()
        .filter(|l| l.contains("ban"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a TCP connection to SIP/TLS on the WAN side is accepted
/// within 2 s.
fn tls_connects(ns: &Netns) -> bool {
    connects(ns, Lab::WAN_APPLIANCE, 5061)
}

/// Whether a TCP connection from `ns` to `addr:port` is accepted within 2 s.
fn connects(ns: &Netns, addr: &str, port: u16) -> bool {
    ns.enter(|| {
        std::net::TcpStream::connect_timeout(
            &format!("{addr}:{port}").parse().expect("addr"),
            Duration::from_secs(2),
        )
        .is_ok()
    })
}

fn bans(d: &Daemon) -> Vec<Value> {
    d.json(&["bans"])["bans"].as_array().expect("bans").clone()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

#[test]
fn a_password_guesser_is_banned_in_the_kernel_and_the_phone_still_registers() {
    if !require_or_skip(
        "bans::a_password_guesser_is_banned_in_the_kernel_and_the_phone_still_registers",
        is_root() && switchboard_system::kamailio::installed() && svcrack_installed(),
        "needs root, the kamailio packages and sipvicious (svcrack)",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    let ca_path = files.path().join("ca.pem");
    let ca = std::fs::read(&ca_path).expect("ca");

    // Bad input changes nothing.
    d.fails(&["bans", "policy", "--failures", "0"], "invalid-ban-policy");
    d.fails(
        &["bans", "policy", "--trusted", "192.0.2.1/24"],
        "invalid-ban-policy",
    );
    d.fails(&["unban", "192.0.2.0/24"], "invalid-address");
    d.fails(&["unban", "not an address"], "invalid-address");
    d.fails(&["unban", "198.51.100.77"], "not-banned");
    d.ok(&[
        "bans",
        "policy",
        "--failures",
        "5",
        "--ban",
        "30",
        "--max-ban",
        "120",
    ]);
    d.ok(&["update", "-m", "ban after 5 failures for 30 s"]);
    let policy = &d.json(&["bans"])["policy"];
    assert_eq!(policy["failures"], 5, "{policy}");

    // The phone's account, and its HA1 from its document.
    let user = d.json(&["account", "add", "--phone", "+15550100177", "--name", "Bob"])["username"]
        .as_str()
        .expect("user")
        .to_owned();
    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let (body, meta) = fetch(
        &lab,
        &ca_path.display().to_string(),
        &link_in(sms[0]["text"].as_str().expect("outbox")),
    );
    assert!(meta.starts_with("200 "), "{meta}: {body}");
    let doc: Value = serde_json::from_str(&body).expect("document");
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();

    assert!(answered(&lab.lan, ATTACKER), "served before the attack");

    // SIP/TLS: a guesser on the WAN side (that never registered) is banned
    // at its 5th wrong digest; its next connection is not even accepted.
    // The LAN neighbour is still served.
    let wrong = "0".repeat(32);
    for i in 0..FAILURES {
        let mut guess = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
        let code = guess.register(&user, &wrong, 1);
        assert!(code == 401 || code == 403, "guess {i}: {code}");
    }
    wait_for("the TLS guesser's ban in the kernel", 5, || {
        bans(&d)
            .iter()
            .any(|b| b["address"] == Lab::WAN_PHONE && b["in_kernel"] == true)
    });
    assert!(!tls_connects(&lab.wan), "banned: no TCP handshake on 5061");
    assert!(
        !connects(&lab.wan, Lab::WAN_APPLIANCE, 443),
        "banned from the web services too"
    );
    assert!(answered(&lab.lan, ATTACKER), "the LAN neighbour is served");
    d.ok(&["unban", Lab::WAN_PHONE]);
    assert!(tls_connects(&lab.wan), "unbanned at once");

    // The attack, counted on the attacker's side of the wire.
    count_on_the_wire(&lab.lan, dir.path());
    let started = Instant::now();
    let out = attack(&lab.lan, &user);
    let (sent, got) = wire(&lab.lan);
    eprintln!(
        "svcrack: {sent} requests sent, {got} answered, in {:?}",
        started.elapsed()
    );
    assert!(
        !out.contains(&format!("| {user} ")) || !out.contains("Password"),
        "no password found: {out}"
    );
    // One challenge for each guess's first request and one refusal per wrong
    // guess, up to the ban: nothing after it.
    assert!(
        got <= 2 * FAILURES + 2,
        "{got} answers for {sent} requests: the guesser was not stopped after {FAILURES} failures\n{out}\n{}",
        ban_log(&d)
    );
    assert!(sent > got, "svcrack kept trying unanswered: {sent} sent");
    wait_for("the ban in the kernel", 5, || {
        bans(&d).iter().any(|b| b["in_kernel"] == true)
    });
    let listed = bans(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["address"], ATTACKER);
    assert_eq!(listed[0]["reason"], "auth-failures");
    assert_eq!(listed[0]["offences"], 1);
    assert!(!answered(&lab.lan, ATTACKER), "banned: no answer");
    assert!(
        connects(&lab.lan, Lab::LAN_APPLIANCE, 8443),
        "never banned from the console (a forged UDP source must not lock the administrator out)"
    );
    let status = d.json(&["status"]);
    assert_eq!(status["bans"]["active"], 1, "{status}");
    let text = d.ok(&["status"]);
    assert!(
        text.contains("bans:      1 address(es) banned now"),
        "{text}"
    );
    let text = d.ok(&["bans"]);
    assert!(
        text.contains(ATTACKER) && text.contains("auth-failures") && text.contains("offence 1"),
        "{text}"
    );
    assert!(
        text.contains("policy:   ban after 5 failed authentications within 600 s"),
        "{text}"
    );
    let audit = d.ok(&["audit"]);
    assert!(
        audit.contains(&format!("banned {ATTACKER} for ")),
        "{audit}"
    );

    // The phone on the other side still registers over TLS.
    let mut phone = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    assert_eq!(phone.register(&user, &ha1, 1), 200);

    // An address that registered is not counted against while registered:
    // the phone's own wrong digests do not ban it.
    for _ in 0..=FAILURES {
        let mut guess = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
        assert_ne!(guess.register(&user, &wrong, 1), 200);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !bans(&d).iter().any(|b| b["address"] == Lab::WAN_PHONE),
        "a registered address was banned"
    );
    assert!(tls_connects(&lab.wan));

    // An Update during the ban (a new script: Kamailio restarts) keeps it.
    d.ok(&["bans", "policy", "--flood", "200"]);
    d.ok(&["update", "-m", "flood limit during a ban"]);
    let listed = bans(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["in_kernel"], true,
        "kept in the kernel: {listed:?}"
    );
    assert!(
        !answered(&lab.lan, ATTACKER),
        "still banned after the Update"
    );

    // A restart of the daemon (and of its Kamailio) keeps it too: boot
    // reloads the table with the live elements.
    drop(d);
    let d = Daemon::start(
        Some(&lab.appliance),
        dir.path(),
        &["--firewall", "enforce", "--sip", "kamailio"],
    );
    let listed = bans(&d);
    assert_eq!(listed.len(), 1, "after a restart: {listed:?}");
    assert_eq!(listed[0]["in_kernel"], true, "{listed:?}");
    assert!(
        !answered(&lab.lan, ATTACKER),
        "still banned after a daemon restart"
    );

    // The ban expires by itself (30 s after it began, which was after the
    // attack started).
    wait_for("the ban to expire", 50, || answered(&lab.lan, ATTACKER));
    let lasted = started.elapsed();
    eprintln!("answered again {lasted:?} after the attack began");
    assert!(lasted >= Duration::from_secs(29), "too soon: {lasted:?}");
    // The record ends with the kernel's element, give or take a second
    // (the kernel counts whole seconds).
    wait_for("the ban's record to end", 3, || bans(&d).is_empty());

    // A repeat offence is banned twice as long; unban lifts it at once.
    count_on_the_wire(&lab.lan, dir.path());
    attack(&lab.lan, &user);
    let (sent, got) = wire(&lab.lan);
    assert!(got <= 2 * FAILURES + 2, "{got} answers for {sent} requests");
    wait_for("the second ban", 5, || {
        bans(&d).iter().any(|b| b["in_kernel"] == true)
    });
    let listed = bans(&d);
    assert_eq!(listed[0]["offences"], 2, "{listed:?}");
    assert!(
        listed[0]["remaining_secs"].as_u64().expect("secs") > 30,
        "doubled: {listed:?}"
    );
    assert!(!answered(&lab.lan, ATTACKER));
    let lifted = Instant::now();
    d.ok(&["unban", ATTACKER]);
    assert!(answered(&lab.lan, ATTACKER), "unbanned at once");
    eprintln!("unban to first answer: {:?}", lifted.elapsed());
    assert!(bans(&d).is_empty());
    d.fails(&["unban", ATTACKER], "not-banned");
    let audit = d.ok(&["audit"]);
    assert!(
        audit.contains(&format!("ban of {ATTACKER} lifted")),
        "{audit}"
    );

    // A trusted network is never banned: every guess is answered.
    d.ok(&["bans", "policy", "--trusted", "192.0.2.0/24"]);
    d.ok(&["update", "-m", "trust the LAN"]);
    count_on_the_wire(&lab.lan, dir.path());
    attack(&lab.lan, &user);
    let (sent, got) = wire(&lab.lan);
    eprintln!("trusted svcrack: {sent} requests sent, {got} answered");
    assert!(got > 2 * FAILURES + 2, "kept answering: {got} of {sent}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(bans(&d).is_empty(), "{:?}", bans(&d));
    assert!(answered(&lab.lan, ATTACKER));
}
