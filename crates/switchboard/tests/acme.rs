//! ACME (needs root: the lab, and Debian's `pebble`): a real ACME server
//! on the WAN neighbour (the internet), with `pebble-challtestsrv` as its
//! DNS resolving every name to the appliance's WAN address. `cert acme`
//! makes the key on the appliance, the CA validates the name by
//! tls-alpn-01 on the web services' own listener (port 443, nothing else
//! listening), and the certificate, bound and applied, is what a phone is
//! shown, verified against the CA's root. An unreachable CA and a refused
//! order are clear errors that leave nothing behind.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::acme::*;
use common::browser::{self, Browser};
use common::console::{PASSWORD, click, fill, first_start, flash_ok, sign_in};
use common::{Daemon, presented};
use switchboard_pki::testpki;
use switchboard_system::testlab::{Lab, Netns};

#[test]
fn a_certificate_from_an_acme_ca_validated_by_tls_alpn_on_the_web_listener_is_presented() {
    const NAME: &str = "acme::a_certificate_from_an_acme_ca_validated_by_tls_alpn_on_the_web_listener_is_presented";
    if !can_run(NAME) {
        return;
    }
    let (lab, files, _pebble) = pebble_lab(None);
    let dir = files.path();
    let f = |n: &str| dir.join(n).display().to_string();

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
    let root = acme_root(&lab, dir);
    let on_wire = presented(
        &lab.wan,
        &root,
        Lab::WAN_APPLIANCE,
        443,
        "voip.example.test",
    )
    .expect("a phone verifies the web services against the ACME CA's root");
    let fingerprint = issued["fingerprint"].as_str().expect("a fingerprint");
    assert_eq!(hex(&on_wire), hex(fingerprint));
    eprintln!(
        "cert acme to certificate stored: {issuance:?}; to presented on the wire: {:?}",
        started.elapsed()
    );

    // The account is kept: a second order needs no new one.
    d.ok(&acme("voip-acme-2", "voip.example.test", DIRECTORY, &[]));
    let made = d.log_text().matches("ACME account made").count();
    assert_eq!(made, 1, "one account per directory");

    // http-01, on the http service's port 80: refused while it is closed
    // everywhere, issued once it is open where the CA comes from.
    let http01 = |name: &'static str| {
        acme(
            name,
            "voip.example.test",
            DIRECTORY,
            &["--challenge", "http-01"],
        )
    };
    d.fails(
        &acme(
            "voip-http",
            "voip.example.test",
            DIRECTORY,
            &["--challenge", "dns-01"],
        ),
        "invalid-acme-request",
    );
    d.ok(&["matrix", "deny", "http", "lan0"]);
    d.ok(&["matrix", "deny", "http", "wan0"]);
    d.ok(&["update", "-m", "no plain HTTP"]);
    let closed = d.fails(&http01("voip-http"), "invalid-acme-request");
    assert!(closed.contains("port 80"), "{closed}");
    d.ok(&["matrix", "allow", "http", "wan0"]);
    d.ok(&["update", "-m", "plain HTTP on wan0 for http-01"]);
    let by_http = d.json(&http01("voip-http"));
    assert_eq!(by_http["acme"]["challenge"], "http-01", "{by_http}");
    assert!(d.log_text().contains("ACME http-01 answer shown"));
    // The port answers nothing but challenges being checked.
    let http = format!("http://{}", Lab::WAN_APPLIANCE);
    for path in [
        "/.well-known/acme-challenge/not-a-token-being-checked",
        "/",
        "/.well-known/acme-challenge/",
        &format!("/.well-known/acme-challenge/{}", "A".repeat(5000)),
    ] {
        let code = lab
            .wan
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg(format!("{http}{path}"))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&code.stdout).into_owned();
        assert!(code == "404" || code == "431", "{path}: {code}");
    }

    // The same from the console, in Chromium on the admin host.
    if !browser::installed() {
        panic!("the console part needs {}", browser::PACKAGES);
    }
    testpki::write(dir, "password", PASSWORD);
    let pin = first_start(&d, dir);
    let b = Browser::start(&lab.lan, &dir.join("wfe-ca.pem"));
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    b.run_with(&pinned, |c| async move {
        sign_in(&c).await?;
        fill(&c, "#acme-name", "voip-console").await?;
        fill(&c, "#acme-domains", "voip.example.test").await?;
        fill(&c, "#acme-directory", DIRECTORY).await?;
        fill(&c, "#acme-contact", "admin@example.test").await?;
        click(&c, "#acme-order").await?;
        let done = flash_ok(&c).await?;
        anyhow::ensure!(done.contains("voip-console"), "{done}");
        let row = browser::text_of(&c, "#acme-voip-console").await?;
        anyhow::ensure!(row.contains("renews itself at"), "{row}");
        anyhow::ensure!(
            browser::wait_for(&c, "#renew-voip-console").await.is_ok(),
            "a Renew now button"
        );
        Ok(())
    });
    let shown = d.json(&["cert", "show", "voip-console"]);
    assert_eq!(shown["cert"]["acme"]["generation"], 1, "{shown}");
}

