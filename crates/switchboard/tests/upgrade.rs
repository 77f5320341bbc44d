//! A data directory written by an earlier switchboard (the store fixtures
//! of `crates/store/test_data/`) opens with this binary, reads back and
//! applies. Only behaviour is checked (commands succeed, revisions and
//! outcomes), not the fields of today's plan, so that the documents may grow.

mod common;

use std::path::Path;

use common::Daemon;
use serde_json::Value;
use switchboard_system::testlab::{Lab, require_root_or_skip};

/// A test directory whose `data/` holds a copy of the fixture store of
/// `version`, as [`Daemon::start`] expects it.
fn fixture_dir(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../store/test_data")
        .join(version)
        .join("switchboard.db");
    std::fs::copy(fixture, data.join("switchboard.db")).expect("copy the fixture");
    dir
}

fn numbers(revisions: &Value) -> Vec<u64> {
    revisions
        .as_array()
        .unwrap_or_else(|| panic!("a list: {revisions}"))
        .iter()
        .map(|r| r["number"].as_u64().expect("number"))
        .collect()
}

#[test]
fn a_v1_data_directory_opens_reads_and_applies() {
    if !require_root_or_skip("upgrade::a_v1_data_directory_opens_reads_and_applies") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = fixture_dir("v1");
    // Revision 1's stored matrix loses a service's key, as a store written
    // before that service existed would have it.
    let db = rusqlite::Connection::open(dir.path().join("data/switchboard.db")).expect("open");
    let changed = db
        .execute(
            "UPDATE revisions SET plan = json_remove(plan, '$.matrix.rtp') WHERE number = 1",
            [],
        )
        .expect("edit the fixture");
    assert_eq!(changed, 1);
    drop(db);

    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    let status = d.json(&["status"]);
    assert_eq!(status["applied_revision"], 2, "{status}");
    assert_eq!(status["candidate_changed"], true, "{status}");
    assert_eq!(numbers(&d.json(&["revisions"])), [2, 1]);
    d.ok(&["revisions", "show", "1"]);
    d.ok(&["revisions", "show", "2"]);
    let fw = d.ok(&["firewall", "show"]);
    assert!(fw.contains("# ruleset of revision 2"), "{fw}");
    let pending = d.ok(&["diff"]);
    assert!(
        pending.contains("nrpe"),
        "the edit left in the candidate: {pending}"
    );
    d.ok(&["diff", "--from", "1", "--to", "2"]);
    let accounts = d.ok(&["account", "list"]);
    assert!(accounts.contains("1000"), "{accounts}");
    d.ok(&["padlock"]);

    let update = d.json(&["update", "-m", "after the upgrade"]);
    assert_eq!(
        (update["revision"].as_u64(), update["outcome"].as_str()),
        (Some(3), Some("applied")),
        "{update}"
    );
    let status = d.json(&["status"]);
    assert_eq!(status["applied_revision"], 3, "{status}");
    assert_eq!(status["candidate_changed"], false, "{status}");
    assert_eq!(numbers(&d.json(&["revisions"])), [3, 2, 1]);
    let fw = d.ok(&["firewall", "show"]);
    assert!(fw.contains("# ruleset of revision 3"), "{fw}");

    // A rollback to the revision whose stored matrix lacked a key applies too.
    d.ok(&["rollback", "1"]);
    assert_eq!(d.json(&["status"])["applied_revision"], 4);
}
