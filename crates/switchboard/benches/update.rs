//! Update latency against raw `nft -f`, and an established connection
//! across 1,000 back-to-back Updates.
//!
//! Needs root and must run in a network namespace of its own: use
//! `cargo xtask bench`, which creates one, runs this inside it and removes
//! it. Not a test: it prints figures and ratios, measured in the same run
//! on the same machine.
//!
//! For 4, 64 and 256 NICs × 8 services it times, alternating:
//! - **update**: the engine's full Update (plan and render, `nft -c`, the
//!   transaction, verification, the revision written to SQLite with
//!   `synchronous=FULL`), through `Engine::update`;
//! - **firewall**: the firewall part alone (render, `nft -c`, `nft -f`,
//!   verification);
//! - **raw**: `nft -f FILE` of the same rendered ruleset.
//!
//! Then, with Kamailio (when installed), the whole plan: each Update
//! changes a cell and the certificate `sip-tls` and `web` present on the
//! SIP NIC, so it loads the firewall, swaps and verifies the TLS tables,
//! writes and checks Kamailio's files, has it `tls.reload` and verifies its
//! TLS socket by a handshake — next to **raw** `nft -f` of the same ruleset
//! plus `kamcmd tls.reload` of the same files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_domain::testing;
use switchboard_domain::{Facts, NicName, ServiceId};
use switchboard_engine::{Engine, EngineConfig, FirewallMode, Origin};
use switchboard_store::Store;
use switchboard_system::nft;
use switchboard_system::testlab::Netns;

const ROUNDS: usize = 25;

