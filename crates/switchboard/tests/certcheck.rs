//! `switchboard cert check`: offline, the same path validation and name
//! check as the daemon; exit status 0 only for a closed padlock.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use switchboard_pki::testpki::{self, leaf_params, pki, ts, with_validity};

fn check(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::BIN)
        .args(["cert", "check"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run switchboard cert check")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_good_chain_gives_a_closed_padlock_and_every_fault_is_named() {
    let p = pki();
    let dir = testpki::tempdir();
    let d = dir.path();
    testpki::write(
        d,
        "full.pem",
        format!(
            "{}{}{}",
            p.leaf.key_pem(),
            p.intermediate.pem(),
            p.leaf.pem()
        ),
    );
    testpki::write(d, "leaf-only.pem", p.leaf.pem());
    testpki::write(d, "ca.pem", p.root.pem());
    let other = p.intermediate.leaf(&["voip.example.test"]);
    testpki::write(d, "other.key", other.key_pem());
    testpki::write(
        d,
        "garbage.pem",
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
    );

    let ok = check(
        d,
        &[
            "--bundle",
            "full.pem",
            "--ca-file",
            "ca.pem",
            "--hostname",
            "voip.example.test",
        ],
    );
    assert!(
        ok.status.success(),
        "{}{}",
        stdout(&ok),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout(&ok).contains("closed padlock for voip.example.test"));

    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "--bundle",
                "full.pem",
                "--ca-file",
                "ca.pem",
                "--hostname",
                "console.lan.test",
            ],
            "name-mismatch",
        ),
        (
            // A private root nobody was told to trust: the chain stops short.
            &["--bundle", "full.pem", "--hostname", "voip.example.test"],
            "missing-intermediate",
        ),
        (
            &[
                "--bundle",
                "leaf-only.pem",
                "--ca-file",
                "ca.pem",
                "--hostname",
                "voip.example.test",
            ],
            "missing-intermediate",
        ),
        (
            &[
                "--bundle",
                "full.pem",
                "--ca-file",
                "ca.pem",
                "--hostname",
                "voip.example.test",
                "--at",
                "2041-01-01T00:00:00Z",
            ],
            "expired",
        ),
        (
            &[
                "--bundle",
                "full.pem",
                "--ca-file",
                "ca.pem",
                "--hostname",
                "voip.example.test",
                "--at",
                "2019-06-01T00:00:00Z",
            ],
            "not-yet-valid",
        ),
        (
            &[
                "--bundle",
                "leaf-only.pem",
                "--key",
                "other.key",
                "--ca-file",
                "ca.pem",
                "--hostname",
                "voip.example.test",
            ],
            "key-mismatch",
        ),
    ];
    for (args, code) in cases {
        let out = check(d, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(&format!("error[{code}]")),
            "{args:?}: {}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("NO closed padlock"));
    }

    let bad = check(
        d,
        &["--bundle", "garbage.pem", "--hostname", "voip.example.test"],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("error[") && err.contains("= hint:"),
        "{err}"
    );

    let bad_host = check(d, &["--bundle", "full.pem", "--hostname", "not a host"]);
    assert!(!bad_host.status.success());

    let json = check(
        d,
        &[
            "--bundle",
            "full.pem",
            "--ca-file",
            "ca.pem",
            "--hostname",
            "10.0.0.1",
            "--json",
        ],
    );
    let doc: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["certificate"]["dns_names"][0], "voip.example.test");
    assert_eq!(doc["chain_length"], 2);
    assert!(
        !json.stdout.windows(11).any(|w| w == b"PRIVATE KEY"),
        "the key never appears"
    );
}

#[test]
fn a_certificate_expiring_soon_is_a_warning_not_a_failure() {
    let p = pki();
    let dir = testpki::tempdir();
    let d = dir.path();
    let params = with_validity(
        leaf_params(&["voip.example.test"]),
        ts("2026-01-01T00:00:00Z"),
        ts("2026-12-01T00:00:00Z"),
    );
    let leaf = p
        .intermediate
        .leaf_with(params, rcgen::KeyPair::generate().expect("key"));
    testpki::write(
        d,
        "b.pem",
        format!("{}{}", leaf.pem(), p.intermediate.pem()),
    );
    testpki::write(d, "ca.pem", p.root.pem());
    let out = check(
        d,
        &[
            "--bundle",
            "b.pem",
            "--ca-file",
            "ca.pem",
            "--hostname",
            "voip.example.test",
            "--at",
            "2026-11-20T00:00:00Z",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("warning[expires-soon]"),
        "{}",
        stdout(&out)
    );
}

/// Run `cmd` with its standard output a pipe whose reader is already gone.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run switchboard")
}

#[test]
fn printing_to_a_closed_pipe_ends_quietly() {
    let p = pki();
    let dir = testpki::tempdir();
    let d = dir.path();
    testpki::write(
        d,
        "full.pem",
        format!("{}{}", p.leaf.key_pem(), p.leaf.pem()),
    );
    testpki::write(d, "garbage.pem", b"not a certificate");
    let args = |bundle: &str, json: bool| {
        let mut cmd = Command::new(common::BIN);
        if json {
            cmd.arg("--json");
        }
        cmd.args(["cert", "check", "--bundle", bundle])
            .args(["--hostname", "voip.example.test"])
            .current_dir(d);
        cmd
    };
    // A report, a report as JSON, and an error document as JSON.
    for (bundle, json) in [
        ("full.pem", false),
        ("full.pem", true),
        ("garbage.pem", true),
    ] {
        let out = with_closed_stdout(&mut args(bundle, json));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(141),
            "{bundle} json={json}: like a tool ended by SIGPIPE; stderr: {stderr}"
        );
        assert!(stderr.is_empty(), "{bundle} json={json}: {stderr}");
    }
}

