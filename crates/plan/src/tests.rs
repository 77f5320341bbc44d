//! Golden tests of the whole plan, section by section, and of the diff of
//! two plans (refresh with `UPDATE_EXPECT=1`).

use std::fmt::Write as _;

use expect_test::{ExpectFile, expect_file};
use switchboard_domain::testing::{candidate, cert, facts, name};
use switchboard_domain::{Candidate, CertFacts, Facts, NicSettings, ServiceId, Validity};

use super::*;
use crate::kamailio::tests::env;

fn cert_facts(seed: u8, subject: &str, not_after: &str, names: &[&str]) -> CertFacts {
    CertFacts {
        has_key: true,
        validity: Validity::Valid,
        self_signed: false,
        fingerprint: (0..32)
            .map(|i| format!("{:02X}", seed.wrapping_mul(31).wrapping_add(i)))
            .collect::<Vec<_>>()
            .join(":"),
        subject: subject.into(),
        not_after: not_after.into(),
        names: names.iter().map(|n| n.to_string()).collect(),
        pin: format!(
            "sha256/{}=",
            char::from(b'A' + seed % 26).to_string().repeat(43)
        ),
    }
}

/// The story's appliance: lan0 and wan0 configured, dmz0 without address,
/// the console certificate on lan0, the voip one on wan0 (and a spare,
/// voip2), host names and provisioning settings declared.
fn story() -> (Candidate, Facts, Context) {
    let mut f = facts(&[
        ("lan0", Some("192.0.2.1")),
        ("wan0", Some("198.51.100.1")),
        ("dmz0", None),
    ]);
    for (n, c) in [
        (
            "console",
            cert_facts(
                1,
                "CN=console.lan.test",
                "2028-01-05T00:00:00Z",
                &["console.lan.test"],
            ),
        ),
        (
            "voip",
            cert_facts(
                2,
                "CN=voip.example.test",
                "2028-01-05T00:00:00Z",
                &["voip.example.test"],
            ),
        ),
        (
            "voip2",
            cert_facts(
                3,
                "CN=voip.example.test",
                "2028-01-06T00:00:00Z",
                &["voip.example.test"],
            ),
        ),
    ] {
        f.certificates.insert(cert(n), c);
    }
    let mut c = candidate();
    c.matrix = c
        .matrix
        .production(&name("lan0"), &name("wan0"), &f)
        .expect("preset");
    c.bindings
        .bind(ServiceId::Console, Some(&name("lan0")), cert("console"))
        .expect("bind");
    for s in [ServiceId::SipTls, ServiceId::Web] {
        c.bindings
            .bind(s, Some(&name("wan0")), cert("voip"))
            .expect("bind");
    }
    for (nic, host) in [("lan0", "console.lan.test"), ("wan0", "voip.example.test")] {
        c.nics.insert(
            name(nic),
            NicSettings {
                hostname: Some(host.parse().expect("host")),
                ..Default::default()
            },
        );
    }
    c.provisioning.sip_tls_hostname = Some("voip.example.test".parse().expect("host"));
    c.provisioning.web_uri = Some("https://voip.example.test".parse().expect("uri"));
    let context = Context {
        kamailio: Some(env()),
        media: Some(crate::media::Env::default()),
    };
    (c, f, context)
}

/// The plan as JSON, its long texts (golden-tested on their own) elided.
fn sections(p: &Plan) -> String {
    let mut p = p.clone();
    p.ruleset = format!(
        "<{} lines: see the .nft golden files>",
        p.ruleset.lines().count()
    );
    if let Some(k) = &mut p.kamailio {
        k.cfg = format!("<{} lines: see kamailio-*.cfg>", k.cfg.lines().count());
        k.tls_cfg = format!(
            "<{} lines: see kamailio-*.tls.cfg>",
            k.tls_cfg.lines().count()
        );
    }
    if let Some(m) = &mut p.media {
        m.conf = format!("<{} lines: see rtpengine-*.conf>", m.conf.lines().count());
    }
    serde_json::to_string_pretty(&p).expect("json") + "\n"
}

