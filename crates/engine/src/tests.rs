//! Unit tests of the engine on an in-memory store, with facts fed by hand.

use switchboard_domain::DiagnosticCode;
use switchboard_domain::testing::{name as n, nic};

use super::*;
use crate::views::Change;

use crate::testing::booted as engine;

fn origin() -> Origin {
    Origin {
        actor: "root".into(),
        address: "unix socket (pid 1)".into(),
        arrival: None,
    }
}

/// An administrator logged in over SSH to lan0's address.
fn ssh_via_lan() -> Origin {
    Origin {
        actor: "root".into(),
        address: "ssh from 192.0.2.2 to 192.0.2.1:22".into(),
        arrival: Some(Arrival {
            service: ServiceId::Ssh,
            local: "192.0.2.1".parse().expect("ip"),
            port: 22,
        }),
    }
}

#[tokio::test]
async fn update_records_numbered_revisions_and_skips_no_change() {
    let e = engine().await;
    let first = e.update(&origin(), "first", None).await.expect("update");
    assert_eq!((first.revision, first.no_change), (Some(1), false));
    let w: Vec<_> = first
        .warnings
        .iter()
        .filter(|d| d.code == DiagnosticCode::NicWithoutAddress)
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].nic.as_deref(), Some("dmz0"));
    let again = e.update(&origin(), "again", None).await.expect("update");
    assert_eq!((again.revision, again.no_change), (Some(1), true));
    e.set_cell(ServiceId::Ssh, &n("wan0"), false)
        .await
        .expect("edit");
    let second = e
        .update(&origin(), "no ssh on wan", None)
        .await
        .expect("update");
    assert_eq!(second.revision, Some(2));
    let revs = e.revisions().await.expect("list");
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[0].comment, "no ssh on wan");
    assert_eq!(revs[0].actor, "root");
    let fw = e.firewall().await.expect("fw");
    assert_eq!(fw.revision, Some(2));
    let ruleset = fw.ruleset.expect("ruleset");
    let ssh = switchboard_plan::nft::allowed_nics(&ruleset, ServiceId::Ssh);
    assert!(!ssh.contains(&"wan0".to_owned()), "{ruleset}");
    assert!(ssh.contains(&"lan0".to_owned()), "{ruleset}");
}

#[tokio::test]
async fn a_rejected_update_changes_nothing() {
    let e = engine().await;
    e.update(&origin(), "", None).await.expect("update");
    for nic in ["lan0", "wan0"] {
        e.set_cell(ServiceId::Console, &n(nic), false)
            .await
            .expect("edit");
    }
    let before = e.revisions().await.expect("list");
    let err = e
        .update(&origin(), "", None)
        .await
        .expect_err("console unreachable");
    let EngineError::Rejected { diagnostics } = &err else {
        panic!("{err}")
    };
    assert_eq!(diagnostics[0].code, DiagnosticCode::ConsoleUnreachable);
    assert_eq!(err.code(), "candidate-rejected");
    assert_eq!(e.revisions().await.expect("list"), before);
    assert_eq!(e.firewall().await.expect("fw").revision, Some(1));
    assert!(e.status().await.expect("status").candidate_changed);
}

#[tokio::test]
async fn rollback_applies_an_old_candidate_as_a_new_revision() {
    let e = engine().await;
    e.update(&origin(), "", None).await.expect("1");
    e.preset_production(&n("lan0"), &n("wan0"))
        .await
        .expect("preset");
    e.update(&origin(), "", None).await.expect("2");
    let r = e.rollback(&origin(), 1, "", None).await.expect("rollback");
    assert_eq!(r.revision, Some(3));
    let rev3 = e.revision(3).await.expect("3");
    assert_eq!(rev3.summary.kind, RevisionKind::Rollback);
    assert_eq!(rev3.summary.rollback_of, Some(1));
    assert_eq!(rev3.plan, e.revision(1).await.expect("1").plan);
    let m = e.matrix().await.expect("matrix");
    assert_eq!(
        m.candidate, rev3.plan.matrix,
        "the candidate follows the rollback"
    );
    assert!(matches!(
        e.rollback(&origin(), 9, "", None).await,
        Err(EngineError::NoSuchRevision(9))
    ));
}

#[tokio::test]
async fn edits_report_unknown_nics_and_change_nothing() {
    let e = engine().await;
    let err = e
        .set_cell(ServiceId::Ssh, &n("eth9"), true)
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), "unknown-nic");
    assert!(e.matrix().await.expect("m").mode == "factory");
    let ok = e
        .set_cell(ServiceId::Ssh, &n("lan0"), true)
        .await
        .expect("edit");
    assert!(!ok.changed, "already allowed in the factory matrix");
}

#[tokio::test]
async fn diff_shows_cells_ports_and_ruleset() {
    let e = engine().await;
    let d = e.diff(None, None).await.expect("diff");
    assert_eq!(
        (d.from.as_str(), d.to.as_str()),
        ("nothing applied", "candidate")
    );
    assert!(
        d.diff.matrix.is_empty(),
        "the factory candidate is what an unfirewalled box does"
    );
    e.update(&origin(), "", None).await.expect("1");
    e.set_cell(ServiceId::Sql, &n("wan0"), false)
        .await
        .expect("edit");
    e.set_port(ServiceId::Ssh, "2222".parse().expect("port"))
        .await
        .expect("port");
    let d = e.diff(None, None).await.expect("diff");
    assert_eq!(d.from, "revision 1");
    assert_eq!(d.diff.matrix.len(), 1);
    assert_eq!(
        (
            d.diff.matrix[0].service,
            d.diff.matrix[0].nic.as_str(),
            d.diff.matrix[0].change
        ),
        (ServiceId::Sql, "wan0", Change::Removed)
    );
    assert_eq!(d.diff.ports.len(), 1);
    assert!(
        d.diff
            .ruleset
            .contains("-\t\tiifname @nics_ssh tcp dport 22 accept")
            && d.diff
                .ruleset
                .contains("+\t\tiifname @nics_ssh tcp dport 2222 accept"),
        "{}",
        d.diff.ruleset
    );
    assert!(
        d.diff.ruleset.contains("-\t\t\t\"wan0\","),
        "{}",
        d.diff.ruleset
    );
    e.discard().await.expect("discard");
    assert!(!e.diff(None, None).await.expect("diff").changed);
}

#[tokio::test]
async fn a_nic_that_appears_after_the_update_is_new_until_the_next_one() {
    let e = engine().await;
    e.update(&origin(), "", None).await.expect("1");
    let mut facts = e.facts();
    facts.nics.push(nic("eth7", Some("192.0.2.77")));
    e.set_facts(facts);
    let status = e.status().await.expect("status");
    assert_eq!(status.new_nics, ["eth7"]);
    assert!(status.candidate_changed);
    let nics = e.nics().await.expect("nics");
    let eth7 = nics.iter().find(|v| v.name == "eth7").expect("listed");
    assert_eq!((eth7.state, eth7.services.len()), (NicState::New, 0));
    e.update(&origin(), "", None).await.expect("2");
    assert!(e.status().await.expect("status").new_nics.is_empty());
    assert!(
        e.matrix()
            .await
            .expect("m")
            .applied
            .expect("applied")
            .nics()
            .iter()
            .all(|n| n.as_str() != "eth7")
    );
}

