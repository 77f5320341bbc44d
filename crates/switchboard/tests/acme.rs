//! ACME (needs root: the lab, and Debian's `pebble`): a real ACME server
//! on the WAN neighbour (the internet), with `pebble-challtestsrv` as its
//! DNS resolving every name to the appliance's WAN address. `cert acme`
//! makes the key on the appliance, the CA validates the name by
//! tls-alpn-01 on the web services' own listener (port 443, nothing else
//! listening), and the certificate, bound and applied, is what a phone is
//! shown, verified against the CA's root. An unreachable CA and a refused
//! order are clear errors that leave nothing behind.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::console::story_hosts;
use common::{Daemon, presented};
use switchboard_pki::testpki::{self, Ca};
use switchboard_system::testlab::{Lab, Netns, require_or_skip, require_root_or_skip};

const DIRECTORY: &str = "https://198.51.100.2:14000/dir";
const BLOCKED: &str = "blocked.example.test";

/// pebble and its DNS, in the WAN neighbour's namespace, killed on drop.
struct Pebble {
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// Starts both, pebble serving `cert.pem`/`key.pem` of `dir`, and waits
    /// until the directory answers.
    fn start(ns: &Netns, dir: &std::path::Path) -> Pebble {
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("{}:14000", Lab::WAN_PHONE),
                "managementListenAddress": format!("{}:15000", Lab::WAN_PHONE),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": 5002,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": [BLOCKED],
                "retryAfter": { "authz": 1, "order": 1 },
            }
        });
        testpki::write(dir, "pebble.json", config.to_string());
        let quiet = |c: &mut std::process::Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut dns = ns.command("pebble-challtestsrv");
        dns.args([
            "-defaultIPv4",
            Lab::WAN_APPLIANCE,
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("{}:8053", Lab::WAN_PHONE),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("{}:8055", Lab::WAN_PHONE),
        ]);
        quiet(&mut dns);
        let mut pebble = ns.command("pebble");
        pebble
            .args(["-config"])
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("{}:8053", Lab::WAN_PHONE)])
            // No random sleeps before validating, no nonces refused at random.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        quiet(&mut pebble);
        let running = Pebble {
            children: vec![
                dns.spawn().expect("pebble-challtestsrv starts"),
                pebble.spawn().expect("pebble starts"),
            ],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while fetch(ns, DIRECTORY).is_none() {
            assert!(
                Instant::now() < deadline,
                "pebble's directory never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        running
    }
}

/// The arguments of `cert acme NAME --domain DOMAIN --directory DIRECTORY`
/// and `more`.
fn acme<'a>(name: &'a str, domain: &'a str, directory: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "cert",
        "acme",
        name,
        "--domain",
        domain,
        "--directory",
        directory,
    ];
    args.extend(more);
    args
}

