//! The daemon driven only through the CLI: edit, diff, Update, revisions,
//! rollback; `kill -9` and restart; bad input; a second daemon; the
//! console's port moved by an Update under a stream of requests.

mod common;

use common::{BIN, Daemon, serve_command};
use serde_json::{Value, json};
use switchboard_system::testlab::{Lab, require_root_or_skip};
use switchboard_web::client::Client;

fn nics_of(matrix: &Value, side: &str, service: &str) -> Vec<String> {
    matrix[side][service]
        .as_array()
        .unwrap_or_else(|| panic!("{side}.{service} in {matrix}"))
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn the_spine_through_the_cli_and_state_survives_kill_9() {
    if !require_root_or_skip("daemon::the_spine_through_the_cli_and_state_survives_kill_9") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);

    // A new appliance: the NICs of its namespace, nothing applied.
    let nics = d.json(&["nics"]);
    let names: Vec<&str> = nics
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| ["lan0", "wan0", "dmz0"].contains(n))
            .count(),
        3,
        "{nics}"
    );
    let dmz = nics
        .as_array()
        .expect("list")
        .iter()
        .find(|n| n["name"] == "dmz0")
        .expect("dmz0");
    assert_eq!(dmz["configured"], false);
    let status = d.json(&["status"]);
    assert_eq!(status["applied_revision"], Value::Null);
    assert!(
        status["diagnostics"]
            .as_array()
            .expect("diags")
            .iter()
            .any(|x| x["code"] == "nic-without-address" && x["nic"] == "dmz0")
    );

    // An address added while the daemon runs is noticed (netlink), no restart.
    lab.appliance
        .ip(["addr", "add", "192.0.2.200/32", "dev", "dmz0"])
        .expect("add address");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let nics = d.json(&["nics"]);
        let dmz = nics
            .as_array()
            .expect("list")
            .iter()
            .find(|n| n["name"] == "dmz0")
            .cloned()
            .expect("dmz0");
        if dmz["configured"] == true {
            assert_eq!(dmz["addresses"], json!(["192.0.2.200/32"]));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new address was not noticed: {dmz}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lab.appliance
        .ip(["addr", "del", "192.0.2.200/32", "dev", "dmz0"])
        .expect("remove address");

    // Edit, diff, Update.
    d.ok(&["matrix", "deny", "ssh", "wan0"]);
    let diff = d.json(&["diff"]);
    assert_eq!(
        diff["matrix"],
        json!([{ "service": "ssh", "nic": "wan0", "change": "removed" }])
    );
    let upd = d.json(&["update", "-m", "no ssh from outside"]);
    assert_eq!(
        (upd["revision"].as_u64(), upd["outcome"].as_str()),
        (Some(1), Some("applied"))
    );
    assert!(!d.json(&["diff"])["changed"].as_bool().expect("bool"));

    // The production layout, as revision 2.
    let text = d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);
    assert!(text.contains("candidate changed"), "{text}");
    d.ok(&["update"]);
    let m = d.json(&["matrix"]);
    assert_eq!(nics_of(&m, "applied", "console"), ["lan0"]);
    assert_eq!(nics_of(&m, "applied", "sip-tls"), ["wan0"]);
    assert_eq!(nics_of(&m, "applied", "sip-udp"), ["lan0"]);
    assert_eq!(nics_of(&m, "candidate", "sql"), ["lan0"]);
    let fw = d.ok(&["firewall", "show"]);
    assert!(fw.contains("# ruleset of revision 2"), "{fw}");
    use switchboard_domain::ServiceId;
    use switchboard_plan::nft::allowed_nics;
    assert_eq!(allowed_nics(&fw, ServiceId::SipTls), ["wan0"], "{fw}");
    assert_eq!(allowed_nics(&fw, ServiceId::Ssh), ["lan0"], "{fw}");

    // Rollback to 1 is revision 3, and the candidate follows.
    d.ok(&["rollback", "1"]);
    let m = d.json(&["matrix"]);
    assert_eq!(m["applied_revision"], 3);
    assert_eq!(nics_of(&m, "applied", "console"), ["dmz0", "lan0", "wan0"]);
    assert_eq!(m["candidate"], m["applied"]);
    let diff13 = d.json(&["diff", "--from", "1", "--to", "3"]);
    assert_eq!(diff13["changed"], false, "{diff13}");

    // An acknowledged edit, then kill -9 without an Update.
    d.ok(&["port", "ssh", "2222"]);
    let before = d.json(&["revisions"]);
    d.kill9();
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    assert_eq!(d.json(&["revisions"]), before, "revisions intact");
    let revs = before.as_array().expect("list");
    assert_eq!(revs.len(), 3);
    assert_eq!(revs[2]["comment"], "no ssh from outside");
    assert_eq!(revs[2]["actor"], "root");
    assert!(
        revs[2]["origin"]
            .as_str()
            .expect("origin")
            .starts_with("unix socket")
    );
    assert_eq!(revs[0]["kind"], "rollback");
    assert_eq!(revs[0]["rollback_of"], 1);
    let diff = d.json(&["diff"]);
    assert_eq!(
        diff["ports"],
        json!([{ "service": "ssh", "from": "22", "to": "2222" }]),
        "the candidate survived"
    );
    let rev2 = d.json(&["revisions", "show", "2"]);
    let ruleset = rev2["plan"]["ruleset"].as_str().expect("ruleset");
    assert!(
        switchboard_plan::nft::allowed_nics(ruleset, switchboard_domain::ServiceId::Ssh)
            .contains(&"lan0".to_owned()),
        "{ruleset}"
    );
    assert_eq!(rev2["candidate"]["matrix"]["mode"], "explicit");
}

