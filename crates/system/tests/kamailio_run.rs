//! The Kamailio adapter with the real Kamailio (needs root and the kamailio
//! packages), in a namespace of its own: supervised start, the presented
//! certificate, `tls.reload` without a restart (same pid), a refused
//! reload, restart after a crash, clean stop, and the subscriber table.

use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_pki::testpki::{self, pki};
use switchboard_system::kamailio::{self, Subscriber, Supervisor};
use switchboard_system::testlab::{Netns, is_root, require_or_skip};

const CHILD_ENV: &str = "SWITCHBOARD_KAMAILIO_CHILD";
const ADDR: &str = "198.51.100.1";

#[test]
fn kamailio_supervised_reloaded_and_restarted() {
    if !require_or_skip(
        "kamailio_run::kamailio_supervised_reloaded_and_restarted",
        is_root() && kamailio::installed(),
        "needs root and the kamailio packages",
    ) {
        return;
    }
    let ns = Netns::new("sbt-kam").expect("namespace");
    ns.ip(["link", "set", "lo", "up"]).expect("lo");
    ns.ip([
        "link", "add", "wan0", "type", "veth", "peer", "name", "wan1",
    ])
    .expect("veth");
    ns.ip(["addr", "add", &format!("{ADDR}/24"), "dev", "wan0"])
        .expect("addr");
    ns.ip(["link", "set", "wan0", "up"]).expect("up");
    ns.ip(["link", "set", "wan1", "up"]).expect("up");
    ns.run_test_inside("child_in_netns", CHILD_ENV);
}

/// The SHA-256 fingerprint Kamailio presents on ADDR:5061.
fn presented() -> Option<String> {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            // Kamailio keeps the connection open after the handshake: cut it.
            "timeout 1 openssl s_client -connect 198.51.100.1:5061 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    text.split_once('=').map(|(_, fp)| fp.to_owned())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_identity(dir: &Path, leaf: &testpki::Leaf) {
    testpki::write(dir, "cert.pem", leaf.pem());
    testpki::write(dir, "key.pem", leaf.key_pem());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_in_netns() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let dir = testpki::tempdir();
    let d = dir.path();
    let p = pki();
    let second = p.intermediate.leaf(&["voip.example.test"]);
    write_identity(d, &p.leaf);
    let ctl = d.join("ctl");
    let db = d.join("subscriber.db");
    testpki::write(
        d,
        "tls.cfg",
        format!(
            "[server:default]\nmethod = TLSv1.2+\ncertificate = {0}/cert.pem\nprivate_key = {0}/key.pem\n",
            d.display()
        ),
    );
    testpki::write(
        d,
        "kamailio.cfg",
        format!(
            "#!KAMAILIO\nlog_stderror=yes\nchildren=1\ntcp_children=1\nenable_tls=yes\nlisten=tls:{ADDR}:5061\n\
             mpath=\"/usr/lib/x86_64-linux-gnu/kamailio/modules/\"\n\
             loadmodule \"ctl.so\"\nloadmodule \"sl.so\"\nloadmodule \"tls.so\"\n\
             modparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")\nmodparam(\"tls\", \"config\", \"{d}/tls.cfg\")\n\
             request_route {{ sl_send_reply(\"404\", \"Not here\"); exit; }}\n",
            ctl = ctl.display(),
            d = d.display()
        ),
    );
    let cfg = d.join("kamailio.cfg");
    kamailio::check(&cfg)
        .await
        .expect("the configuration passes kamailio -c");
    testpki::write(
        d,
        "broken.cfg",
        "#!KAMAILIO\nloadmodule \"nosuchmodule.so\"\n",
    );
    assert!(kamailio::check(&d.join("broken.cfg")).await.is_err());

    let sup = Supervisor::start(cfg.clone(), d.join("kamailio.pid"));
    let first = presented_fp_of(&p.leaf);
    wait_for("kamailio to present the first certificate", || {
        presented().as_deref() == Some(first.as_str())
    });
    let pid = sup.state().pid.expect("running");

    // Rotation: new files, tls.reload, same process, new certificate.
    write_identity(d, &second);
    wait_for("the control socket", || ctl.exists());
    kamailio::tls_reload(&ctl).await.expect("tls.reload");
    let second_fp = presented_fp_of(&second);
    wait_for("the new certificate", || {
        presented().as_deref() == Some(second_fp.as_str())
    });
    assert_eq!(
        sup.state().pid,
        Some(pid),
        "no restart for a certificate change"
    );

    // A reload Kamailio refuses is reported, though kamcmd exits 0.
    testpki::write(d, "key.pem", "not a key\n");
    let err = kamailio::tls_reload(&ctl)
        .await
        .expect_err("a broken key is refused");
    assert!(err.to_string().contains("did not reload"), "{err}");
    write_identity(d, &second);

    // Killed: started again by the supervisor.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    wait_for("a restart", || sup.state().pid.is_some_and(|p| p != pid));
    assert_eq!(sup.state().restarts, 1);
    wait_for("the restarted kamailio to answer", || {
        presented().as_deref() == Some(second_fp.as_str())
    });

    // Stopped: nothing answers.
    sup.stop().await;
    assert_eq!(presented(), None);

    // The subscriber table, replaced whole.
    let a = Subscriber {
        username: "1001".into(),
        domain: "voip.example.test".into(),
        ha1: "0".repeat(32),
    };
    let b = Subscriber {
        username: "1002".into(),
        ..a.clone()
    };
    kamailio::sync_subscribers(&db, &[a.clone(), b]).expect("sync");
    kamailio::sync_subscribers(&db, &[a]).expect("sync again");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let users: Vec<String> = conn
        .prepare("SELECT username FROM subscriber")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(users, ["1001"]);
    let version: i64 = conn
        .query_row(
            "SELECT table_version FROM version WHERE table_name = 'subscriber'",
            [],
            |r| r.get(0),
        )
        .expect("version row");
    assert_eq!(version, 7, "the schema version auth_db checks");
}

fn presented_fp_of(leaf: &testpki::Leaf) -> String {
    let dir = testpki::tempdir();
    testpki::write(dir.path(), "c.pem", leaf.pem());
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.path().join("c.pem"))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    text.split_once('=')
        .map(|(_, fp)| fp.to_owned())
        .expect("a fingerprint")
}
