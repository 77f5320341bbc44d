//! The rendered Kamailio configuration passes Kamailio's own check
//! (`kamailio -c`), in a namespace that has the addresses it listens on
//! (needs root and the kamailio packages).

use std::path::Path;

use switchboard_domain::ServiceId;
use switchboard_domain::testing::{candidate, cert, facts, name};
use switchboard_pki::testpki::{self, pki};
use switchboard_plan::kamailio::{Env, Paths};
use switchboard_plan::{Context, render};
use switchboard_system::testlab::{Netns, is_root, require_or_skip};

fn kamailio_check(ns: &Netns, cfg: &Path) -> (bool, String) {
    let out = ns
        .command("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .expect("run kamailio -c");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_rendered_configuration_passes_kamailio_c() {
    let have_kamailio = Path::new("/usr/sbin/kamailio").exists();
    if !require_or_skip(
        "kamailio_check::the_rendered_configuration_passes_kamailio_c",
        is_root() && have_kamailio,
        "needs root and the kamailio packages",
    ) {
        return;
    }
    let ns = Netns::new("sbt-kam").expect("namespace");
    ns.ip(["link", "set", "lo", "up"]).expect("lo");
    ns.ip([
        "link", "add", "wan0", "type", "veth", "peer", "name", "lan0",
    ])
    .expect("veth");
    ns.ip(["addr", "add", "198.51.100.1/24", "dev", "wan0"])
        .expect("addr");
    ns.ip(["addr", "add", "192.0.2.1/24", "dev", "lan0"])
        .expect("addr");

    let dir = testpki::tempdir();
    let d = dir.path();
    let p = pki();
    std::fs::create_dir_all(d.join("certs")).expect("dir");
    std::fs::create_dir_all(d.join("keys")).expect("dir");
    for c in ["voip", "test-cert"] {
        testpki::write(
            d,
            &format!("certs/{c}.pem"),
            format!("{}{}", p.leaf.pem(), p.intermediate.pem()),
        );
        testpki::write(d, &format!("keys/{c}.key"), p.leaf.key_pem());
    }
    let paths = Paths {
        tls_dir: d.to_owned(),
        tls_cfg: d.join("tls.cfg"),
        subscriber_db: d.join("subscriber.db"),
        ctl_socket: d.join("kamailio.ctl"),
        modules: "/usr/lib/x86_64-linux-gnu/kamailio/modules".into(),
    };
    let mut f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
    let test_cert = f.certificates[&cert("test-cert")].clone();
    f.certificates.insert(cert("voip"), test_cert);
    let mut c = candidate();
    c.matrix = c
        .matrix
        .production(&name("lan0"), &name("wan0"), &f)
        .expect("preset");
    c.bindings
        .bind(ServiceId::SipTls, Some(&name("wan0")), cert("voip"))
        .expect("bind");
    c.provisioning.sip_tls_hostname = Some("voip.example.test".parse().expect("host"));
    let context = Context {
        kamailio: Some(Env {
            paths,
            realm: "switchboard".into(),
        }),
        media: None,
    };
    let mut calls = context.clone();
    calls.media = Some(switchboard_plan::media::Env::default());
    // The whole plan's Kamailio section, as an Update would write it: with
    // the default ban policy, with trusted networks (ipops), and without bans.
    let mut trusting = c.clone();
    trusting.bans.trusted = vec![
        "192.0.2.0/24".parse().expect("net"),
        "2001:db8::/32".parse().expect("net"),
    ];
    let mut unprotected = c.clone();
    unprotected.bans.enabled = false;
    let mut k = None;
    let mut lan_calls = c.clone();
    lan_calls
        .matrix
        .set(ServiceId::SipTls, &name("lan0"), true, &f)
        .expect("allow");
    for (c, context) in [
        (&trusting, &context),
        (&unprotected, &context),
        (&lan_calls, &calls),
        (&c, &calls),
        (&c, &context),
    ] {
        let rendered = render(c, &f, context).kamailio.expect("kamailio is driven");
        testpki::write(d, "kamailio.cfg", &rendered.cfg);
        testpki::write(d, "tls.cfg", &rendered.tls_cfg);
        let (ok, err) = kamailio_check(&ns, &d.join("kamailio.cfg"));
        assert!(
            ok,
            "kamailio -c refused the rendered configuration:\n{err}\n{}",
            rendered.cfg
        );
        k = Some(rendered);
    }
    let k = k.expect("rendered");

    // The check can fail: a broken script is refused.
    testpki::write(
        d,
        "broken.cfg",
        format!("{}\nrequest_route {{ nonsense( }}\n", k.cfg),
    );
    let (ok, _) = kamailio_check(&ns, &d.join("broken.cfg"));
    assert!(!ok, "kamailio -c accepted a broken configuration");
}
