//! A measurement, not a check, so the suite leaves it out (`#[ignore]`);
//! run it as root, with Debian's `pebble` and `lego` installed, with
//! `cargo test -p switchboard --test acme_bench -- --ignored --nocapture`.
//!
//! The same issuance by `tls-alpn-01` from the same pebble (no validation
//! sleeps), alternating round by round in one run:
//! - switchboard: `switchboard cert acme` (key, order, validation on the
//!   web services' own listener, chain attached) — then bound, applied by
//!   an Update and seen on the wire by `openssl s_client`;
//! - lego (Debian's, a standard ACME client) in standalone mode
//!   (`lego --tls run`, its own listener on 443), in a namespace of its
//!   own next to the WAN neighbour, until the certificate is on disk.
//!
//! Both keep their account between rounds (switchboard in its store, lego
//! in its `--path`), so each round is one order.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::acme::*;
use common::{Daemon, presented};
use switchboard_system::testlab::{Lab, Netns, is_root};

const ROUNDS: usize = 6;
/// lego's own namespace, linked to the WAN neighbour (the internet).
const LEGO_SIDE: &str = "198.51.100.66";
const LEGO_PEER: &str = "198.51.100.65";
const LEGO_NAME: &str = "lego.example.test";

fn ok(command: &mut Command) {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace for lego, a /30 from the WAN neighbour; the link goes with
/// the namespaces.
fn lego_namespace(wan: &Netns) -> Netns {
    let lego = Netns::new("sbb-lego").expect("namespace");
    ok(wan.command("ip").args([
        "link",
        "add",
        "lg0",
        "type",
        "veth",
        "peer",
        "name",
        "lg1",
        "netns",
        lego.name(),
    ]));
    ok(wan
        .command("ip")
        .args(["addr", "add", &format!("{LEGO_PEER}/30"), "dev", "lg0"]));
    ok(wan.command("ip").args(["link", "set", "lg0", "up"]));
    for args in [
        vec!["addr", "add", &format!("{LEGO_SIDE}/30"), "dev", "lg1"],
        vec!["link", "set", "lg1", "up"],
        vec!["link", "set", "lo", "up"],
        vec!["route", "add", "default", "via", LEGO_PEER],
    ] {
        ok(lego.command("ip").args(&args));
    }
    lego
}

fn stats(label: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let median = v[v.len() / 2];
    println!(
        "{label:<50} median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
        median.as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
    median
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn acme_issuance_switchboard_next_to_lego() {
    assert!(is_root(), "the benchmark needs root (namespaces)");
    assert!(
        std::path::Path::new("/usr/bin/lego").exists(),
        "install lego: apt-get install lego"
    );
    let (lab, files, _pebble) = pebble_lab(None);
    let dir = files.path();
    let wfe_ca = dir.join("wfe-ca.pem");
    let lego = lego_namespace(&lab.wan);
    // pebble's DNS sends lego's name to lego's namespace.
    let added = manage_dns(
        &lab.wan,
        "add-a",
        &format!(r#"{{"host":"{LEGO_NAME}.","addresses":["{LEGO_SIDE}"]}}"#),
    );
    assert!(added, "lego's name in pebble's DNS");

    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), data.path(), &[]);
    d.ok(&["cert", "ca", "add", &wfe_ca.display().to_string()]);
    d.ok(&["update", "-m", "the web services on every NIC"]);
    let lego_path = tempfile::tempdir().expect("tempdir");
    // The first order of each makes its account: a round not counted.
    d.ok(&acme("warm-up", "voip.example.test", DIRECTORY, &[]));
    let lego_run = || {
        let out = lego
            .command("lego")
            .args([
                "--server",
                DIRECTORY,
                "--accept-tos",
                "--email",
                "admin@example.test",
            ])
            .args(["--domains", LEGO_NAME, "--tls", "--tls.port"])
            .arg(format!("{LEGO_SIDE}:443"))
            .arg("--path")
            .arg(lego_path.path())
            .arg("run")
            .env("LEGO_CA_CERTIFICATES", &wfe_ca)
            .output()
            .expect("lego runs");
        assert!(
            out.status.success(),
            "lego: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    lego_run();
    let root = acme_root(&lab, dir);

    let (mut ours, mut ours_on_wire, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("bench-{round}");
        let start = Instant::now();
        let issued = d.json(&acme(&name, "voip.example.test", DIRECTORY, &[]));
        ours.push(start.elapsed());
        d.ok(&["cert", "bind", "web", &name, "--nic", "wan0"]);
        d.ok(&["update", "-m", &format!("bench round {round}")]);
        let seen = presented(
            &lab.wan,
            &root,
            Lab::WAN_APPLIANCE,
            443,
            "voip.example.test",
        )
        .expect("presented");
        ours_on_wire.push(start.elapsed());
        assert_eq!(
            hex(&seen),
            hex(issued["fingerprint"].as_str().expect("fingerprint"))
        );

        let start = Instant::now();
        lego_run();
        theirs.push(start.elapsed());
        let crt = lego_path
            .path()
            .join("certificates")
            .join(format!("{LEGO_NAME}.crt"));
        assert!(crt.exists(), "lego wrote {}", crt.display());
    }
    println!("\nACME issuance by tls-alpn-01 from pebble, {ROUNDS} rounds, alternating:");
    let a = stats("switchboard: cert acme (stored)", ours);
    let b = stats(
        "switchboard: cert acme + bind + Update + on wire",
        ours_on_wire,
    );
    let c = stats("lego --tls run (standalone, on disk)", theirs);
    println!(
        "ratio switchboard/lego: issuance {:.2}, to the wire {:.2}",
        a.as_secs_f64() / c.as_secs_f64(),
        b.as_secs_f64() / c.as_secs_f64()
    );
}
