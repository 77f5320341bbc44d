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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use common::Daemon;
use common::browser::{self, Browser};
use fantoccini::{Client, Locator};
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, require_or_skip, require_root_or_skip};

const PASSWORD: &str = "a long console password 42";
const CONSOLE: &str = "https://console.lan.test:8443";

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, base64: what
/// Chromium's `--ignore-certificate-errors-spki-list` pins.
fn spki_pin(cert_pem: &str, dir: &Path) -> String {
    let file = dir.join("pinned.pem");
    std::fs::write(&file, cert_pem).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            file.display()
        ))
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Click what `css` finds, without waiting for anything.
async fn tick(c: &Client, css: &str) -> anyhow::Result<()> {
    browser::wait_for(c, css)
        .await?
        .click()
        .await
        .with_context(|| format!("click `{css}`"))?;
    Ok(())
}

/// Click what `css` finds and wait for the next page to have loaded (the
/// old document is marked first, so its leftovers are never mistaken for
/// the new page).
async fn click(c: &Client, css: &str) -> anyhow::Result<()> {
    c.execute("document.documentElement.dataset.old = '1'", vec![])
        .await?;
    tick(c, css).await?;
    let deadline = Instant::now() + browser::WAIT;
    loop {
        let fresh = c
            .execute(
                "return document.readyState === 'complete' && !document.documentElement.dataset.old",
                vec![],
            )
            .await;
        if matches!(fresh, Ok(serde_json::Value::Bool(true))) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "no new page after clicking `{css}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let e = browser::wait_for(c, css).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn select(c: &Client, css: &str, value: &str) -> anyhow::Result<()> {
    browser::wait_for(c, css)
        .await?
        .select_by_value(value)
        .await
        .with_context(|| format!("select {value} in `{css}`"))?;
    Ok(())
}

/// The flash message after an action; fails if it is an error.
async fn flash_ok(c: &Client) -> anyhow::Result<String> {
    let flash = browser::wait_for(c, "#flash").await?;
    let class = flash.attr("class").await?.unwrap_or_default();
    let text = flash.text().await?;
    ensure!(
        class.contains("ok"),
        "the console reported an error: {text}"
    );
    Ok(text)
}

async fn upload(c: &Client, name: &str, file: &Path) -> anyhow::Result<String> {
    fill(c, "#upload-name", name).await?;
    browser::wait_for(c, "#upload-bundle")
        .await?
        .send_keys(&file.display().to_string())
        .await?;
    click(c, "#upload").await?;
    flash_ok(c).await
}

async fn bind(c: &Client, service: &str, nic: &str, cert: &str) -> anyhow::Result<String> {
    select(c, "#bind-service", service).await?;
    select(c, "#bind-nic", nic).await?;
    select(c, "#bind-cert", cert).await?;
    click(c, "#bind").await?;
    flash_ok(c).await
}

async fn set_hostname(c: &Client, nic: &str, host: &str) -> anyhow::Result<String> {
    let input = format!("#hostname-{nic}");
    fill(c, &input, host).await?;
    click(c, &format!("#save-{nic}")).await?;
    flash_ok(c).await
}

#[test]
fn the_console_in_chromium() {
    if !require_root_or_skip("the_console_in_chromium")
        || !require_or_skip(
            "the_console_in_chromium",
            browser::installed(),
            browser::PACKAGES,
        )
    {
        return;
    }
    let lab = Lab::new().expect("lab");
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, "console.lan.test")])
        .unwrap();
    lab.appliance
        .set_hosts(&[
            (Lab::LAN_APPLIANCE, "console.lan.test"),
            (Lab::WAN_APPLIANCE, "voip.example.test"),
        ])
        .unwrap();
    let dir = testpki::tempdir();
    let files = testpki::tempdir();
    let f = |n: &str| files.path().join(n);
    let p = pki();
    let console = p.intermediate.leaf(&["console.lan.test"]);
    testpki::write(files.path(), "ca.pem", p.root.pem());
    let chain = |leaf: &switchboard_pki::testpki::Leaf| {
        format!("{}{}{}", leaf.pem(), leaf.key_pem(), p.intermediate.pem())
    };
    testpki::write(files.path(), "console.pem", chain(&console));
    testpki::write(files.path(), "voip.pem", chain(&p.leaf));
    let mut evil = testpki::leaf_params(&["evil.example.test"]);
    evil.distinguished_name.remove(rcgen::DnType::CommonName);
    evil.distinguished_name
        .push(rcgen::DnType::CommonName, "<script>alert(1)</script>");
    let evil = p
        .intermediate
        .leaf_with(evil, rcgen::KeyPair::generate().unwrap());
    testpki::write(files.path(), "evil.pem", chain(&evil));
    testpki::write(files.path(), "password", PASSWORD);

    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    assert!(
        d.log_text()
            .contains("first start: the console's administrator is"),
        "the first-run password is in the log"
    );
    d.ok(&[
        "admin",
        "set-password",
        "--password-file",
        &f("password").display().to_string(),
    ]);
    // The administrator checked the self-signed certificate's fingerprint:
    // the first browser trusts that key, and the test CA, nothing else.
    let certs = d.json(&["cert", "list", "--json"]);
    let bootstrap = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["bootstrap"] == true)
        .expect("a first-start certificate")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = d.json(&["cert", "show", &bootstrap, "--json"]);
    let pin = spki_pin(shown["chain_pem"].as_str().unwrap(), files.path());

    let b = Browser::start(&lab.lan, &f("ca.pem"));
    let shots = screenshots();
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    let files_path = files.path().to_owned();
    b.run_with(&pinned, |c| async move {
        let f = |n: &str| files_path.join(n);
        // Anonymous: the sign-in page.
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        ensure!(c.current_url().await?.path() == "/login");
        // A wrong password first.
        fill(&c, "#password", "not the password").await?;
        click(&c, "#sign-in").await?;
        let error = browser::text_of(&c, "#login-error").await?;
        ensure!(error.contains("Wrong user name or password"), "{error}");
        fill(&c, "#password", PASSWORD).await?;
        click(&c, "#sign-in").await?;
        browser::wait_for(&c, "#matrix").await?;
        ensure!(browser::text_of(&c, "h1").await? == "Services");
        // The matrix shows the address-less NIC, marked.
        let dmz = browser::text_of(&c, "th.nic.unconfigured").await?;
        ensure!(dmz.contains("dmz0") && dmz.contains("no address"), "{dmz}");

        // Certificates: the console's, the phones', and a hostile one.
        let msg = upload(&c, "console", &f("console.pem")).await?;
        ensure!(msg.contains("certificate console imported"), "{msg}");
        upload(&c, "voip", &f("voip.pem")).await?;
        upload(&c, "evil", &f("evil.pem")).await?;
        browser::wait_for(&c, "#ca-file")
            .await?
            .send_keys(&f("ca.pem").display().to_string())
            .await?;
        click(&c, "#add-ca").await?;
        flash_ok(&c).await?;
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

        // Bindings, NIC host names, provisioning.
        bind(&c, "console", "lan0", "console").await?;
        bind(&c, "sip-tls", "wan0", "voip").await?;
        bind(&c, "web", "wan0", "voip").await?;
        set_hostname(&c, "lan0", "console.lan.test").await?;
        set_hostname(&c, "wan0", "voip.example.test").await?;
        // A host name the bound certificate does not cover is refused.
        fill(&c, "#sip-tls-hostname", "other.example.test").await?;
        click(&c, "#save-provisioning").await?;
        let refused = browser::text_of(&c, "#flash").await?;
        ensure!(refused.contains("other.example.test"), "{refused}");
        fill(&c, "#sip-tls-hostname", "voip.example.test").await?;
        fill(&c, "#web-uri", "https://voip.example.test").await?;
        click(&c, "#save-provisioning").await?;
        flash_ok(&c).await?;

        // The production layout, then one cell on and off again.
        select(&c, "#preset-internal", "lan0").await?;
        select(&c, "#preset-external", "wan0").await?;
        click(&c, "#preset").await?;
        flash_ok(&c).await?;
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
        ensure!(audit.contains("POST /update"), "{audit}");
        ensure!(audit.contains("POST /certs"), "{audit}");
        Ok(())
    });

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
        Ok(())
    });
}

async fn sign_in(c: &Client) -> anyhow::Result<()> {
    browser::open(c, &format!("{CONSOLE}/login")).await?;
    fill(c, "#password", PASSWORD).await?;
    click(c, "#sign-in").await?;
    browser::wait_for(c, "#matrix").await?;
    Ok(())
}
