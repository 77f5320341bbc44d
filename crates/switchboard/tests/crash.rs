//! Crash consistency (needs root): the daemon is killed with SIGKILL at each
//! named point of the Update path, and at random moments; after a restart
//! the loaded ruleset is exactly the one of the last committed revision.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, serve_command};
use serde_json::Value;
use switchboard_system::testlab::{Lab, Netns, require_root_or_skip};

/// What `nft list table inet switchboard` prints once `ruleset` is loaded:
/// loaded into a scratch namespace, so the comparison is exact.
fn canonical(ruleset: &str) -> String {
    let scratch = Netns::new("sbt-scr").expect("scratch namespace");
    let mut load = scratch.command("nft");
    load.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = load.spawn().expect("nft");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), ruleset.as_bytes())
        .expect("write");
    drop(child.stdin.take());
    assert!(child.wait().expect("nft").success());
    let out = scratch
        .command("nft")
        .args(["list", "table", "inet", "switchboard"])
        .output()
        .expect("nft");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The invariant: the kernel runs the applied revision, nothing else.
fn assert_consistent(d: &Daemon, what: &str) -> Value {
    let fw = d.json(&["firewall", "show"]);
    let loaded = fw["loaded"].as_str().unwrap_or("").to_owned();
    match fw["ruleset"].as_str() {
        Some(ruleset) => assert_eq!(
            loaded,
            canonical(ruleset),
            "{what}: loaded != applied revision {}",
            fw["revision"]
        ),
        None => assert_eq!(
            loaded, "",
            "{what}: a table is loaded but no revision is applied"
        ),
    }
    d.json(&["revisions"])
}

fn start(lab: &Lab, dir: &std::path::Path) -> Daemon {
    Daemon::start(Some(&lab.appliance), dir, &["--firewall", "enforce"])
}

/// Start a daemon that kills itself at `point`, make a change, Update.
fn crash_at(lab: &Lab, dir: &std::path::Path, point: &str, edit: &[&str], update: &[&str]) {
    let data = dir.join("data");
    let socket = dir.join("api.sock");
    let mut cmd = serve_command(
        Some(&lab.appliance),
        &data,
        &socket,
        &["--firewall", "enforce"],
    );
    let log = std::fs::File::create(dir.join(format!("crash-{point}.log"))).expect("log");
    cmd.env("SWITCHBOARD_CRASH_AT", point).stderr(log);
    let mut child = cmd.spawn().expect("daemon");
    let cli = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("cli")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cli(&["status"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(dir.join(format!("crash-{point}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cli(edit).status.success());
    let out = cli(update);
    let status = if update.contains(&"--confirm-within") {
        // The crash comes with the expiry, after the Update answered.
        assert!(out.status.success());
        child.wait().expect("wait")
    } else {
        assert!(
            !out.status.success(),
            "the Update must not be acknowledged when the daemon dies at {point}"
        );
        child.wait().expect("wait")
    };
    assert!(!status.success(), "the daemon died at {point}: {status}");
}

#[test]
fn kill_9_at_every_point_of_an_update_leaves_the_last_committed_revision() {
    if !require_root_or_skip(
        "crash::kill_9_at_every_point_of_an_update_leaves_the_last_committed_revision",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let d = start(&lab, dir.path());
        d.ok(&["update", "-m", "base"]);
        assert_consistent(&d, "base");
    }
    let services = ["sql", "nrpe", "rtp"];
    for round in 0..3 {
        for (i, point) in ["before-firewall", "after-firewall", "after-record"]
            .iter()
            .enumerate()
        {
            let before = start(&lab, dir.path()).json(&["revisions"]);
            let service = services[(round + i) % services.len()];
            let verb = if round % 2 == 0 { "deny" } else { "allow" };
            crash_at(
                &lab,
                dir.path(),
                point,
                &["matrix", verb, service, "wan0"],
                &["update"],
            );
            let d = start(&lab, dir.path());
            let after = assert_consistent(&d, &format!("round {round}, {point}"));
            let added =
                after.as_array().expect("list").len() - before.as_array().expect("list").len();
            let want = usize::from(*point == "after-record");
            assert_eq!(added, want, "round {round}, {point}: revisions recorded");
            assert_eq!(after[0]["outcome"], "applied");
        }
    }

    // The expiry of a pending revision, killed between the firewall and the store.
    for _ in 0..2 {
        crash_at(
            &lab,
            dir.path(),
            "expiry-after-firewall",
            &["matrix", "deny", "ssh", "wan0"],
            &["update", "--confirm-within", "1"],
        );
        let d = start(&lab, dir.path());
        let revs = assert_consistent(&d, "expiry crash");
        assert_eq!(revs[0]["outcome"], "rolled-back");
        assert_eq!(d.json(&["status"])["pending"], Value::Null);
        d.ok(&["matrix", "allow", "ssh", "wan0"]);
    }

    // And at random moments of an Update, many times.
    let mut seed = u64::from(std::process::id()) | 1;
    for round in 0..8 {
        let mut d = start(&lab, dir.path());
        let verb = if round % 2 == 0 { "deny" } else { "allow" };
        d.ok(&["matrix", verb, "web", "wan0"]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 30_000);
        let mut update = std::process::Command::new(common::BIN)
            .arg("--socket")
            .arg(&d.socket)
            .arg("update")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cli");
        std::thread::sleep(delay);
        d.kill9();
        let _ = update.wait();
        drop(d);
        let d = start(&lab, dir.path());
        assert_consistent(&d, &format!("random kill {round} after {delay:?}"));
    }
}
