//! Administration in real headless Chromium, against the daemon in the
//! appliance's namespace with the firewall enforced: the audit log of
//! changes in words (a bind from the console, an account deletion, the
//! automatic rollback of a trial at its deadline by `system`) and its CSV
//! and JSON Lines export; a second administrator with the operator role
//! refused on the Services page and its API; that administrator's open
//! session ending once disabled; TOTP enrolment and a sign-in with a code
//! computed here. Then backup and restore: the archive of this appliance
//! restored onto a fresh one (a second daemon, a new data directory) gives
//! the same plan; a wrong passphrase or a damaged archive changes nothing.

mod common;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use common::Daemon;
use common::browser::{self, Browser};
use common::console::*;
use fantoccini::Client;
use switchboard_pki::testpki::{self, pki};
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

/// A TOTP code of `secret` (Base32) at the step `offset` steps from now:
/// RFC 6238 computed here with hmac and sha1, not with the daemon's code.
fn totp(secret_b32: &str, offset: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut secret = Vec::new();
    let mut bits = 0u32;
    let mut acc = 0u32;
    for ch in secret_b32.trim().bytes() {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'2'..=b'7' => ch - b'2' + 26,
            _ => panic!("not Base32: {secret_b32}"),
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            secret.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = (now / 30 + offset) as u64;
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(&step.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = usize::from(d[19] & 0x0f);
    let bin = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]);
    format!("{:06}", bin % 1_000_000)
}

/// Sign in as `user` with `password` and `code`.
async fn sign_in_as(c: &Client, user: &str, password: &str, code: &str) -> anyhow::Result<()> {
    browser::open(c, &format!("{CONSOLE}/login")).await?;
    fill(c, "#username", user).await?;
    fill(c, "#password", password).await?;
    fill(c, "#code", code).await?;
    click(c, "#sign-in").await
}

/// `fetch` from the page (same origin, the session's cookie and CSRF
/// token): the status and the body's text.
async fn fetch(c: &Client, method: &str, path: &str, body: &str) -> anyhow::Result<(u64, String)> {
    let v = c
        .execute_async(
            r#"const [method, path, body, done] = arguments;
               const token = document.querySelector('meta[name=csrf-token]');
               const opts = { method, headers: {} };
               if (method !== 'GET') {
                 opts.headers['Content-Type'] = 'application/json';
                 opts.headers['X-CSRF-Token'] = token ? token.content : '';
                 opts.body = body;
               }
               fetch(path, opts).then(async r => done([r.status, await r.text()]))
                 .catch(e => done([0, String(e)]));"#,
            vec![method.into(), path.into(), body.into()],
        )
        .await?;
    Ok((
        v[0].as_u64().context("status")?,
        v[1].as_str().context("body")?.to_owned(),
    ))
}