#[tokio::test]
async fn an_update_that_cuts_the_admins_own_session_needs_commit_confirm() {
    let e = engine().await;
    e.update(&origin(), "", None).await.expect("1");
    e.set_cell(ServiceId::Ssh, &n("lan0"), false)
        .await
        .expect("edit");
    let err = e
        .update(&ssh_via_lan(), "", None)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, EngineError::WouldLockOut { service: ServiceId::Ssh, nic } if nic.as_str() == "lan0"),
        "{err}"
    );
    assert_eq!(
        e.revisions().await.expect("list").len(),
        1,
        "nothing recorded"
    );
    // Taking the console off the NIC of an SSH session is refused too: the
    // administrator's other way in on that NIC.
    e.discard().await.expect("discard");
    e.set_cell(ServiceId::Console, &n("lan0"), false)
        .await
        .expect("edit");
    let err = e
        .update(&ssh_via_lan(), "", None)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            EngineError::WouldLockOut {
                service: ServiceId::Console,
                ..
            }
        ),
        "{err}"
    );
    // From the local socket, the same Update is fine.
    e.update(&origin(), "", None)
        .await
        .expect("local session is not cut");
    e.set_cell(ServiceId::Console, &n("lan0"), true)
        .await
        .expect("edit");
    e.update(&origin(), "", None).await.expect("back");
    // Moving SSH to another port cuts the session too.
    e.discard().await.expect("discard");
    e.set_port(ServiceId::Ssh, "2222".parse().expect("port"))
        .await
        .expect("port");
    assert!(matches!(
        e.update(&ssh_via_lan(), "", None).await,
        Err(EngineError::WouldLockOut { .. })
    ));
    let ok = e
        .update(&ssh_via_lan(), "", Some(60))
        .await
        .expect("commit-confirm is allowed");
    assert_eq!(ok.outcome, Outcome::Pending);
    assert!(ok.pending_until.is_some());
}

#[tokio::test]
async fn a_pending_revision_is_kept_by_confirm_or_rolled_back_at_its_deadline() {
    let e = engine().await;
    e.update(&origin(), "", None).await.expect("1");
    e.set_cell(ServiceId::Sql, &n("wan0"), false)
        .await
        .expect("edit");
    let p = e.update(&origin(), "", Some(30)).await.expect("2 pending");
    let deadline = p.pending_until.expect("deadline");
    assert_eq!(
        e.status()
            .await
            .expect("s")
            .pending
            .expect("pending")
            .revision,
        2
    );
    let err = e
        .update(&origin(), "", None)
        .await
        .expect_err("one pending at a time");
    assert_eq!(err.code(), "pending-confirmation");
    assert_eq!(
        e.expire_pending(deadline - jiff::SignedDuration::from_secs(1))
            .await
            .expect("early"),
        None
    );
    assert_eq!(e.expire_pending(deadline).await.expect("due"), Some(2));
    assert_eq!(e.firewall().await.expect("fw").revision, Some(1));
    let r2 = e.revision(2).await.expect("2");
    assert_eq!(r2.summary.outcome, Outcome::RolledBack);
    assert!(
        r2.summary.detail.contains("rolled back to revision 1"),
        "{}",
        r2.summary.detail
    );
    assert!(
        e.status().await.expect("s").candidate_changed,
        "the edit is still in the candidate"
    );

    e.update(&origin(), "", Some(30)).await.expect("3 pending");
    let c = e.confirm(&origin()).await.expect("confirm");
    assert_eq!(c.revision, 3);
    assert_eq!(
        e.expire_pending(jiff::Timestamp::MAX)
            .await
            .expect("nothing"),
        None
    );
    assert_eq!(
        e.revision(3).await.expect("3").summary.outcome,
        Outcome::Applied
    );
    assert!(matches!(
        e.confirm(&origin()).await,
        Err(EngineError::NothingPending)
    ));
    assert!(matches!(
        e.update(&origin(), "", Some(0)).await,
        Err(EngineError::Input(_))
    ));
    assert!(matches!(
        e.update(&origin(), "", Some(3601)).await,
        Err(EngineError::Input(_))
    ));
}

#[tokio::test]
async fn an_activation_link_works_exactly_once_even_under_100_concurrent_fetches() {
    use std::sync::Arc;
    let (e, ann) = with_ann(switchboard_system::sms::Gateway::Outbox).await;
    let e = Arc::new(e);
    let host = switchboard_system::dns::hostname();
    e.activate(&ann).await.expect("activate");
    let outbox = e.sms().await.expect("sms");
    let text = outbox[0].text.clone().expect("the outbox shows its text");
    let token = text
        .split("/p/")
        .nth(1)
        .expect("a link")
        .split_whitespace()
        .next()
        .expect("a token")
        .to_owned();
    let mut tasks = Vec::new();
    for i in 0..100u8 {
        let (e, token) = (e.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let from = std::net::IpAddr::from([192, 0, 2, i]);
            e.fetch_document(&token, from).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(doc) => {
                ok += 1;
                assert_eq!(
                    doc.media_type,
                    "application/vnd.switchboard.sip-account+json"
                );
                assert!(
                    doc.body.contains(&host) && doc.body.contains("\"ha1\""),
                    "{}",
                    doc.body
                );
            }
            Err(EngineError::LinkGone) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one fetch gets the document");
    assert!(matches!(
        e.fetch_document("garbage!", "192.0.2.200".parse().expect("ip"))
            .await,
        Err(EngineError::LinkGone)
    ));
    // One address fetching too often is slowed down.
    let from: std::net::IpAddr = "192.0.2.201".parse().expect("ip");
    let mut limited = false;
    for _ in 0..30 {
        limited |= matches!(
            e.fetch_document(&token, from).await,
            Err(EngineError::RateLimited)
        );
    }
    assert!(limited);
}

/// The provisioned engine of the activation tests, with Ann's account.
async fn with_ann(
    gateway: switchboard_system::sms::Gateway,
) -> (Engine, switchboard_provision::Username) {
    let e = crate::testing::booted_with(gateway).await;
    let ann = add_ann(&e).await;
    (e, ann)
}

/// Provision `e` for phones (applied), and add Ann's account.
async fn add_ann(e: &Engine) -> switchboard_provision::Username {
    let host = switchboard_system::dns::hostname();
    e.set_provisioning(switchboard_domain::provisioning::ProvisioningSettings {
        sip_tls_hostname: Some(host.parse().expect("the host name is a valid name")),
        web_uri: Some("https://198.51.100.1".parse().expect("uri")),
        ..Default::default()
    })
    .await
    .expect("provisioning");
    e.update(&origin(), "", None).await.expect("update");
    let a = e
        .add_account(switchboard_provision::NewAccount {
            username: None,
            display_name: Some("Ann".parse().expect("name")),
            phone: "+15550100199".parse().expect("phone"),
            group: None,
            profile: Default::default(),
        })
        .await
        .expect("account");
    a.username
}

/// An Update holds the store from its plan to its record (a Kamailio
/// restart, a firewall load); a phone fetching its document meanwhile is
/// served through the phones' own connection, without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_is_served_while_an_update_holds_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = switchboard_store::Store::open_dir(dir.path()).expect("store");
    let e = crate::testing::booted_on(store, switchboard_system::sms::Gateway::Outbox).await;
    let ann = add_ann(&e).await;
    e.activate(&ann).await.expect("activate");
    let sms = e.sms().await.expect("sms");
    let token = token_in(sms[0].text.as_deref().expect("the outbox shows its text"));
    let update = e.store.lock().await;
    let doc = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        e.fetch_document(&token, "198.51.100.2".parse().expect("ip")),
    )
    .await
    .expect("the fetch does not wait for the Update")
    .expect("the document");
    assert!(doc.body.contains("\"ha1\""), "{}", doc.body);
    drop(update);
    assert!(matches!(
        e.fetch_document(&token, "198.51.100.2".parse().expect("ip"))
            .await,
        Err(EngineError::LinkGone)
    ));
}

