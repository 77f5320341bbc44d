//! The management console in real headless Chromium, from the admin
//! host's namespace, against the daemon in the appliance's namespace with
//! the firewall enforced: the first sign-in over the self-signed
//! certificate (pinned, as an administrator who checked its fingerprint),
//! importing and binding certificates, the NIC host names, the provisioning
//! settings, the production layout, toggling matrix cells, Update with its
//! review, the closed padlocks, a hostile certificate rendered inert, the
//! revision and the audit trail; then a fresh browser that trusts only the
//! test CA sees the console's own certificate; then an Update on trial that
//! confirms itself, and one that cuts the console off and rolls back.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::browser::{self, Browser};
use common::console::*;
use common::{Daemon, phone};
use fantoccini::Locator;
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

#[test]
fn the_console_in_chromium() {
    if !require_or_skip(
        "console::the_console_in_chromium",
        is_root() && browser::installed(),
        &format!("needs root and {}", browser::PACKAGES),
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let dir = testpki::tempdir();
    let files = testpki::tempdir();
    let f = |n: &str| files.path().join(n);
    let p = pki();
    story_files(&p, files.path());
    let mut evil = testpki::leaf_params(&["evil.example.test"]);
    evil.distinguished_name.remove(rcgen::DnType::CommonName);
    evil.distinguished_name
        .push(rcgen::DnType::CommonName, "<script>alert(1)</script>");
    let evil = p
        .intermediate
        .leaf_with(evil, rcgen::KeyPair::generate().unwrap());
    testpki::write(files.path(), "evil.pem", chain(&p, &evil));
    let voip2 = p.intermediate.leaf(&["voip.example.test"]);
    testpki::write(files.path(), "voip2.pem", chain(&p, &voip2));

    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    let pin = first_start(&d, files.path());
    let b = Browser::start(&lab.lan, &f("ca.pem"));
    let shots = screenshots();
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    let files_path = files.path().to_owned();
    let link = b.run_with(&pinned, |c| async move {
        let f = |n: &str| files_path.join(n);
        // Anonymous: the sign-in page; a wrong password first.
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        ensure!(c.current_url().await?.path() == "/login");
        fill(&c, "#password", "not the password").await?;
        click(&c, "#sign-in").await?;
        let error = browser::text_of(&c, "#login-error").await?;
        ensure!(error.contains("Wrong user name or password"), "{error}");
        set_up_the_story(&c, &files_path).await?;
        ensure!(browser::text_of(&c, "h1").await? == "Services");
        // The matrix shows the address-less NIC, marked.
        let dmz = browser::text_of(&c, "th.nic.unconfigured").await?;
        ensure!(dmz.contains("dmz0") && dmz.contains("no address"), "{dmz}");

        // A certificate with a hostile subject.
        upload(&c, "evil", &f("evil.pem")).await?;
        // The hostile subject is text, not markup: no script ran, no
        // element was injected.
        let subject = browser::text_of(&c, "#cert-evil .subject").await?;
        ensure!(subject.contains("<script>alert(1)</script>"), "{subject}");
        let scripts = c
            .execute("return document.querySelectorAll('script').length", vec![])
            .await?;
        ensure!(
            scripts == serde_json::json!(1),
            "scripts on the page: {scripts}"
        );
        ensure!(c.get_alert_text().await.is_err(), "an alert is open");

        // One cell on and off again.
        tick(&c, "#cell-nrpe-dmz0").await?;
        click(&c, "#save-matrix").await?;
        let saved = flash_ok(&c).await?;
        ensure!(saved.contains("1 cell(s) changed"), "{saved}");
        ensure!(
            browser::wait_for(&c, "#cell-nrpe-dmz0")
                .await?
                .prop("checked")
                .await?
                .as_deref()
                == Some("true")
        );
        tick(&c, "#cell-nrpe-dmz0").await?;
        click(&c, "#save-matrix").await?;
        flash_ok(&c).await?;

        // Update: the review first (diagnostics and the diff), then apply.
        click(&c, "#update").await?;
        let review = browser::text_of(&c, "main").await?;
        ensure!(review.contains("Diagnostics"), "{review}");
        ensure!(
            review.contains("closed"),
            "the diff lists closed cells: {review}"
        );
        ensure!(
            c.find_all(Locator::Css("#lockout")).await?.is_empty(),
            "the production layout keeps the console on lan0: no lockout"
        );
        fill(&c, "#comment", "production layout from the console").await?;
        click(&c, "#apply-update").await?;
        let applied = flash_ok(&c).await?;
        ensure!(applied.contains("applied"), "{applied}");
        for (row, what) in [
            ("#padlock-console-lan0", "console on lan0"),
            ("#padlock-sip-tls-wan0", "sip-tls on wan0"),
            ("#padlock-web-wan0", "web on wan0"),
        ] {
            let text = browser::text_of(&c, row).await?;
            ensure!(text.contains("closed"), "{what}: {text}");
        }
        let map = browser::text_of(&c, ".map").await?;
        ensure!(map.contains("lan0") && map.contains("wan0"), "{map}");
        browser::screenshot(&c, &shots.join("services.png")).await?;

        // A certificate binding is a pending edit: the review names the
        // change with both fingerprints; Discard takes it back.
        upload(&c, "voip2", &f("voip2.pem")).await?;
        ensure!(
            !c.find_all(Locator::Css("#candidate-clean"))
                .await?
                .is_empty()
        );
        bind(&c, "web", "wan0", "voip2").await?;
        let pending = browser::text_of(&c, "#candidate-changed").await?;
        ensure!(pending.contains("not yet applied"), "{pending}");
        click(&c, "#update").await?;
        let changes = browser::text_of(&c, "#changes").await?;
        ensure!(
            changes.contains("web on wan0: certificate voip (SHA-256 ")
                && changes.contains("→ voip2 (SHA-256 "),
            "{changes}"
        );
        browser::screenshot(&c, &shots.join("update-review-certificate.png")).await?;
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        // Discarding asks first, naming what would be lost.
        click(&c, "#discard").await?;
        let ask = browser::text_of(&c, "#consequences").await?;
        ensure!(ask.contains("voip2"), "{ask}");
        click(&c, "#confirm-action").await?;
        let discarded = flash_ok(&c).await?;
        ensure!(discarded.contains("edits discarded"), "{discarded}");
        ensure!(
            !c.find_all(Locator::Css("#candidate-clean"))
                .await?
                .is_empty()
        );
        click(&c, "#update").await?;
        ensure!(!c.find_all(Locator::Css("#no-change")).await?.is_empty());
        browser::open(&c, &format!("{CONSOLE}/")).await?;

        // The revision, with who and from where; the audit log.
        browser::open(&c, &format!("{CONSOLE}/revisions")).await?;
        let rows = browser::text_of(&c, "table.revisions tbody").await?;
        ensure!(
            rows.contains("production layout from the console"),
            "{rows}"
        );
        ensure!(rows.contains("admin"), "{rows}");
        ensure!(rows.contains("console from 192.0.2.2"), "{rows}");
        browser::open(&c, &format!("{CONSOLE}/audit")).await?;
        let audit = browser::text_of(&c, "#audit").await?;
        // Changes in words, not requests.
        ensure!(audit.contains("revision 1 applied"), "{audit}");
        ensure!(audit.contains("certificate console imported"), "{audit}");

        // An account, activated in person: the QR code and its link.
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        fill(&c, "#account-phone", "+15550100123").await?;
        fill(&c, "#account-name", "Walk-in").await?;
        click(&c, "#add-account").await?;
        let created = flash_ok(&c).await?;
        let user = created
            .split_whitespace()
            .nth(1)
            .context("the new account's name")?
            .to_owned();
        click(&c, &format!("#qr-{user}")).await?;
        browser::wait_for(&c, "#qr svg").await?;
        browser::screenshot(&c, &shots.join("qr.png")).await?;
        browser::text_of(&c, "#activation-link").await
    });
    // The phone opens the link it scanned, once.
    assert!(link.starts_with("https://voip.example.test/p/"), "{link}");
    let ca = f("ca.pem").display().to_string();
    let (body, meta) = phone::fetch(&lab, &ca, &link);
    assert!(
        meta.starts_with("200 application/vnd.switchboard"),
        "{meta} {body}"
    );
    assert!(phone::fetch(&lab, &ca, &link).1.starts_with("404"));
    assert!(!d.log_text().contains(&link), "the link is not logged");

    // The same state through the CLI: one API behind both.
    let matrix = d.json(&["matrix", "--json"]);
    assert_eq!(matrix["candidate"]["console"], serde_json::json!(["lan0"]));
    assert_eq!(matrix["candidate"]["sip-tls"], serde_json::json!(["wan0"]));

    // A browser that trusts only the test CA: the console's own
    // certificate, a closed padlock, no exception needed.
    b.run(|c| async move {
        browser::open(&c, &format!("{CONSOLE}/login")).await?;
        ensure!(browser::text_of(&c, "h1").await? == "switchboard");
        Ok(())
    });

    // On trial: the page confirms the revision by itself over a new
    // connection.
    let shots = screenshots();
    b.run(|c| async move {
        sign_in(&c).await?;
        tick(&c, "#cell-nrpe-wan0").await?;
        click(&c, "#save-matrix").await?;
        click(&c, "#update").await?;
        tick(&c, "#trial").await?;
        click(&c, "#apply-update").await?;
        browser::wait_for(&c, "#pending").await?;
        browser::screenshot(&c, &shots.join("trial.png")).await?;
        let confirmed = browser::text_of(&c, "#confirmed").await?;
        ensure!(confirmed.contains("confirmed"), "{confirmed}");
        Ok(())
    });
    let status = d.json(&["status", "--json"]);
    assert!(status["pending"].is_null(), "{status}");

    // Moving the console off lan0: the review says so and applies it on
    // trial; the browser cannot reach the console any more, so nothing
    // confirms, and the appliance rolls back by itself.
    b.run(|c| async move {
        sign_in(&c).await?;
        // Moving the console to the WAN side.
        tick(&c, "#cell-console-lan0").await?;
        tick(&c, "#cell-console-wan0").await?;
        click(&c, "#save-matrix").await?;
        click(&c, "#update").await?;
        let review = browser::text_of(&c, "main").await?;
        ensure!(
            c.find_all(Locator::Css("#lockout")).await?.len() == 1,
            "no lockout warning: {review}"
        );
        let warning = browser::text_of(&c, "#lockout").await?;
        ensure!(warning.contains("console on lan0"), "{warning}");
        c.execute(
            "document.getElementById('trial-seconds').value = '8'",
            vec![],
        )
        .await?;
        // The answer's redirect cannot load: new connections are dropped.
        let _ = click(&c, "#apply-update").await;
        Ok(())
    });
    let applied = d.json(&["revisions", "--json"]);
    let last = applied
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["number"].as_u64())
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "pending", "{last}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let revisions = d.json(&["revisions", "--json"]);
        let same = revisions
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["number"] == last["number"])
            .unwrap()
            .clone();
        if same["outcome"] == "rolled-back" {
            break;
        }
        assert!(Instant::now() < deadline, "not rolled back: {same}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The console answers again from the admin's side.
    b.run(|c| async move {
        sign_in(&c).await?;
        browser::open(&c, &format!("{CONSOLE}/revisions")).await?;
        let rows = browser::text_of(&c, "table.revisions tbody").await?;
        ensure!(rows.contains("rolled-back"), "{rows}");
        // The diff between any two revisions: 1 -> 2 opened NRPE on wan0.
        fill(&c, "#compare-from", "1").await?;
        fill(&c, "#compare-to", "2").await?;
        click(&c, "#compare").await?;
        let diff = browser::text_of(&c, "table.cells").await?;
        ensure!(diff.contains("nrpe wan0 opened"), "{diff}");
        // Roll back to revision 1: a new revision, NRPE closed on wan0.
        browser::open(&c, &format!("{CONSOLE}/revisions")).await?;
        click(&c, "#rollback-1").await?;
        let ask = browser::text_of(&c, "#consequences").await?;
        ensure!(ask.contains("nrpe"), "the rollback's changes: {ask}");
        click(&c, "#confirm-action").await?;
        let done = flash_ok(&c).await?;
        ensure!(done.contains("rolled back to revision 1"), "{done}");
        Ok(())
    });
    let matrix = d.json(&["matrix", "--json"]);
    assert_eq!(
        matrix["applied"]["nrpe"],
        serde_json::json!(["lan0"]),
        "{matrix}"
    );
}