/// The API below the CLI: `raw(method, path, content type, body)` gives
/// the status, the error code (empty if none) and the body, which must be
/// JSON whatever the answer.
fn raw_api(d: &Daemon) -> impl Fn(&str, &str, Option<&str>, Vec<u8>) -> (u16, String, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let client = Client::new(&d.socket);
    move |method, path, ct, body| {
        let (status, bytes) = rt
            .block_on(client.raw(method.parse().expect("method"), path, ct, body))
            .expect("request");
        let doc: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("a JSON body: {}", String::from_utf8_lossy(&bytes)));
        (
            status.as_u16(),
            doc["error"]["code"].as_str().unwrap_or("").to_owned(),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(None, dir.path(), &[]);
    let before = (
        d.json(&["matrix"]),
        d.json(&["services"]),
        d.json(&["revisions"]),
    );

    d.fails(&["matrix", "allow", "telnet", "lo"], "unknown-service");
    let e = d.fails(&["matrix", "allow", "ssh", "e\";flush"], "invalid-nic-name");
    assert!(e.contains("only letters, digits"), "{e}");
    d.fails(&["matrix", "deny", "ssh", "nosuchnic0"], "unknown-nic");
    d.fails(
        &["matrix", "deny", "ssh", &"x".repeat(5000)],
        "invalid-nic-name",
    );
    d.fails(&["port", "ssh", "0"], "invalid-ports");
    d.fails(&["port", "rtp", "20000-10000"], "invalid-ports");
    d.fails(&["rollback", "99"], "no-such-revision");
    d.fails(&["revisions", "show", "42"], "no-such-revision");
    d.fails(&["diff", "--from", "7"], "no-such-revision");
    d.fails(
        &[
            "preset",
            "production",
            "--internal",
            "lo",
            "--external",
            "lo",
        ],
        "unknown-nic",
    );
    let long = "c".repeat(600);
    d.fails(&["update", "-m", &long], "invalid-comment");
    let out = d.cli(&["--json", "port", "ssh", "abc"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json error document");
    assert_eq!(doc["error"]["code"], "invalid-ports");

    // The raw API: malformed, oversize, wrong type, unknown endpoint.
    let raw = raw_api(&d);
    let json_ct = Some("application/json");
    assert_eq!(
        raw(
            "POST",
            "/v1/matrix/allow",
            json_ct,
            b"{\"service\": \"ssh\",".to_vec()
        )
        .1,
        "malformed-json"
    );
    assert_eq!(
        raw("POST", "/v1/matrix/allow", json_ct, b"[1,2,3]".to_vec()).1,
        "malformed-json"
    );
    let (status, code, _) = raw(
        "POST",
        "/v1/matrix/allow",
        json_ct,
        br#"{"service":"ssh","nic":"lo","x":1}"#.to_vec(),
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "malformed-json"),
        "unknown fields are refused"
    );
    let mut huge = br#"{"service":"ssh","nic":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024)); // over 64 KiB, under the socket buffer
    huge.extend(br#""}"#);
    let (status, code, _) = raw("POST", "/v1/matrix/allow", json_ct, huge);
    assert_eq!((status, code.as_str()), (413, "too-large"));
    let (status, code, _) = raw("POST", "/v1/update", None, b"{}".to_vec());
    assert_eq!((status, code.as_str()), (415, "not-json"));
    let (status, code, _) = raw(
        "POST",
        "/v1/certs",
        json_ct,
        br#"{"name":"x","bundle":"!!not base64!!"}"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (400, "malformed-base64"));
    let (status, code, _) = raw(
        "POST",
        "/v1/certs",
        json_ct,
        br#"{"name":"x","bundle":"aGVsbG8="}"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (422, "unrecognized-format"));
    let (status, code, _) = raw("GET", "/v1/certs/..%2Fetc", None, vec![]);
    assert_eq!((status, code.as_str()), (400, "invalid-cert-name"));
    let (status, code, _) = raw("GET", "/v1/nope", None, vec![]);
    assert_eq!((status, code.as_str()), (404, "no-such-endpoint"));
    let (status, code, _) = raw("GET", "/v1/revisions/abc", None, vec![]);
    assert_eq!((status, code.as_str()), (400, "malformed-path"));
    let (status, code, _) = raw("GET", "/v1/diff?from=-1", None, vec![]);
    assert_eq!((status, code.as_str()), (400, "malformed-query"));
    let (status, _, _) = raw("GET", "/v1/update", None, vec![]);
    assert_eq!(status, 405, "no state change over GET");

    let after = (
        d.json(&["matrix"]),
        d.json(&["services"]),
        d.json(&["revisions"]),
    );
    assert_eq!(before, after, "nothing changed");
}

#[test]
fn a_second_daemon_is_refused_and_corrupts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(None, dir.path(), &[]);
    d.ok(&["port", "web", "8444"]);
    let before = d.json(&["services"]);

    // Same data directory, another socket: refused by the lock.
    let out = serve_command(None, &d.data_dir, &dir.path().join("other.sock"), &[])
        .output()
        .expect("second daemon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("another switchboard daemon") && err.contains("holds the data directory"),
        "{err}"
    );
    assert!(!dir.path().join("other.sock").exists());

    // Another data directory, the same socket: refused, first one unharmed.
    let out = serve_command(None, &dir.path().join("data2"), &d.socket, &[])
        .output()
        .expect("third daemon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is answering on"), "{err}");
    assert_eq!(d.json(&["services"]), before);

    // SIGTERM: clean exit, socket removed; a restart finds the edit.
    let status = d.sigterm();
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "the socket is removed on exit");
    assert!(d.log_text().contains("SIGTERM: shutting down"));
    let d2 = Daemon::start(None, dir.path(), &[]);
    assert_eq!(d2.json(&["services"]), before);
}

#[test]
fn the_cli_says_when_no_daemon_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("status")
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the switchboard daemon") && err.contains("switchboard serve"),
        "{err}"
    );
}