#[test]
fn administration_in_chromium() {
    if !require_or_skip(
        "administration::administration_in_chromium",
        is_root() && browser::installed(),
        &format!("needs root and {}", browser::PACKAGES),
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let dir = testpki::tempdir();
    let files = testpki::tempdir();
    let f = |n: &str| files.path().join(n).display().to_string();
    let p = pki();
    story_files(&p, files.path());
    let voip2 = p.intermediate.leaf(&["voip.example.test"]);
    testpki::write(files.path(), "voip2.pem", chain(&p, &voip2));
    testpki::write(files.path(), "ops-password", "the operator's password");
    testpki::write(
        files.path(),
        "passphrase",
        "a backup passphrase of five words",
    );
    testpki::write(files.path(), "wrong", "not the backup passphrase at all");

    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    first_start(&d, files.path());
    production_with_real_certificates(&d, files.path());
    d.ok(&["cert", "import", "voip2", "--bundle", &f("voip2.pem")]);
    d.ok(&[
        "admin",
        "add",
        "ops",
        "--role",
        "operator",
        "--password-file",
        &f("ops-password"),
    ]);
    d.ok(&[
        "account",
        "add",
        "--phone",
        "+15550100123",
        "--username",
        "alice",
    ]);
    let b = Browser::start(&lab.lan, files.path().join("ca.pem").as_path());
    let shots = screenshots();

    // ---- the administrator: a bind in the console, the audit log in words
    let d_ref = &d;
    let shots_ref = &shots;
    let secret = b.run(|c| async move {
        sign_in(&c).await?;
        bind(&c, "sip-tls", "wan0", "voip2").await?;
        // An account deleted (on the appliance), a trial that nobody
        // confirms: rolled back at its deadline by the appliance itself.
        d_ref.ok(&["account", "delete", "alice"]);
        d_ref.ok(&["update", "-m", "voip2 on trial", "--confirm-within", "2"]);
        tokio::time::sleep(Duration::from_secs(4)).await;
        browser::open(&c, &format!("{CONSOLE}/audit")).await?;
        let log = browser::text_of(&c, "#audit").await?;
        browser::screenshot(&c, &shots_ref.join("audit.png")).await?;
        for words in [
            "bound certificate voip2 to sip-tls on wan0",
            "account alice deleted",
            "rolled back at its deadline",
            "administrator admin signed in",
        ] {
            ensure!(log.contains(words), "no {words:?} in the audit log:\n{log}");
        }
        let rows = c
            .execute(
                "return [...document.querySelectorAll('#audit tbody tr')].map(r => [...r.cells].map(c => c.textContent))",
                vec![],
            )
            .await?;
        let rows = rows.as_array().context("rows")?;
        let row_of = |words: &str| {
            rows.iter()
                .find(|r| r[4].as_str().is_some_and(|w| w.contains(words)))
                .cloned()
        };
        let bound = row_of("bound certificate voip2").context("the bind's row")?;
        ensure!(bound[1] == "admin", "{bound:?}");
        ensure!(
            bound[2].as_str().is_some_and(|a| a.contains("console from")),
            "{bound:?}"
        );
        ensure!(bound[3] == "cert.bind" && bound[5] == "done", "{bound:?}");
        let expired = row_of("rolled back at its deadline").context("the rollback's row")?;
        ensure!(expired[1] == "system", "{expired:?}");
        let deleted = row_of("account alice deleted").context("the deletion's row")?;
        ensure!(deleted[1] == "root", "{deleted:?}");
        // Filters: by actor, and by kind family.
        fill(&c, "#filter-actor", "system").await?;
        click(&c, "#filter").await?;
        let only = browser::text_of(&c, "#audit tbody").await?;
        ensure!(
            only.contains("rolled back") && !only.contains("bound certificate"),
            "{only}"
        );
        // Export: CSV and JSON Lines of the same filter, from the links.
        browser::open(&c, &format!("{CONSOLE}/audit?kind=cert")).await?;
        let csv_href = browser::wait_for(&c, "#export-csv")
            .await?
            .attr("href")
            .await?
            .context("href")?;
        let (status, csv) = fetch(&c, "GET", &csv_href, "").await?;
        ensure!(status == 200, "{status} {csv}");
        ensure!(
            csv.starts_with("id,at,actor,address,kind,action,outcome,data\r\n"),
            "{csv}"
        );
        ensure!(csv.contains("bound certificate voip2 to sip-tls on wan0"), "{csv}");
        ensure!(!csv.contains("account alice deleted"), "filtered: {csv}");
        let jsonl_href = browser::wait_for(&c, "#export-jsonl")
            .await?
            .attr("href")
            .await?
            .context("href")?;
        let (_, jsonl) = fetch(&c, "GET", &jsonl_href, "").await?;
        for line in jsonl.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            ensure!(v["kind"].as_str().is_some_and(|k| k.starts_with("cert.")), "{line}");
        }
        ensure!(jsonl.lines().count() >= 1);

        // A second factor: enrol with the QR's secret and a code computed here.
        browser::open(&c, &format!("{CONSOLE}/me/totp")).await?;
        click(&c, "#totp-begin-submit").await?;
        browser::wait_for(&c, "#totp-qr svg").await?;
        let secret = browser::text_of(&c, "#totp-secret").await?;
        fill(&c, "#totp-code", &totp(&secret, 0)).await?;
        click(&c, "#totp-confirm-submit").await?;
        let codes = browser::text_of(&c, "#recovery-codes").await?;
        ensure!(codes.matches('-').count() >= 10, "{codes}");
        browser::screenshot(&c, &shots_ref.join("totp-recovery-codes.png")).await?;
        Ok(secret)
    });

    // ---- TOTP sign-in in a fresh browser
    let secret_ref = &secret;
    b.run(|c| async move {
        browser::open(&c, &format!("{CONSOLE}/login")).await?;
        fill(&c, "#password", PASSWORD).await?;
        click(&c, "#sign-in").await?;
        let error = browser::text_of(&c, "#login-error").await?;
        ensure!(
            error.contains("Wrong user name or password"),
            "password alone: {error}"
        );
        // The next step's code (the current one confirmed the enrolment).
        sign_in_as(&c, "admin", PASSWORD, &totp(secret_ref, 1)).await?;
        browser::wait_for(&c, "#matrix").await?;
        Ok(())
    });

    // ---- the operator: accounts only; refused on Services and its API;
    // disabled, the open session ends.
    let d_ref = &d;
    b.run(|c| async move {
        sign_in_as(&c, "ops", "the operator's password", "").await?;
        ensure!(
            c.current_url().await?.path() == "/accounts",
            "an operator lands on Accounts"
        );
        browser::open(&c, &format!("{CONSOLE}/")).await?;
        let refused = browser::text_of(&c, "main").await?;
        ensure!(
            refused.contains("operator role does not allow"),
            "{refused}"
        );
        browser::screenshot(&c, &shots_ref.join("operator-refused.png")).await?;
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        let (status, body) = fetch(
            &c,
            "POST",
            "/v1/matrix/allow",
            r#"{"service":"sql","nic":"wan0"}"#,
        )
        .await?;
        ensure!(
            status == 403 && body.contains("forbidden"),
            "{status} {body}"
        );
        let (status, _) = fetch(&c, "GET", "/v1/accounts", "").await?;
        ensure!(status == 200, "accounts are the operator's: {status}");
        d_ref.ok(&["admin", "disable", "ops"]);
        browser::open(&c, &format!("{CONSOLE}/accounts")).await?;
        ensure!(
            c.current_url().await?.path() == "/login",
            "the disabled administrator's session ended"
        );
        Ok(())
    });
    let candidate: serde_json::Value = d.json(&["revisions"]);
    ensure_nothing_pending(&candidate);

    // ---- backup, then a fresh appliance restores it
    d.ok(&["update", "-m", "voip2 for good"]);
    let archive = files.path().join("backup.age");
    d.ok(&[
        "backup",
        "--out",
        &archive.display().to_string(),
        "--passphrase-file",
        &f("passphrase"),
    ]);
    let revisions = d.json(&["revisions"]);
    let last = revisions
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .max()
        .unwrap();
    let plan_a = d.json(&["revisions", "show", &last.to_string()])["plan"].clone();
    // The archive is an age file to a passphrase (scrypt recipient).
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    assert!(
        plan_a.as_object().is_some_and(|p| p.len() > 3),
        "a whole plan: {plan_a}"
    );
    let log_a = d.log_text();
    drop(d);
    assert!(
        !log_a.contains("a backup passphrase") && !log_a.contains("BEGIN PRIVATE KEY"),
        "no passphrase or key in the daemon's log"
    );

    let fresh = testpki::tempdir();
    let e = Daemon::start(
        Some(&lab.appliance),
        fresh.path(),
        &["--firewall", "enforce"],
    );
    let candidate_before = e.json(&["diff"]);
    // A wrong passphrase, a damaged and a truncated archive: refused, nothing changed.
    e.fails(
        &[
            "restore",
            &archive.display().to_string(),
            "--passphrase-file",
            &f("wrong"),
        ],
        "wrong-passphrase",
    );
    let mut bytes = std::fs::read(&archive).unwrap();
    let damaged = files.path().join("damaged.age");
    let n = bytes.len();
    bytes[n - 20] ^= 0x55;
    std::fs::write(&damaged, &bytes).unwrap();
    e.fails(
        &[
            "restore",
            &damaged.display().to_string(),
            "--passphrase-file",
            &f("passphrase"),
        ],
        "backup-damaged",
    );
    let truncated = files.path().join("truncated.age");
    std::fs::write(&truncated, &bytes[..n / 2]).unwrap();
    e.fails(
        &[
            "restore",
            &truncated.display().to_string(),
            "--passphrase-file",
            &f("passphrase"),
        ],
        "backup-damaged",
    );
    assert_eq!(e.json(&["diff"]), candidate_before, "nothing changed");
    assert!(e.json(&["account", "list"]).as_array().unwrap().is_empty());
    // In the fresh appliance's console (its first-start certificate
    // pinned): a wrong passphrase is refused with nothing changed; the
    // right one replaces the candidate and shows the diff; then Update.
    let pin = first_start(&e, files.path());
    let pinned = [format!("--ignore-certificate-errors-spki-list={pin}")];
    let archive_path = archive.display().to_string();
    let e_ref = &e;
    let before_ref = &candidate_before;
    b.run_with(&pinned, |c| async move {
        sign_in(&c).await?;
        browser::open(&c, &format!("{CONSOLE}/backup")).await?;
        browser::wait_for(&c, "#restore-file")
            .await?
            .send_keys(&archive_path)
            .await?;
        fill(&c, "#restore-passphrase", "not the backup passphrase").await?;
        click(&c, "#restore-submit").await?;
        let refused = browser::text_of(&c, "#flash").await?;
        ensure!(refused.contains("does not open this archive"), "{refused}");
        ensure!(
            &e_ref.json(&["diff"]) == before_ref,
            "a wrong passphrase changed the candidate"
        );
        browser::wait_for(&c, "#restore-file")
            .await?
            .send_keys(&archive_path)
            .await?;
        fill(
            &c,
            "#restore-passphrase",
            "a backup passphrase of five words",
        )
        .await?;
        click(&c, "#restore-submit").await?;
        let restored = browser::text_of(&c, "#restored").await?;
        ensure!(
            restored.contains("restored into the candidate"),
            "{restored}"
        );
        let diff = browser::text_of(&c, "#restore-diff").await?;
        ensure!(!diff.trim().is_empty(), "the diff to review is shown");
        browser::screenshot(&c, &shots_ref.join("restore-review.png")).await?;
        Ok(())
    });
    e.ok(&["update", "-m", "restored from the backup"]);
    let plan_b = e.json(&["revisions", "show", "1"])["plan"].clone();
    assert_eq!(plan_a, plan_b, "the restored appliance runs the same plan");
    // The administrators came along (ops disabled, admin with its second factor).
    let admins = e.json(&["admin", "list"]);
    let ops = admins
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "ops")
        .expect("ops restored");
    assert_eq!(
        (ops["role"].as_str(), ops["disabled"].as_bool()),
        (Some("operator"), Some(true))
    );
    let audit = e.ok(&["audit", "--kind", "config"]);
    assert!(audit.contains("configuration restored"), "{audit}");
}

