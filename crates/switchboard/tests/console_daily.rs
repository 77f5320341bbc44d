//! The console for daily administration, in real headless Chromium from
//! the admin host's namespace (the firewall enforced): 10,000 accounts
//! imported from one CSV file, searched, paged and acted on in bulk behind
//! one confirmation; a confirmation before each destructive action; errors
//! as the console's pages; a session that ended returning to the form with
//! what was typed; then every page checked by axe-core (WCAG 2.1 A and AA
//! rules, 0 violations) at 1366 and 390 px wide, in the light and the dark
//! theme, with no page wider than the window; screenshots of each kept in
//! `target/tmp/screenshots/daily/`.

mod common;

use std::path::PathBuf;

use anyhow::{Context as _, ensure};
use common::Daemon;
use common::browser::{self, Browser};
use common::console::*;
use fantoccini::{Client, Locator};
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

/// The console's session cookie.
const SESSION: &str = "__Host-switchboard-session";

/// The accounts of the test: a CSV file of 10,000 rows, a third of them
/// in group `sales`.
const ACCOUNTS: usize = 10_000;

fn accounts_csv() -> String {
    let mut csv = String::from("phone,name,group\n");
    for i in 0..ACCOUNTS {
        let group = if i % 3 == 0 { "sales" } else { "field" };
        csv.push_str(&format!("+1555{i:07},Person {i},{group}\n"));
    }
    csv
}

/// axe-core's script (`cargo xtask test` downloads it and says where).
fn axe_script() -> Option<String> {
    let path = PathBuf::from(std::env::var_os("SWITCHBOARD_AXE")?);
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The WCAG 2.1 A and AA violations axe-core finds on the current page,
/// one line each (rule, then the elements).
async fn violations(c: &Client, axe: &str) -> anyhow::Result<Vec<String>> {
    c.execute(axe, vec![]).await.context("load axe-core")?;
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): '
                   + v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .context("run axe-core")?;
    Ok(serde_json::from_value(found)?)
}

/// The text of `css` is `want`.
async fn is(c: &Client, css: &str, want: impl AsRef<str>) -> anyhow::Result<()> {
    let text = browser::text_of(c, css).await?;
    ensure!(
        text == want.as_ref(),
        "`{css}`: {text:?}, not {:?}",
        want.as_ref()
    );
    Ok(())
}