/// Run the CLI with `input` on its standard input.
fn cli_with_stdin(d: &Daemon, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = d
        .cli_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the CLI")
}

const FIRST_START: &str = "first start: the console's administrator is";

/// An engine on a stopped daemon's data directory, to check passwords.
fn verify_offline(data_dir: &std::path::Path, username: &str, password: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let engine = switchboard_engine::Engine::new(
        switchboard_engine::EngineConfig {
            data_dir: data_dir.to_owned(),
            firewall: switchboard_engine::FirewallMode::Plan,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: false,
            media: false,
        },
        switchboard_store::Store::open_dir(data_dir).expect("store"),
    )
    .expect("engine");
    rt.block_on(engine.verify_password(username, password))
        .expect("verify")
}

#[test]
fn the_first_password_is_logged_once_and_the_administrator_changes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(None, dir.path(), &[]);
    let log = d.log_text();
    assert_eq!(log.matches(FIRST_START).count(), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains(FIRST_START))
        .expect("first start line");
    let first = line
        .split("password ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the password in the line")
        .to_owned();
    assert_eq!(first.chars().count(), 29, "{first}");
    assert!(
        first
            .chars()
            .all(|c| c == '-' || c.is_ascii_lowercase() || c.is_ascii_digit()),
        "only the password was taken from the line: {first}"
    );

    // From standard input (the first line, without its line break).
    let new = "stdin pass phrase 7ZqK";
    let out = cli_with_stdin(&d, &["admin", "set-password"], &format!("{new}\nignored\n"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "password of admin changed\n"
    );
    let audit = d.json(&["audit"]);
    assert_eq!(
        audit[0]["action"], "password of administrator admin changed",
        "{audit}"
    );
    assert_eq!(audit[0]["kind"], "admin.password");
    assert_eq!(audit[0]["actor"], "root");
    assert_eq!(audit[0]["outcome"], "done");

    // Too short: a clear error, nothing changed, and audited as such.
    let out = cli_with_stdin(&d, &["admin", "set-password"], "short-9\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[password-too-short]"), "{err}");
    assert!(err.contains("= hint: choose 12 to 128 characters"), "{err}");
    assert!(
        !err.contains("short-9"),
        "the password is not repeated: {err}"
    );
    d.fails(&["admin", "set-password"], "password-too-short"); // empty stdin
    d.fails(
        &["admin", "set-password", "--username", "Root!"],
        "invalid-admin-name",
    );
    let audit = d.json(&["audit"]);
    assert_eq!(
        audit[0]["outcome"], "refused: 400 invalid-admin-name",
        "{audit}"
    );
    assert_eq!(
        audit[1]["outcome"], "refused: 400 password-too-short",
        "{audit}"
    );

    // From a file, for another administrator (created).
    let file = dir.path().join("pw");
    std::fs::write(&file, "file pass phrase 3xYw\n").expect("write");
    let text = d.ok(&[
        "admin",
        "set-password",
        "--username",
        "ops",
        "--password-file",
        &file.display().to_string(),
    ]);
    assert_eq!(text, "password of ops changed\n");

    // No password in the audit log, nor in the log (but the first one, once).
    let audit_text = d.ok(&["--json", "audit"]);
    for secret in [new, "short-9", "file pass phrase 3xYw", first.as_str()] {
        assert!(!audit_text.contains(secret), "{secret} in {audit_text}");
        assert!(
            !d.log_text().contains(secret) || secret == first,
            "{secret} in the log"
        );
    }

    // A restart does not create or show a password again.
    assert!(d.sigterm().success());
    assert!(verify_offline(&d.data_dir, "admin", new), "stdin password");
    assert!(!verify_offline(&d.data_dir, "admin", &first), "replaced");
    assert!(!verify_offline(&d.data_dir, "admin", "short-9"), "refused");
    assert!(verify_offline(&d.data_dir, "ops", "file pass phrase 3xYw"));
    let d2 = Daemon::start(None, dir.path(), &[]);
    let log = d2.log_text();
    assert_eq!(log.matches(FIRST_START).count(), 1, "shown once: {log}");
    assert_eq!(log.matches(first.as_str()).count(), 1);
}

