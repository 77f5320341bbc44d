//! Costly certificate imports against the running daemon (no root needed):
//! the API answers while one runs, and one whose client was killed is not
//! stored.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Daemon;
use switchboard_pki::testpki;

#[test]
fn a_killed_import_is_not_stored_and_the_daemon_answers_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each import lasts 2 s more, so that the client is surely killed
    // while its import runs, however fast the machine decrypts the key.
    let d = Daemon::start_with_env(
        None,
        dir.path(),
        &[],
        &[("SWITCHBOARD_SLOW_IMPORT_MS", "2000")],
    );
    let files = testpki::tempdir();
    let f = |name: &str| files.path().join(name).display().to_string();
    let p = testpki::pki();
    testpki::write(
        files.path(),
        "leaf.pem",
        [p.leaf.pem(), p.intermediate.pem()].concat(),
    );
    testpki::write(files.path(), "key.pem", p.leaf.key_pem());
    testpki::write(files.path(), "pw", "pw\n");
    // The costliest key accepted: PBKDF2 at the most iterations allowed.
    testpki::encrypt_key(
        files.path(),
        "key.pem",
        "enc.pem",
        switchboard_pki::MAX_PBKDF2_ITERATIONS,
    );
    let import = [
        "cert",
        "import",
        "costly",
        "--bundle",
        &f("leaf.pem"),
        "--key",
        &f("enc.pem"),
        "--password-file",
        &f("pw"),
    ];

    let started = Instant::now();
    let mut client = d
        .cli_command(&import)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the import");
    // While the key is decrypted, the API answers.
    std::thread::sleep(Duration::from_millis(150));
    d.ok(&["status"]);
    let answered = started.elapsed();
    // The client goes away before its import is done.
    std::thread::sleep(Duration::from_millis(150));
    let running = client.try_wait().expect("wait").is_none();
    client.kill().expect("kill the client");
    client.wait().expect("reaped");
    assert!(
        running,
        "the import was still running when its client was killed"
    );

    // The same import, awaited, is stored: had the abandoned one been
    // stored (it started first and finishes first), this would be
    // refused with cert-exists.
    d.ok(&import);
    let list = d.json(&["cert", "list"]);
    let costly = list
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["name"] == "costly")
        .count();
    assert_eq!(costly, 1, "{list}");
    eprintln!("status answered {answered:?} after the import started");
}