#[test]
fn the_story_plan_has_every_section() {
    let (c, f, ctx) = story();
    let (p, warnings) = plan(&c, &f, &ctx).expect("plannable");
    assert!(
        warnings.iter().all(|w| !w.is_error()),
        "only warnings: {warnings:?}"
    );
    expect_file!["../test_data/plan-story.json"].assert_eq(&sections(&p));
    expect_file!["../test_data/plan-story.txt"].assert_eq(&(p.summary().join("\n") + "\n"));
    let k = p.kamailio.as_ref().expect("kamailio");
    expect_file!["../test_data/plan-story.kamailio.tls.cfg"].assert_eq(&k.tls_cfg);
    // With the media relay, Kamailio routes calls through it.
    expect_file!["../test_data/plan-story.kamailio.cfg"].assert_eq(&k.cfg);
    let m = p.media.as_ref().expect("media");
    expect_file!["../test_data/plan-story.rtpengine.conf"].assert_eq(&m.conf);
    assert_eq!(
        p.ruleset,
        nft::render(&c, &p.matrix),
        "the ruleset section is nft's rendering"
    );
    // Without Kamailio, its section and sockets are absent, the rest the same.
    let bare = render(&c, &f, &Context::default());
    assert!(bare.kamailio.is_none() && bare.media.is_none());
    assert_eq!(
        bare.sockets.len(),
        4,
        "console, web, metrics and http only: {:?}",
        bare.sockets
    );
    assert_eq!(
        (bare.tls.clone(), bare.provisioning.clone()),
        (p.tls.clone(), p.provisioning.clone())
    );
}

/// The diff from the story's plan to the plan after `edit`, in words, with
/// its notes and its unified diffs.
fn check_diff(edit: impl FnOnce(&mut Candidate), expect: ExpectFile) -> PlanDiff {
    let (c, f, ctx) = story();
    let before = render(&c, &f, &ctx);
    let mut after_c = c.clone();
    edit(&mut after_c);
    let after = render(&after_c, &f, &ctx);
    let d = diff(&before, &after, ("revision 1", "candidate"));
    let mut out = String::new();
    for line in d.summary() {
        let _ = writeln!(out, "{line}");
    }
    for n in &d.notes {
        let _ = writeln!(out, "note[{}]: {}", n.code, n.text);
    }
    for (what, text) in [
        ("kamailio.cfg", &d.kamailio.cfg),
        ("tls.cfg", &d.kamailio.tls_cfg),
        ("rtpengine.conf", &d.media),
        ("ruleset", &d.ruleset),
    ] {
        if !text.is_empty() {
            let _ = write!(out, "\n{what}:\n{text}");
        }
    }
    expect.assert_eq(&out);
    assert!(d.changed());
    d
}

#[test]
fn a_certificate_change_names_both_certificates_and_the_pins() {
    let d = check_diff(
        |c| {
            c.bindings
                .bind(ServiceId::SipTls, Some(&name("wan0")), cert("voip2"))
                .expect("bind")
        },
        expect_file!["../test_data/diff-certificate.txt"],
    );
    assert!(d.matrix.is_empty() && d.ruleset.is_empty() && d.ports.is_empty());
    assert_eq!(d.tls.len(), 1);
    let t = &d.tls[0];
    assert_eq!(
        (t.service, t.nic.as_ref()),
        (ServiceId::SipTls, Some(&name("wan0")))
    );
    assert_ne!(
        t.from.as_ref().map(|p| &p.cert.fingerprint),
        t.to.as_ref().map(|p| &p.cert.fingerprint)
    );
    assert!(d.notes.iter().any(|n| n.code == "pins-rotated"));
    expect_file!["../test_data/diff-certificate.json"]
        .assert_eq(&(serde_json::to_string_pretty(&d).expect("json") + "\n"));
}

