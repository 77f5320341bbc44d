//! Certificates through the CLI (needs root: the appliance's NICs are the
//! lab's): the first start's self-signed certificate, import and its
//! errors, bindings, the padlock check, deletion rules, trusted CAs, and
//! that no private key ever comes out.

mod common;

use common::Daemon;
use common::acme::{MANAGEMENT, challtestsrv, manage_dns};
use serde_json::Value;
use switchboard_pki::testpki::{self, leaf_params, pki, ts, with_validity};
use switchboard_system::testlab::{Lab, Netns, require_or_skip, require_root_or_skip};

/// The padlock check of `service` on `nic`, which must be checked.
fn padlock(d: &Daemon, service: &str, nic: &str) -> Value {
    d.json(&["padlock"])
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["service"] == service && p["nic"] == nic)
        .cloned()
        .unwrap_or_else(|| panic!("{service} on {nic} is checked"))
}

#[test]
fn certificates_from_import_to_padlock() {
    if !require_root_or_skip("certs::certificates_from_import_to_padlock") {
        return;
    }
    let lab = Lab::new().expect("lab");
    lab.appliance
        .set_hosts(&[
            (Lab::LAN_APPLIANCE, "console.lan.test"),
            (Lab::LAN_ADMIN, "voip.example.test"),
        ])
        .expect("hosts file");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    let files = testpki::tempdir();
    let f = |name: &str| files.path().join(name).display().to_string();

    // First start: a self-signed certificate, bound everywhere, flagged.
    let certs = d.json(&["cert", "list"]);
    assert_eq!(certs[0]["name"], "bootstrap");
    assert_eq!(certs[0]["is_self_signed"], true);
    assert_eq!(certs[0]["bootstrap"], true);
    let sans = certs[0]["ip_addresses"].to_string();
    assert!(
        sans.contains("192.0.2.1") && sans.contains("198.51.100.1"),
        "every NIC address: {sans}"
    );
    let status = d.json(&["status"]);
    assert!(
        status["diagnostics"]
            .to_string()
            .contains("cert-self-signed"),
        "{status}"
    );
    assert!(
        status["open_padlocks"]
            .to_string()
            .contains("console on lan0"),
        "self-signed: no closed padlock: {status}"
    );
    d.ok(&["update", "-m", "works out of the box"]);

    // Import: a good bundle in any order, and every kind of bad one.
    let p = pki();
    testpki::write(
        files.path(),
        "voip.pem",
        format!(
            "{}{}{}",
            p.intermediate.pem(),
            p.leaf.key_pem(),
            p.leaf.pem()
        ),
    );
    testpki::write(files.path(), "ca.pem", p.root.pem());
    testpki::write(
        files.path(),
        "garbage.pem",
        "hello, I am not a certificate\n",
    );
    testpki::write(files.path(), "leaf.pem", p.leaf.pem());
    let other = p.intermediate.leaf(&["voip.example.test"]);
    testpki::write(files.path(), "other.key", other.key_pem());
    testpki::write(files.path(), "huge.pem", vec![b'A'; 300 * 1024]);
    let v = d.json(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    assert_eq!(v["subject"], "CN=voip.example.test");
    assert_eq!(v["has_key"], true);
    d.fails(
        &["cert", "import", "voip", "--bundle", &f("voip.pem")],
        "cert-exists",
    );
    d.fails(
        &["cert", "import", "bad", "--bundle", &f("garbage.pem")],
        "unrecognized-format",
    );
    d.fails(
        &[
            "cert",
            "import",
            "bad",
            "--bundle",
            &f("leaf.pem"),
            "--key",
            &f("other.key"),
        ],
        "key-mismatch",
    );
    d.fails(
        &["cert", "import", "bad", "--bundle", &f("huge.pem")],
        "oversize",
    );
    d.fails(
        &["cert", "import", "../etc", "--bundle", &f("voip.pem")],
        "invalid-cert-name",
    );
    assert_eq!(
        d.json(&["cert", "list"]).as_array().expect("list").len(),
        2,
        "nothing stored by the failures"
    );

    // PKCS#12 made by the real openssl, with its password in a file.
    testpki::write(files.path(), "leaf.key", p.leaf.key_pem());
    testpki::write(files.path(), "inter.pem", p.intermediate.pem());
    testpki::write(files.path(), "right.txt", "s3cret-p12\n");
    testpki::write(files.path(), "wrong.txt", "guess\n");
    testpki::openssl(
        files.path(),
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "leaf.key",
            "-in",
            "leaf.pem",
            "-certfile",
            "inter.pem",
            "-passout",
            "pass:s3cret-p12",
            "-out",
            "v.p12",
        ],
    );
    d.fails(
        &[
            "cert",
            "import",
            "p12",
            "--bundle",
            &f("v.p12"),
            "--password-file",
            &f("wrong.txt"),
        ],
        "wrong-pkcs12-password",
    );
    let v = d.json(&[
        "cert",
        "import",
        "p12",
        "--bundle",
        &f("v.p12"),
        "--password-file",
        &f("right.txt"),
    ]);
    assert_eq!(v["has_key"], true);
    d.ok(&["cert", "delete", "p12"]);
    assert!(
        !d.log_text().contains("s3cret-p12"),
        "passwords are never logged"
    );

    // Bind per NIC; the padlock says what is wrong until the CA is trusted
    // and the name resolves to the NIC's address.
    d.ok(&["cert", "bind", "sip-tls", "voip", "--nic", "wan0"]);
    d.fails(&["cert", "bind", "ssh", "voip"], "not-a-tls-service");
    d.fails(&["cert", "bind", "web", "nosuch"], "no-such-cert");
    d.ok(&["nic", "set", "wan0", "--hostname", "voip.example.test"]);
    let sip_wan = |d: &Daemon| padlock(d, "sip-tls", "wan0");
    let check = sip_wan(&d);
    assert_eq!(check["cert"], "voip");
    assert_eq!(check["ok"], false);
    let codes = check["findings"].to_string();
    assert!(
        codes.contains("missing-intermediate"),
        "the private root is not trusted yet: {codes}"
    );
    assert!(
        codes.contains("dns-mismatch"),
        "voip.example.test points at the admin host: {codes}"
    );
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    assert_eq!(
        d.json(&["cert", "ca", "list"])[0]["subject"],
        "CN=Test Root CA"
    );
    let codes = sip_wan(&d)["findings"].to_string();
    assert!(
        !codes.contains("missing-intermediate") && !codes.contains("chain-untrusted"),
        "{codes}"
    );
    // Behind NAT: the name resolves to the public address in front of wan0.
    d.ok(&[
        "nic",
        "set",
        "wan0",
        "--hostname",
        "voip.example.test",
        "--public-address",
        Lab::LAN_ADMIN,
    ]);
    let check = sip_wan(&d);
    assert_eq!(check["ok"], true, "a closed padlock: {check}");
    d.fails(
        &["nic", "set", "wan0", "--hostname", "not a name"],
        "invalid-hostname",
    );
    d.fails(
        &["nic", "set", "wan0", "--public-address", "300.1.2.3"],
        "invalid-address",
    );
    d.fails(
        &["nic", "set", "eth9", "--hostname", "x.test"],
        "unknown-nic",
    );
    // The console on lan0 still has the self-signed certificate.
    let console = padlock(&d, "console", "lan0");
    assert_eq!(console["cert"], "bootstrap");
    assert!(console["findings"].to_string().contains("no-hostname"));

    // An expired certificate is stored, flagged, and bound only with --force.
    let params = with_validity(
        leaf_params(&["old.example.test"]),
        ts("2020-01-01T00:00:00Z"),
        ts("2021-01-01T00:00:00Z"),
    );
    let old = p
        .intermediate
        .leaf_with(params, rcgen::KeyPair::generate().expect("key"));
    testpki::write(
        files.path(),
        "old.pem",
        format!("{}{}", old.pem(), old.key_pem()),
    );
    let v = d.json(&["cert", "import", "old", "--bundle", &f("old.pem")]);
    assert_eq!(v["validity"], "expired");
    assert!(d.ok(&["cert", "list"]).contains("EXPIRED"));
    d.fails(
        &["cert", "bind", "web", "old", "--nic", "lan0"],
        "cert-unbindable",
    );
    d.ok(&["cert", "bind", "web", "old", "--nic", "lan0", "--force"]);
    assert!(
        d.json(&["status"])["diagnostics"]
            .to_string()
            .contains("cert-invalid-accepted")
    );
    d.ok(&["cert", "unbind", "web", "--nic", "lan0"]);
    d.ok(&["cert", "delete", "old"]);

    // A bound certificate cannot be deleted; once unbound it can.
    d.fails(&["cert", "delete", "voip"], "cert-in-use");
    d.ok(&["update"]);
    let rev = d.json(&["revisions", "show", "2"]);
    assert!(
        rev["plan"]["tls"].to_string().contains("\"cert\":\"voip\""),
        "the plan records the binding: {}",
        rev["plan"]["tls"]
    );
    d.ok(&["cert", "unbind", "sip-tls", "--nic", "wan0"]);
    d.fails(&["cert", "delete", "voip"], "cert-in-use"); // still in the applied revision
    d.ok(&["update"]);
    d.ok(&["cert", "delete", "voip"]);
    d.fails(&["cert", "show", "voip"], "no-such-cert");

    // No private key in any answer, nor in the log.
    for args in [
        &["cert", "list"][..],
        &["cert", "show", "bootstrap"],
        &["revisions", "show", "2"],
        &["status"],
    ] {
        let out = d.ok(&[&["--json"][..], args].concat());
        assert!(!out.contains("PRIVATE KEY"), "{args:?} shows a key");
    }
    assert!(!d.log_text().contains("PRIVATE KEY"));
    let key_line = p
        .leaf
        .key_pem()
        .lines()
        .nth(1)
        .expect("a base64 line")
        .to_owned();
    assert!(!d.log_text().contains(&key_line));
}

