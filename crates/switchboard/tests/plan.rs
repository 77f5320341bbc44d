//! The whole plan on the wire (needs root and the kamailio packages): a
//! certificate change is a pending edit whose diff names both
//! fingerprints; after Update the web listener and Kamailio present the new
//! certificate; a rollback's diff shows the old one coming back and the
//! wire agrees; a failure injected in the Kamailio step leaves the previous
//! revision's firewall and certificates on the wire.

mod common;

use common::Daemon;
use common::console::chain;
use common::phone::HOST;
use serde_json::Value;
use std::time::Duration;
use switchboard_pki::testpki;

use switchboard_system::testlab::{Lab, Listeners, Port, answers, is_root, require_or_skip};

/// The SHA-256 fingerprint (`AB:CD:...`) of the certificate presented on
/// the appliance's WAN address at `port`, seen from the phone's side.
fn presented(lab: &Lab, port: u16) -> String {
    let out = lab
        .wan
        .command("sh")
        .args([
            "-c",
            "timeout 5 openssl s_client -connect \"$1:$2\" -servername \"$3\" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            "sh",
            Lab::WAN_APPLIANCE,
            &port.to_string(),
            HOST,
        ])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit_once('=')
        .map(|(_, fp)| fp.to_owned())
        .unwrap_or_else(|| panic!("no certificate on port {port}: {text}"))
}

fn fingerprint(d: &Daemon, cert: &str) -> String {
    let certs = d.json(&["cert", "list"]);
    certs
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["name"] == cert)
        .and_then(|c| c["fingerprint"].as_str())
        .unwrap_or_else(|| panic!("{cert} in {certs}"))
        .to_owned()
}

/// The TLS changes of a diff for `service` on wan0: (from, to) fingerprints.
fn tls_change(diff: &Value, service: &str) -> (String, String) {
    let t = diff["tls"]
        .as_array()
        .expect("tls changes")
        .iter()
        .find(|t| t["service"] == service && t["nic"] == "wan0")
        .unwrap_or_else(|| panic!("no {service} change on wan0 in {diff}"));
    let fp = |side: &str| t[side]["fingerprint"].as_str().unwrap_or("").to_owned();
    (fp("from"), fp("to"))
}

fn skip(name: &str) -> bool {
    !require_or_skip(
        name,
        is_root() && switchboard_system::kamailio::installed(),
        "needs root and the kamailio packages",
    )
}

#[test]
fn a_certificate_change_is_diffed_applied_and_rolled_back_on_the_wire() {
    if skip("plan::a_certificate_change_is_diffed_applied_and_rolled_back_on_the_wire") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    let voip2 = p.intermediate.leaf(&[HOST]);
    testpki::write(files.path(), "voip2.pem", chain(&p, &voip2));
    let bundle = files.path().join("voip2.pem").display().to_string();
    d.ok(&["cert", "import", "voip2", "--bundle", &bundle]);
    let (old, new) = (fingerprint(&d, "voip"), fingerprint(&d, "voip2"));
    assert_eq!(presented(&lab, 443), old);
    assert_eq!(presented(&lab, 5061), old);

    for service in ["sip-tls", "web"] {
        d.ok(&["cert", "bind", service, "voip2", "--nic", "wan0"]);
    }
    assert_eq!(d.json(&["status"])["candidate_changed"], true);
    let diff = d.json(&["diff"]);
    assert_eq!(diff["changed"], true, "{diff}");
    for service in ["sip-tls", "web"] {
        assert_eq!(tls_change(&diff, service), (old.clone(), new.clone()));
    }
    assert!(
        diff["kamailio"]["tls_cfg"]
            .as_str()
            .is_some_and(|t| t.contains("+certificate = ") && t.contains("voip2.pem")),
        "{diff}"
    );
    let text = d.ok(&["diff"]);
    assert!(
        text.contains("~ sip-tls on wan0: certificate voip (SHA-256 ")
            && text.contains("→ voip2 (SHA-256 "),
        "{text}"
    );
    // Still the old one until Update.
    assert_eq!(presented(&lab, 443), old);

    d.ok(&["update", "-m", "voip2 on wan0"]);
    assert_eq!(presented(&lab, 443), new, "the web listener presents voip2");
    assert_eq!(presented(&lab, 5061), new, "Kamailio presents voip2");

    let rolled = d.json(&["rollback", "1"]);
    let r = rolled["revision"].as_u64().expect("a revision");
    let back = d.json(&[
        "diff",
        "--from",
        &(r - 1).to_string(),
        "--to",
        &r.to_string(),
    ]);
    for service in ["sip-tls", "web"] {
        assert_eq!(tls_change(&back, service), (new.clone(), old.clone()));
    }
    assert_eq!(
        presented(&lab, 443),
        old,
        "the rollback presents voip again"
    );
    assert_eq!(presented(&lab, 5061), old);
    // An Update that changes nothing of SIP leaves Kamailio alone (no
    // check, no reload), and it still presents the same certificate.
    d.ok(&["matrix", "allow", "ssh", "wan0"]);
    let u = d.json(&["update", "-m", "ssh on wan0"]);
    assert!(
        u["detail"]
            .as_str()
            .is_some_and(|t| t.contains("kamailio unchanged")),
        "{u}"
    );
    assert_eq!(presented(&lab, 5061), old);
    let shown = d.ok(&["revisions", "show", &r.to_string()]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("sip-tls on wan0 [198.51.100.1")
                && l.contains("]: voip (SHA-256 ")),
        "{shown}"
    );
}

