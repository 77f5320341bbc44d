//! Pins that roll over (needs root: the lab). A next key made ahead with
//! `cert request` is pinned in native documents next to the current key;
//! a phone activated then keeps verifying its pins after the rotation
//! (`curl --pinnedpubkey` with its document's pins), while one activated
//! before the next key was published would not, and the rotation says so
//! (`pins-break-phones`, naming it).

mod common;

use common::ready_appliance;
use common::{Daemon, phone};
use serde_json::Value;
use switchboard_pki::testpki;
use switchboard_system::testlab::{Lab, require_root_or_skip};

/// Activates account `user` and fetches its document from the phone's side,
/// as the phone would: the document's `tls_pins`.
fn activate_and_fetch(d: &Daemon, lab: &Lab, ca: &str, user: &str) -> Vec<String> {
    d.ok(&["activate", user]);
    let sms = d.json(&["sms", "list"]);
    let text = sms[0]["text"].as_str().expect("the outbox shows the text");
    let (body, meta) = phone::fetch(lab, ca, &phone::link_in(text));
    assert!(meta.starts_with("200 "), "{meta}: {body}");
    let doc: Value = serde_json::from_str(&body).expect("a native document");
    doc["tls_pins"]
        .as_array()
        .expect("native documents carry pins")
        .iter()
        .map(|p| p.as_str().expect("pin").to_owned())
        .collect()
}

/// Whether a client in the phone's namespace that pins `pins` (and trusts
/// the test CA) completes a request to the web services.
fn verifies_with_pins(lab: &Lab, ca: &str, pins: &[String]) -> bool {
    // curl writes a pin as `sha256//BASE64`, several separated by `;`.
    let pinned: Vec<String> = pins
        .iter()
        .map(|p| p.replacen("sha256/", "sha256//", 1))
        .collect();
    lab.wan
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca,
            "--pinnedpubkey",
            &pinned.join(";"),
            "https://voip.example.test/healthz",
        ])
        .output()
        .expect("curl")
        .status
        .success()
}

#[test]
fn a_phone_activated_before_a_planned_rotation_keeps_verifying_its_pins_after_it() {
    if !require_root_or_skip(
        "pins::a_phone_activated_before_a_planned_rotation_keeps_verifying_its_pins_after_it",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, p) = ready_appliance(&lab, dir.path(), &[]);
    let f = |n: &str| files.path().join(n).display().to_string();
    let ca = f("ca.pem");

    // Ann is activated before any next key: she pins the current key only.
    let ann = d.json(&["account", "add", "--phone", "+15550100101", "--name", "Ann"]);
    let ann = ann["username"].as_str().expect("user name").to_owned();
    let ann_pins = activate_and_fetch(&d, &lab, &ca, &ann);
    assert_eq!(ann_pins.len(), 1, "{ann_pins:?}");
    assert!(verifies_with_pins(&lab, &ca, &ann_pins));

    // The next key, made ahead, and published by an Update.
    let csr = d.ok(&["cert", "request", "voip-next", "--dns", "voip.example.test"]);
    let next_pin = d.json(&["cert", "requests"])[0]["pin"]
        .as_str()
        .expect("pin")
        .to_owned();
    let diff = d.json(&["diff"]);
    assert_eq!(
        diff["pins"]["next"],
        serde_json::json!([next_pin]),
        "{diff}"
    );
    assert!(
        !diff["notes"].to_string().contains("pins-rotated"),
        "{diff}"
    );
    d.ok(&["update", "-m", "publish the next key's pin"]);

    // Bob is activated after that: he pins both keys.
    let bob = d.json(&["account", "add", "--phone", "+15550100102", "--name", "Bob"]);
    let bob = bob["username"].as_str().expect("user name").to_owned();
    let bob_pins = activate_and_fetch(&d, &lab, &ca, &bob);
    assert_eq!(bob_pins, [ann_pins[0].clone(), next_pin.clone()]);

    // The planned rotation: the CA signs the next key's request.
    testpki::write(files.path(), "next.csr", &csr);
    testpki::write(
        files.path(),
        "inter.key",
        testpki::pem("PRIVATE KEY", p.intermediate.key_der()),
    );
    testpki::write(files.path(), "inter.pem", p.intermediate.pem());
    testpki::sign_request(
        files.path(),
        "next.csr",
        "inter.pem",
        "inter.key",
        90,
        "next.crt",
    );
    let signed = [
        testpki::read(files.path(), "next.crt"),
        testpki::read(files.path(), "inter.pem"),
    ]
    .concat();
    testpki::write(files.path(), "next-signed.pem", &signed);
    d.ok(&[
        "cert",
        "import",
        "voip-next",
        "--bundle",
        &f("next-signed.pem"),
    ]);
    d.ok(&["cert", "bind", "web", "voip-next"]);
    d.ok(&["cert", "bind", "sip-tls", "voip-next"]);

    // Before the Update: the rotation names the one phone it breaks.
    let status = d.json(&["status"]);
    let broken: Vec<&Value> = status["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|x| x["code"] == "pins-break-phones")
        .collect();
    assert_eq!(broken.len(), 1, "{status:#}");
    let message = broken[0]["message"].as_str().expect("message");
    assert!(
        message.contains("1 native phone(s)") && message.contains(&ann),
        "{message}"
    );
    assert!(!message.contains(&bob), "{message}");
    let diff = d.json(&["diff"]);
    assert!(
        !diff["notes"].to_string().contains("pins-rotated"),
        "published ahead: {diff}"
    );
    d.ok(&["update", "-m", "rotate to the next key"]);

    // After it: Bob's pins still verify; Ann's (as warned) do not.
    assert!(
        verifies_with_pins(&lab, &ca, &bob_pins),
        "the phone activated after the next key was published keeps working"
    );
    assert!(
        !verifies_with_pins(&lab, &ca, &ann_pins),
        "the phone activated before it pins only the old key"
    );
}