fn token_in(text: &str) -> String {
    text.split("/p/").nth(1).expect("a link")[..22].to_owned()
}

#[tokio::test]
async fn a_revoked_link_is_dead_and_its_messages_are_withdrawn() {
    let (e, ann) = with_ann(switchboard_system::sms::Gateway::Outbox).await;
    e.activate(&ann).await.expect("first");
    e.activate(&ann).await.expect("second");
    let tokens: Vec<String> = e
        .sms()
        .await
        .expect("sms")
        .iter()
        .map(|m| token_in(m.text.as_deref().expect("outbox text")))
        .collect();
    let r = e.revoke(&ann).await.expect("revoke");
    assert_eq!((r.links, r.messages), (2, 2));
    let from = std::net::IpAddr::from([192, 0, 2, 7]);
    for t in &tokens {
        assert!(matches!(
            e.fetch_document(t, from).await,
            Err(EngineError::LinkGone)
        ));
    }
    for m in e.sms().await.expect("sms") {
        assert_eq!(m.state, "revoked");
        assert_eq!(m.text, None, "a withdrawn message shows no link");
    }
    // A new link afterwards works.
    e.activate(&ann).await.expect("third");
    let third = e.sms().await.expect("sms")[0].text.clone().expect("text");
    assert!(e.fetch_document(&token_in(&third), from).await.is_ok());
    assert!(matches!(
        e.revoke(&"9999".parse().expect("name")).await,
        Err(EngineError::NoSuchAccount(_))
    ));
}

/// An SMS gateway on loopback that refuses every message for good (400),
/// until dropped; its URL.
async fn refusing_gateway() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!("http://{}/sms", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad number\n")
                .await;
        }
    });
    (url, task)
}

#[tokio::test]
async fn only_a_failed_message_is_sent_again() {
    let (url, gateway) = refusing_gateway().await;
    let (e, ann) = with_ann(switchboard_system::sms::Gateway::Webhook { url, bearer: None }).await;
    e.activate(&ann).await.expect("activate");
    let id = e.sms().await.expect("sms")[0].id;
    // Queued: not "again".
    assert!(matches!(
        e.resend_sms(id).await,
        Err(EngineError::SmsNotResendable { .. })
    ));
    assert!(matches!(
        e.resend_sms(id + 100).await,
        Err(EngineError::NoSuchSms(_))
    ));
    // The gateway refuses it for good: failed, with its reason.
    e.deliver_sms().await.expect("a delivery pass");
    let m = e.sms().await.expect("sms")[0].clone();
    assert_eq!(m.state, "failed");
    assert!(
        m.last_error.as_deref().unwrap_or("").contains("400"),
        "{m:?}"
    );
    // Sent again: queued now, from attempt zero.
    let m = e.resend_sms(id).await.expect("resend");
    assert_eq!((m.state.as_str(), m.attempts), ("queued", 0));
    assert_eq!(m.last_error, None);
    assert!(m.next_try_at <= jiff::Timestamp::now());
    // Revoked while it is being sent: the gateway's answer, arriving
    // afterwards, does not bring it back (nor its erased text).
    e.revoke(&ann).await.expect("revoke");
    let now = jiff::Timestamp::now();
    for state in ["sent", "queued", "failed"] {
        e.store
            .lock()
            .await
            .sms_attempted(id, state, now, Some("late answer"), now)
            .expect("attempted");
        let m = e.sms().await.expect("sms")[0].clone();
        assert_eq!(
            (m.state.as_str(), m.attempts),
            ("revoked", 0),
            "after {state}"
        );
    }
    gateway.abort();
}

/// The story's two certificates for voip.example.test, imported: `voip`
/// and `voip2` (another key).
async fn import_voip_certs(e: &Engine) -> [String; 2] {
    let p = switchboard_pki::testpki::pki();
    let mut fingerprints = Vec::new();
    for name in ["voip", "voip2"] {
        let leaf = p.intermediate.leaf(&["voip.example.test"]);
        let v = e
            .import_cert(
                &name.parse().expect("name"),
                format!("{}{}", leaf.pem(), p.intermediate.pem()).as_bytes(),
                Some(leaf.key_pem().as_bytes()),
                None,
            )
            .await
            .expect("import");
        fingerprints.push(v.info.fingerprint.to_string());
    }
    [fingerprints[0].clone(), fingerprints[1].clone()]
}