#[test]
fn a_console_port_change_moves_the_socket_and_says_where_the_browser_goes() {
    let d = check_diff(
        |c| {
            c.set_port(ServiceId::Console, "9443".parse().expect("port"));
        },
        expect_file!["../test_data/diff-console-port.txt"],
    );
    assert_eq!(d.sockets.len(), 2, "{:?}", d.sockets);
    assert!(
        d.notes
            .iter()
            .any(|n| n.code == "console-port" && n.text.contains("9443"))
    );
}

#[test]
fn host_names_and_provisioning_settings_are_in_the_diff() {
    let d = check_diff(
        |c| {
            c.nics.get_mut(&name("wan0")).expect("wan0").hostname =
                Some("sip.example.test".parse().expect("host"));
            c.provisioning.sip_tls_hostname = Some("sip.example.test".parse().expect("host"));
            c.provisioning.web_uri = Some("https://sip.example.test:8444".parse().expect("uri"));
        },
        expect_file!["../test_data/diff-names.txt"],
    );
    assert_eq!(d.nics.len(), 1);
    assert_eq!(d.provisioning.len(), 2);
}

#[test]
fn denying_sip_tls_removes_kamailios_listen_and_its_profile() {
    let d = check_diff(
        |c| {
            let f = story().1;
            c.matrix
                .set(ServiceId::SipTls, &name("wan0"), false, &f)
                .expect("deny");
        },
        expect_file!["../test_data/diff-sip-tls-denied.txt"],
    );
    assert!(
        d.sockets.iter().any(|s| s.change == diff::Change::Removed
            && s.socket.to_string() == "tls:198.51.100.1:5061")
    );
}

#[test]
fn allowing_rtp_on_the_lan_adds_a_relay_interface_and_says_calls_lose_their_media() {
    let (_, f, _) = story();
    let d = check_diff(
        |c| {
            c.matrix
                .set(ServiceId::Rtp, &name("lan0"), true, &f)
                .expect("allow");
        },
        expect_file!["../test_data/diff-rtp-allowed.txt"],
    );
    assert!(
        d.media
            .contains("+interface = lan0/192.0.2.1;wan0/198.51.100.1"),
        "{}",
        d.media
    );
    assert!(
        d.notes.iter().any(|n| n.code == "media-restart"),
        "{:?}",
        d.notes
    );
}

#[test]
fn the_same_plan_has_no_diff() {
    let (c, f, ctx) = story();
    let p = render(&c, &f, &ctx);
    let d = diff(&p, &p, ("a", "b"));
    assert!(!d.changed(), "{d:?}");
    assert!(d.summary().is_empty() && d.notes.is_empty());
}

#[test]
fn a_version_1_plan_is_completed_from_its_candidate() {
    let (c, f, ctx) = story();
    let fresh = render(&c, &f, &ctx);
    // What the previous version recorded: matrix, ruleset, and TLS cells
    // with name and fingerprint only.
    let mut v1 = serde_json::json!({
        "matrix": fresh.matrix,
        "ruleset": fresh.ruleset,
        "tls": fresh.tls.iter().map(|a| serde_json::json!({
            "service": a.service, "nic": a.nic,
            "cert": a.cert.cert, "fingerprint": a.cert.fingerprint,
        })).collect::<Vec<_>>(),
    });
    let old: Plan = serde_json::from_value(v1.take()).expect("a version-1 plan reads");
    assert_eq!(old.version, 1);
    assert!(old.sockets.is_empty() && old.provisioning.pins.is_empty());
    let upgraded = old.upgrade(&c, &f, &ctx);
    assert_eq!(
        upgraded, fresh,
        "completed, it is the plan the candidate renders today"
    );
}

