//! The daemon's configuration file, through the real binary: a file refused
//! stops `serve` before it touches anything, with the line and the key; a
//! good one is used, and a flag wins over it.

mod common;

use common::{Daemon, serve_command};

/// `serve --config FILE` with `text` in FILE: its exit status and stderr.
fn serve_with(dir: &std::path::Path, text: &[u8]) -> (Option<i32>, String) {
    let file = dir.join("switchboard.toml");
    std::fs::write(&file, text).expect("write the file");
    let out = serve_command(None, &dir.join("data"), &dir.join("api.sock"), &[])
        .env("SWITCHBOARD_CONFIG", &file)
        .output()
        .expect("serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_configuration_file_is_refused_at_start_with_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("switchboard.toml");
    let file = file.display();
    for (text, place, key) in [
        // malformed: an unterminated string
        (
            &b"firewall = \"plan\"\nsip = \"kamailio\n"[..],
            ":2:",
            "`sip`",
        ),
        // an unknown key, in its table
        (
            b"[sms]\ngateway = \"outbox\"\nurl_ = \"x\"\n",
            ":3:1:",
            "`sms.url_`",
        ),
        // a wrong type
        (
            b"[audit]\nmax_days = \"a year\"\n",
            ":2:",
            "`audit.max_days`",
        ),
        // a value out of range
        (
            b"[audit]\n\nmax_entries = 0\n",
            ":3:",
            "`audit.max_entries`",
        ),
        // not a value of the enumeration
        (b"firewall = \"yes\"\n", ":1:", "`firewall`"),
    ] {
        let (code, err) = serve_with(dir.path(), text);
        let shown = String::from_utf8_lossy(text);
        assert_eq!(code, Some(1), "{shown:?} started: {err}");
        assert!(err.contains(&format!("{file}{place}")), "{shown:?}: {err}");
        assert!(err.contains(&format!("key {key}")), "{shown:?}: {err}");
        assert!(
            !dir.path().join("data").exists(),
            "{shown:?}: the data directory was made"
        );
        assert!(!dir.path().join("api.sock").exists(), "{shown:?} listened");
    }
    // Oversize: refused before it is parsed.
    let (code, err) = serve_with(dir.path(), &vec![b'#'; 70_000]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("over 65536 bytes"), "{err}");
    // A file named that does not exist is an error, not the defaults.
    let out = serve_command(None, &dir.path().join("data"), &dir.path().join("s"), &[])
        .env("SWITCHBOARD_CONFIG", dir.path().join("absent.toml"))
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open it"));
    // What a key needs is still checked: a webhook without its URL.
    let (code, err) = serve_with(dir.path(), b"[sms]\ngateway = \"webhook\"\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs --sms-url (or sms.url)"), "{err}");
}

#[test]
fn the_file_is_used_and_a_flag_wins_over_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("switchboard.toml");
    // `enforce` in the file, `plan` on the command line: plan (this test
    // must never touch the host's firewall, and it does not).
    std::fs::write(
        &file,
        "firewall = \"enforce\"\nsip = \"off\"\n[sms]\ngateway = \"outbox\"\n[audit]\nmax_days = 30\n",
    )
    .expect("write");
    let file_arg = file.to_str().expect("utf-8").to_owned();
    let d = Daemon::start(
        None,
        dir.path(),
        &["--config", &file_arg, "--firewall", "plan"],
    );
    let status = d.json(&["status"]);
    assert_eq!(status["firewall_mode"], "plan", "{status}");
    // Each request's lines carry its number (the journal's SB_ID).
    let log = without_ansi(&d.log_text());
    assert!(
        log.lines()
            .any(|l| l.contains("request{id=") && l.contains("path=/v1/status")),
        "{log}"
    );
    assert!(
        d.log_text().contains(&file_arg),
        "the log names the file read: {}",
        d.log_text()
    );
}

/// `text` without its ANSI colour sequences.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// systemd's side of `Type=notify`, played by the test: a datagram socket
/// named by `NOTIFY_SOCKET`. The daemon says READY once it answers, and
/// then feeds the watchdog at half the period it was given.
#[test]
fn the_daemon_tells_systemd_it_is_ready_and_feeds_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify).expect("the notify socket");
    systemd
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let mut child = serve_command(
        None,
        &dir.path().join("data"),
        &dir.path().join("api.sock"),
        &[],
    )
    .env("NOTIFY_SOCKET", &notify)
    .env("WATCHDOG_USEC", "1000000")
    .stdout(std::process::Stdio::null())
    .stderr(log)
    .spawn()
    .expect("serve");
    let mut buf = [0u8; 512];
    let n = systemd.recv(&mut buf).expect("READY within 20 s");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Ready means answering: the API is served when systemd hears it.
    let status = std::process::Command::new(common::BIN)
        .arg("--socket")
        .arg(dir.path().join("api.sock"))
        .arg("status")
        .output()
        .expect("status");
    let started = Instant::now();
    let mut keepalives = 0;
    while keepalives < 3 {
        let n = systemd.recv(&mut buf).expect("a keep-alive");
        if &buf[..n] == b"WATCHDOG=1\n" || &buf[..n] == b"WATCHDOG=1" {
            keepalives += 1;
        }
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(status.status.success(), "not answering when READY was sent");
    assert!(
        elapsed < Duration::from_secs(4),
        "three keep-alives at half a 1 s period took {elapsed:?}"
    );
}