#[tokio::test]
async fn every_kind_of_edit_is_pending_in_the_diff_and_discarded() {
    let e = engine().await;
    let [voip, voip2] = import_voip_certs(&e).await;
    for s in [ServiceId::SipTls, ServiceId::Web] {
        e.bind(s, Some(&n("wan0")), &"voip".parse().expect("name"), true)
            .await
            .expect("bind");
    }
    e.update(&origin(), "voip on wan0", None).await.expect("1");
    assert!(!e.status().await.expect("status").candidate_changed);

    // A certificate binding.
    e.bind(
        ServiceId::SipTls,
        Some(&n("wan0")),
        &"voip2".parse().expect("name"),
        true,
    )
    .await
    .expect("bind");
    assert!(e.status().await.expect("status").candidate_changed);
    let d = e.diff(None, None).await.expect("diff");
    assert!(d.changed, "a binding is a pending edit");
    let t = &d.diff.tls;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (
            t[0].from.as_ref().map(|p| p.cert.fingerprint.as_str()),
            t[0].to.as_ref().map(|p| p.cert.fingerprint.as_str())
        ),
        (Some(voip.as_str()), Some(voip2.as_str()))
    );
    assert!(
        d.diff.notes.iter().any(|n| n.code == "pins-rotated"),
        "{:?} {:?}",
        d.diff.notes,
        d.diff.pins
    );
    assert!(
        d.summary
            .iter()
            .any(|l| l.starts_with("sip-tls on wan0: certificate voip (SHA-256"))
    );
    e.discard().await.expect("discard");
    assert!(!e.diff(None, None).await.expect("diff").changed);

    // A NIC's host name.
    e.set_nic(
        &n("wan0"),
        switchboard_domain::NicSettings {
            hostname: Some("sip.example.test".parse().expect("host")),
            ..Default::default()
        },
    )
    .await
    .expect("nic");
    let d = e.diff(None, None).await.expect("diff");
    assert_eq!(d.diff.nics.len(), 1, "{:?}", d.diff.nics);
    assert_eq!(d.diff.nics[0].to.as_deref(), Some("sip.example.test"));
    e.discard().await.expect("discard");

    // A provisioning setting.
    let mut settings = e.provisioning().await.expect("settings");
    settings.sip_tls_hostname = Some("voip.example.test".parse().expect("host"));
    e.set_provisioning(settings).await.expect("provisioning");
    let d = e.diff(None, None).await.expect("diff");
    assert_eq!(d.diff.provisioning.len(), 1, "{:?}", d.diff.provisioning);
    assert!(e.status().await.expect("status").candidate_changed);
    e.discard().await.expect("discard");
    assert!(!e.diff(None, None).await.expect("diff").changed);
    assert!(!e.status().await.expect("status").candidate_changed);
}

#[tokio::test]
async fn a_rollback_restores_the_certificates_and_its_diff_says_so() {
    let e = engine().await;
    let [voip, voip2] = import_voip_certs(&e).await;
    let wan: std::net::IpAddr = "198.51.100.1".parse().expect("ip");
    let presented = |e: &Engine| -> Vec<String> {
        e.tls_tables()
            .web
            .presented(wan)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    e.bind(
        ServiceId::Web,
        Some(&n("wan0")),
        &"voip".parse().expect("name"),
        true,
    )
    .await
    .expect("bind");
    e.update(&origin(), "voip", None).await.expect("1");
    assert_eq!(presented(&e), std::slice::from_ref(&voip));
    e.bind(
        ServiceId::Web,
        Some(&n("wan0")),
        &"voip2".parse().expect("name"),
        true,
    )
    .await
    .expect("bind");
    let u = e.update(&origin(), "voip2", None).await.expect("2");
    assert_eq!(u.revision, Some(2), "a binding alone is an Update");
    assert_eq!(presented(&e), std::slice::from_ref(&voip2));
    e.rollback(&origin(), 1, "", None).await.expect("3");
    assert_eq!(
        presented(&e),
        std::slice::from_ref(&voip),
        "the rollback presents the old certificate"
    );
    let d = e.diff(Some(2), Some(3)).await.expect("diff");
    let t: Vec<_> = d
        .diff
        .tls
        .iter()
        .filter(|t| t.service == ServiceId::Web)
        .collect();
    assert_eq!(t.len(), 1, "{:?}", d.diff.tls);
    assert_eq!(
        t[0].to.as_ref().map(|p| p.cert.fingerprint.clone()),
        Some(voip)
    );
    let r = e.revision(3).await.expect("3");
    assert!(
        r.plan
            .summary()
            .iter()
            .any(|l| l.starts_with("web on wan0 [198.51.100.1]: voip (")),
        "{:?}",
        r.plan.summary()
    );
}

/// Two administrators change different provisioning settings at the same
/// moment, 1,000 times: each change is applied to what the other left,
/// under the engine's lock, so both are kept every time (a read, then a
/// write of the whole settings, loses one now and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_provisioning_changes_are_both_kept() {
    use std::sync::Arc;
    use switchboard_domain::install::Platform;
    use switchboard_domain::provisioning::ProvisioningChange;

    let e = Arc::new(engine().await);
    let host: switchboard_domain::Hostname = switchboard_system::dns::hostname()
        .parse()
        .expect("the host name is a valid name");
    for i in 0..1000u32 {
        // One sets the web services URI (the self-signed certificate
        // covers the address); the other the SIP/TLS host name (set, then
        // cleared) and an app store page.
        let uri = format!("https://198.51.100.1:{}", 1000 + i);
        let web = ProvisioningChange {
            web_uri: Some(Some(uri.parse().expect("uri"))),
            ..Default::default()
        };
        let sip_host = (i % 2 == 0).then(|| host.clone());
        let store = format!("https://play.example.test/app/{i}");
        let sip = ProvisioningChange {
            sip_tls_hostname: Some(sip_host.clone()),
            app_stores: [(Platform::Android, Some(store.parse().expect("url")))].into(),
            ..Default::default()
        };
        let (a, b) = (e.clone(), e.clone());
        let one = tokio::spawn(async move { a.change_provisioning(web).await });
        let two = tokio::spawn(async move { b.change_provisioning(sip).await });
        one.await.expect("task").expect("web URI change");
        two.await.expect("task").expect("SIP/TLS change");
        let now = e.provisioning().await.expect("settings");
        assert_eq!(
            now.web_uri.map(|u| u.to_string()),
            Some(uri),
            "round {i}: the web URI change was lost"
        );
        assert_eq!(
            now.sip_tls_hostname, sip_host,
            "round {i}: SIP/TLS host name lost"
        );
        assert_eq!(
            now.app_stores
                .get(&Platform::Android)
                .map(|u| u.to_string()),
            Some(store),
            "round {i}: the app store change was lost"
        );
    }
}

#[tokio::test]
async fn a_provisioning_change_keeps_what_it_does_not_name_and_clears_what_is_blank() {
    use switchboard_domain::provisioning::ProvisioningChange;
    let e = engine().await;
    let uri: switchboard_domain::provisioning::WebUri =
        "https://198.51.100.1".parse().expect("uri");
    let set = ProvisioningChange {
        web_uri: Some(Some(uri.clone())),
        ..Default::default()
    };
    assert!(e.change_provisioning(set).await.expect("set").changed);
    let nothing = e
        .change_provisioning(ProvisioningChange::default())
        .await
        .expect("no change");
    assert!(!nothing.changed);
    assert_eq!(e.provisioning().await.expect("settings").web_uri, Some(uri));
    // A name the certificate does not cover is refused, and changes nothing.
    let uncovered = ProvisioningChange {
        web_uri: Some(Some("https://elsewhere.example.test".parse().expect("uri"))),
        ..Default::default()
    };
    let refused = e.change_provisioning(uncovered).await.unwrap_err();
    assert_eq!(refused.code(), "web-uri-not-covered");
    let clear = ProvisioningChange {
        web_uri: Some(None),
        ..Default::default()
    };
    assert!(e.change_provisioning(clear).await.expect("clear").changed);
    assert_eq!(e.provisioning().await.expect("settings").web_uri, None);
}

