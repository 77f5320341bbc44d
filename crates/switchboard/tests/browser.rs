//! A real browser on the admin host (needs root, Chromium and chromedriver):
//! headless Chromium in the lab's `lan` namespace, trusting only the test
//! CA, opens the console on the appliance. The first start's self-signed
//! certificate and a certificate of another CA for the right name get
//! Chromium's certificate error page; the test CA's certificate, bound to
//! the console on lan0, a page that loads.

mod common;

use std::time::Instant;

use common::Daemon;
use common::browser::{self, Browser};
use common::console::{CONSOLE, screenshots, story_files};
use fantoccini::Client;
use switchboard_pki::testpki::{self, Ca, pki};
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

/// Open the console, which must give Chromium's certificate error page:
/// its error code, and the page's title and text (lowercase).
async fn refused(c: Client) -> anyhow::Result<(String, String)> {
    let error = browser::open_refused(&c, CONSOLE).await?;
    let page = format!(
        "{}\n{}",
        c.title().await?,
        browser::text_of(&c, "body").await?
    );
    Ok((error, page.to_lowercase()))
}

#[test]
fn chromium_trusts_the_console_certificate_of_the_test_ca_only() {
    if !require_or_skip(
        "browser::chromium_trusts_the_console_certificate_of_the_test_ca_only",
        is_root() && browser::installed(),
        &format!("needs root and {}", browser::PACKAGES),
    ) {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new().expect("lab");
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, "console.lan.test")])
        .expect("admin's hosts");

    let p = pki();
    let rogue = Ca::root("Not The Test CA").leaf(&["console.lan.test"]);
    let files = testpki::tempdir();
    let d0 = files.path();
    story_files(&p, d0);
    testpki::write(
        d0,
        "rogue.pem",
        format!("{}{}", rogue.pem(), rogue.key_pem()),
    );
    let f = |n: &str| d0.join(n).display().to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    let browser = Browser::start(&lab.lan, &d0.join("ca.pem"));
    eprintln!(
        "lab, daemon and chromedriver ready: {:?}",
        started.elapsed()
    );

    // Out of the box: the self-signed certificate, refused.
    let (error, page) = browser.run(refused);
    assert!(!page.contains("switchboard"), "not the console: {page}");
    eprintln!("self-signed: {error} ({:?})", started.elapsed());

    // The right name, another CA: refused as an unknown authority.
    d.ok(&["cert", "import", "rogue", "--bundle", &f("rogue.pem")]);
    d.ok(&["cert", "bind", "console", "rogue", "--nic", "lan0"]);
    d.ok(&["update", "-m", "a certificate of another CA"]);
    let (error, page) = browser.run(refused);
    assert_eq!(error, "NET::ERR_CERT_AUTHORITY_INVALID");
    assert!(!page.contains("switchboard"), "not the console: {page}");

    // The test CA's certificate: the page loads, no interstitial.
    d.ok(&["cert", "import", "console", "--bundle", &f("console.pem")]);
    d.ok(&["cert", "bind", "console", "console", "--nic", "lan0"]);
    d.ok(&["update", "-m", "the console's real certificate"]);
    let shot = screenshots().join("smoke.png");
    let to = shot.as_path();
    let (health, title, body) = browser.run(|c| async move {
        browser::open(&c, &format!("{CONSOLE}/healthz")).await?;
        let health = browser::text_of(&c, "body").await?;
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        let body = browser::text_of(&c, "body").await?;
        browser::screenshot(&c, to).await?;
        Ok((health, c.title().await?, body))
    });
    assert_eq!(health.trim(), "ok");
    let page = format!("{title}\n{body}");
    assert!(
        page.to_lowercase().contains("switchboard"),
        "the console's page: {page}"
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    eprintln!(
        "console loaded, screenshot {} ({:?})",
        shot.display(),
        started.elapsed()
    );
}
