//! SIP/TLS through Kamailio (needs root and the kamailio packages): the
//! phone activates, takes the HA1 from its configuration document, and
//! REGISTERs over TLS (verifying the certificate bound to sip-tls for
//! voip.example.test) with digest authentication: 200 OK; a wrong digest
//! is refused; SIP/TLS and the web services hold one TLS policy (weak
//! suites and TLS 1.1 refused by handshakes); a certificate rotation reloads
//! Kamailio without a restart.

mod common;

use std::time::Duration;

use common::Daemon;
use common::console::chain;
use common::phone::{HOST, Phone, fetch, link_in, md5_hex, register_udp};
use serde_json::Value;
use switchboard_pki::testpki;
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

/// Activate `user` (outbox) and fetch the document behind the link from
/// the phone's side, verifying the web certificate against `ca`.
fn activate_and_fetch(d: &Daemon, lab: &Lab, ca: &str, user: &str) -> Value {
    d.ok(&["activate", user]);
    let sms = d.json(&["sms", "list"]);
    let (body, meta) = fetch(lab, ca, &link_in(sms[0]["text"].as_str().expect("outbox")));
    assert!(meta.starts_with("200 "), "{meta}: {body}");
    serde_json::from_str(&body).expect("the document")
}

/// `openssl s_client -brief ARGS` from the phone's side to the appliance's
/// `port`, verifying HOST against `ca`: what it printed.
fn handshake(lab: &Lab, ca: &str, port: &str, args: &str) -> String {
    let out = lab
        .wan
        .command("sh")
        .args([
            "-c",
            "timeout 3 openssl s_client -brief -connect \"$1:$2\" -verify_return_error -verify_hostname \"$3\" -CAfile \"$4\" $5 </dev/null 2>&1",
            "sh",
            Lab::WAN_APPLIANCE,
            port,
            HOST,
            ca,
            args,
        ])
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon runs Kamailio.
fn assert_kamailio_running(d: &Daemon) {
    let status = d.json(&["status"]);
    assert!(
        status["sip"]
            .as_str()
            .unwrap_or("")
            .starts_with("kamailio running"),
        "{status}"
    );
}

#[test]
fn a_provisioned_phone_registers_over_tls_and_rotation_keeps_kamailio_running() {
    if !require_or_skip(
        "sip::a_provisioned_phone_registers_over_tls_and_rotation_keeps_kamailio_running",
        is_root() && switchboard_system::kamailio::installed(),
        "needs root and the kamailio packages",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut d, files, p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    let d0 = files.path();
    let rotated = p.intermediate.leaf(&[HOST]);
    testpki::write(d0, "voip2.pem", chain(&p, &rotated));
    let f = |n: &str| d0.join(n).display().to_string();
    let ca = std::fs::read(d0.join("ca.pem")).expect("ca");
    assert_kamailio_running(&d);

    // Provision a phone and fetch its document like the phone would.
    let user = d.json(&["account", "add", "--phone", "+15550100199", "--name", "Ann"])["username"]
        .as_str()
        .expect("user")
        .to_owned();
    let doc = activate_and_fetch(&d, &lab, &f("ca.pem"), &user);
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();
    assert_eq!(doc["hostname"], HOST);

    // openssl s_client on the phone's side: the bound certificate verifies for
    // HOST on the SIP/TLS socket (Kamailio keeps the connection open: cut it).
    let s_client = lab
        .wan
        .command("sh")
        .args([
            "-c",
            "timeout 2 openssl s_client -connect \"$1:5061\" -verify_return_error -verify_hostname \"$2\" -CAfile \"$3\" </dev/null 2>&1",
            "sh",
            Lab::WAN_APPLIANCE,
            HOST,
            &f("ca.pem"),
        ])
        .output()
        .expect("openssl");
    let s_client = String::from_utf8_lossy(&s_client.stdout);
    assert!(
        s_client.contains("Verify return code: 0 (ok)"),
        "{s_client}"
    );

    // One TLS policy on SIP/TLS (Kamailio, OpenSSL) and on the web services
    // (rustls): CBC suites, RSA key transport and TLS 1.1 are refused, the
    // AEAD suites with ECDHE are accepted. SECLEVEL=0 so that the client
    // itself offers what must be refused.
    for port in ["5061", "443"] {
        for weak in [
            "-tls1_2 -cipher AES128-SHA:@SECLEVEL=0",
            "-tls1_2 -cipher ECDHE-RSA-AES128-SHA:@SECLEVEL=0",
            "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",
            "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0",
            "-tls1_1 -cipher DEFAULT:@SECLEVEL=0",
            "-tls1_3 -groups P-521:X448",
        ] {
            let out = handshake(&lab, &f("ca.pem"), port, weak);
            assert!(
                !out.contains("CONNECTION ESTABLISHED"),
                "{weak} on {port} was accepted: {out}"
            );
        }
        for (strong, suite) in [
            (
                "-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ),
            (
                "-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
            ),
            ("-tls1_3", "TLS_"),
            ("-tls1_3 -groups P-384", "TLS_"),
        ] {
            let out = handshake(&lab, &f("ca.pem"), port, strong);
            assert!(
                out.contains("CONNECTION ESTABLISHED") && out.contains(suite),
                "{strong} on {port}: {out}"
            );
        }
    }

    // Register over verified TLS with digest authentication.
    let mut phone = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    assert_eq!(
        phone.register(&user, &ha1, 1),
        200,
        "the provisioned account registers"
    );
    let mut intruder = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    let wrong = md5_hex("not the password");
    let code = intruder.register(&user, &wrong, 1);
    assert!(
        code == 401 || code == 403,
        "a wrong digest is refused: {code}"
    );

    // Rotation by Update: new handshakes see the new certificate, same process.
    let pid = d.json(&["status"])["sip"].as_str().expect("sip").to_owned();
    let before = phone.presented.clone();
    d.ok(&["cert", "import", "voip2", "--bundle", &f("voip2.pem")]);
    d.ok(&["cert", "bind", "sip-tls", "voip2"]);
    d.ok(&["update", "-m", "rotate the SIP/TLS certificate"]);
    let after = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    assert_ne!(
        after.presented, before,
        "new handshakes get the new certificate"
    );
    assert_eq!(
        d.json(&["status"])["sip"].as_str().expect("sip"),
        pid,
        "no restart for a certificate change"
    );
    // The registration made before the rotation still works on its connection.
    assert_eq!(phone.register(&user, &ha1, 3), 200);

    // Kamailio's secrets are owner-only: its TLS keys and its HA1 digests.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let kamailio = dir.path().join("data/kamailio");
        let mode = |p: std::path::PathBuf| {
            std::fs::metadata(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(kamailio.join("keys")), 0o700);
        assert_eq!(mode(kamailio.join("keys/voip2.key")), 0o600);
        assert_eq!(mode(kamailio.join("subscriber.db")), 0o600);
    }

    // The registration is in Kamailio's location table.
    let ctl = dir.path().join("data/kamailio/kamailio.ctl");
    let dump = lab
        .appliance
        .command("kamcmd")
        .arg("-s")
        .arg(format!("unix:{}", ctl.display()))
        .arg("ul.dump")
        .output()
        .expect("kamcmd");
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains(&user),
        "{}",
        String::from_utf8_lossy(&dump.stdout)
    );

    // SIP/UDP: the legacy PBX on the LAN registers; the phone's side gets nothing.
    assert_eq!(
        register_udp(&lab.lan, Lab::LAN_APPLIANCE, &user, &ha1),
        Some(200)
    );
    assert_eq!(
        register_udp(&lab.wan, Lab::WAN_APPLIANCE, &user, &ha1),
        None,
        "SIP/UDP closed on the WAN"
    );
    // SIP/UDP is not open on the phone's side (production layout: LAN only).
    let sent = lab.wan.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", (Lab::WAN_APPLIANCE, 5060))
            .expect("send");
        let mut buf = [0u8; 512];
        s.recv_from(&mut buf).is_ok()
    });
    assert!(!sent, "SIP/UDP answers on the WAN side");

    // A new SIP password: the old digest no longer registers, at once.
    d.ok(&["account", "set", &user, "--new-password"]);
    let mut old = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    let code = old.register(&user, &ha1, 1);
    assert!(
        code == 401 || code == 403,
        "the old password still works: {code}"
    );
    let doc = activate_and_fetch(&d, &lab, &f("ca.pem"), &user);
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();

    // The daemon dies hard: a new one takes over Kamailio (the old one is
    // stopped, not doubled) and phones register again.
    d.kill9();
    let d = Daemon::start(
        Some(&lab.appliance),
        dir.path(),
        &["--firewall", "enforce", "--sip", "kamailio"],
    );
    assert_kamailio_running(&d);
    assert!(
        d.log_text()
            .contains("a kamailio of an earlier daemon is still running")
    );
    // Registrations are persisted now (usrloc in the database), so the
    // phone goes on with its Call-ID's next CSeq, as a phone does: the
    // same CSeq again would be refused as a replay (400).
    let mut again = Phone::connect(&lab.wan, &ca, Lab::WAN_APPLIANCE);
    assert_eq!(again.register(&user, &ha1, 10), 200);
}