#[tokio::test]
async fn a_nic_change_keeps_the_setting_it_does_not_name() {
    use switchboard_domain::tls::NicSettingsChange;
    let e = engine().await;
    let wan = n("wan0");
    let resolvers =
        switchboard_domain::tls::Resolvers::new(vec!["198.51.100.53".parse().expect("ip")])
            .expect("resolvers");
    let all = NicSettingsChange {
        hostname: Some(Some("voip.example.test".parse().expect("name"))),
        public_address: Some(Some("203.0.113.7".parse().expect("ip"))),
        resolvers: Some(resolvers.clone()),
    };
    e.change_nic(&wan, all).await.expect("all");
    let hostname_only = NicSettingsChange {
        hostname: Some(Some("voip2.example.test".parse().expect("name"))),
        ..Default::default()
    };
    e.change_nic(&wan, hostname_only).await.expect("hostname");
    let settings = e.candidate().await.expect("candidate").nics[&wan].clone();
    assert_eq!(
        settings.public_address,
        Some("203.0.113.7".parse().expect("ip"))
    );
    assert_eq!(settings.resolvers, resolvers);
    assert_eq!(
        settings.hostname.map(|h| h.to_string()).as_deref(),
        Some("voip2.example.test")
    );
    let clear = NicSettingsChange {
        hostname: Some(None),
        public_address: Some(None),
        resolvers: Some(Default::default()),
    };
    e.change_nic(&wan, clear).await.expect("clear");
    assert!(
        !e.candidate()
            .await
            .expect("candidate")
            .nics
            .contains_key(&wan)
    );
}