fn ensure_nothing_pending(revisions: &serde_json::Value) {
    assert!(
        revisions
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] != "pending"),
        "{revisions}"
    );
}

/// The CLI's administration commands against a daemon (no root needed):
/// roles, the last administrator kept, the second factor's policy, the
/// audit log filtered and exported, an oversize archive refused.
#[test]
fn administrators_and_the_audit_log_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let f = |n: &str| files.path().join(n).display().to_string();
    std::fs::write(files.path().join("pw"), "a long password for ops\n").unwrap();
    std::fs::write(files.path().join("pass"), "a long backup passphrase\n").unwrap();
    let d = Daemon::start(None, dir.path(), &[]);
    d.ok(&["admin", "set-password", "--password-file", &f("pw")]);
    d.ok(&[
        "admin",
        "add",
        "ops",
        "--role",
        "operator",
        "--password-file",
        &f("pw"),
    ]);
    d.fails(
        &[
            "admin",
            "add",
            "ops",
            "--role",
            "auditor",
            "--password-file",
            &f("pw"),
        ],
        "admin-exists",
    );
    d.fails(&["admin", "disable", "admin"], "last-administrator");
    d.fails(&["admin", "role", "admin", "auditor"], "last-administrator");
    d.fails(&["admin", "remove", "admin"], "last-administrator");
    d.fails(&["admin", "disable", "nobody"], "no-such-admin");
    let out = d.cli(&["admin", "role", "ops", "root"]);
    assert!(!out.status.success());
    d.ok(&["admin", "role", "ops", "auditor"]);
    d.ok(&["admin", "totp-required", "auditor", "on"]);
    let list = d.ok(&["admin", "list"]);
    assert!(
        list.contains("ops") && list.contains("auditor") && list.contains("none (required)"),
        "{list}"
    );
    d.ok(&["admin", "remove", "ops"]);
    assert!(!d.ok(&["admin", "list"]).contains("ops"));
    d.ok(&["port", "web", "8444"]);
    // Filtered, and exported.
    let mine = d.json(&["audit", "--kind", "admin"]);
    let kinds: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.iter().all(|k| k.starts_with("admin.")), "{kinds:?}");
    assert!(
        kinds.contains(&"admin.remove") && kinds.contains(&"admin.role"),
        "{kinds:?}"
    );
    let csv = d.ok(&["audit", "--format", "csv", "--actor", "root"]);
    assert!(
        csv.starts_with("id,at,actor,address,kind,action,outcome,data\r\n"),
        "{csv}"
    );
    assert!(csv.contains("port of web set to 8444"), "{csv}");
    assert!(csv.contains("administrator ops removed"), "{csv}");
    let jsonl = d.ok(&[
        "audit",
        "--format",
        "jsonl",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(jsonl.lines().count() >= 8, "{jsonl}");
    for line in jsonl.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON document per line");
    }
    assert!(!jsonl.contains("a long password"), "no password: {jsonl}");
    d.fails(&["audit", "--format", "xml"], "malformed-query");
    d.fails(&["audit", "--since", "yesterday"], "malformed-query");
    // Nothing matches the future.
    assert_eq!(
        d.json(&["audit", "--since", "2999-01-01T00:00:00Z"]),
        serde_json::json!([])
    );
    // A passphrase too short is refused before anything is written.
    std::fs::write(files.path().join("short"), "short\n").unwrap();
    d.fails(
        &[
            "backup",
            "--out",
            &f("b.age"),
            "--passphrase-file",
            &f("short"),
        ],
        "weak-passphrase",
    );
    assert!(!files.path().join("b.age").exists());
    // An oversize file is not even sent.
    std::fs::write(files.path().join("big.age"), vec![b'x'; 2 * 1024 * 1024]).unwrap();
    let out = d.cli(&["restore", &f("big.age"), "--passphrase-file", &f("pass")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a switchboard backup"));
    // A backup of this daemon is a file only its owner reads.
    d.ok(&[
        "backup",
        "--out",
        &f("b.age"),
        "--passphrase-file",
        &f("pass"),
    ]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(files.path().join("b.age"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