#[test]
fn a_version_2_plan_gains_the_media_relay_and_the_calls_in_kamailio() {
    let (c, f, ctx) = story();
    let fresh = render(&c, &f, &ctx);
    // What version 2 recorded: everything but the media section, and a
    // Kamailio script without calls.
    let without = Context {
        media: None,
        ..ctx.clone()
    };
    let mut v2 = render(&c, &f, &without);
    v2.version = 2;
    let json = serde_json::to_value(&v2).expect("json");
    assert!(json.get("media").is_some_and(serde_json::Value::is_null));
    let old: Plan = serde_json::from_value(json).expect("a version-2 plan reads");
    assert!(old.media.is_none());
    let upgraded = old.upgrade(&c, &f, &ctx);
    assert_eq!(upgraded, fresh, "the media section and the calls added");
    assert!(
        upgraded
            .kamailio
            .expect("kamailio")
            .cfg
            .contains("rtpengine_offer(")
    );
}

#[test]
fn a_next_key_for_the_sip_tls_host_is_pinned_ahead_and_rotating_to_it_is_no_rotation_for_phones() {
    let (c, f, ctx) = story();
    let before = render(&c, &f, &ctx);
    let host = c
        .provisioning
        .sip_tls_hostname
        .clone()
        .expect("the story names the SIP/TLS host");
    let next = |names: &[&str], seed: char| switchboard_domain::tls::NextKey {
        name: cert("voip-next"),
        names: names.iter().map(|n| n.to_string()).collect(),
        pin: format!("sha256/{}=", seed.to_string().repeat(43)),
    };
    // A next key for another name is not published; one for the host (or
    // a wildcard over it) is, after the presented keys.
    let mut other = f.clone();
    other.next_keys = vec![next(&["console.lan.test"], 'Y')];
    assert_eq!(render(&c, &other, &ctx).provisioning, before.provisioning);
    for names in [vec![host.as_str()], vec!["*.example.test"]] {
        let mut ahead = f.clone();
        ahead.next_keys = vec![next(&names, 'Z')];
        let published = render(&c, &ahead, &ctx);
        let z = format!("sha256/{}=", "Z".repeat(43));
        assert_eq!(published.provisioning.pins.last(), Some(&z), "{names:?}");
        assert_eq!(published.provisioning.next_pins, std::slice::from_ref(&z));
        let d = diff(&before, &published, ("revision 1", "candidate"));
        assert!(
            d.notes.iter().all(|n| n.code != "pins-rotated"),
            "{:?}",
            d.notes
        );
        assert!(
            d.summary()
                .iter()
                .any(|l| l.contains("published ahead of its rotation")),
            "{:?}",
            d.summary()
        );
    }
    // The rotation to a key published ahead breaks no phone; to one that
    // was not, it does.
    let mut ahead = f.clone();
    ahead.next_keys = vec![next(&[host.as_str()], 'Z')];
    let published = render(&c, &ahead, &ctx);
    let mut rotated_c = c.clone();
    rotated_c
        .bindings
        .bind(ServiceId::SipTls, Some(&name("wan0")), cert("voip-next"))
        .expect("bind");
    let mut rotated_f = f.clone();
    let mut facts_next = cert_facts(
        4,
        "CN=voip.example.test",
        "2029-01-01T00:00:00Z",
        &["voip.example.test"],
    );
    facts_next.pin = format!("sha256/{}=", "Z".repeat(43));
    rotated_f.certificates.insert(cert("voip-next"), facts_next);
    let rotated = render(&rotated_c, &rotated_f, &ctx);
    let d = diff(&published, &rotated, ("revision 2", "candidate"));
    assert!(
        d.notes.iter().all(|n| n.code != "pins-rotated"),
        "{:?}",
        d.notes
    );
    let unplanned = diff(&before, &rotated, ("revision 1", "candidate"));
    assert!(unplanned.notes.iter().any(|n| n.code == "pins-rotated"));
}
