//! The daemon driven only through the CLI: edit, diff, Update, revisions,
//! rollback; `kill -9` and restart; bad input; a second daemon.

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
    assert!(
        fw.contains("\"wan0\" . tcp . 5061,") && !fw.contains("\"wan0\" . tcp . 22,"),
        "{fw}"
    );

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
    assert!(
        rev2["plan"]["ruleset"]
            .as_str()
            .expect("ruleset")
            .contains("\"lan0\" . tcp . 22,")
    );
    assert_eq!(rev2["candidate"]["matrix"]["mode"], "explicit");
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let client = Client::new(&d.socket);
    let raw = |method: &str, path: &str, ct: Option<&str>, body: Vec<u8>| {
        let (status, bytes) = rt
            .block_on(client.raw(method.parse().expect("method"), path, ct, body))
            .expect("request");
        let doc: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("JSON error body: {bytes:?}"));
        (
            status.as_u16(),
            doc["error"]["code"].as_str().unwrap_or("").to_owned(),
            doc,
        )
    };
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
