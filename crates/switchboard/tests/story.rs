//! The story of the product brief, end to end, every part real: the
//! appliance in its namespace (`lan0`, `wan0`, an address-less `dmz0`)
//! with the firewall enforced, Kamailio and Kannel; the admin host and the
//! phone in namespaces of their own with their own hosts files; a test CA.
//!
//! 1. The admin signs in to the console in Chromium, imports two
//!    certificates, binds them, sets the provisioning names, applies the
//!    production layout, and presses Update (on trial, confirmed by the
//!    page itself).
//! 2. From the phone's side only SIP/TLS and the web services answer, each
//!    with the bound certificate verifying for voip.example.test; from the
//!    admin's side the console verifies for console.lan.test.
//! 3. The admin creates an account and sends its activation SMS through
//!    Kannel; the phone fetches its document once.
//! 4. The phone registers over SIP/TLS with those credentials.
//! 5. The admin rotates the SIP/TLS certificate: new handshakes get the new
//!    one, the live registration's connection keeps working.
//!
//! Each step asserts what the user sees, and what must not answer.

mod common;

use std::time::Duration;

use anyhow::ensure;
use common::Daemon;
use common::browser::{self, Browser};
use common::console::*;
use common::phone::{self, HOST, Phone, register_udp};
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{
    Kannel, Lab, Listeners, Port, answers_all, is_root, require_or_skip,
};

