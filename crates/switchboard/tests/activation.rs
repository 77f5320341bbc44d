//! Accounts and Automatic Activation (needs root): the phone, in its own
//! namespace with its own hosts file, opens its single-use link over HTTPS
//! with a client that verifies the web services certificate, gets its
//! configuration document, and the link is dead afterwards.

mod common;

use common::phone::{fetch, link_in};
use serde_json::Value;
use switchboard_pki::testpki;
use switchboard_system::testlab::{Kannel, Lab, require_root_or_skip};

#[test]
fn an_activated_phone_gets_its_document_once() {
    if !require_root_or_skip("activation::an_activated_phone_gets_its_document_once") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _) = common::ready_appliance(&lab, dir.path(), &[]);
    let d0 = files.path();
    testpki::write(d0, "bad.csv", "phone,name\n+15550100111,Bob\n12345,Eve\n");
    testpki::write(
        d0,
        "good.csv",
        "phone,name,profile\n+15550100111,Bob,linphone\n+15550100112,Carol,\n",
    );
    let f = |n: &str| d0.join(n).display().to_string();
    let ca = f("ca.pem");

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
    d.ok(&[
        "account", "set", &user, "--name", "Ann B", "--group", "sales",
    ]);
    let shown = d.json(&["account", "show", &user]);
    assert_eq!(
        (shown["display_name"].as_str(), shown["group"].as_str()),
        (Some("Ann B"), Some("sales"))
    );
    d.fails(
        &["account", "set", &user, "--phone", "+15550100111"],
        "phone-taken",
    );
    d.fails(
        &["account", "set", "nosuch", "--name", "X"],
        "no-such-account",
    );

    // App stores: a change keeps the other settings; /install sends each
    // platform to its store.
    d.ok(&[
        "provisioning",
        "set",
        "--app-store",
        "android=https://play.example.test/app",
        "--app-store",
        "ios=https://apps.example.test/app",
    ]);
    d.fails(
        &[
            "provisioning",
            "set",
            "--app-store",
            "android=http://play.example.test/app",
        ],
        "invalid-store-url",
    );
    d.fails(
        &[
            "provisioning",
            "set",
            "--app-store",
            "blackberry=https://x.example.test/",
        ],
        "unknown-platform",
    );
    d.ok(&["update", "-m", "app stores"]);
    let location = |ua: &str| {
        let out = lab
            .wan
            .command("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                &ca,
                "-A",
                ua,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .arg("https://voip.example.test/install")
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        location("Mozilla/5.0 (Linux; Android 14; Pixel 8)"),
        "302 https://play.example.test/app"
    );
    assert_eq!(
        location("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
        "302 https://apps.example.test/app"
    );
    assert!(location("Mozilla/5.0 (X11; Linux x86_64)").starts_with("404"));

    // Activation: the outbox holds the link (no gateway configured).
    let act = d.json(&["activate", &user]);
    assert_eq!(act["gateway"], "outbox");
    assert!(
        !act.to_string().contains("/p/"),
        "the API answer carries no token: {act}"
    );
    let sms = d.json(&["sms", "list"]);
    let text = sms[0]["text"].as_str().expect("outbox text").to_owned();
    let link = link_in(&text);

    // The phone fetches it, verifying the certificate for voip.example.test.
    let (body, meta) = fetch(&lab, &ca, &link);
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
    let (gone, meta_gone) = fetch(&lab, &ca, &link);
    assert!(meta_gone.starts_with("404"), "{meta_gone}");
    let (unknown, meta_unknown) = fetch(
        &lab,
        &ca,
        "https://voip.example.test/p/AAAAAAAAAAAAAAAAAAAAAA",
    );
    assert_eq!(
        (gone.as_str(), meta_gone.as_str()),
        (unknown.as_str(), meta_unknown.as_str())
    );
    let (_, hostile) = fetch(
        &lab,
        &ca,
        "https://voip.example.test/p/..%2F..%2Fetc%2Fpasswd",
    );
    assert!(hostile.starts_with("404"), "{hostile}");

    // The link is never logged.
    let token = link.rsplit('/').next().expect("token");
    assert!(
        !d.log_text().contains(token),
        "the daemon's log shows the token"
    );

    // A lost phone: a new link, revoked before the phone opens it. The
    // outbox no longer shows it, and it is dead.
    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let lost = link_in(sms[0]["text"].as_str().expect("outbox text"));
    let revoked = d.json(&["revoke", &user]);
    // One unused link; both outbox messages (the used link's and the
    // lost one) are withdrawn.
    assert_eq!(revoked["links"], 1, "{revoked}");
    assert_eq!(revoked["messages"], 2, "{revoked}");
    let sms = d.json(&["sms", "list"]);
    for m in sms.as_array().expect("list") {
        assert_eq!(m["state"], "revoked", "{sms}");
        assert_eq!(m["text"], Value::Null, "{sms}");
    }
    assert!(fetch(&lab, &ca, &lost).1.starts_with("404"));
    // Only a failed message can be sent again.
    let id = sms[0]["id"].as_u64().expect("id").to_string();
    d.fails(&["sms", "resend", &id], "sms-not-resendable");
    d.fails(&["sms", "resend", "999999"], "no-such-sms");
    d.fails(&["revoke", "bad user!"], "invalid-username");
    d.fails(&["revoke", "99999"], "no-such-account");
}

#[test]
fn the_activation_sms_goes_through_kannel_and_survives_its_outage() {
    if !require_root_or_skip(
        "activation::the_activation_sms_goes_through_kannel_and_survives_its_outage",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let mut kannel =
        Kannel::start(Some(&lab.appliance)).expect("kannel in the appliance's namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = common::kannel_serve_args(&kannel, dir.path());
    let serve = serve.each_ref().map(String::as_str);
    let (d, files, _) = common::ready_appliance(&lab, dir.path(), &serve);
    let ca = files.path().join("ca.pem").display().to_string();
    let ann = d.json(&["account", "add", "--phone", "+15550100199", "--name", "Ann"]);
    let user = ann["username"].as_str().expect("user").to_owned();

    // Kannel is down when the admin activates: the SMS waits in the queue.
    kannel.stop();
    d.ok(&["activate", &user]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sms = d.json(&["sms", "list"]);
        if sms[0]["attempts"].as_u64() >= Some(1) {
            assert_eq!(
                sms[0]["state"], "queued",
                "a gateway outage is not a failure: {sms}"
            );
            assert_eq!(
                sms[0]["text"],
                Value::Null,
                "the queue does not show the link"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery attempt: {sms}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Kannel is back: the message goes out by itself.
    kannel.start_again().expect("kannel again");
    let got = kannel
        .wait_received(1, std::time::Duration::from_secs(30))
        .expect("the SMS reaches the SMS centre");
    let text = got[0].text();
    assert!(text.contains("Ann"), "{text}");
    assert!(got[0].to.ends_with("15550100199"), "{:?}", got[0]);
    let sms = d.json(&["sms", "list"]);
    assert_eq!(sms[0]["state"], "sent", "{sms}");

    // The phone opens the link it received.
    let (body, meta) = fetch(&lab, &ca, &link_in(&text));
    assert_eq!(
        meta, "200 application/vnd.switchboard.sip-account+json",
        "{body}"
    );
    assert!(
        !d.log_text().contains(&link_in(&text)),
        "the link is never logged"
    );
}