#[test]
fn changes_and_failures_are_audited_without_bodies_or_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(None, dir.path(), &[]);
    d.ok(&["port", "web", "8444"]);
    d.fails(&["matrix", "deny", "ssh", "nosuchnic0"], "unknown-nic");
    d.json(&["matrix"]);
    d.ok(&["status"]);
    let audit = d.json(&["audit"]);
    let entries = audit.as_array().expect("list");
    assert!(
        entries
            .iter()
            .all(|e| !e["action"].as_str().expect("action").starts_with("GET")),
        "reads are not audited: {audit}"
    );
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(
        (&entries[0]["action"], &entries[0]["outcome"]),
        (
            &json!("POST /v1/matrix/deny"),
            &json!("refused: 422 unknown-nic")
        )
    );
    // The change in words and data, written by the engine.
    assert_eq!(
        (
            &entries[1]["kind"],
            &entries[1]["action"],
            &entries[1]["outcome"]
        ),
        (
            &json!("port.set"),
            &json!("port of web set to 8444"),
            &json!("done")
        )
    );
    assert_eq!(entries[1]["data"]["ports"], "8444");
    assert_eq!(entries[1]["actor"], "root");
    assert!(
        entries[1]["address"]
            .as_str()
            .expect("address")
            .starts_with("unix socket"),
        "{audit}"
    );
    assert!(entries[0]["id"].as_u64() > entries[1]["id"].as_u64());
    let text = d.ok(&["audit"]);
    assert!(
        text.starts_with("TIME")
            && text.contains("POST /v1/matrix/deny")
            && text.contains("refused: 422 unknown-nic")
            && text.contains("port of web set to 8444"),
        "{text}"
    );

    // The raw API: bad input on the new routes.
    let raw = raw_api(&d);
    let json_ct = Some("application/json");
    let pw = "|".repeat(129);
    let (status, code, text) = raw(
        "POST",
        "/v1/admin/password",
        json_ct,
        json!({"username": "admin", "password": pw})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "password-too-long"),
        "{text}"
    );
    assert!(
        text.contains("129 characters") && !text.contains(&pw),
        "{text}"
    );
    let (status, code, text) = raw(
        "POST",
        "/v1/admin/password",
        json_ct,
        br#"{"password": "Secret-value-123456", "x": 1}"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (400, "malformed-json"), "{text}");
    assert!(!text.contains("Secret-value"), "{text}");
    let (status, code, text) = raw(
        "POST",
        "/v1/admin/password",
        json_ct,
        br#"{"password": 123456789012345}"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (400, "malformed-json"), "{text}");
    assert!(!text.contains("123456789012345"), "not echoed: {text}");
    let (status, code, _) = raw(
        "POST",
        "/v1/admin/password",
        json_ct,
        br#"{"password": "Secret-value-"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (400, "malformed-json"));
    let (status, code, _) = raw("POST", "/v1/admin/password", None, b"{}".to_vec());
    assert_eq!((status, code.as_str()), (415, "not-json"));
    let (status, code, text) = raw(
        "POST",
        "/v1/admin/password",
        json_ct,
        br#"{"password": "query and body are not audited"}"#.to_vec(),
    );
    assert_eq!((status, code.as_str()), (200, ""), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"username": "admin", "changed": true})
    );
    for bad in ["abc", "-1", "0", "1001", "1.5"] {
        let (status, code, text) = raw("GET", &format!("/v1/audit?limit={bad}"), None, vec![]);
        assert_eq!(
            (status, code.as_str()),
            (400, "malformed-query"),
            "{bad}: {text}"
        );
    }
    let (status, code, _) = raw("GET", "/v1/audit?since=1", None, vec![]);
    assert_eq!((status, code.as_str()), (400, "malformed-query"));
    let (status, _, _) = raw(
        "POST",
        "/v1/discard?token=do-not-log-me",
        json_ct,
        b"{}".to_vec(),
    );
    assert_eq!(status, 200);
    let (status, code, _) = raw("DELETE", "/v1/audit", None, vec![]);
    assert_eq!((status, code.as_str()), (405, "method-not-allowed"));

    let last = d.json(&["audit", "--limit", "6"]);
    let actions: Vec<(&str, &str)> = last
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action"),
                e["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("DELETE /v1/audit", "refused: 405 method-not-allowed"),
            ("edits of the candidate discarded", "done"),
            ("password of administrator admin changed", "done"),
            ("POST /v1/admin/password", "refused: 415 not-json"),
            ("POST /v1/admin/password", "refused: 400 malformed-json"),
            ("POST /v1/admin/password", "refused: 400 malformed-json"),
        ]
    );
    let all = d.ok(&["--json", "audit", "--limit", "1000"]);
    for secret in [
        "Secret-value",
        "123456789012345",
        "query and body",
        "do-not-log-me",
        &pw,
    ] {
        assert!(!all.contains(secret), "{secret} in {all}");
        assert!(!d.log_text().contains(secret), "{secret} in the log");
    }
    d.fails(&["audit", "--limit", "0"], "malformed-query");
}