#[tokio::test]
async fn a_revision_comment_is_one_line_however_it_arrives() {
    let e = engine().await;
    for bad in [
        "two\nlines",
        "tab\there",
        "escape \u{1b}[2J",
        &"x".repeat(501),
    ] {
        let update = e.update(&origin(), bad, None).await.unwrap_err();
        assert_eq!(update.code(), "invalid-comment", "update {bad:?}");
    }
    e.update(&origin(), "  first  ", None).await.expect("1");
    e.set_cell(ServiceId::Ssh, &n("wan0"), false)
        .await
        .expect("edit");
    e.update(&origin(), "", None).await.expect("2");
    let refused = e
        .rollback(&origin(), 1, "back\r\n", None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid-comment");
    e.rollback(&origin(), 1, "", None).await.expect("3");
    e.set_cell(ServiceId::Ssh, &n("wan0"), false)
        .await
        .expect("edit");
    e.update(&origin(), "", None).await.expect("4");
    e.rollback(&origin(), 1, " ssh back on wan0 ", None)
        .await
        .expect("5");
    let comments: Vec<String> = e
        .revisions()
        .await
        .expect("revisions")
        .into_iter()
        .map(|r| r.comment)
        .collect();
    assert_eq!(
        comments,
        [
            "ssh back on wan0",
            "",
            "rollback to revision 1",
            "",
            "first"
        ],
        "newest first"
    );
}

/// The token of the newest message of the outbox.
async fn latest_token(e: &Engine) -> String {
    let sms = e.sms().await.expect("sms");
    token_in(sms[0].text.as_deref().expect("outbox text"))
}

/// Signs `csr_pem` with the test intermediate as a CA would (`openssl x509
/// -req`, extensions copied): the chain, PEM.
fn sign_request(p: &switchboard_pki::testpki::Pki, csr_pem: &str) -> String {
    use switchboard_pki::testpki::{pem, read, tempdir, write};
    let dir = tempdir();
    let d = dir.path();
    write(d, "csr.pem", csr_pem);
    write(d, "ca.pem", p.intermediate.pem());
    write(d, "ca.key", pem("PRIVATE KEY", p.intermediate.key_der()));
    switchboard_pki::testpki::sign_request(d, "csr.pem", "ca.pem", "ca.key", 90, "signed.pem");
    String::from_utf8(read(d, "signed.pem")).expect("PEM") + &p.intermediate.pem()
}

#[tokio::test]
async fn a_key_made_here_gets_its_signed_certificate_attached_and_nothing_else() {
    let e = engine().await;
    let name: switchboard_domain::CertName = "made-here".parse().expect("name");
    let names = vec![
        switchboard_pki::RequestName::dns("voip.example.test").expect("name"),
        switchboard_pki::RequestName::Ip("192.0.2.10".parse().expect("ip")),
    ];
    let request = e
        .request_cert(
            &name,
            switchboard_pki::RequestKeyType::EcdsaP256,
            names.clone(),
        )
        .await
        .expect("request");
    assert_eq!(request.names, ["voip.example.test", "192.0.2.10"]);
    assert!(
        request
            .csr_pem
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
    let again = e
        .request_cert(&name, switchboard_pki::RequestKeyType::EcdsaP256, names)
        .await
        .expect_err("the name is taken");
    assert_eq!(again.code(), "cert-exists");
    assert_eq!(e.cert_requests().await.expect("list").len(), 1);
    assert!(
        e.certs()
            .await
            .expect("certs")
            .iter()
            .all(|c| c.name != "made-here")
    );

    let p = switchboard_pki::testpki::pki();
    // A certificate for another key, a key in the upload, garbage: refused,
    // and the request is still there.
    let other = format!("{}{}", p.leaf.pem(), p.intermediate.pem());
    let with_key = format!("{other}{}", p.leaf.key_pem());
    for (upload, key, code) in [
        (other.as_bytes(), None, "request-key-mismatch"),
        (with_key.as_bytes(), None, "key-not-expected"),
        (other.as_bytes(), Some(p.leaf.key_pem()), "key-not-expected"),
        (
            &b"-----BEGIN CERTIFICATE-----\nAAAA\n"[..],
            None,
            "truncated",
        ),
        (
            &[0u8; switchboard_pki::MAX_UPLOAD + 1][..],
            None,
            "oversize",
        ),
    ] {
        let err = e
            .import_cert(&name, upload, key.as_deref().map(str::as_bytes), None)
            .await
            .expect_err(code);
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.to_string().contains("PRIVATE"), "{err}");
        assert_eq!(
            e.cert_requests().await.expect("list").len(),
            1,
            "{code}: nothing changed"
        );
    }

    let signed = sign_request(&p, &request.csr_pem);
    let cert = e
        .import_cert(&name, signed.as_bytes(), None, None)
        .await
        .expect("the CA's answer is attached to the key");
    assert!(cert.has_key, "{cert:?}");
    assert_eq!(cert.info.dns_names, ["voip.example.test"]);
    assert!(e.cert_requests().await.expect("list").is_empty());
    e.bind(ServiceId::SipTls, Some(&n("wan0")), &name, false)
        .await
        .expect("bindable: it has its key");

    // A request can be withdrawn with `cert delete`.
    let gone: switchboard_domain::CertName = "withdrawn".parse().expect("name");
    e.request_cert(
        &gone,
        switchboard_pki::RequestKeyType::EcdsaP256,
        vec![switchboard_pki::RequestName::dns("a.example.test").expect("name")],
    )
    .await
    .expect("request");
    e.delete_cert(&gone).await.expect("delete the request");
    assert!(e.cert_requests().await.expect("list").is_empty());

    // The pending requests are bounded.
    let one = || vec![switchboard_pki::RequestName::dns("a.example.test").expect("name")];
    for i in 0..crate::certs::MAX_PENDING_REQUESTS {
        let name = format!("pending-{i}").parse().expect("name");
        e.request_cert(&name, switchboard_pki::RequestKeyType::EcdsaP256, one())
            .await
            .expect("within the limit");
    }
    let over = e
        .request_cert(
            &"one-too-many".parse().expect("name"),
            switchboard_pki::RequestKeyType::EcdsaP256,
            one(),
        )
        .await
        .expect_err("over the limit");
    assert_eq!(over.code(), "too-many-requests");
    assert_eq!(
        e.cert_requests().await.expect("list").len(),
        crate::certs::MAX_PENDING_REQUESTS
    );
}

#[tokio::test]
async fn bound_certificates_near_their_end_are_a_warning_at_30_days_and_an_error_at_7() {
    use switchboard_pki::testpki::{leaf_params, with_validity};
    let e = engine().await;
    let p = switchboard_pki::testpki::pki();
    let now = jiff::Timestamp::now();
    let days = |d: i64| now + jiff::SignedDuration::from_hours(24 * d);
    for (name, until, bound) in [
        ("far", days(40), true),
        ("soon", days(20), true),
        ("imminent", days(5), true),
        ("gone", days(-1), true),
        ("unbound", days(3), false),
    ] {
        let params = with_validity(leaf_params(&["voip.example.test"]), days(-100), until);
        let leaf = p
            .intermediate
            .leaf_with(params, rcgen::KeyPair::generate().expect("key"));
        let cert: switchboard_domain::CertName = name.parse().expect("name");
        e.import_cert(
            &cert,
            format!("{}{}{}", leaf.pem(), leaf.key_pem(), p.intermediate.pem()).as_bytes(),
            None,
            None,
        )
        .await
        .expect("import");
        if bound {
            let service = if name == "soon" {
                ServiceId::Web
            } else {
                ServiceId::SipTls
            };
            let nic = if name == "gone" { "lan0" } else { "wan0" };
            e.bind(service, Some(&n(nic)), &cert, true)
                .await
                .unwrap_or_else(|err| panic!("bind {name}: {err}"));
        }
    }
    // Later bindings of the same (service, NIC) replace earlier ones:
    // `imminent` replaced `far` on sip-tls/wan0; bind `far` elsewhere.
    e.bind(
        ServiceId::Console,
        Some(&n("lan0")),
        &"far".parse().expect("name"),
        true,
    )
    .await
    .expect("bind");
    let status = e.status().await.expect("status");
    let seen: Vec<(&str, &str, switchboard_domain::Severity)> = status
        .expiring
        .iter()
        .map(|x| (x.cert.as_str(), x.code.as_str(), x.severity))
        .collect();
    use switchboard_domain::Severity::{Error, Warning};
    assert_eq!(
        seen,
        [
            ("gone", "cert-expired", Error),
            ("imminent", "cert-expiring", Error),
            ("soon", "cert-expires-soon", Warning),
        ],
        "{:#?}",
        status.expiring
    );
    let soon = &status.expiring[2];
    assert_eq!(soon.days_left, 19, "{soon:?}");
    assert_eq!(soon.used_by, ["web on wan0"]);
    assert!(
        soon.message.contains("presented by web on wan0"),
        "{soon:?}"
    );
    assert!(soon.hint.contains("cert request"), "{soon:?}");
    assert_eq!(status.expiring[1].days_left, 4);
    assert_eq!(status.expiring[0].days_left, -1);
}

#[tokio::test]
async fn a_next_key_is_pinned_ahead_and_a_rotation_names_the_phones_it_breaks() {
    let (e, ann) = with_ann(switchboard_system::sms::Gateway::Outbox).await;
    let host = switchboard_system::dns::hostname();
    let from = std::net::IpAddr::from([192, 0, 2, 9]);
    let pins_of = |body: &str| -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_str(body).expect("JSON document");
        doc["tls_pins"]
            .as_array()
            .expect("native documents carry pins")
            .iter()
            .map(|p| p.as_str().expect("pin").to_owned())
            .collect()
    };
    // Ann is activated with the current key's pin only.
    e.activate(&ann).await.expect("activate");
    let token = latest_token(&e).await;
    let ann_pins = pins_of(&e.fetch_document(&token, from).await.expect("document").body);
    assert_eq!(ann_pins.len(), 1, "{ann_pins:?}");

    // The next key is made ahead; the Update publishes its pin too.
    let next: switchboard_domain::CertName = "next".parse().expect("name");
    let request = e
        .request_cert(
            &next,
            switchboard_pki::RequestKeyType::EcdsaP256,
            vec![switchboard_pki::RequestName::dns(&host).expect("the host name")],
        )
        .await
        .expect("request");
    let d = e.diff(None, None).await.expect("diff");
    let pins = d.diff.pins.as_ref().expect("the pins change");
    assert_eq!(
        pins.to,
        [ann_pins[0].clone(), request.pin.clone()],
        "{pins:?}"
    );
    assert!(
        d.diff.notes.iter().all(|n| n.code != "pins-rotated"),
        "{:?}",
        d.diff.notes
    );
    e.update(&origin(), "publish the next key's pin", None)
        .await
        .expect("update");
    let bob = e
        .add_account(switchboard_provision::NewAccount {
            username: None,
            display_name: Some("Bob".parse().expect("name")),
            phone: "+15550100198".parse().expect("phone"),
            group: None,
            profile: Default::default(),
        })
        .await
        .expect("account")
        .username;
    e.activate(&bob).await.expect("activate");
    let token = latest_token(&e).await;
    let bob_pins = pins_of(&e.fetch_document(&token, from).await.expect("document").body);
    assert_eq!(bob_pins, [ann_pins[0].clone(), request.pin.clone()]);

    // The rotation: the CA's answer for the next key, bound to sip-tls.
    let p = switchboard_pki::testpki::pki();
    let signed = sign_request(&p, &request.csr_pem);
    e.import_cert(&next, signed.as_bytes(), None, None)
        .await
        .expect("import");
    e.bind(ServiceId::SipTls, None, &next, false)
        .await
        .expect("bind");
    let status = e.status().await.expect("status");
    let broken: Vec<&switchboard_domain::Diagnostic> = status
        .diagnostics
        .iter()
        .filter(|d| d.code == DiagnosticCode::PinsBreakPhones)
        .collect();
    assert_eq!(broken.len(), 1, "{:#?}", status.diagnostics);
    let message = &broken[0].message;
    assert!(
        message.contains("1 native phone(s)") && message.contains(ann.as_str()),
        "{message}"
    );
    assert!(
        !message.contains(bob.as_str()),
        "Bob pins the next key: {message}"
    );
    assert!(
        broken[0].hint.contains("switchboard activate"),
        "{}",
        broken[0].hint
    );
    let d = e.diff(None, None).await.expect("diff");
    assert_eq!(
        d.diff.pins.as_ref().map(|p| p.to.clone()),
        Some(vec![request.pin.clone()])
    );
    assert!(
        d.diff.notes.iter().all(|n| n.code != "pins-rotated"),
        "the new key was published ahead: {:?}",
        d.diff.notes
    );
    e.update(&origin(), "rotate to the next key", None)
        .await
        .expect("a warning does not block the Update");

    // Ann, activated again, pins the new key: nobody is broken any more.
    e.activate(&ann).await.expect("activate");
    let token = latest_token(&e).await;
    e.fetch_document(&token, from).await.expect("document");
    let status = e.status().await.expect("status");
    assert!(
        status
            .diagnostics
            .iter()
            .all(|d| d.code != DiagnosticCode::PinsBreakPhones),
        "{:#?}",
        status.diagnostics
    );
}