#[test]
fn a_client_command_printing_to_a_closed_pipe_ends_quietly() {
    use switchboard_system::testlab::{Lab, require_root_or_skip};
    if !require_root_or_skip("certcheck::a_client_command_printing_to_a_closed_pipe_ends_quietly") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = common::Daemon::start(Some(&lab.appliance), dir.path(), &[]);
    for args in [
        &["status"][..],
        &["--json", "nics"],
        &["--json", "cert", "show", "nope"],
    ] {
        let out = with_closed_stdout(&mut d.cli_command(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// The first line of standard error, where the CLI names a refused upload.
fn refusal(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", stdout(out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("= hint:"), "{err}");
    err.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn hostile_bundles_are_refused_by_their_limit_before_any_work() {
    let p = pki();
    let dir = testpki::tempdir();
    let d = dir.path();
    // A leaf and 400 CA certificates sharing one subject: without a limit,
    // ordering them tried every pair with a signature check (minutes).
    testpki::write(d, "same-subject.pem", testpki::same_subject_bundle(400));
    let keys = (0..3).map(|_| p.leaf.key_pem()).collect::<String>();
    testpki::write(d, "keys.pem", format!("{}{keys}", p.leaf.pem()));
    let encrypted = (0..2u8)
        .map(|i| testpki::pem("ENCRYPTED PRIVATE KEY", &[i; 64]))
        .collect::<String>();
    testpki::write(d, "encrypted.pem", format!("{}{encrypted}", p.leaf.pem()));
    testpki::write(d, "pw", "secret\n");

    let host = ["--hostname", "voip.example.test"];
    let refused = |file: &str, extra: &[&str]| {
        let mut args = vec!["--bundle", file];
        args.extend_from_slice(&host);
        args.extend_from_slice(extra);
        refusal(&check(d, &args))
    };
    let line = refused("same-subject.pem", &[]);
    assert!(
        line.starts_with("error[too-many-certificates]") && line.contains("401 certificates"),
        "{line}"
    );
    let line = refused("keys.pem", &[]);
    assert!(line.starts_with("error[too-many-keys]"), "{line}");
    let line = refused("encrypted.pem", &["--password-file", "pw"]);
    assert!(line.starts_with("error[key-too-costly]"), "{line}");
}

#[test]
fn json_errors_of_the_command_line_are_json_documents() {
    let p = pki();
    let dir = testpki::tempdir();
    let d = dir.path();
    testpki::write(
        d,
        "full.pem",
        format!("{}{}", p.leaf.pem(), p.intermediate.pem()),
    );
    let cases: [(&[&str], &str, i32); 5] = [
        (
            &["--bundle", "full.pem", "--hostname", "not a host", "--json"],
            "invalid-hostname",
            1,
        ),
        (
            &[
                "--bundle",
                "missing.pem",
                "--hostname",
                "voip.example.test",
                "--json",
            ],
            "unreadable-file",
            1,
        ),
        (
            &[
                "--bundle",
                "full.pem",
                "--hostname",
                "voip.example.test",
                "--password-file",
                "missing.txt",
                "--json",
            ],
            "unreadable-file",
            1,
        ),
        (&["--json", "--bundle", "full.pem"], "invalid-arguments", 2),
        (
            &[
                "--bundle",
                "full.pem",
                "--hostname",
                "voip.example.test",
                "--at",
                "yesterday",
                "--json",
            ],
            "invalid-arguments",
            2,
        ),
    ];
    for (args, code, status) in cases {
        let out = check(d, args);
        assert_eq!(out.status.code(), Some(status), "{args:?}");
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&out)));
        assert_eq!(doc["error"]["code"], code, "{args:?}: {doc}");
        assert!(
            doc["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{doc}"
        );
        assert!(
            doc["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{doc}"
        );
    }
    // Without --json the same refusals stay text, on standard error.
    let text = check(d, &["--bundle", "full.pem", "--hostname", "not a host"]);
    assert!(text.stdout.is_empty());
    assert!(String::from_utf8_lossy(&text.stderr).contains("--hostname"));
}

#[test]
fn a_bundle_with_a_byte_order_mark_and_a_stray_ca_gives_a_closed_padlock_with_a_warning() {
    let p = pki();
    let stranger = testpki::Ca::root("Unrelated Root CA");
    let dir = testpki::tempdir();
    let d = dir.path();
    testpki::write(
        d,
        "b.pem",
        format!(
            "\u{feff}{}{}{}",
            p.leaf.pem(),
            stranger.pem(),
            p.intermediate.pem()
        ),
    );
    testpki::write(d, "ca.pem", p.root.pem());
    let out = check(
        d,
        &[
            "--bundle",
            "b.pem",
            "--ca-file",
            "ca.pem",
            "--hostname",
            "voip.example.test",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("certificate: CN=voip.example.test"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("warning[unrelated-certificate]"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("closed padlock for voip.example.test"));
    assert!(
        stdout(&out).contains("unrelated:   1 certificate(s)"),
        "{}",
        stdout(&out)
    );
    let json = check(
        d,
        &[
            "--bundle",
            "b.pem",
            "--ca-file",
            "ca.pem",
            "--hostname",
            "voip.example.test",
            "--json",
        ],
    );
    let doc: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(
        (
            doc["ok"].clone(),
            doc["chain_length"].clone(),
            doc["unrelated_certificates"].clone()
        ),
        (Value::from(true), Value::from(2), Value::from(1)),
        "{doc}"
    );
}