/// A DNS server in the WAN neighbour's namespace (the phones' side) on
/// port 53, killed on drop.
struct PhonesDns<'a> {
    child: std::process::Child,
    ns: &'a Netns,
}

impl<'a> PhonesDns<'a> {
    fn start(ns: &'a Netns) -> PhonesDns<'a> {
        let child = challtestsrv(ns, &format!("{}:53", Lab::WAN_PHONE), MANAGEMENT)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts");
        let dns = PhonesDns { child, ns };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !dns.manage("clear-a", r#"{"host":"probe.example.test."}"#) {
            assert!(
                std::time::Instant::now() < deadline,
                "the DNS server never answered"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        dns
    }

    fn manage(&self, call: &str, body: &str) -> bool {
        manage_dns(self.ns, call, body)
    }
}

impl Drop for PhonesDns<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_padlock_check_asks_the_dns_servers_the_phones_use() {
    const NAME: &str = "certs::the_padlock_check_asks_the_dns_servers_the_phones_use";
    if !require_root_or_skip(NAME) {
        return;
    }
    let installed = std::path::Path::new("/usr/bin/pebble-challtestsrv").exists();
    if !require_or_skip(NAME, installed, "pebble-challtestsrv is not installed") {
        return;
    }
    // Split horizon: the appliance's own resolver does not know the
    // public name; the phones' DNS server does.
    let lab = Lab::new().expect("lab");
    lab.appliance.set_hosts(&[]).expect("hosts file");
    let dns = PhonesDns::start(&lab.wan);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    let p = pki();
    let files = testpki::tempdir();
    common::console::story_files(&p, files.path());
    let f = |name: &str| files.path().join(name).display().to_string();
    d.ok(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "web", "voip", "--nic", "wan0"]);
    d.ok(&["nic", "set", "wan0", "--hostname", "voip.example.test"]);
    let codes = |v: &Value| -> Vec<String> {
        v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["code"].as_str().expect("code").to_owned())
            .collect()
    };

    let own = padlock(&d, "web", "wan0");
    assert_eq!(own["ok"], false, "{own}");
    assert_eq!(codes(&own), ["dns-unresolved"], "{own}");
    let finding = own["findings"][0].to_string();
    assert!(finding.contains("the appliance's resolver"), "{finding}");
    assert!(
        finding.contains("--resolvers"),
        "the hint says how: {finding}"
    );

    // Bad lists are refused and change nothing.
    let before = d.json(&["diff"]);
    for (list, code) in [
        (
            "198.51.100.2,192.0.2.53,192.0.2.54,192.0.2.55",
            "invalid-resolvers",
        ),
        ("0.0.0.0", "invalid-resolvers"),
        ("224.0.0.53", "invalid-resolvers"),
        ("198.51.100.2, 198.51.100.2", "invalid-resolvers"),
        ("dns.example.test", "invalid-address"),
        (&"1".repeat(10_000), "invalid-address"),
    ] {
        d.fails(&["nic", "set", "wan0", "--resolvers", list], code);
    }
    assert_eq!(d.json(&["diff"]), before, "nothing changed");

    d.ok(&["nic", "set", "wan0", "--resolvers", Lab::WAN_PHONE]);
    let phones = padlock(&d, "web", "wan0");
    assert_eq!(phones["ok"], true, "closed for the phones' DNS: {phones}");
    assert!(
        codes(&phones).iter().all(|c| !c.starts_with("dns-")),
        "{phones}"
    );

    // The phones' DNS points elsewhere: the finding names who said so.
    assert!(dns.manage(
        "add-a",
        r#"{"host":"voip.example.test.","addresses":["192.0.2.99"]}"#
    ));
    let elsewhere = padlock(&d, "web", "wan0");
    assert_eq!(codes(&elsewhere), ["dns-mismatch"], "{elsewhere}");
    let finding = elsewhere["findings"][0].to_string();
    assert!(
        finding.contains("192.0.2.99")
            && finding.contains("198.51.100.2 (the DNS servers of wan0's clients)"),
        "{finding}"
    );

    // Cleared: the appliance's own resolver again.
    d.ok(&["nic", "set", "wan0", "--resolvers", ""]);
    assert_eq!(codes(&padlock(&d, "web", "wan0")), ["dns-unresolved"]);
}
