//! Accounts and Automatic Activation (needs root): the phone, in its own
//! namespace with its own hosts file, opens its single-use link over HTTPS
//! with a client that verifies the web services certificate, gets its
//! configuration document, and the link is dead afterwards.

mod common;

use common::Daemon;
use serde_json::Value;
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, require_root_or_skip};

#[test]
fn an_activated_phone_gets_its_document_once() {
    if !require_root_or_skip("activation::an_activated_phone_gets_its_document_once") {
        return;
    }
    let lab = Lab::new().expect("lab");
    lab.wan
        .set_hosts(&[(Lab::WAN_APPLIANCE, "voip.example.test")])
        .expect("phone's hosts");
    lab.appliance
        .set_hosts(&[(Lab::WAN_APPLIANCE, "voip.example.test")])
        .expect("appliance's hosts");
    let p = pki();
    let files = testpki::tempdir();
    let d0 = files.path();
    testpki::write(d0, "ca.pem", p.root.pem());
    testpki::write(
        d0,
        "voip.pem",
        format!(
            "{}{}{}",
            p.leaf.pem(),
            p.leaf.key_pem(),
            p.intermediate.pem()
        ),
    );
    testpki::write(d0, "bad.csv", "phone,name\n+15550100111,Bob\n12345,Eve\n");
    testpki::write(
        d0,
        "good.csv",
        "phone,name,profile\n+15550100111,Bob,linphone\n+15550100112,Carol,\n",
    );
    let f = |n: &str| d0.join(n).display().to_string();
    let ca = f("ca.pem");

    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    d.ok(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    d.ok(&["cert", "ca", "add", &ca]);
    d.ok(&["cert", "bind", "web", "voip"]);
    d.ok(&["cert", "bind", "sip-tls", "voip"]);
    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);

    // Provisioning settings are checked against the bound certificates.
    d.fails(
        &[
            "provisioning",
            "set",
            "--sip-tls-hostname",
            "other.example.test",
        ],
        "sip-tls-hostname-not-covered",
    );
    d.fails(
        &[
            "provisioning",
            "set",
            "--web-uri",
            "http://voip.example.test",
        ],
        "invalid-web-uri",
    );
    d.fails(&["activate", "1000"], "no-such-account");
    d.ok(&[
        "provisioning",
        "set",
        "--sip-tls-hostname",
        "voip.example.test",
        "--web-uri",
        "https://voip.example.test",
    ]);
    d.ok(&["update", "-m", "production with provisioning"]);

    // Accounts: bad input refused whole, good CSV in one go.
    d.fails(
        &["account", "add", "--phone", "12345"],
        "invalid-phone-number",
    );
    d.fails(
        &[
            "account",
            "add",
            "--phone",
            "+15550100199",
            "--name",
            "=cmd|' /C calc'!A0",
        ],
        "invalid-display-name",
    );
    let out = d.cli(&["--json", "account", "import", &f("bad.csv")]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(doc["error"]["code"], "csv-rejected");
    assert_eq!(doc["error"]["problems"][0]["line"], 3, "{doc}");
    assert_eq!(
        d.json(&["account", "list"]),
        serde_json::json!([]),
        "nothing of a bad file is stored"
    );
    let imported = d.json(&["account", "import", &f("good.csv")]);
    assert_eq!(imported.as_array().expect("list").len(), 2);
    let ann = d.json(&[
        "account",
        "add",
        "--phone",
        "+1 (555) 010-0199",
        "--name",
        "Ann",
    ]);
    assert_eq!(ann["phone"], "+15550100199");
    let user = ann["username"]
        .as_str()
        .expect("a generated user name")
        .to_owned();
    d.fails(
        &["account", "add", "--phone", "+15550100199"],
        "phone-taken",
    );

    // Activation: the outbox holds the link (no gateway configured).
    let act = d.json(&["activate", &user]);
    assert_eq!(act["gateway"], "outbox");
    assert!(
        !act.to_string().contains("/p/"),
        "the API answer carries no token: {act}"
    );
    let sms = d.json(&["sms", "list"]);
    let text = sms[0]["text"].as_str().expect("outbox text").to_owned();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("https://voip.example.test/p/"))
        .expect("the link")
        .to_owned();

    // The phone fetches it, verifying the certificate for voip.example.test.
    let fetch = |url: &str| {
        let out = lab
            .wan
            .command("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                &ca,
                "-w",
                "\n%{http_code} %{content_type}",
                url,
            ])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, meta) = text.rsplit_once('\n').expect("status line");
        (body.to_owned(), meta.to_owned())
    };
    let (body, meta) = fetch(&link);
    assert_eq!(
        meta, "200 application/vnd.switchboard.sip-account+json",
        "{body}"
    );
    let doc: Value = serde_json::from_str(&body).expect("the document is JSON");
    let text = doc.to_string();
    assert!(
        text.contains("voip.example.test") && text.contains(&user),
        "{doc}"
    );
    assert!(text.contains("\"tls\"") && text.contains("ha1"), "{doc}");
    assert!(
        !text.to_lowercase().contains("password"),
        "no clear password: {doc}"
    );

    // Dead afterwards, like any unknown token: one and the same answer.
    let (gone, meta_gone) = fetch(&link);
    assert!(meta_gone.starts_with("404"), "{meta_gone}");
    let (unknown, meta_unknown) = fetch("https://voip.example.test/p/AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        (gone.as_str(), meta_gone.as_str()),
        (unknown.as_str(), meta_unknown.as_str())
    );
    let (_, hostile) = fetch("https://voip.example.test/p/..%2F..%2Fetc%2Fpasswd");
    assert!(hostile.starts_with("404"), "{hostile}");

    // The link is never logged.
    let token = link.rsplit('/').next().expect("token");
    assert!(
        !d.log_text().contains(token),
        "the daemon's log shows the token"
    );
}