/// `url` fetched from `ns` without verification (the test's own servers).
fn fetch(ns: &Netns, url: &str) -> Option<String> {
    let out = ns
        .command("curl")
        .args(["-sfk", "--max-time", "5", url])
        .output()
        .expect("curl runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_certificate_from_an_acme_ca_validated_by_tls_alpn_on_the_web_listener_is_presented() {
    const NAME: &str = "acme::a_certificate_from_an_acme_ca_validated_by_tls_alpn_on_the_web_listener_is_presented";
    if !require_root_or_skip(NAME) {
        return;
    }
    let installed = ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !require_or_skip(NAME, installed, "pebble is not installed") {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let files = testpki::tempdir();
    let dir = files.path();
    let f = |n: &str| dir.join(n).display().to_string();
    // pebble's own HTTPS certificate, from a CA the appliance is told to trust.
    let wfe_ca = Ca::root("Pebble WFE Test CA");
    let wfe = wfe_ca.leaf(&[Lab::WAN_PHONE]);
    testpki::write(dir, "cert.pem", wfe.pem());
    testpki::write(dir, "key.pem", wfe.key_pem());
    testpki::write(dir, "wfe-ca.pem", wfe_ca.pem());
    let _pebble = Pebble::start(&lab.wan, dir);

    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), data.path(), &[]);
    d.ok(&["update", "-m", "the web services on every NIC"]);
    let certs_before = d.json(&["cert", "list"]);

    // The CA's directory not trusted yet: unreachable, nothing stored.
    let untrusted = d.fails(
        &acme("voip-acme", "voip.example.test", DIRECTORY, &[]),
        "acme-unreachable",
    );
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    d.ok(&["cert", "ca", "add", &f("wfe-ca.pem")]);
    // Nothing listening there.
    d.fails(
        &acme(
            "voip-acme",
            "voip.example.test",
            "https://198.51.100.2:14999/dir",
            &[],
        ),
        "acme-unreachable",
    );
    // A name the CA refuses: its problem document, and nothing stored.
    let refused = d.fails(
        &acme(
            "voip-acme",
            BLOCKED,
            DIRECTORY,
            &["--contact", "mailto:admin@example.test"],
        ),
        "acme-refused",
    );
    assert!(
        refused.contains("urn:ietf:params:acme:error:rejectedIdentifier"),
        "{refused}"
    );
    // Hostile input is refused before anything is made.
    let http = "http://198.51.100.2:14000/dir";
    for (args, code) in [
        (
            acme("voip-acme", "voip.example.test", http, &[]),
            "invalid-acme-request",
        ),
        (
            acme("voip-acme", "not a name", DIRECTORY, &[]),
            "invalid-hostname",
        ),
        (
            acme(
                "voip-acme",
                "voip.example.test",
                DIRECTORY,
                &["--contact", "admin@example.test"],
            ),
            "invalid-acme-request",
        ),
    ] {
        d.fails(&args, code);
    }
    assert_eq!(d.json(&["cert", "list"]), certs_before, "nothing stored");
    assert_eq!(d.json(&["cert", "requests"]), serde_json::json!([]));

    // Issued: the key made here, the name validated on the web listener.
    let started = Instant::now();
    let issued = d.json(&acme(
        "voip-acme",
        "voip.example.test",
        DIRECTORY,
        &["--contact", "mailto:admin@example.test"],
    ));
    let issuance = started.elapsed();
    assert_eq!(issued["has_key"], true, "{issued}");
    assert_eq!(d.json(&["cert", "requests"]), serde_json::json!([]));
    let log = d.log_text();
    assert!(
        log.contains("ACME tls-alpn-01 validation answered"),
        "the CA validated on the web listener"
    );
    assert!(!log.contains("PRIVATE KEY"), "no key in the log");

    d.ok(&["cert", "bind", "web", "voip-acme", "--nic", "wan0"]);
    d.ok(&["update", "-m", "the ACME certificate"]);
    let root = fetch(
        &lab.wan,
        &format!("https://{}:15000/roots/0", Lab::WAN_PHONE),
    )
    .expect("pebble's root");
    testpki::write(dir, "acme-root.pem", &root);
    let on_wire = presented(
        &lab.wan,
        &f("acme-root.pem"),
        Lab::WAN_APPLIANCE,
        443,
        "voip.example.test",
    )
    .expect("a phone verifies the web services against the ACME CA's root")
    .replace(':', "")
    .to_lowercase();
    let fingerprint = issued["fingerprint"]
        .as_str()
        .expect("a fingerprint")
        .replace(':', "")
        .to_lowercase();
    assert_eq!(on_wire, fingerprint);
    eprintln!(
        "cert acme to certificate stored: {issuance:?}; to presented on the wire: {:?}",
        started.elapsed()
    );

    // The account is kept: a second order needs no new one.
    d.ok(&acme("voip-acme-2", "voip.example.test", DIRECTORY, &[]));
    let made = d.log_text().matches("ACME account made").count();
    assert_eq!(made, 1, "one account per directory");
}
