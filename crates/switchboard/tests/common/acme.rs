//! A real ACME CA for the tests: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS, in the WAN neighbour's namespace.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use switchboard_pki::testpki::{self, Ca};
use switchboard_system::testlab::{Lab, Netns, require_or_skip, require_root_or_skip};

use super::console::story_hosts;

pub const DIRECTORY: &str = "https://198.51.100.2:14000/dir";
pub const BLOCKED: &str = "blocked.example.test";

/// pebble and its DNS, in the WAN neighbour's namespace, killed on drop.
pub struct Pebble {
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
    /// Starts both, pebble serving `cert.pem`/`key.pem` of `dir` and
    /// issuing certificates valid for `validity` seconds (its default, 5
    /// years, when `None`), and waits until the directory answers.
    pub fn start(ns: &Netns, dir: &std::path::Path, validity: Option<u64>) -> Pebble {
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("{}:14000", Lab::WAN_PHONE),
                "managementListenAddress": format!("{}:15000", Lab::WAN_PHONE),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": [BLOCKED],
                "retryAfter": { "authz": 1, "order": 1 },
            }
        });
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        testpki::write(dir, "pebble.json", config.to_string());
        let quiet = |c: &mut std::process::Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut dns = challtestsrv(ns, &format!("{}:8053", Lab::WAN_PHONE), MANAGEMENT);
        quiet(&mut dns);
        let mut pebble = ns.command("pebble");
        pebble
            .args(["-config"])
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("{}:8053", Lab::WAN_PHONE)])
            // No random sleeps before validating, no nonces refused at random.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order validated anew: no authorization reused (pebble
            // reuses half of them by default), so each challenge is tried.
            .env("PEBBLE_AUTHZREUSE", "0");
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

/// Where pebble-challtestsrv takes orders (`add-a`, `clear-a`, ...).
pub const MANAGEMENT: &str = "198.51.100.2:8055";

/// `pebble-challtestsrv` in `ns` as a DNS server only, on `dns` (address
/// and port): every name resolves to the appliance's WAN address unless
/// told otherwise through `management`.
pub fn challtestsrv(ns: &Netns, dns: &str, management: &str) -> std::process::Command {
    let mut c = ns.command("pebble-challtestsrv");
    c.args(["-defaultIPv4", Lab::WAN_APPLIANCE, "-defaultIPv6", ""])
        .args(["-dns01", dns, "-management", management])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""]);
    c
}

/// A call of pebble-challtestsrv's management API (`call`, a JSON
/// `body`), from `ns`; whether it succeeded.
pub fn manage_dns(ns: &Netns, call: &str, body: &str) -> bool {
    ns.command("curl")
        .args(["-sf", "--max-time", "2", "-o", "/dev/null", "-d", body])
        .arg(format!("http://{MANAGEMENT}/{call}"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The arguments of `cert acme NAME --domain DOMAIN --directory DIRECTORY`
/// and `more`.
pub fn acme<'a>(
    name: &'a str,
    domain: &'a str,
    directory: &'a str,
    more: &[&'a str],
) -> Vec<&'a str> {
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
pub fn fetch(ns: &Netns, url: &str) -> Option<String> {
    let out = ns
        .command("curl")
        .args(["-sfk", "--max-time", "5", url])
        .output()
        .expect("curl runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the test can run: as root, with pebble installed.
pub fn can_run(name: &str) -> bool {
    if !require_root_or_skip(name) {
        return false;
    }
    let installed = ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    require_or_skip(name, installed, "pebble is not installed")
}

/// The lab with the story's host names, and pebble (certificates valid
/// for `validity` seconds) on the WAN neighbour; its HTTPS certificate's CA
/// is `wfe-ca.pem` in the directory returned.
pub fn pebble_lab(validity: Option<u64>) -> (Lab, tempfile::TempDir, Pebble) {
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let files = testpki::tempdir();
    let dir = files.path();
    // pebble's own HTTPS certificate, from a CA the appliance is told to trust.
    let wfe_ca = Ca::root("Pebble WFE Test CA");
    let wfe = wfe_ca.leaf(&[Lab::WAN_PHONE]);
    testpki::write(dir, "cert.pem", wfe.pem());
    testpki::write(dir, "key.pem", wfe.key_pem());
    testpki::write(dir, "wfe-ca.pem", wfe_ca.pem());
    let pebble = Pebble::start(&lab.wan, dir, validity);
    (lab, files, pebble)
}

/// pebble's root (it makes a new one at each start), written to `dir`;
/// its path.
pub fn acme_root(lab: &Lab, dir: &std::path::Path) -> String {
    let root = fetch(
        &lab.wan,
        &format!("https://{}:15000/roots/0", Lab::WAN_PHONE),
    )
    .expect("pebble's root");
    testpki::write(dir, "acme-root.pem", &root);
    dir.join("acme-root.pem").display().to_string()
}

/// A SHA-256 fingerprint as lowercase hex without colons.
pub fn hex(fingerprint: &str) -> String {
    fingerprint.replace(':', "").to_lowercase()
}