/// `cert show NAME` (the certificate part), once `ready` holds of it;
/// panics after `within`.
fn wait_for_cert(
    d: &Daemon,
    name: &str,
    within: Duration,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let out = d.cli(&["--json", "cert", "show", name]);
        if out.status.success() {
            let shown: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("cert show --json");
            if ready(&shown["cert"]) {
                return shown["cert"].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; cert show {name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The revisions, newest first.
fn revisions(d: &Daemon) -> Vec<serde_json::Value> {
    d.json(&["revisions"])
        .as_array()
        .expect("a list of revisions")
        .clone()
}

/// The CA unreachable from the appliance: pebble's port refused in the
/// WAN neighbour's own namespace (the lab's, never the host's), until
/// dropped.
struct Outage<'a>(&'a Netns);

impl<'a> Outage<'a> {
    fn begin(ns: &'a Netns) -> Outage<'a> {
        let rules = "table inet outage {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 14000 reject with tcp reset\n }\n}\n";
        let status = ns
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(rules.as_bytes())?;
                c.wait()
            })
            .expect("nft runs");
        assert!(status.success(), "the outage's rule loads");
        Outage(ns)
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .command("nft")
            .args(["delete", "table", "inet", "outage"])
            .status();
    }
}

#[test]
fn an_acme_certificate_renews_itself_as_a_revision_outlives_a_ca_outage_and_waits_for_a_trial() {
    const NAME: &str = "acme::an_acme_certificate_renews_itself_as_a_revision_outlives_a_ca_outage_and_waits_for_a_trial";
    if !can_run(NAME) {
        return;
    }
    // Due two thirds into its life: 16 s after it is issued.
    const LIFETIME: Duration = Duration::from_secs(24);
    let (lab, files, pebble) = pebble_lab(Some(LIFETIME.as_secs()));
    let dir = files.path();
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), data.path(), &[]);
    d.ok(&[
        "cert",
        "ca",
        "add",
        &dir.join("wfe-ca.pem").display().to_string(),
    ]);
    d.ok(&["update", "-m", "the web services on every NIC"]);
    let first = d.json(&acme("voip", "voip.example.test", DIRECTORY, &[]));
    assert_eq!(first["acme"]["generation"], 1, "{first}");
    assert_eq!(first["acme"]["directory"], DIRECTORY, "{first}");
    d.ok(&["cert", "bind", "web", "voip", "--nic", "wan0"]);
    d.ok(&["update", "-m", "the ACME certificate"]);
    let root = acme_root(&lab, dir);
    let on_wire = || {
        hex(&presented(
            &lab.wan,
            &root,
            Lab::WAN_APPLIANCE,
            443,
            "voip.example.test",
        )
        .expect("a phone verifies the web services against the ACME CA's root"))
    };
    let fingerprint = |c: &serde_json::Value| hex(c["fingerprint"].as_str().expect("fingerprint"));
    assert_eq!(on_wire(), fingerprint(&first));
    // An edit the administrator has not applied: a renewal leaves it alone.
    d.ok(&["matrix", "deny", "ssh", "wan0"]);
    let before = revisions(&d).len();

    // Renewed by itself two thirds into its life: a new key and
    // certificate, applied as a revision by `acme`.
    let second = wait_for_cert(&d, "voip-2", LIFETIME, "the first renewal", |c| {
        c["acme"]["generation"] == 2
    });
    assert_ne!(fingerprint(&second), fingerprint(&first));
    let history = revisions(&d);
    assert_eq!(history.len(), before + 1, "{history:?}");
    let renewal = history.first().expect("a revision");
    assert_eq!(renewal["actor"], "acme", "{renewal}");
    assert_eq!(renewal["outcome"], "applied", "{renewal}");
    // The audit log says so in words, under `acme`: the new certificate
    // and its revision.
    let audit = d.json(&["audit", "--actor", "acme"]);
    let words: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        words
            .iter()
            .any(|w| w.starts_with("certificate voip-2 imported"))
            && words
                .iter()
                .any(|w| *w == format!("revision {} applied", renewal["number"])),
        "{audit}"
    );
    assert!(
        renewal["comment"]
            .as_str()
            .is_some_and(|c| c.contains("voip-2 replaces voip")),
        "{renewal}"
    );
    let number = renewal["number"].as_u64().expect("a number");
    let diff = d.ok(&[
        "diff",
        "--from",
        &(number - 1).to_string(),
        "--to",
        &number.to_string(),
    ]);
    assert!(
        diff.contains("voip-2"),
        "the diff shows the certificate change: {diff}"
    );
    assert!(
        !diff.contains("ssh"),
        "and nothing the administrator has not applied: {diff}"
    );
    assert_eq!(
        on_wire(),
        fingerprint(&second),
        "the renewed certificate is presented"
    );
    let candidate = d.json(&["diff"]);
    assert!(
        candidate.to_string().contains("ssh"),
        "the administrator's edit is still in the candidate: {candidate}"
    );
    let used = d.json(&["cert", "list"]);
    let voip = used
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "voip"))
        .expect("the replaced certificate is kept, for a rollback");
    assert_eq!(voip["used_by"], serde_json::json!([]), "{voip}");
    assert!(voip.get("acme").is_none(), "no longer renewed: {voip}");

    // A CA outage when the next one is due: the current certificate stays
    // presented, the attempts back off, then the renewal goes through.
    let outage = Outage::begin(&lab.wan);
    let failing = wait_for_cert(&d, "voip-2", LIFETIME, "two failed attempts", |c| {
        c["acme"]["failures"].as_u64().is_some_and(|f| f >= 2)
    });
    let error = failing["acme"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be reached"), "{failing}");
    assert!(
        failing["acme"]["next_renewal"].as_str() > failing["acme"]["last_attempt"].as_str(),
        "{failing}"
    );
    assert_eq!(
        on_wire(),
        fingerprint(&second),
        "the current certificate stays"
    );
    assert_eq!(revisions(&d).len(), before + 1, "nothing applied");
    drop(outage);
    let third = wait_for_cert(
        &d,
        "voip-3",
        LIFETIME,
        "the renewal after the outage",
        |c| c["acme"]["generation"] == 3,
    );
    assert_eq!(third["acme"]["failures"], 0, "{third}");
    assert_eq!(
        third["acme"]["last_error"],
        serde_json::Value::Null,
        "{third}"
    );
    assert_eq!(on_wire(), fingerprint(&third));
    d.fails(&["cert", "show", "voip"], "no-such-cert");
    assert!(
        d.ok(&["cert", "show", "voip-2"]).contains("voip-2"),
        "the one replaced is kept"
    );
    assert!(
        d.log_text().contains("ACME renewal failed"),
        "the failures are in the log"
    );

    // A revision on trial: a due renewal waits for its confirmation.
    d.ok(&["update", "-m", "on trial", "--confirm-within", "300"]);
    let trial = revisions(&d).len();
    let waiting = wait_for_cert(&d, "voip-3", LIFETIME, "the renewal waiting", |c| {
        c["acme"]["waiting"].is_string()
    });
    assert!(
        waiting["acme"]["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("on trial")),
        "{waiting}"
    );
    d.fails(&["cert", "renew", "voip-3"], "pending-confirmation");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(revisions(&d).len(), trial, "no renewal while on trial");
    d.ok(&["confirm"]);
    let fourth = wait_for_cert(
        &d,
        "voip-4",
        LIFETIME,
        "the renewal after the confirmation",
        |c| c["acme"]["generation"] == 4,
    );
    assert_eq!(revisions(&d).len(), trial + 1);
    assert_eq!(on_wire(), fingerprint(&fourth));

    // Asked for by hand; and refused for a certificate not from ACME.
    let by_hand = d.json(&["cert", "renew", "voip-4"]);
    assert_eq!(by_hand["cert"], "voip-5", "{by_hand}");
    assert_eq!(by_hand["replaced"], "voip-4", "{by_hand}");
    d.fails(&["cert", "renew", "bootstrap"], "not-renewable");
    d.fails(&["cert", "renew", "voip-4"], "not-renewable");
    d.fails(&["cert", "renew", "no-such"], "no-such-cert");
    d.fails(&["cert", "renew", "../etc"], "invalid-cert-name");

    // The CA forgets the account (pebble keeps nothing across a restart):
    // a clear error that changes nothing, then a new account.
    drop(pebble);
    let _pebble = Pebble::start(&lab.wan, dir, Some(LIFETIME.as_secs()));
    let stored = || {
        let list = d.json(&["cert", "list"]);
        let list = list.as_array().expect("a list");
        list.iter()
            .map(|c| (c["name"].to_string(), c["fingerprint"].to_string()))
            .collect::<Vec<_>>()
    };
    let (certs, history) = (stored(), revisions(&d).len());
    let lost = d.fails(&["cert", "renew", "voip-5"], "acme-refused");
    assert!(lost.contains("accountDoesNotExist"), "{lost}");
    assert_eq!(stored(), certs, "nothing changed");
    let shown = d.json(&["cert", "show", "voip-5"]);
    assert!(
        shown["cert"]["acme"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("accountDoesNotExist")),
        "{shown}"
    );
    assert_eq!(revisions(&d).len(), history);
    let again = d.json(&["cert", "renew", "voip-5"]);
    assert_eq!(again["cert"], "voip-6", "{again}");
    let log = d.log_text();
    assert_eq!(log.matches("ACME account made").count(), 2, "a new account");
    assert!(!log.contains("PRIVATE KEY"), "no key in the log");
}