#[test]
fn a_failing_kamailio_step_leaves_the_previous_revision_on_the_wire() {
    if skip("plan::a_failing_kamailio_step_leaves_the_previous_revision_on_the_wire") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut d, files, p) = common::ready_appliance(&lab, dir.path(), &["--sip", "kamailio"]);
    d.sigterm();
    let d = Daemon::start_with_env(
        Some(&lab.appliance),
        dir.path(),
        &["--firewall", "enforce", "--sip", "kamailio"],
        &[("SWITCHBOARD_FAIL_STEP", "kamailio")],
    );
    let voip2 = p.intermediate.leaf(&[HOST]);
    testpki::write(files.path(), "voip2.pem", chain(&p, &voip2));
    let bundle = files.path().join("voip2.pem").display().to_string();
    d.ok(&["cert", "import", "voip2", "--bundle", &bundle]);
    let old = fingerprint(&d, "voip");
    assert_eq!(
        presented(&lab, 443),
        old,
        "boot puts the same plan: no failure"
    );
    // A stand-in for sshd: the production layout opens 22 on lan0 only.
    let _sshd = Listeners::start(&lab.appliance, &[Port::Tcp(22)]).expect("listener");
    let ssh = |ns, addr: &str| {
        answers(
            ns,
            addr.parse().expect("ip"),
            Port::Tcp(22),
            Duration::from_secs(1),
        )
    };
    assert!(
        ssh(&lab.lan, Lab::LAN_APPLIANCE),
        "the probe can see an open port"
    );
    assert!(!ssh(&lab.wan, Lab::WAN_APPLIANCE));

    // A change of every step: the matrix (firewall), the certificates
    // (TLS tables, Kamailio).
    d.ok(&["matrix", "allow", "ssh", "wan0"]);
    for service in ["sip-tls", "web"] {
        d.ok(&["cert", "bind", service, "voip2", "--nic", "wan0"]);
    }
    let err = d.fails(&["update", "-m", "fails in kamailio"], "apply-failed");
    assert!(
        err.contains("kamailio step")
            && err.contains("undone (firewall, listeners, tls, media, kamailio)"),
        "{err}"
    );
    assert_eq!(
        presented(&lab, 443),
        old,
        "the web listener's table is back"
    );
    assert_eq!(
        presented(&lab, 5061),
        old,
        "Kamailio's configuration is back"
    );
    assert!(
        !ssh(&lab.wan, Lab::WAN_APPLIANCE),
        "the firewall is back: ssh is still closed on wan0"
    );
    let revisions = d.json(&["revisions"]);
    assert_eq!(revisions[0]["outcome"], "failed", "{revisions}");
}