#[test]
fn malformed_arguments_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("api.sock");

    // `--app-store` without `=` is refused by the CLI, not sent as "clear".
    let out = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(&socket)
        .args(["provisioning", "set", "--app-store", "android"])
        .output()
        .expect("cli");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not PLATFORM=URL"), "{err}");

    // An SMS gateway without what it needs: the daemon does not start.
    for (args, missing) in [
        (&["--sms-gateway", "kannel"][..], "needs --sms-url"),
        (
            &[
                "--sms-gateway",
                "kannel",
                "--sms-url",
                "http://127.0.0.1:1/",
            ],
            "needs --sms-user",
        ),
        (&["--sms-gateway", "webhook"], "needs --sms-url"),
    ] {
        let out = serve_command(None, &dir.path().join("data"), &socket, args)
            .output()
            .expect("serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(missing), "{args:?}: {err}");
        assert!(!socket.exists(), "{args:?} listened");
    }
}

/// What one HTTPS request to the console got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// `200 OK`.
    Ok,
    /// The connection was refused: nothing listens on the port.
    Refused,
    /// Anything else: a failure.
    Failed(String),
}

/// A TLS client for the console that trusts the test CA (`ca.pem`).
fn console_client(ca_pem: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in switchboard_pki::read_certificates(ca_pem).expect("the CA") {
        roots.add(c).expect("a root");
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A verified TLS connection from the admin host to the console on
/// `port`, or the connection's error.
fn console_connection(
    lab: &Lab,
    client: &std::sync::Arc<rustls::ClientConfig>,
    port: u16,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    use std::time::Duration;
    let addr = std::net::SocketAddr::new(Lab::LAN_APPLIANCE.parse().expect("an address"), port);
    let sock = lab
        .lan
        .enter(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)))?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    sock.set_write_timeout(Some(Duration::from_secs(20)))?;
    let name = rustls::pki_types::ServerName::try_from("console.lan.test").expect("a name");
    let conn =
        rustls::ClientConnection::new(client.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The status line of the response on `tls`.
fn status_line(tls: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        tls.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).trim_end().to_owned())
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: console.lan.test\r\n";
const END_OF_HEAD: &[u8] = b"Connection: close\r\n\r\n";

/// One `GET /healthz` over a new connection.
fn healthz(lab: &Lab, client: &std::sync::Arc<rustls::ClientConfig>, port: u16) -> Answer {
    use std::io::Write;
    let mut tls = match console_connection(lab, client, port) {
        Ok(tls) => tls,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Answer::Refused,
        Err(e) => return Answer::Failed(format!("connecting: {e}")),
    };
    let sent = tls
        .write_all(HEALTHZ)
        .and_then(|()| tls.write_all(END_OF_HEAD));
    match sent.and_then(|()| status_line(&mut tls)) {
        Ok(line) if line == "HTTP/1.1 200 OK" => Answer::Ok,
        Ok(line) => Answer::Failed(line),
        Err(e) => Answer::Failed(format!("request: {e}")),
    }
}

#[test]
fn the_console_port_moves_at_update_without_a_restart_and_no_request_fails() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    if !require_root_or_skip(
        "daemon::the_console_port_moves_at_update_without_a_restart_and_no_request_fails",
    ) {
        return;
    }
    const OLD: u16 = 8443;
    const NEW: u16 = 9443;
    let lab = Lab::new().expect("lab");
    let p = switchboard_pki::testpki::pki();
    let files = switchboard_pki::testpki::tempdir();
    common::console::story_files(&p, files.path());
    let f = |n: &str| files.path().join(n).display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    let pid = d.child.id();
    d.ok(&["cert", "import", "console", "--bundle", &f("console.pem")]);
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "console", "console"]);
    d.ok(&["update", "-m", "the console's certificate"]);
    let client = console_client(p.root.pem().as_bytes());
    assert_eq!(healthz(&lab, &client, OLD), Answer::Ok);
    assert_eq!(healthz(&lab, &client, NEW), Answer::Refused);

    // The admin host asks the old port, then the new one, again and again.
    let stop = AtomicBool::new(false);
    let asked = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let (answers, moved) = std::thread::scope(|scope| {
        let asking = scope.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = (healthz(&lab, &client, OLD), healthz(&lab, &client, NEW));
                if answer.0 == Answer::Refused {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                answers.push(answer);
                asked.fetch_add(1, Ordering::Relaxed);
            }
            answers
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while asked.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }

        // A request in flight on the old port: connected, half sent.
        let mut in_flight = console_connection(&lab, &client, OLD).expect("connects");
        in_flight.write_all(HEALTHZ).expect("half a request");
        d.ok(&["port", "console", &NEW.to_string()]);
        let moved = d.json(&["update", "-m", "the console moves"]);
        in_flight
            .write_all(END_OF_HEAD)
            .expect("the rest of the request");
        assert_eq!(
            status_line(&mut in_flight).expect("an answer on the old port's connection"),
            "HTTP/1.1 200 OK",
            "the request in flight on the old port is answered"
        );

        // Until the admin host has seen the old port closed a few times.
        let deadline = Instant::now() + Duration::from_secs(60);
        while refused.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        (asking.join().expect("the asking thread"), moved)
    });

    assert_eq!(moved["outcome"], "applied", "{moved}");
    assert!(
        moved["detail"]
            .as_str()
            .is_some_and(|d| d.contains("console on 9443 (new)")),
        "{moved}"
    );
    let failed: Vec<_> = answers
        .iter()
        .flat_map(|(old, new)| [old, new])
        .filter(|a| matches!(a, Answer::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len() * 2
    );
    // The old port answered, then refused, never both ways round; the new
    // one was bound before the old one closed: whenever the old port
    // refused, the new one (asked right after) answered.
    let closed_at = answers
        .iter()
        .position(|(old, _)| *old == Answer::Refused)
        .expect("the old port closed while the admin host was asking");
    assert!(
        answers[closed_at..]
            .iter()
            .all(|a| *a == (Answer::Refused, Answer::Ok)),
        "after the old port closed: {:?}",
        &answers[closed_at..]
    );
    assert_eq!(
        (healthz(&lab, &client, OLD), healthz(&lab, &client, NEW)),
        (Answer::Refused, Answer::Ok)
    );
    // No restart: the same process, started once.
    assert_eq!(d.child.id(), pid);
    assert_eq!(d.log_text().matches("switchboard starting").count(), 1);
    assert_eq!(d.json(&["status"])["applied_revision"], 2);
}