/// curl from `ns`'s namespace, verifying against `ca`: (exit ok, body).
fn curl(ns: &switchboard_system::testlab::Netns, ca: &str, url: &str) -> (bool, String) {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "3", "--cacert", ca, url])
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_story_end_to_end() {
    if !require_or_skip(
        "story::the_story_end_to_end",
        is_root()
            && browser::installed()
            && switchboard_system::kamailio::installed()
            && switchboard_system::testlab::kannel_installed(),
        "needs root, chromium, chromium-driver, libnss3-tools, kamailio and kannel",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let files = testpki::tempdir();
    let dir = testpki::tempdir();
    let p = pki();
    story_files(&p, files.path());
    let rotated = p.intermediate.leaf(&[HOST]);
    testpki::write(files.path(), "voip2.pem", chain(&p, &rotated));
    let f = |n: &str| files.path().join(n).display().to_string();
    let ca = f("ca.pem");
    let ca_pem = std::fs::read(&ca).unwrap();

    // The appliance: Kannel on its loopback, Kamailio driven by the
    // daemon, the firewall enforced; SSH, SQL and NRPE stand-ins listening
    // on every address (the firewall alone decides who reaches them).
    let kannel = Kannel::start(Some(&lab.appliance)).expect("kannel");
    let sms = common::kannel_serve_args(&kannel, files.path());
    let serve = [
        &["--firewall", "enforce", "--sip", "kamailio"][..],
        &sms.each_ref().map(String::as_str),
    ]
    .concat();
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &serve);
    let others = [Port::Tcp(22), Port::Tcp(3306), Port::Tcp(5666)];
    let _stand_ins = Listeners::start(&lab.appliance, &others).expect("listeners");
    let pin = first_start(&d, files.path());
    let b = Browser::start(&lab.lan, files.path().join("ca.pem").as_path());

    // 1. The admin, in the console.
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    let files_path = files.path().to_owned();
    let shots = screenshots();
    b.run_with(&pinned, |c| async move {
        set_up_the_story(&c, &files_path).await?;
        click(&c, "#update").await?;
        fill(&c, "#comment", "the story: production layout").await?;
        tick(&c, "#trial").await?;
        click(&c, "#apply-update").await?;
        browser::wait_for(&c, "#pending").await?;
        let confirmed = browser::text_of(&c, "#confirmed").await?;
        ensure!(confirmed.contains("confirmed"), "{confirmed}");
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        for row in [
            "#padlock-console-lan0",
            "#padlock-sip-tls-wan0",
            "#padlock-web-wan0",
        ] {
            let text = browser::text_of(&c, row).await?;
            ensure!(text.contains("closed"), "{row}: {text}");
        }
        browser::screenshot(&c, &shots.join("story-services.png")).await?;
        Ok(())
    });
    let status = d.json(&["status", "--json"]);
    assert!(status["pending"].is_null(), "confirmed: {status}");
    assert_eq!(status["open_padlocks"], serde_json::json!([]), "{status}");

    // 2. What answers, from each side.
    let lan = Lab::LAN_APPLIANCE.parse().unwrap();
    let wan = Lab::WAN_APPLIANCE.parse().unwrap();
    let admin_only = [
        Port::Tcp(8443),
        Port::Tcp(22),
        Port::Tcp(3306),
        Port::Tcp(5666),
    ];
    let mut probes = Vec::new();
    for port in admin_only {
        probes.push((&lab.wan, wan, port));
        probes.push((&lab.lan, lan, port));
    }
    let seen = answers_all(&probes, Duration::from_millis(700));
    for (i, port) in admin_only.iter().enumerate() {
        assert!(!seen[2 * i], "{port:?} answers the phone");
        assert!(seen[2 * i + 1], "{port:?} does not answer the admin");
    }
    let (ok, body) = curl(&lab.wan, &ca, "https://voip.example.test/healthz");
    assert!(ok && body.contains("ok"), "web from the phone: {body}");
    let sip = Phone::connect(&lab.wan, &ca_pem, Lab::WAN_APPLIANCE);
    assert_eq!(sip.presented, p.leaf.der.to_vec(), "SIP/TLS presents voip");
    drop(sip);
    let (ok, body) = curl(&lab.lan, &ca, "https://console.lan.test:8443/healthz");
    assert!(ok && body.contains("ok"), "console from the admin: {body}");
    // The console's certificate is not the phones': it does not verify
    // for voip.example.test.
    let out = lab
        .lan
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "3",
            "--cacert",
            &ca,
            "--resolve",
            "voip.example.test:8443:192.0.2.1",
            "https://voip.example.test:8443/healthz",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the console presents its own certificate"
    );
    // A browser that trusts only the test CA: a closed padlock.
    b.run(|c| async move {
        browser::open(&c, &format!("{CONSOLE}/login")).await?;
        Ok(())
    });

    // 3. An account and its activation SMS, from the console; Kannel
    // delivers it; the phone opens the link once.
    let user = b.run(|c| async move {
        sign_in(&c).await?;
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        fill(&c, "#account-phone", "+15550100199").await?;
        fill(&c, "#account-name", "Ann").await?;
        click(&c, "#add-account").await?;
        let created = flash_ok(&c).await?;
        let user = created.split_whitespace().nth(1).unwrap_or("").to_owned();
        click(&c, &format!("#activate-{user}")).await?;
        let queued = flash_ok(&c).await?;
        ensure!(queued.contains("via kannel"), "{queued}");
        Ok(user)
    });
    let got = kannel
        .wait_received(1, Duration::from_secs(30))
        .expect("the SMS reaches the SMS centre");
    let text = got[0].text();
    assert!(text.contains("Ann"), "{text}");
    assert!(got[0].to.ends_with("15550100199"), "{:?}", got[0]);
    let link = phone::link_in(&text);
    let (body, meta) = phone::fetch(&lab, &ca, &link);
    assert_eq!(
        meta, "200 application/vnd.switchboard.sip-account+json",
        "{body}"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON document");
    assert_eq!(doc["hostname"], HOST);
    assert_eq!(doc["transport"], "tls");
    assert_eq!(doc["username"], user.as_str());
    let ha1 = doc["ha1"].as_str().expect("ha1").to_owned();
    let (_, dead) = phone::fetch(&lab, &ca, &link);
    assert!(dead.starts_with("404"), "the link works once: {dead}");

    // 4. The phone registers over verified TLS with those credentials;
    // SIP/UDP is for the LAN's legacy PBX only.
    let mut registered = Phone::connect(&lab.wan, &ca_pem, Lab::WAN_APPLIANCE);
    assert_eq!(registered.register(&user, &ha1, 1), 200);
    assert_eq!(
        register_udp(&lab.wan, Lab::WAN_APPLIANCE, &user, &ha1),
        None
    );

    // 5. The admin rotates the SIP/TLS (and web) certificate in the console.
    let files_path = files.path().to_owned();
    b.run(|c| async move {
        sign_in(&c).await?;
        upload(&c, "voip2", &files_path.join("voip2.pem")).await?;
        bind(&c, "sip-tls", "wan0", "voip2").await?;
        bind(&c, "web", "wan0", "voip2").await?;
        click(&c, "#update").await?;
        fill(&c, "#comment", "rotate the SIP/TLS certificate").await?;
        click(&c, "#apply-update").await?;
        let applied = flash_ok(&c).await?;
        ensure!(applied.contains("applied"), "{applied}");
        Ok(())
    });
    let fresh = Phone::connect(&lab.wan, &ca_pem, Lab::WAN_APPLIANCE);
    assert_eq!(
        fresh.presented,
        rotated.der.to_vec(),
        "new handshakes: voip2"
    );
    assert_eq!(
        registered.register(&user, &ha1, 3),
        200,
        "the live registration's connection still works"
    );
    let (ok, body) = curl(&lab.wan, &ca, "https://voip.example.test/healthz");
    assert!(ok, "web after the rotation: {body}");
    // The old certificate is not presented any more.
    assert_ne!(fresh.presented, p.leaf.der.to_vec());
    let revisions = d.json(&["revisions", "--json"]);
    assert!(
        revisions
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["comment"] == "rotate the SIP/TLS certificate" && r["outcome"] == "applied"),
        "{revisions}"
    );
}