fn facts(n: usize) -> Facts {
    let names: Vec<String> = (0..n).map(|i| format!("eth{i}")).collect();
    let addrs: Vec<String> = (0..n).map(|i| format!("192.0.2.{}", i % 250 + 1)).collect();
    let nics: Vec<(&str, Option<&str>)> = names
        .iter()
        .zip(&addrs)
        .map(|(n, a)| (n.as_str(), Some(a.as_str())))
        .collect();
    testing::facts(&nics)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn origin() -> Origin {
    Origin {
        actor: "bench".into(),
        address: "bench".into(),
        arrival: None,
    }
}

fn engine(dir: &std::path::Path, f: &Facts) -> Engine {
    let e = Engine::new(
        EngineConfig {
            data_dir: dir.to_owned(),
            firewall: FirewallMode::Enforce,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: false,
            media: false,
        },
        Store::open_dir(dir).expect("store"),
    )
    .expect("engine");
    e.set_facts(f.clone());
    e
}

/// The engine, booted: its first-start certificate is bound to every TLS
/// service, so the candidate validates.
async fn booted(dir: &std::path::Path, f: &Facts) -> Engine {
    let e = engine(dir, f);
    e.boot().await.expect("boot");
    e
}

async fn bench_size(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = facts(n);
    let e = booted(dir.path(), &f).await;
    let toggled: NicName = "eth0".parse().expect("name");
    let (mut update, mut firewall, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases: Vec<[Duration; 4]> = Vec::new();
    let file = dir.path().join("ruleset.nft");
    for round in 0..ROUNDS {
        // Each Update changes one cell, so none is a no-op.
        e.set_cell(ServiceId::Sql, &toggled, round % 2 == 1)
            .await
            .expect("edit");
        let t = Instant::now();
        e.update(&origin(), "bench", None).await.expect("update");
        update.push(t.elapsed());

        // The firewall alone: the same matrix, the test certificate bound.
        let mut c = testing::candidate();
        c.matrix.settle(&f);
        c.matrix
            .set(ServiceId::Sql, &toggled, round % 2 == 0, &f)
            .expect("edit");
        let t = Instant::now();
        let (plan, _) = switchboard_plan::plan(&c, &f, &Default::default()).expect("plan");
        let t1 = Instant::now();
        nft::check(&plan.ruleset).await.expect("check");
        let t2 = Instant::now();
        nft::load(&plan.ruleset).await.expect("load");
        let t3 = Instant::now();
        switchboard_engine::firewall::verify(&plan)
            .await
            .expect("verify");
        firewall.push(t.elapsed());
        phases.push([t1 - t, t2 - t1, t3 - t2, t3.elapsed()]);

        std::fs::write(&file, &plan.ruleset).expect("write");
        let t = Instant::now();
        let ok = Command::new("nft")
            .arg("-f")
            .arg(&file)
            .status()
            .expect("nft");
        raw.push(t.elapsed());
        assert!(ok.success());
    }
    let cells = e
        .matrix()
        .await
        .expect("matrix")
        .applied
        .expect("applied")
        .cells()
        .count();
    let (u, fw, r) = (median(update), median(firewall), median(raw));
    let phase = |i: usize| ms(median(phases.iter().map(|p| p[i]).collect()));
    println!(
        "{n:>4} NICs x 8 services ({cells:>4} cells): update {:>10}  firewall {:>10}  raw nft -f {:>10}  update/raw {:.2}x  firewall/raw {:.2}x",
        ms(u),
        ms(fw),
        ms(r),
        u.as_secs_f64() / r.as_secs_f64(),
        fw.as_secs_f64() / r.as_secs_f64()
    );
    println!(
        "      firewall phases: render {}  check {}  load {}  verify {}",
        phase(0),
        phase(1),
        phase(2),
        phase(3)
    );
}

/// The whole plan at `n` NICs (+ the SIP NIC `sbk0`, an ifb with
/// 198.51.100.10, the only one with SIP), against `nft -f` plus
/// `kamcmd tls.reload`.
async fn bench_whole_plan(n: usize) {
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .expect("ip")
            .success()
    };
    ip(&["link", "del", "sbk0"]);
    assert!(ip(&["link", "add", "sbk0", "type", "ifb"]));
    assert!(ip(&["addr", "add", "198.51.100.10/24", "dev", "sbk0"]));
    assert!(ip(&["link", "set", "sbk0", "up"]));
    assert!(ip(&["link", "set", "lo", "up"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = facts(n);
    f.nics.push(testing::nic("sbk0", Some("198.51.100.10")));
    let e = Engine::new(
        EngineConfig {
            data_dir: dir.path().to_owned(),
            firewall: FirewallMode::Enforce,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: true,
            media: false,
        },
        Store::open_dir(dir.path()).expect("store"),
    )
    .expect("engine");
    e.set_facts(f.clone());
    e.boot().await.expect("boot");
    let p = switchboard_pki::testpki::pki();
    let certs: Vec<switchboard_domain::CertName> = ["voip-a", "voip-b"]
        .iter()
        .map(|name| name.parse().expect("a name"))
        .collect();
    for name in &certs {
        let leaf = p.intermediate.leaf(&["voip.example.test"]);
        e.import_cert(
            name,
            format!("{}{}", leaf.pem(), p.intermediate.pem()).as_bytes(),
            Some(leaf.key_pem().as_bytes()),
            None,
        )
        .await
        .expect("import");
    }
    let sip_nic: NicName = "sbk0".parse().expect("name");
    for nic in f.nics.iter().filter(|x| x.name != sip_nic) {
        for s in [ServiceId::SipTls, ServiceId::SipUdp] {
            e.set_cell(s, &nic.name, false).await.expect("edit");
        }
    }
    let toggled: NicName = "eth0".parse().expect("name");
    let ctl = dir.path().join("kamailio/kamailio.ctl");
    let file = dir.path().join("ruleset.nft");
    let (mut update, mut raw) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        e.set_cell(ServiceId::Sql, &toggled, round % 2 == 1)
            .await
            .expect("edit");
        for s in [ServiceId::SipTls, ServiceId::Web] {
            e.bind(s, Some(&sip_nic), &certs[round % 2], true)
                .await
                .expect("bind");
        }
        let t = Instant::now();
        let u = e.update(&origin(), "bench", None).await.expect("update");
        let took = t.elapsed();
        if round == 0 {
            // The first starts Kamailio: not an Update of a running plan.
            assert!(u.detail.contains("kamailio started"), "{}", u.detail);
            continue;
        }
        assert!(
            u.detail.contains("tls.reload") || u.detail.contains("reloaded"),
            "{}",
            u.detail
        );
        update.push(took);

        let plan = e
            .revision(u.revision.expect("a revision"))
            .await
            .expect("rev")
            .plan;
        std::fs::write(&file, &plan.ruleset).expect("write");
        let t = Instant::now();
        let nft_ok = Command::new("nft")
            .arg("-f")
            .arg(&file)
            .status()
            .expect("nft");
        let reload = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", ctl.display()))
            .arg("tls.reload")
            .output()
            .expect("kamcmd");
        raw.push(t.elapsed());
        assert!(nft_ok.success() && reload.status.success(), "{reload:?}");
    }
    e.shutdown().await;
    ip(&["link", "del", "sbk0"]);
    let (u, r) = (median(update), median(raw));
    println!(
        "{n:>4} NICs, whole plan (firewall, TLS tables, Kamailio tls.reload, verified): update {:>10}  raw nft -f + kamcmd tls.reload {:>10}  update/raw {:.2}x",
        ms(u),
        ms(r),
        u.as_secs_f64() / r.as_secs_f64()
    );
}

/// An established TCP connection on an allowed cell, across 1,000 Updates
/// that each change another cell.
async fn established_connection_survives(updates: usize) {
    let peer = Netns::new("sbb-peer").expect("peer namespace");
    let ip = |args: &[&str]| {
        assert!(
            Command::new("ip")
                .args(args)
                .status()
                .expect("ip")
                .success(),
            "ip {args:?}"
        );
    };
    ip(&[
        "link",
        "add",
        "sbb0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        peer.name(),
    ]);
    ip(&["addr", "add", "198.51.100.1/24", "dev", "sbb0"]);
    ip(&["link", "set", "sbb0", "up"]);
    peer.ip(["addr", "add", "198.51.100.2/24", "dev", "eth0"])
        .expect("addr");
    peer.ip(["link", "set", "eth0", "up"]).expect("up");
    peer.ip(["link", "set", "lo", "up"]).expect("lo");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = facts(8);
    f.nics.push(testing::nic("sbb0", Some("198.51.100.1")));
    let e = booted(dir.path(), &f).await;
    e.update(&origin(), "base", None).await.expect("base");

    let listener = TcpListener::bind(("198.51.100.1", 22)).expect("listen on ssh's port");
    let mut client = peer
        .enter(|| {
            TcpStream::connect_timeout(
                &"198.51.100.1:22".parse().expect("addr"),
                Duration::from_secs(2),
            )
        })
        .expect("connect across the firewall");
    let (mut server, _) = listener.accept().expect("accept");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let toggled: NicName = "eth3".parse().expect("name");
    let started = Instant::now();
    let mut exchanged = 0;
    for i in 0..updates {
        e.set_cell(ServiceId::Web, &toggled, i % 2 == 1)
            .await
            .expect("edit");
        e.update(&origin(), "toggle", None).await.expect("update");
        if i % 10 == 0 {
            server.write_all(b"x").expect("server writes");
            let mut b = [0u8; 1];
            client
                .read_exact(&mut b)
                .expect("the established connection still carries data");
            client.write_all(b"y").expect("client writes");
            server.read_exact(&mut b).expect("server reads");
            exchanged += 1;
        }
    }
    println!(
        "established TCP connection (ssh cell on sbb0) across {updates} back-to-back Updates: survived, {exchanged} round trips, {:.1} s total ({} per Update)",
        started.elapsed().as_secs_f64(),
        ms(started.elapsed() / updates as u32)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let in_bench_ns = std::env::var("SWITCHBOARD_BENCH_NETNS").is_ok();
    if !in_bench_ns {
        eprintln!(
            "this benchmark changes the firewall: run it with `cargo xtask bench` (as root), which gives it a network namespace of its own"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("median of {ROUNDS} rounds each, same machine, same run:");
        for n in [4, 64, 256] {
            bench_size(n).await;
        }
        if switchboard_system::kamailio::installed() {
            for n in [4, 64, 256] {
                bench_whole_plan(n).await;
            }
        } else {
            println!("whole plan: skipped, kamailio is not installed");
        }
        let updates = std::env::var("SWITCHBOARD_BENCH_UPDATES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        established_connection_survives(updates).await;
    });
}