#[tokio::test]
async fn without_kamailio_and_a_relay_there_are_no_calls_and_status_says_no_relay() {
    let e = engine().await;
    assert!(e.calls().await.expect("calls").is_empty());
    let s = e.status().await.expect("status");
    assert_eq!((s.sip, s.media), (None, None));
    // Without `--media`, the plan has no media section and Kamailio (when
    // driven) no call routing.
    assert!(e.context().media.is_none());
}

#[tokio::test]
async fn an_acme_certificate_shows_its_renewal_until_it_is_deleted() {
    let e = engine().await;
    import_voip_certs(&e).await;
    let (voip, voip2): (switchboard_domain::CertName, switchboard_domain::CertName) = (
        "voip".parse().expect("name"),
        "voip2".parse().expect("name"),
    );
    let order = crate::acme::AcmeOrder {
        name: voip.clone(),
        domains: vec!["voip.example.test".parse().expect("name")],
        directory: "https://ca.example.test/dir".into(),
        contact: vec![],
        challenge: crate::acme::AcmeChallenge::Http01,
    };
    let record = serde_json::to_string(&crate::renewal::Renewal::first(&order)).expect("json");
    e.store
        .lock()
        .await
        .set_acme_renewal("voip", Some(&record))
        .expect("kept");
    let (shown, _) = e.cert(&voip).await.expect("cert");
    let acme = shown.acme.expect("an ACME certificate shows its renewal");
    assert_eq!((acme.generation, acme.challenge.as_str()), (1, "http-01"));
    assert!(acme.next_renewal > Timestamp::now(), "not due yet");
    assert!(e.cert(&voip2).await.expect("cert").0.acme.is_none());
    match e.acme_renew(&voip2).await {
        Err(EngineError::Acme {
            code: "not-renewable",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    e.delete_cert(&voip).await.expect("deleted");
    let left = crate::renewal::records(&*e.store.lock().await).expect("records");
    assert!(
        left.is_empty(),
        "a deleted certificate is not renewed: {left:?}"
    );
}

/// The accounts page's listing: each account's state from no link to
/// activated, searched and filtered by it, and bulk actions with a result
/// per account.
#[tokio::test]
async fn accounts_are_found_by_state_and_acted_on_in_bulk_one_result_each() {
    use crate::accounts::{AccountSearch, BulkAction};
    use crate::views::AccountState;
    let (e, ann) = with_ann(switchboard_system::sms::Gateway::Outbox).await;
    let bob = e
        .add_account(switchboard_provision::NewAccount {
            username: Some("bob".parse().expect("name")),
            display_name: None,
            phone: "+15550100200".parse().expect("phone"),
            group: Some("sales".parse().expect("group")),
            profile: Default::default(),
        })
        .await
        .expect("bob")
        .username;
    let find = |state: Option<&str>, text: Option<&str>| {
        let q = AccountSearch::new(text, state, None, None, None).expect("search");
        let e = &e;
        async move {
            let v = e.find_accounts(&q).await.expect("find");
            assert!(!v.registrations_known, "no Kamailio in this engine");
            v.accounts
                .into_iter()
                .map(|a| (a.account.username.to_string(), a.state))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find(None, None).await,
        [
            (ann.to_string(), AccountState::NoLink),
            ("bob".into(), AccountState::NoLink)
        ]
    );
    let results = e
        .bulk(&BulkAction::Activate, &[bob.clone(), bob.clone()])
        .await
        .expect("bulk");
    assert_eq!(results.len(), 1, "a name given twice is acted on once");
    assert!(results[0].ok, "{results:?}");
    assert_eq!(
        find(Some("link-sent"), None).await,
        [("bob".into(), AccountState::LinkSent)]
    );
    assert_eq!(find(Some("no-link"), Some("ANN")).await.len(), 1);
    let nobody: switchboard_provision::Username = "nobody".parse().expect("name");
    let results = e
        .bulk(
            &BulkAction::SetGroup(Some("field".parse().expect("group"))),
            &[ann.clone(), nobody.clone()],
        )
        .await
        .expect("bulk");
    assert!(results[0].ok);
    assert_eq!(
        (results[1].ok, results[1].code.as_deref()),
        (false, Some("no-such-account")),
        "one account failing does not stop the others"
    );
    assert_eq!(find(None, Some("field")).await.len(), 1);
    let results = e
        .bulk(&BulkAction::Delete, &[ann.clone(), bob.clone()])
        .await
        .expect("delete");
    assert!(results.iter().all(|r| r.ok), "{results:?}");
    assert!(find(None, None).await.is_empty());
    for bad in [vec![], vec![nobody; crate::accounts::MAX_BULK + 1]] {
        assert_eq!(
            e.bulk(&BulkAction::Revoke, &bad)
                .await
                .expect_err("refused")
                .code(),
            "invalid-bulk"
        );
    }
}

#[test]
fn an_account_search_refuses_what_it_cannot_mean() {
    use crate::accounts::AccountSearch;
    let q = AccountSearch::new(
        Some("  ann "),
        Some("activated"),
        Some("-phone"),
        Some(3),
        Some(25),
    )
    .expect("valid");
    assert_eq!(
        (q.text(), q.sort_key(), q.page(), q.per_page()),
        ("ann", "-phone".to_owned(), 3, 25)
    );
    let long = "x".repeat(101);
    for (text, state, sort, page, per_page) in [
        (Some(long.as_str()), None, None, None, None),
        (Some("a\u{0}b"), None, None, None, None),
        (None, Some("registered'; --"), None, None, None),
        (None, None, Some("ha1"), None, None),
        (None, None, Some("--phone"), None, None),
        (None, None, None, Some(0), None),
        (None, None, None, None, Some(0)),
        (None, None, None, None, Some(201)),
    ] {
        let e = AccountSearch::new(text, state, sort, page, per_page).expect_err("refused");
        assert_eq!(e.code(), "invalid-account-search", "{e}");
    }
}

/// The audit log says what changed, in words and data, under the
/// request's origin; the trial's deadline rollback is the system's.
#[tokio::test]
async fn changes_are_audited_in_words_with_who_and_the_system_rolls_back() {
    let e = engine().await;
    import_voip_certs(&e).await;
    let alice = Origin {
        actor: "alice".into(),
        address: "console from 192.0.2.2 to 192.0.2.1:8443".into(),
        arrival: None,
    };
    let (bound, recorded) = crate::audit::on_behalf_of(
        alice.clone(),
        e.bind(
            ServiceId::SipTls,
            Some(&n("wan0")),
            &"voip2".parse().expect("name"),
            true,
        ),
    )
    .await;
    bound.expect("bind");
    assert_eq!(recorded, 1);
    let (account, _) = crate::audit::on_behalf_of(
        alice.clone(),
        e.add_account(switchboard_provision::NewAccount {
            username: Some("alice.phone".parse().expect("user")),
            display_name: None,
            phone: "+15550100123".parse().expect("phone"),
            group: None,
            profile: Default::default(),
        }),
    )
    .await;
    let account = account.expect("account");
    let (deleted, _) =
        crate::audit::on_behalf_of(alice.clone(), e.delete_account(&account.username)).await;
    deleted.expect("delete");
    // A refused change writes no entry of its own (the web layer records the refusal).
    let (refused, count) =
        crate::audit::on_behalf_of(alice.clone(), e.delete_account(&account.username)).await;
    assert_eq!(
        (refused.expect_err("gone").code(), count),
        ("no-such-account", 0)
    );
    e.update(&origin(), "", None).await.expect("1");
    e.set_cell(ServiceId::Sql, &n("wan0"), false)
        .await
        .expect("edit");
    let p = e.update(&origin(), "", Some(30)).await.expect("2 pending");
    e.expire_pending(p.pending_until.expect("deadline"))
        .await
        .expect("expired");
    let log = e.audit_log(100).await.expect("log");
    let find = |kind: &str| {
        log.iter()
            .find(|a| a.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {log:#?}"))
    };
    let bind = find("cert.bind");
    assert_eq!(bind.action, "bound certificate voip2 to sip-tls on wan0");
    assert_eq!(
        (bind.actor.as_str(), bind.outcome.as_str()),
        ("alice", "done")
    );
    assert_eq!(bind.address, alice.address);
    assert_eq!(bind.data["cert"], "voip2");
    assert_eq!(bind.data["nic"], "wan0");
    let del = find("account.delete");
    assert_eq!(del.action, "account alice.phone deleted");
    assert_eq!(del.actor, "alice");
    let expired = find("revision.expire");
    assert_eq!(
        expired.action,
        "revision 2 rolled back at its deadline (revision 1 runs again)"
    );
    assert_eq!(expired.actor, crate::audit::SYSTEM_ACTOR);
    assert_eq!(expired.data["revision"], 2);
    let pending = find("revision.update");
    assert_eq!(pending.actor, "root");
    // No entry holds a secret: the account's SIP password or HA1 are nowhere.
    let text = serde_json::to_string(&log).expect("json");
    assert!(
        !text.contains("ha1") && !text.contains("password\":\""),
        "{text}"
    );
}

/// A backup restored into another engine: certificates with their keys,
/// accounts, administrators and the candidate come along; a wrong
/// passphrase or a conflicting appliance changes nothing.
#[tokio::test]
async fn a_backup_restores_onto_a_fresh_engine_and_a_refusal_changes_nothing() {
    let a = engine().await;
    import_voip_certs(&a).await;
    a.bind(
        ServiceId::SipTls,
        Some(&n("wan0")),
        &"voip2".parse().expect("name"),
        true,
    )
    .await
    .expect("bind");
    a.add_account(switchboard_provision::NewAccount {
        username: Some("alice".parse().expect("user")),
        display_name: None,
        phone: "+15550100123".parse().expect("phone"),
        group: None,
        profile: Default::default(),
    })
    .await
    .expect("account");
    a.set_admin_password(&origin(), "admin", "correct horse battery")
        .await
        .expect("admin");
    a.add_admin("ops", "operator password", crate::Role::Operator)
        .await
        .expect("ops");
    assert_eq!(
        a.backup("short").await.expect_err("policy").code(),
        "weak-passphrase"
    );
    let archive = a.backup("a long backup passphrase").await.expect("backup");
    assert!(archive.starts_with(b"age-encryption.org/v1\n-> scrypt "));

    let b = engine().await;
    let before = b.candidate().await.expect("candidate");
    assert_eq!(
        b.restore(&archive, "not the passphrase")
            .await
            .expect_err("wrong")
            .code(),
        "wrong-passphrase"
    );
    assert_eq!(b.candidate().await.expect("c"), before);
    assert!(b.accounts().await.expect("a").is_empty());
    assert!(
        b.certs()
            .await
            .expect("c")
            .iter()
            .all(|c| c.name != "voip2")
    );

    let done = b
        .restore(&archive, "a long backup passphrase")
        .await
        .expect("restore");
    assert!(done.certificates_added.contains(&"voip2".to_owned()));
    assert_eq!(done.accounts_added, 1);
    assert!(
        done.diff.changed,
        "the restored candidate differs from what runs"
    );
    assert_eq!(
        b.candidate().await.expect("c"),
        a.candidate().await.expect("c")
    );
    assert!(
        b.verify_password("ops", "operator password")
            .await
            .expect("v")
    );
    assert_eq!(
        b.admin_role("ops").await.expect("role"),
        Some(crate::Role::Operator)
    );
    b.update(&origin(), "restored", None).await.expect("update");
    // The keys came along: the certificate can be presented.
    assert!(
        b.certs()
            .await
            .expect("c")
            .iter()
            .any(|c| c.name == "voip2" && c.has_key)
    );

    // An appliance with another certificate under the same name: refused,
    // nothing written.
    let c = engine().await;
    let p = switchboard_pki::testpki::pki();
    let other = p.intermediate.leaf(&["other.example.test"]);
    c.import_cert(
        &"voip2".parse().expect("name"),
        format!("{}{}", other.pem(), other.key_pem()).as_bytes(),
        None,
        None,
    )
    .await
    .expect("import");
    let before = c.candidate().await.expect("c");
    assert_eq!(
        c.restore(&archive, "a long backup passphrase")
            .await
            .expect_err("conflict")
            .code(),
        "backup-conflict"
    );
    assert_eq!(c.candidate().await.expect("c"), before);
    assert!(c.accounts().await.expect("a").is_empty());
    assert_eq!(c.admin_role("ops").await.expect("role"), None);
}
