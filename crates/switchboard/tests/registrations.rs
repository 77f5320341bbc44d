//! Registrations with the real Kamailio (needs root and the kamailio
//! packages): a phone that registered over TLS is listed with its contact
//! in `account show --json` (read over Kamailio's RPC); the registration
//! survives `kill -9` of Kamailio once written back (within 2 s: the
//! supervisor starts it again and it loads usrloc from its database) and a
//! restart of the daemon; the
//! database is owner-only; a REGISTER with folded header lines is refused.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use common::phone::{HOST, Phone, fetch, link_in};
use common::{Daemon, kamailio_pid};
use serde_json::Value;
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

fn registrations(d: &Daemon, user: &str) -> Value {
    d.json(&["account", "show", user])["registrations"].clone()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_registration_is_listed_and_survives_kamailio_and_daemon_restarts() {
    if !require_or_skip(
        "registrations::a_registration_is_listed_and_survives_kamailio_and_daemon_restarts",
        is_root() && switchboard_system::kamailio::installed(),
        "needs root and the kamailio packages",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    let ca_path = files.path().join("ca.pem");
    let ca = std::fs::read(&ca_path).expect("ca");
    let user = d.json(&["account", "add", "--phone", "+15550100166", "--name", "Cy"])["username"]
        .as_str()
        .expect("user")
        .to_owned();
    let never = registrations(&d, &user);
    assert_eq!(never["registered"], false, "{never}");
    assert_eq!(never["summary"], "not registered");
    d.fails(&["account", "show", "no/such"], "invalid-username");

    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let (body, _) = fetch(
        &lab,
        &ca_path.display().to_string(),
        &link_in(sms[0]["text"].as_str().expect("outbox")),
    );
    let doc: Value = serde_json::from_str(&body).expect("document");
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();
    let mut phone = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    assert_eq!(phone.register(&user, &ha1, 1), 200);

    let listed = registrations(&d, &user);
    assert_eq!(listed["registered"], true, "{listed}");
    let c = &listed["contacts"][0];
    assert_eq!(c["source"], Lab::WAN_PHONE, "{listed}");
    assert_eq!(c["transport"], "tls", "{listed}");
    assert_eq!(
        c["contact"],
        format!("sip:{user}@198.51.100.2:5061;transport=tls")
    );
    assert!(
        c["expires_secs"].as_u64().expect("expires") > 500,
        "{listed}"
    );
    assert_eq!(
        listed["summary"],
        format!("registered now from {} over TLS", Lab::WAN_PHONE)
    );
    // The metrics, as Prometheus on the admin's side reads them: the
    // registration and the document counted, no name, number or secret.
    let metrics = lab
        .lan
        .command("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{}:9469/metrics", Lab::LAN_APPLIANCE))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    for line in [
        "switchboard_registrations 1",
        "switchboard_registered_accounts 1",
        "switchboard_documents_served_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    for secret in ["15550100166", ha1.as_str(), &format!("\"{user}\"")] {
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
    let text = d.ok(&["account", "show", &user]);
    assert!(
        text.contains("SIP: registered now from 198.51.100.2 over TLS"),
        "{text}"
    );
    let db = d.data_dir.join("kamailio").join("subscriber.db");
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the database with the registrations is owner-only"
    );

    // Kamailio writes registrations back to its database every 2 s
    // (usrloc db_mode 2, timer_interval 2): the row is there within that.
    wait_for("the registration in Kamailio's database", || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM location WHERE username = ?1",
                    [&user],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n == 1)
    });

    // kill -9 of Kamailio: the supervisor starts it again, and it loads
    // the registration from its database.
    let pid = kamailio_pid(&d).expect("kamailio runs");
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill -9");
    wait_for("kamailio to run again", || {
        kamailio_pid(&d).is_some_and(|p| p != pid)
    });
    wait_for("the registration after kill -9", || {
        registrations(&d, &user)["registered"] == true
    });
    assert_eq!(
        registrations(&d, &user)["contacts"][0]["source"],
        Lab::WAN_PHONE
    );

    // A restart of the daemon (and of its Kamailio) keeps it too.
    drop(d);
    let d = Daemon::start(
        Some(&lab.appliance),
        dir.path(),
        &["--firewall", "enforce", "--sip", "kamailio"],
    );
    wait_for("the registration after a daemon restart", || {
        registrations(&d, &user)["registered"] == true
    });

    // Folded header lines are refused (they could forge lines of the RPC's
    // text dump), before authentication.
    let folded = lab.lan.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let port = s.local_addr().expect("addr").port();
        let msg = format!(
            "REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:{port};branch=z9hG4bKf{port}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{HOST}>;tag=f\r\nTo: <sip:{user}@{HOST}>\r\nCall-ID: f@x\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:{user}@192.0.2.2:{port}>\r\nUser-Agent: evil\r\n\t\t\t\t\tAoR: 9999\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), (Lab::LAN_APPLIANCE, 5060)).expect("send");
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(folded.starts_with("SIP/2.0 400 "), "{folded}");
}
