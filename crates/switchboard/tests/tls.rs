//! TLS identity on the wire (needs root): two NICs, two certificates; real
//! clients (`openssl s_client`, `curl`) on each neighbour see the
//! certificate bound to the NIC they reach, verified against the test CA
//! for the right name and refused for the other; a rotation by Update under
//! a stream of handshakes fails none of them.

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::console::{chain, production_with_real_certificates, story_files, story_hosts};
use common::{Daemon, presented};
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, Netns, require_root_or_skip};

fn run(ns: &Netns, program: &str, args: &[&str]) -> Output {
    ns.command(program)
        .args(args)
        .output()
        .expect("run a client")
}

#[test]
fn each_nic_presents_its_certificate_and_rotation_drops_no_handshake() {
    if !require_root_or_skip(
        "tls::each_nic_presents_its_certificate_and_rotation_drops_no_handshake",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);

    let p = pki();
    let voip2 = p.intermediate.leaf(&["voip.example.test"]);
    let files = testpki::tempdir();
    let d0 = files.path();
    story_files(&p, d0);
    testpki::write(d0, "voip2.pem", chain(&p, &voip2));
    let f = |n: &str| d0.join(n).display().to_string();
    let ca = f("ca.pem");

    // The phone's side: the web services' health check, verified.
    let healthz = || {
        run(
            &lab.wan,
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                &ca,
                "https://voip.example.test/healthz",
            ],
        )
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);

    // Out of the box: the self-signed certificate, which no client trusts.
    assert_eq!(
        presented(&lab.lan, &ca, Lab::LAN_APPLIANCE, 8443, "console.lan.test"),
        None
    );

    production_with_real_certificates(&d, d0);
    let padlock = d.json(&["padlock"]);
    assert!(
        padlock
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["ok"] == true),
        "every binding has a closed padlock: {padlock:#}"
    );
    let status = d.json(&["status"]);
    assert_eq!(status["open_padlocks"], serde_json::json!([]), "{status}");
    assert_eq!(
        status["padlocks"], 3,
        "console on lan0, sip-tls and web on wan0"
    );

    // The admin's side: the console verifies for console.lan.test, not for the phone's name.
    let console_fp = presented(&lab.lan, &ca, Lab::LAN_APPLIANCE, 8443, "console.lan.test")
        .expect("closed padlock on lan0");
    assert_eq!(
        presented(&lab.lan, &ca, Lab::LAN_APPLIANCE, 8443, "voip.example.test"),
        None
    );
    // The phone's side: the web services verify for voip.example.test.
    let web_fp = presented(&lab.wan, &ca, Lab::WAN_APPLIANCE, 443, "voip.example.test")
        .expect("closed padlock on wan0");
    assert_ne!(console_fp, web_fp);
    assert_eq!(
        presented(&lab.wan, &ca, Lab::WAN_APPLIANCE, 443, "console.lan.test"),
        None
    );
    let ok = healthz();
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "ok\n",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The console does not answer on the phone's side at all (firewall).
    let no = run(
        &lab.wan,
        "curl",
        &[
            "-sS",
            "--max-time",
            "2",
            "--cacert",
            &ca,
            "https://voip.example.test:8443/",
        ],
    );
    assert!(!no.status.success());

    // Rotation by Update while the phone handshakes without pause.
    d.ok(&["cert", "import", "voip2", "--bundle", &f("voip2.pem")]);
    let stop = AtomicBool::new(false);
    let (done, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = healthz();
                let counter = if out.status.success() { &done } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        d.ok(&["cert", "bind", "web", "voip2", "--nic", "wan0"]);
        d.ok(&["update", "-m", "rotate the phone-side certificate"]);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "handshakes failed during the rotation"
    );
    assert!(
        done.load(Ordering::Relaxed) >= 5,
        "the client kept handshaking"
    );
    let rotated = presented(&lab.wan, &ca, Lab::WAN_APPLIANCE, 443, "voip.example.test")
        .expect("closed padlock");
    assert_ne!(rotated, web_fp, "new handshakes get the new certificate");
    assert_eq!(
        presented(&lab.lan, &ca, Lab::LAN_APPLIANCE, 8443, "console.lan.test").as_deref(),
        Some(console_fp.as_str())
    );
}
