//! Keys made on the appliance (needs root: the lab's NICs): `cert request`
//! makes the key and prints a PKCS#10 request, a CA signs it with `openssl
//! x509 -req`, `cert import` without a key attaches the answer, and the
//! certificate, bound and applied, is what a phone gets on the wire. The
//! key never comes out: not on the CLI, the API or in the log.

mod common;

use common::console::story_hosts;
use common::{Daemon, presented};
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, require_root_or_skip};

#[test]
fn a_request_signed_by_a_ca_and_imported_without_a_key_is_presented_on_the_wire() {
    if !require_root_or_skip(
        "requests::a_request_signed_by_a_ca_and_imported_without_a_key_is_presented_on_the_wire",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let p = pki();
    let files = testpki::tempdir();
    let dir = files.path();
    let f = |n: &str| dir.join(n).display().to_string();
    testpki::write(dir, "ca.pem", p.root.pem());
    testpki::write(dir, "inter.pem", p.intermediate.pem());
    testpki::write(
        dir,
        "inter.key",
        testpki::pem("PRIVATE KEY", p.intermediate.key_der()),
    );
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), data.path(), &[]);

    // The request: only the CSR on standard output.
    let started = std::time::Instant::now();
    let csr = d.ok(&[
        "cert",
        "request",
        "voip-here",
        "--dns",
        "voip.example.test",
        "--ip",
        "198.51.100.1",
        "--key-type",
        "rsa-3072",
    ]);
    eprintln!("cert request (rsa-3072) took {:?}", started.elapsed());
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
            && csr.ends_with("-----END CERTIFICATE REQUEST-----\n"),
        "{csr}"
    );
    testpki::write(dir, "voip.csr", &csr);
    let listed = d.json(&["cert", "requests"]);
    assert_eq!(listed[0]["name"], "voip-here");
    assert_eq!(listed[0]["key_type"], "rsa-3072");
    assert_eq!(listed[0]["csr_pem"], csr.as_str());
    d.fails(
        &["cert", "request", "voip-here", "--dns", "voip.example.test"],
        "cert-exists",
    );
    d.fails(
        &["cert", "request", "bad", "--dns", "not a name"],
        "invalid-name",
    );
    d.fails(
        &[
            "cert",
            "request",
            "bad",
            "--dns",
            "x.test",
            "--key-type",
            "dsa",
        ],
        "unknown-key-type",
    );
    // Not a certificate yet: it cannot be bound.
    d.fails(&["cert", "bind", "web", "voip-here"], "no-such-cert");

    // The CA signs it.
    testpki::sign_request(dir, "voip.csr", "inter.pem", "inter.key", 90, "voip.crt");
    let signed = [
        testpki::read(dir, "voip.crt"),
        testpki::read(dir, "inter.pem"),
    ]
    .concat();
    testpki::write(dir, "signed.pem", &signed);
    // Someone else's certificate is refused for this key, and changes nothing.
    testpki::write(
        dir,
        "other.pem",
        [p.leaf.pem(), p.intermediate.pem()].concat(),
    );
    d.fails(
        &["cert", "import", "voip-here", "--bundle", &f("other.pem")],
        "request-key-mismatch",
    );
    assert_eq!(
        d.json(&["cert", "requests"]).as_array().map(Vec::len),
        Some(1)
    );

    let imported = d.json(&["cert", "import", "voip-here", "--bundle", &f("signed.pem")]);
    assert_eq!(imported["has_key"], true, "{imported}");
    assert_eq!(d.json(&["cert", "requests"]), serde_json::json!([]));

    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "web", "voip-here", "--nic", "wan0"]);
    d.ok(&["cert", "bind", "sip-tls", "voip-here", "--nic", "wan0"]);
    d.ok(&["nic", "set", "wan0", "--hostname", "voip.example.test"]);
    d.ok(&["update", "-m", "the key made here"]);

    let fingerprint = imported["fingerprint"].as_str().expect("fingerprint");
    let on_wire = presented(
        &lab.wan,
        &f("ca.pem"),
        Lab::WAN_APPLIANCE,
        443,
        "voip.example.test",
    )
    .expect("the phone verifies the web services for voip.example.test");
    assert_eq!(
        on_wire.replace(':', "").to_lowercase(),
        fingerprint.replace(':', "").to_lowercase()
    );
    let padlock = d.json(&["padlock"]);
    let web = padlock
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["service"] == "web" && p["nic"] == "wan0")
        .expect("web on wan0");
    assert_eq!(web["ok"], true, "{web:#}");

    // A certificate the CA signed for 5 days only, bound: an error of the
    // status, in text and JSON (a warning from 30 days).
    let short_csr = d.ok(&["cert", "request", "short", "--dns", "console.lan.test"]);
    testpki::write(dir, "short.csr", &short_csr);
    testpki::sign_request(dir, "short.csr", "inter.pem", "inter.key", 5, "short.crt");
    d.ok(&["cert", "import", "short", "--bundle", &f("short.crt")]);
    d.ok(&["cert", "bind", "console", "short", "--nic", "lan0"]);
    let text = d.ok(&["status"]);
    assert!(
        text.contains("error[cert-expiring]: certificate short expires at")
            && text.contains("in 4 day(s); presented by console on lan0"),
        "{text}"
    );
    let status = d.json(&["status"]);
    assert_eq!(status["expiring"][0]["code"], "cert-expiring", "{status:#}");
    assert_eq!(status["expiring"][0]["severity"], "error");
    assert_eq!(status["expiring"][0]["days_left"], 4);

    // The key never came out.
    let shown = [
        d.ok(&["--json", "cert", "list"]),
        d.ok(&["--json", "cert", "show", "voip-here"]),
        d.log_text(),
    ]
    .concat();
    assert!(!shown.contains("PRIVATE KEY"), "no key is ever shown");
}
