//! The administrator's side of the story in the console, in Chromium:
//! small steps (click and wait for the next page, fill, select, upload)
//! and the set-up of the story's appliance through the console, shared by
//! the console test and the end-to-end story test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use fantoccini::Client;
use switchboard_pki::testpki::{self, Leaf, Pki};
use switchboard_system::testlab::Lab;

use super::Daemon;
use super::browser;

/// The console administrator's password in the tests.
pub const PASSWORD: &str = "a long console password 42";
/// The console, as the admin host names it.
pub const CONSOLE: &str = "https://console.lan.test:8443";

/// Where the browser tests save their screenshots.
pub fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, base64: what
/// Chromium's `--ignore-certificate-errors-spki-list` pins.
pub fn spki_pin(cert_pem: &str, dir: &Path) -> String {
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
pub async fn tick(c: &Client, css: &str) -> anyhow::Result<()> {
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
pub async fn click(c: &Client, css: &str) -> anyhow::Result<()> {
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

pub async fn fill(c: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let e = browser::wait_for(c, css).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

pub async fn select(c: &Client, css: &str, value: &str) -> anyhow::Result<()> {
    browser::wait_for(c, css)
        .await?
        .select_by_value(value)
        .await
        .with_context(|| format!("select {value} in `{css}`"))?;
    Ok(())
}

/// The flash message after an action; fails if it is an error.
pub async fn flash_ok(c: &Client) -> anyhow::Result<String> {
    let flash = browser::wait_for(c, "#flash").await?;
    let class = flash.attr("class").await?.unwrap_or_default();
    let text = flash.text().await?;
    ensure!(
        class.contains("ok"),
        "the console reported an error: {text}"
    );
    Ok(text)
}

pub async fn upload(c: &Client, name: &str, file: &Path) -> anyhow::Result<String> {
    fill(c, "#upload-name", name).await?;
    browser::wait_for(c, "#upload-bundle")
        .await?
        .send_keys(&file.display().to_string())
        .await?;
    click(c, "#upload").await?;
    flash_ok(c).await
}

pub async fn bind(c: &Client, service: &str, nic: &str, cert: &str) -> anyhow::Result<String> {
    select(c, "#bind-service", service).await?;
    select(c, "#bind-nic", nic).await?;
    select(c, "#bind-cert", cert).await?;
    click(c, "#bind").await?;
    flash_ok(c).await
}

pub async fn set_hostname(c: &Client, nic: &str, host: &str) -> anyhow::Result<String> {
    let input = format!("#hostname-{nic}");
    fill(c, &input, host).await?;
    click(c, &format!("#save-{nic}")).await?;
    flash_ok(c).await
}

pub async fn sign_in(c: &Client) -> anyhow::Result<()> {
    browser::open(c, &format!("{CONSOLE}/login")).await?;
    fill(c, "#password", PASSWORD).await?;
    click(c, "#sign-in").await?;
    browser::wait_for(c, "#matrix").await?;
    Ok(())
}

/// The story's hosts files: the admin host knows the console, the phone
/// the SIP/TLS and web services name, the appliance both (padlock check).
pub fn story_hosts(lab: &Lab) {
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, "console.lan.test")])
        .expect("admin host's hosts file");
    lab.wan
        .set_hosts(&[(Lab::WAN_APPLIANCE, "voip.example.test")])
        .expect("phone's hosts file");
    lab.appliance
        .set_hosts(&[
            (Lab::LAN_APPLIANCE, "console.lan.test"),
            (Lab::WAN_APPLIANCE, "voip.example.test"),
        ])
        .expect("appliance's hosts file");
}

/// A certificate file as an administrator has it: the leaf, its key and
/// the intermediate.
pub fn chain(p: &Pki, leaf: &Leaf) -> String {
    format!("{}{}{}", leaf.pem(), leaf.key_pem(), p.intermediate.pem())
}

/// The story's files in `dir`: `ca.pem` (the test CA), `console.pem` (for
/// console.lan.test), `voip.pem` (for voip.example.test), `password`.
pub fn story_files(p: &Pki, dir: &Path) {
    testpki::write(dir, "ca.pem", p.root.pem());
    testpki::write(
        dir,
        "console.pem",
        chain(p, &p.intermediate.leaf(&["console.lan.test"])),
    );
    testpki::write(dir, "voip.pem", chain(p, &p.leaf));
    testpki::write(dir, "password", PASSWORD);
}

/// Give the console its administrator password (from `files/password`)
/// and return the pin of the first-start certificate, for the first
/// browser (the administrator compared its fingerprint).
pub fn first_start(d: &Daemon, files: &Path) -> String {
    assert!(
        d.log_text()
            .contains("first start: the console's administrator is"),
        "the first-run password is in the daemon's log"
    );
    d.ok(&[
        "admin",
        "set-password",
        "--password-file",
        &files.join("password").display().to_string(),
    ]);
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
    spki_pin(shown["chain_pem"].as_str().unwrap(), files)
}

/// Step 1 of the story, up to the Update: sign in, import the two
/// certificates and trust the CA, bind `console` on lan0 and `sip-tls` and
/// `web` on wan0, name the NICs, set the provisioning host names (a name
/// the certificate does not cover is refused first), apply the suggested
/// production layout.
pub async fn set_up_the_story(c: &Client, files: &Path) -> anyhow::Result<()> {
    let f = |n: &str| files.join(n);
    sign_in(c).await?;
    let msg = upload(c, "console", &f("console.pem")).await?;
    ensure!(msg.contains("certificate console imported"), "{msg}");
    upload(c, "voip", &f("voip.pem")).await?;
    browser::wait_for(c, "#ca-file")
        .await?
        .send_keys(&f("ca.pem").display().to_string())
        .await?;
    click(c, "#add-ca").await?;
    flash_ok(c).await?;
    bind(c, "console", "lan0", "console").await?;
    bind(c, "sip-tls", "wan0", "voip").await?;
    bind(c, "web", "wan0", "voip").await?;
    set_hostname(c, "lan0", "console.lan.test").await?;
    set_hostname(c, "wan0", "voip.example.test").await?;
    fill(c, "#sip-tls-hostname", "other.example.test").await?;
    click(c, "#save-provisioning").await?;
    let refused = browser::text_of(c, "#flash").await?;
    ensure!(refused.contains("other.example.test"), "{refused}");
    fill(c, "#sip-tls-hostname", "voip.example.test").await?;
    fill(c, "#web-uri", "https://voip.example.test").await?;
    click(c, "#save-provisioning").await?;
    flash_ok(c).await?;
    // One click: the NIC the admin came in through is proposed as the
    // internal one, the other configured NIC as the external one.
    for (css, want) in [("#preset-internal", "lan0"), ("#preset-external", "wan0")] {
        let value = browser::wait_for(c, css).await?.prop("value").await?;
        ensure!(value.as_deref() == Some(want), "{css}: {value:?}");
    }
    click(c, "#preset").await?;
    flash_ok(c).await?;
    Ok(())
}

/// The story's certificates from `files` ([`story_files`]) bound as in
/// production (the console's on every NIC, the phones' name on wan0), the
/// NICs named, the production layout: applied.
pub fn production_with_real_certificates(d: &Daemon, files: &Path) {
    let f = |n: &str| files.join(n).display().to_string();
    d.ok(&["cert", "import", "console", "--bundle", &f("console.pem")]);
    d.ok(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "console", "console"]);
    d.ok(&["cert", "bind", "web", "voip", "--nic", "wan0"]);
    d.ok(&["cert", "bind", "sip-tls", "voip", "--nic", "wan0"]);
    d.ok(&["nic", "set", "lan0", "--hostname", "console.lan.test"]);
    d.ok(&["nic", "set", "wan0", "--hostname", "voip.example.test"]);
    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);
    d.ok(&["update", "-m", "production, with real certificates"]);
}
