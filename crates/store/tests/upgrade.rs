//! A store written by an earlier switchboard (the fixtures of
//! `test_data/`, one directory per schema version) opens, migrates and
//! reads back. These tests rely on what the documents mean, not on the
//! fields of today's `Plan`, so that a type that grows keeps them green.

use std::path::{Path, PathBuf};

use switchboard_domain::{Candidate, CertName, Matrix, NicName, ServiceId};
use switchboard_plan::Plan;
use switchboard_store::{DB_FILE, Outcome, RevisionKind, Store};

fn fixture(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(version)
}

/// A data directory holding a copy of a fixture's database.
fn data_dir_copy(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture(version).join(DB_FILE), dir.path().join(DB_FILE)).expect("copy");
    dir
}

fn read_json<T: serde::de::DeserializeOwned>(path: PathBuf) -> T {
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn nic(name: &str) -> NicName {
    name.parse().expect("nic name")
}

#[test]
fn the_v1_store_opens_migrates_and_reads_back() {
    let dir = data_dir_copy("v1");
    let store = Store::open_dir(dir.path()).expect("a v1 store opens");
    let latest = Store::open_in_memory()
        .expect("fresh store")
        .schema_version()
        .expect("version");
    assert!(latest >= 4, "v1 is schema 4");
    assert_eq!(
        store.schema_version().expect("version"),
        latest,
        "every migration ran"
    );

    // The candidate: the applied configuration plus one edit.
    let candidate = store.candidate().expect("reads").expect("a candidate");
    assert_eq!(
        candidate,
        read_json::<Candidate>(fixture("v1").join("candidate.json"))
    );
    let Matrix::Explicit { cells, .. } = &candidate.matrix else {
        panic!("the fixture's matrix is explicit: {:?}", candidate.matrix)
    };
    assert_eq!(
        cells[&ServiceId::Nrpe],
        [nic("lan0")].into(),
        "the edit left in the candidate"
    );

    // Both revisions, and the applied one with its plan.
    let revisions = store.revisions().expect("revisions");
    let summary: Vec<_> = revisions
        .iter()
        .map(|r| (r.number, r.kind, r.outcome, r.comment.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                2,
                RevisionKind::Update,
                Outcome::Applied,
                "sql on 3307, nrpe from outside"
            ),
            (
                1,
                RevisionKind::Update,
                Outcome::Applied,
                "production layout"
            ),
        ],
        "newest first"
    );
    assert_eq!(store.applied_number().expect("applied"), Some(2));
    let applied = store.applied().expect("reads").expect("applied revision");
    assert_eq!(
        applied.plan,
        read_json::<Plan>(fixture("v1").join("plan.json"))
    );
    assert_ne!(applied.candidate, candidate, "the edit is not applied");
    let first = store.revision(1).expect("reads").expect("revision 1");
    assert_ne!(first.plan, applied.plan);
    assert!(store.pending().expect("reads").is_none());

    // What else the appliance holds.
    let voip = store
        .cert(&"voip".parse::<CertName>().expect("name"))
        .expect("reads")
        .expect("the imported certificate");
    assert!(voip.key.is_some() && !voip.bootstrap);
    assert_eq!(store.anchors().expect("anchors").len(), 1);
    let accounts = store.accounts().expect("accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (accounts[0].username.as_str(), accounts[0].phone.as_str()),
        ("1000", "+15550100")
    );
    assert_eq!(store.sms().expect("sms").len(), 1);
    assert!(store.any_admin().expect("admins"));
}