/// How much wider than the window the page is, in CSS pixels, and the
/// elements that stick out (outside a scrolling box).
async fn overflow(c: &Client) -> anyhow::Result<(i64, Vec<String>)> {
    let v = c
        .execute(
            "const w = window.innerWidth;
             const out = [];
             for (const e of document.querySelectorAll('body *')) {
               const r = e.getBoundingClientRect();
               if (r.right > w && (!e.parentElement.closest('.table-scroll') || getComputedStyle(e).position === 'absolute'))
                 out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ends at ' + r.right.toFixed(1));
             }
             for (const e of document.querySelectorAll('body *')) {
               if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible' && e.clientWidth > 0)
                 out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className + ' holds ' + e.scrollWidth + ' in ' + e.clientWidth);
             }
             const total = document.documentElement.scrollWidth - w;
             if (total > 0) {
               for (const e of document.querySelectorAll('body *')) {
                 const was = e.style.display;
                 e.style.display = 'none';
                 const now = document.documentElement.scrollWidth - w;
                 e.style.display = was;
                 if (now <= 0) out.push('hiding ' + e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className + ' fits');
               }
             }
             return [total, out.slice(-8)];",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

#[test]
fn daily_administration_in_chromium() {
    if !require_or_skip(
        "console_daily::daily_administration_in_chromium",
        is_root() && browser::installed(),
        &format!("needs root and {}", browser::PACKAGES),
    ) {
        return;
    }
    let axe = axe_script();
    if axe.is_none() {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_SYSTEM_TESTS").is_none(),
            "SWITCHBOARD_AXE is not set: run `cargo xtask test`, or SWITCHBOARD_AXE=$(cargo xtask axe)"
        );
        eprintln!("console_daily: SKIPPED the accessibility part: SWITCHBOARD_AXE is not set");
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let dir = testpki::tempdir();
    let files = testpki::tempdir();
    let p = pki();
    story_files(&p, files.path());
    let csv = files.path().join("accounts.csv");
    std::fs::write(&csv, accounts_csv()).unwrap();
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    let pin = first_start(&d, files.path());
    // `serve` says where the console is: every NIC with an address, before
    // the first Update (factory mode).
    let log = d.log_text();
    let said = log
        .lines()
        .find(|l| l.contains("the console: "))
        .unwrap_or_else(|| panic!("serve prints the console's addresses: {log}"));
    for url in [
        "https://192.0.2.1:8443/ (lan0)",
        "https://198.51.100.1:8443/ (wan0)",
    ] {
        assert!(said.contains(url), "{url} in {said}");
    }
    assert!(!said.contains("dmz0") && !said.contains("fe80"), "{said}");
    let b = Browser::start(&lab.lan, &files.path().join("ca.pem"));
    let shots = screenshots().join("daily");
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    let files_path = files.path().to_owned();
    let first_shots = shots.clone();

    b.run_with(&pinned, |c| async move {
        let shots = first_shots;
        set_up_the_story(&c, &files_path).await?;
        click(&c, "#update").await?;
        click(&c, "#apply-update").await?;
        flash_ok(&c).await?;

        // 10,000 accounts from one CSV file.
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        browser::wait_for(&c, "#import-file")
            .await?
            .send_keys(&csv.display().to_string())
            .await?;
        click(&c, "#import").await?;
        let imported = flash_ok(&c).await?;
        ensure!(imported.contains("10000 account(s) created"), "{imported}");
        let range = browser::text_of(&c, "#range").await?;
        ensure!(range == "1–50 of 10,000 accounts", "{range}");
        is(&c, "#page-of", "Page 1 of 200").await?;
        // The form is at the top, not 27,000 px down.
        let y = c
            .execute(
                "return document.getElementById('account-form').getBoundingClientRect().top",
                vec![],
            )
            .await?;
        ensure!(y.as_f64().unwrap_or(1e9) < 1000.0, "the form at {y}");

        // Searched, filtered by state and paged, on the server.
        fill(&c, "#search-q", "sales").await?;
        select(&c, "#search-state", "no-link").await?;
        select(&c, "#search-per-page", "100").await?;
        click(&c, "#search").await?;
        is(&c, "#range", "1–100 of 3,334 accounts").await?;
        click(&c, "#page-last").await?;
        is(&c, "#range", "3,301–3,334 of 3,334 accounts").await?;
        is(&c, "#page-of", "Page 34 of 34").await?;
        fill(&c, "#search-q", "+1 555 000 0042").await?;
        select(&c, "#search-state", "").await?;
        click(&c, "#search").await?;
        is(&c, "#range", "1–1 of 1 account").await?;
        ensure!(
            browser::text_of(&c, "#accounts tbody")
                .await?
                .contains("Person 42")
        );

        // A bulk action on a page of the search: every account ticked at
        // once (the page's own checkbox), one confirmation, a result each.
        fill(&c, "#search-q", "Person 999").await?;
        click(&c, "#search").await?;
        is(&c, "#range", "1–11 of 11 accounts").await?;
        tick(&c, "#select-page").await?;
        select(&c, "#bulk-action", "set-group").await?;
        fill(&c, "#bulk-group", "night-shift").await?;
        click(&c, "#bulk-apply").await?;
        let question = browser::text_of(&c, "#question").await?;
        ensure!(
            question == "Put into group night-shift 11 accounts?",
            "{question}"
        );
        browser::screenshot(&c, &shots.join("bulk-confirm.png")).await?;
        click(&c, "#confirm-action").await?;
        is(&c, "#bulk-summary", "11 done, 0 failed.").await?;
        click(&c, "#back").await?;
        is(&c, "#range", "1–11 of 11 accounts").await?;
        fill(&c, "#search-q", "night-shift").await?;
        click(&c, "#search").await?;
        is(&c, "#range", "1–11 of 11 accounts").await?;
        // Then deleted in bulk, after the same single confirmation; Cancel
        // first changes nothing.
        tick(&c, "#select-page").await?;
        select(&c, "#bulk-action", "delete").await?;
        click(&c, "#bulk-apply").await?;
        is(&c, "#question", "Delete 11 accounts?").await?;
        click(&c, "#cancel").await?;
        is(&c, "#range", "1–11 of 11 accounts").await?;
        tick(&c, "#select-page").await?;
        select(&c, "#bulk-action", "delete").await?;
        click(&c, "#bulk-apply").await?;
        click(&c, "#confirm-action").await?;
        is(&c, "#bulk-summary", "11 done, 0 failed.").await?;
        click(&c, "#back").await?;
        is(&c, "#range", "no account").await?;

        // One account: its state moves from no link to link sent; the QR
        // page shows one link until a new one is asked for.
        fill(&c, "#search-q", "Person 7").await?;
        click(&c, "#search").await?;
        let user = browser::text_of(&c, "#accounts tbody tr td:nth-child(2)").await?;
        ensure!(browser::text_of(&c, &format!("#account-{user} .state")).await? == "no link");
        click(&c, &format!("#account-{user} a")).await?;
        click(&c, &format!("#qr-{user}")).await?;
        let link = browser::text_of(&c, "#activation-link").await?;
        c.refresh().await?;
        is(&c, "#activation-link", &link).await?; // a reload, the same link
        browser::open(&c, &format!("{CONSOLE}/accounts?q={user}")).await?;
        let state = browser::text_of(&c, &format!("#account-{user} .state")).await?;
        ensure!(state.starts_with("link sent 20"), "{state}");

        // Deleting an account asks first.
        browser::open(&c, &format!("{CONSOLE}/accounts/{user}")).await?;
        click(&c, &format!("#delete-{user}")).await?;
        is(&c, "#question", format!("Delete account {user}?")).await?;
        click(&c, "#cancel").await?;
        is(&c, "h1", format!("Account {user}")).await?;
        click(&c, &format!("#delete-{user}")).await?;
        click(&c, "#confirm-action").await?;
        ensure!(
            flash_ok(&c)
                .await?
                .contains(&format!("account {user} deleted"))
        );
        // And a certificate.
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        click(&c, "#delete-cert-bootstrap").await?;
        is(&c, "#question", "Delete certificate bootstrap?").await?;
        click(&c, "#cancel").await?;
        ensure!(
            !c.find_all(Locator::Css("#cert-bootstrap"))
                .await?
                .is_empty()
        );

        // A message lands next to its form, and what was typed stays.
        fill(&c, "#ports-console", "99999").await?;
        click(&c, "#save-ports-console").await?;
        let refused = browser::text_of(&c, "#ports + #flash").await?;
        ensure!(refused.contains("99999"), "{refused}");
        let kept = browser::wait_for(&c, "#ports-console")
            .await?
            .prop("value")
            .await?;
        ensure!(
            kept.as_deref() == Some("99999"),
            "the typed value is kept: {kept:?}"
        );
        browser::screenshot(&c, &shots.join("ports-refused.png")).await?;

        // Errors are the console's pages, with a way back.
        browser::open(&c, &format!("{CONSOLE}/no/such/page")).await?;
        ensure!(
            browser::text_of(&c, "#error")
                .await?
                .contains("no-such-page")
        );
        click(&c, "main a").await?;
        is(&c, "h1", "Services").await?;
        // A stale CSRF token (as if the form had been open since another
        // sign-in).
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        c.execute(
            "document.querySelector('#account-form input[name=csrf]').value = 'stale'",
            vec![],
        )
        .await?;
        fill(&c, "#account-phone", "+15559990001").await?;
        click(&c, "#add-account").await?;
        ensure!(browser::text_of(&c, "#error").await?.contains("csrf"));
        is(&c, "h1", "403 Forbidden").await?;

        // The session ends while a form is being filled in: the sign-in
        // says so, and brings the administrator back to the form with
        // what was typed.
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        fill(&c, "#account-phone", "+15559990002").await?;
        fill(&c, "#account-name", "Typed before the end").await?;
        // The session is gone (expired, or signed out elsewhere): the
        // browser has no cookie for it any more.
        c.delete_cookie(SESSION).await?;
        click(&c, "#add-account").await?;
        ensure!(c.current_url().await?.path() == "/login");
        let notice = browser::text_of(&c, "#login-notice").await?;
        ensure!(notice.contains("Your session ended"), "{notice}");
        fill(&c, "#password", PASSWORD).await?;
        click(&c, "#sign-in").await?;
        ensure!(c.current_url().await?.path() == "/accounts");
        let phone = browser::wait_for(&c, "#account-phone")
            .await?
            .prop("value")
            .await?;
        ensure!(phone.as_deref() == Some("+15559990002"), "{phone:?}");
        let name = browser::wait_for(&c, "#account-name")
            .await?
            .prop("value")
            .await?;
        ensure!(name.as_deref() == Some("Typed before the end"), "{name:?}");
        click(&c, "#add-account").await?;
        ensure!(flash_ok(&c).await?.contains("created for +15559990002"));
        Ok(())
    });

    // Every page, for axe-core, at both widths and in both themes.
    let Some(axe) = axe else { return };
    let user = d.json(&["account", "list", "--json"])[0]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    let pages = [
        "/",
        "/accounts",
        "/accounts?q=sales&state=no-link&sort=-phone",
        &format!("/accounts/{user}"),
        &format!("/accounts/{user}/qr"),
        "/revisions",
        "/revisions/1",
        "/compare?from=1&to=1",
        "/update",
        "/audit",
        "/calls",
        "/bans",
        "/password",
        "/certs/bootstrap",
        "/audit?actor=admin&kind=account",
        "/admins",
        "/me/totp",
        "/backup",
        "/fleet",
        "/no/such/page",
    ]
    .map(str::to_owned);
    for (theme, extra) in [("light", None), ("dark", Some("--force-dark-mode"))] {
        let mut args = pinned.to_vec();
        args.extend(extra.map(str::to_owned));
        let (axe, pages, shots, user) = (axe.clone(), pages.clone(), shots.clone(), user.clone());
        b.run_with(&args, |c| async move {
            let dark = c
                .execute(
                    "return matchMedia('(prefers-color-scheme: dark)').matches",
                    vec![],
                )
                .await?;
            ensure!(
                dark == serde_json::json!(theme == "dark"),
                "{theme}: {dark}"
            );
            let mut problems = Vec::new();
            for (width, height) in [(1366u32, 900u32), (390, 844)] {
                c.set_window_size(width, height).await?;
                browser::open(&c, &format!("{CONSOLE}/login")).await?;
                let mut check =
                    |page: String, found: Vec<String>, (wide, what): (i64, Vec<String>)| {
                        for v in found {
                            problems.push(format!("{theme} {width}px {page}: {v}"));
                        }
                        if wide > 0 {
                            problems.push(format!(
                                "{theme} {width}px {page}: {wide} px wider than the window: {}",
                                what.join(", ")
                            ));
                        }
                    };
                check(
                    "/login".into(),
                    violations(&c, &axe).await?,
                    overflow(&c).await?,
                );
                sign_in(&c).await?;
                for page in &pages {
                    browser::open(&c, &format!("{CONSOLE}{page}")).await?;
                    let name = page
                        .trim_start_matches('/')
                        .replace(['/', '?', '&', '='], "_");
                    let name = if name.is_empty() {
                        "services".to_owned()
                    } else {
                        name
                    };
                    browser::screenshot(&c, &shots.join(format!("{theme}-{width}-{name}.png")))
                        .await?;
                    check(
                        page.clone(),
                        violations(&c, &axe).await?,
                        overflow(&c).await?,
                    );
                }
                // A confirmation page (reached by its button).
                browser::open(&c, &format!("{CONSOLE}/accounts/{user}")).await?;
                click(&c, &format!("#delete-{user}")).await?;
                check(
                    "confirm".into(),
                    violations(&c, &axe).await?,
                    overflow(&c).await?,
                );
                browser::screenshot(&c, &shots.join(format!("{theme}-{width}-confirm.png")))
                    .await?;
                click(&c, "#sign-out").await?;
            }
            ensure!(
                problems.is_empty(),
                "{} problem(s):\n{}",
                problems.len(),
                problems.join("\n")
            );
            Ok(())
        });
    }
}
