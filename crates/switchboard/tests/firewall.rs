//! The firewall on the wire (needs root): the daemon enforces the matrix
//! inside the lab's appliance namespace; every cell is probed from the LAN
//! and WAN neighbours with real TCP connects and UDP exchanges.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::Value;
use switchboard_system::testlab::{
    Lab, Listeners, Netns, Port, answers, answers_all, require_root_or_skip,
};

/// How long a probe waits for an answer that a dropped packet never gets.
const WAIT: Duration = Duration::from_millis(400);

/// The catalog's default ports, as the fake services listen on them.
fn service_port(service: &str) -> Port {
    match service {
        "sql" => Port::Tcp(3306),
        "console" => Port::Tcp(8443),
        "ssh" => Port::Tcp(22),
        "sip-tls" => Port::Tcp(5061),
        "sip-udp" => Port::Udp(5060),
        "nrpe" => Port::Tcp(5666),
        "web" => Port::Tcp(443),
        "rtp" => Port::Udp(15000),
        "metrics" => Port::Tcp(9469),
        other => panic!("unknown service {other}"),
    }
}

const SERVICES: [&str; 9] = [
    "sql", "console", "ssh", "sip-tls", "sip-udp", "nrpe", "web", "rtp", "metrics",
];

fn fake_services(lab: &Lab) -> Listeners {
    let mut ports: Vec<Port> = SERVICES.iter().map(|s| service_port(s)).collect();
    ports.extend([Port::Udp(10000), Port::Udp(20000)]);
    Listeners::start(&lab.appliance, &ports).expect("listeners")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Which (service, NIC) cells answer from the neighbour on that NIC.
fn observed(lab: &Lab) -> BTreeMap<(String, String), bool> {
    let lan = ip(Lab::LAN_APPLIANCE);
    let wan = ip(Lab::WAN_APPLIANCE);
    let mut probes: Vec<(&Netns, IpAddr, Port)> = Vec::new();
    let mut keys = Vec::new();
    for s in SERVICES {
        for (nic, from, addr) in [("lan0", &lab.lan, lan), ("wan0", &lab.wan, wan)] {
            probes.push((from, addr, service_port(s)));
            keys.push((s.to_owned(), nic.to_owned()));
        }
    }
    keys.into_iter().zip(answers_all(&probes, WAIT)).collect()
}

/// What the applied matrix says about the same cells.
fn expected(d: &Daemon) -> BTreeMap<(String, String), bool> {
    let m = d.json(&["matrix"]);
    let mut out = BTreeMap::new();
    for s in SERVICES {
        let nics = &m["applied"][s];
        for nic in ["lan0", "wan0"] {
            let on = nics.as_array().expect("list").iter().any(|n| n == nic);
            out.insert((s.to_owned(), nic.to_owned()), on);
        }
    }
    out
}

fn assert_wire_matches(lab: &Lab, d: &Daemon, what: &str) {
    let want = expected(d);
    let got = observed(lab);
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|((s, n), v)| {
            format!(
                "{s} on {n}: expected {}",
                if *v { "answer" } else { "silence" }
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: the wire disagrees with the matrix: {wrong:#?}"
    );
}

/// A small deterministic generator, so a failing random matrix can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn start_enforcing(lab: &Lab, dir: &std::path::Path) -> Daemon {
    Daemon::start(Some(&lab.appliance), dir, &["--firewall", "enforce"])
}

#[test]
fn every_cell_of_the_matrix_is_true_on_the_wire() {
    if !require_root_or_skip("firewall::every_cell_of_the_matrix_is_true_on_the_wire") {
        return;
    }
    let lab = Lab::new().expect("lab");
    let _services = fake_services(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    // Another table in the appliance's firewall must survive everything.
    lab.appliance
        .command("nft")
        .args(["add table inet other"])
        .status()
        .expect("nft");
    let d = start_enforcing(&lab, dir.path());

    // A new appliance: no revision, no filtering, everything answers.
    assert!(
        observed(&lab).values().all(|v| *v),
        "factory state answers everywhere"
    );

    d.ok(&["update", "-m", "factory default"]);
    assert_wire_matches(&lab, &d, "factory default");

    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);
    d.ok(&["update", "-m", "production"]);
    assert_wire_matches(&lab, &d, "production preset");
    let got = observed(&lab);
    assert!(
        !got[&("console".into(), "wan0".into())],
        "the console is not reachable from the phone's side"
    );
    assert!(
        !got[&("metrics".into(), "wan0".into())],
        "nor are the metrics"
    );
    assert!(got[&("metrics".into(), "lan0".into())]);
    assert!(got[&("sip-tls".into(), "wan0".into())]);

    let seed = 0x5eed_cafe_u64 ^ u64::from(std::process::id());
    let mut rng = Rng(seed | 1);
    for round in 0..3 {
        for s in SERVICES {
            for nic in ["lan0", "wan0", "dmz0"] {
                let verb = if rng.next().is_multiple_of(2) {
                    "allow"
                } else {
                    "deny"
                };
                d.ok(&["matrix", verb, s, nic]);
            }
        }
        // The daemon refuses a matrix without the console; keep one.
        d.ok(&["matrix", "allow", "console", "lan0"]);
        d.ok(&["update", "-m", &format!("random {round}")]);
        assert_wire_matches(&lab, &d, &format!("random matrix {round} (seed {seed:#x})"));
    }

    let fw: Value = d.json(&["firewall", "show"]);
    assert_eq!(fw["mode"], "enforce");
    assert!(
        fw["loaded"]
            .as_str()
            .expect("loaded")
            .contains("table inet switchboard")
    );
    let tables = lab
        .appliance
        .command("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(
        tables.contains("table inet other"),
        "another table was touched: {tables}"
    );
}

#[test]
fn a_packet_for_the_wan_address_arriving_on_the_lan_is_dropped() {
    if !require_root_or_skip(
        "firewall::a_packet_for_the_wan_address_arriving_on_the_lan_is_dropped",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let _services = fake_services(&lab);
    // The LAN host routes the WAN network through the appliance.
    lab.lan
        .ip(["route", "add", "198.51.100.0/24", "via", Lab::LAN_APPLIANCE])
        .expect("route");
    let wan_addr = ip(Lab::WAN_APPLIANCE);
    // Without a firewall (Linux is a weak host) the LAN reaches the WAN address.
    assert!(
        answers(&lab.lan, wan_addr, Port::Tcp(8443), WAIT),
        "control: weak host model"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let d = start_enforcing(&lab, dir.path());
    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);
    d.ok(&["update"]);
    // The console is allowed on lan0, but 198.51.100.1 is not lan0's address.
    assert!(
        !answers(&lab.lan, wan_addr, Port::Tcp(8443), WAIT),
        "console via lan0 to the WAN address"
    );
    assert!(
        !answers(&lab.lan, wan_addr, Port::Tcp(5061), WAIT),
        "sip-tls via lan0 to the WAN address"
    );
    assert!(answers(
        &lab.lan,
        ip(Lab::LAN_APPLIANCE),
        Port::Tcp(8443),
        WAIT
    ));
    assert!(answers(&lab.wan, wan_addr, Port::Tcp(5061), WAIT));
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sql_from_wan(lab: &Lab) -> bool {
    answers(&lab.wan, ip(Lab::WAN_APPLIANCE), Port::Tcp(3306), WAIT)
}

#[test]
fn an_unconfirmed_update_rolls_back_by_itself_even_across_a_crash() {
    if !require_root_or_skip(
        "firewall::an_unconfirmed_update_rolls_back_by_itself_even_across_a_crash",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let _services = fake_services(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = start_enforcing(&lab, dir.path());
    d.ok(&["update", "-m", "factory"]);
    assert!(sql_from_wan(&lab));

    // Expiry rolls back, on the wire.
    d.ok(&["matrix", "deny", "sql", "wan0"]);
    let out = d.ok(&["update", "--confirm-within", "2"]);
    assert!(out.contains("PENDING"), "{out}");
    assert!(!sql_from_wan(&lab), "the pending revision is applied");
    assert_eq!(d.json(&["status"])["pending"]["revision"], 2);
    wait_until("the rollback", Duration::from_secs(10), || {
        sql_from_wan(&lab)
    });
    let status = d.json(&["status"]);
    assert_eq!(status["pending"], Value::Null);
    assert_eq!(status["applied_revision"], 1);
    assert_eq!(
        d.json(&["revisions", "show", "2"])["outcome"],
        "rolled-back"
    );
    assert_eq!(
        status["candidate_changed"], true,
        "the edit is kept in the candidate"
    );

    // Confirm keeps.
    d.ok(&["update", "--confirm-within", "2"]);
    d.ok(&["confirm"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !sql_from_wan(&lab),
        "confirmed: still applied after the deadline"
    );
    assert_eq!(d.json(&["revisions", "show", "3"])["outcome"], "applied");
    d.fails(&["confirm"], "nothing-pending");

    // Killed while pending, restarted after the deadline: rolled back at boot.
    d.ok(&["matrix", "allow", "sql", "wan0"]);
    d.ok(&["update", "--confirm-within", "1"]);
    assert!(sql_from_wan(&lab));
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let mut d = start_enforcing(&lab, dir.path());
    assert!(
        !sql_from_wan(&lab),
        "boot rolled back to revision 3 before serving"
    );
    assert_eq!(d.json(&["status"])["applied_revision"], 3);
    assert_eq!(
        d.json(&["revisions", "show", "4"])["outcome"],
        "rolled-back"
    );
    assert!(
        d.log_text()
            .contains("was pending past its deadline: rolled back")
    );

    // Killed while pending, restarted before the deadline: still pending,
    // and it expires on time.
    d.ok(&["update", "--confirm-within", "4"]);
    d.kill9();
    let d = start_enforcing(&lab, dir.path());
    assert_eq!(d.json(&["status"])["pending"]["revision"], 5);
    assert!(
        sql_from_wan(&lab),
        "the pending revision is reloaded at boot"
    );
    wait_until(
        "the rollback after restart",
        Duration::from_secs(10),
        || !sql_from_wan(&lab),
    );
    assert_eq!(
        d.json(&["revisions", "show", "5"])["outcome"],
        "rolled-back"
    );
}

#[test]
fn an_update_that_cuts_the_admins_lan_session_needs_commit_confirm() {
    if !require_root_or_skip(
        "firewall::an_update_that_cuts_the_admins_lan_session_needs_commit_confirm",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start_enforcing(&lab, dir.path());
    d.ok(&["update"]);
    // The administrator is logged in over SSH through lan0 (sshd sets this).
    let over_ssh = |conn: &str, args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .env("SSH_CONNECTION", conn)
            .output()
            .expect("cli")
    };
    let via_lan = "192.0.2.2 50022 192.0.2.1 22";
    d.ok(&["matrix", "deny", "console", "lan0"]);
    let out = over_ssh(via_lan, &["update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("error[would-lock-you-out]")
            && err.contains("console")
            && err.contains("lan0"),
        "{err}"
    );
    assert!(
        err.contains("--confirm-within"),
        "the hint says the way out: {err}"
    );
    assert_eq!(
        d.json(&["status"])["applied_revision"],
        1,
        "nothing applied"
    );

    let out = over_ssh(via_lan, &["update", "--confirm-within", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revs = d.json(&["revisions"]);
    assert!(
        revs[0]["origin"]
            .as_str()
            .expect("origin")
            .starts_with("ssh from 192.0.2.2"),
        "{revs}"
    );
    d.ok(&["confirm"]);

    // From a session on wan0, taking SSH off lan0 does not cut it.
    d.ok(&["matrix", "deny", "ssh", "lan0"]);
    let out = over_ssh("198.51.100.2 50022 198.51.100.1 22", &["update"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