#[test]
fn a_loose_data_directory_is_made_owner_only_at_start_and_the_log_says_so() {
    use std::os::unix::fs::PermissionsExt as _;
    if !require_root_or_skip(
        "daemon::a_loose_data_directory_is_made_owner_only_at_start_and_the_log_says_so",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let keys = data.join("kamailio/keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    // A store restored from a backup with loose modes, Kamailio's files too.
    let secrets = [
        data.join("switchboard.db"),
        keys.join("voip.key"),
        data.join("kamailio/subscriber.db"),
    ];
    for f in &secrets {
        std::fs::write(f, "").expect("write");
        set(f, 0o644);
    }
    for d in [&data, &data.join("kamailio"), &keys] {
        set(d, 0o755);
    }

    let mut d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&keys), 0o700);
    for f in &secrets {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let log = d.log_text();
    assert!(
        log.contains(&format!(
            "tightened the mode of {} from 755 to 700",
            data.display()
        )),
        "{log}"
    );
    for f in &secrets {
        let line = format!("{} from 644 to 600", f.display());
        assert!(log.contains(&line), "{line}: {log}");
    }
    let tightened = log.matches("tightened the mode").count();
    assert_eq!(
        tightened, 7,
        "the data dir, keys/, the three files, the store's -wal and -shm: {log}"
    );
    d.sigterm();
    // Nothing loose any more: a restart has nothing to say.
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    assert_eq!(
        d.log_text().matches("tightened the mode").count(),
        tightened
    );
}

#[test]
fn the_audit_log_is_pruned_at_start_to_its_retention_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(None, dir.path(), &[]);
    for port in 8501..8507 {
        d.ok(&["port", "web", &port.to_string()]);
    }
    let before = d.json(&["audit", "--limit", "100"]);
    let before = before.as_array().expect("entries").clone();
    assert_eq!(before.len(), 6);
    assert!(d.sigterm().success());

    let d = Daemon::start(None, dir.path(), &["--audit-max-entries", "3"]);
    let log = d.json(&["audit", "--limit", "100"]);
    let log = log.as_array().expect("entries");
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0]["actor"], "switchboard");
    let outcome = log[0]["outcome"].as_str().expect("outcome");
    assert!(
        outcome.starts_with("pruned 4 entries older than "),
        "{outcome}"
    );
    // The newest two entries are kept, as they were.
    assert_eq!(log[1..], before[..2], "{log:?}");
    assert!(d.log_text().contains("pruned the audit log"));
}

/// `account list` with a search: one page of the matching accounts with
/// their state; a search that cannot mean anything is refused with its
/// code.
#[test]
fn accounts_are_searched_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(None, dir.path(), &[]);
    for (phone, name) in [
        ("+15550100001", "Ann"),
        ("+15550100002", "Bob"),
        ("+15550100003", "Annette"),
    ] {
        d.ok(&["account", "add", "--phone", phone, "--name", name]);
    }
    let page = d.json(&[
        "account", "list", "--search", "ann", "--sort", "-name", "--json",
    ]);
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(page["accounts"][0]["display_name"], "Annette", "{page}");
    assert_eq!(page["accounts"][0]["state"], "no-link", "{page}");
    let text = d.ok(&["account", "list", "--state", "no-link", "--per-page", "2"]);
    assert!(text.contains("1-2 of 3 account(s), page 1 of 2"), "{text}");
    assert!(text.contains(": no link"), "{text}");
    for (flag, value) in [
        ("--state", "gone"),
        ("--sort", "ha1"),
        ("--per-page", "0"),
        ("--page", "0"),
    ] {
        d.fails(&["account", "list", flag, value], "invalid-account-search");
    }
    // Without a search: every account, as before.
    assert_eq!(
        d.json(&["account", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}
