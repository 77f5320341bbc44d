//! System test of NIC discovery (needs root): builds a network namespace with
//! a veth pair and an address-less ifb link, then runs `child_in_netns` of
//! this same test binary inside it (`ip netns exec NS <this exe> --exact
//! child_in_netns`), which checks `discover()` and `watch()` there.
//!
//! Only documentation addresses are used (192.0.2.0/24, 198.51.100.0/24,
//! 2001:db8::/32), and only inside the throw-away namespace.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use switchboard_system::nics::{KernelAddr, KernelNic, discover, watch};
use switchboard_system::testlab::{Netns, require_root_or_skip};
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, timeout, timeout_at};

/// Set (to `1`) by the parent for the child run; the child is a no-op without it.
const CHILD_ENV: &str = "SWITCHBOARD_NICS_NETNS_CHILD";
const CHILD_TEST: &str = "child_in_netns";
const VETH_A_MAC_SET: &str = "02:00:5E:10:00:01"; // upper-case on purpose
const VETH_A_MAC: &str = "02:00:5e:10:00:01";

#[test]
fn discovery_and_watch_in_a_netns() {
    if !require_root_or_skip("nics_netns::discovery_and_watch_in_a_netns") {
        return;
    }
    let ns = Netns::new("sbt-nic").expect("create the network namespace");
    let setup: &[&[&str]] = &[
        &["link", "set", "lo", "up"],
        &[
            "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
        ],
        &["link", "set", "veth-a", "address", VETH_A_MAC_SET],
        // added out of order: discover() must sort
        &["addr", "add", "192.0.2.20/24", "dev", "veth-a"],
        &["addr", "add", "192.0.2.10/24", "dev", "veth-a"],
        &[
            "addr",
            "add",
            "2001:db8:0:1::1/64",
            "dev",
            "veth-a",
            "nodad",
        ],
        &["addr", "add", "198.51.100.1/24", "dev", "veth-b"],
        &["link", "set", "veth-a", "up"],
        &["link", "set", "veth-b", "up"],
        // listed although it has no address and is down
        &["link", "add", "ifb0", "type", "ifb"],
    ];
    for args in setup {
        ns.ip(*args).expect("set up the namespace");
    }

    ns.run_test_inside(CHILD_TEST, CHILD_ENV);
}

/// The half of [`discovery_and_watch_in_a_netns`] that runs inside its
/// namespace. Does nothing when run directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_in_netns() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    check_discovery().await;
    check_watch().await;
}

fn nic<'a>(nics: &'a [KernelNic], name: &str) -> &'a KernelNic {
    nics.iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no {name} in {nics:#?}"))
}

fn a(s: &str) -> KernelAddr {
    let (addr, prefix_len) = s.split_once('/').expect("addr/len");
    KernelAddr {
        addr: addr.parse().expect("address"),
        prefix_len: prefix_len.parse().expect("prefix length"),
    }
}

fn is_link_local(addr: &KernelAddr) -> bool {
    matches!(addr.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
}

/// Addresses without the IPv6 link-local ones, which the kernel adds by itself.
fn global_addrs(nic: &KernelNic) -> Vec<KernelAddr> {
    nic.addrs
        .iter()
        .copied()
        .filter(|a| !is_link_local(a))
        .collect()
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':').all(|octet| {
            octet.len() == 2
                && octet
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

async fn check_discovery() {
    let nics = discover().await.expect("discover");
    println!("discovered: {nics:#?}");

    let names: BTreeSet<&str> = nics.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["lo", "veth-a", "veth-b", "ifb0"]));
    assert!(
        nics.windows(2).all(|w| w[0].index < w[1].index),
        "sorted by index"
    );
    for n in &nics {
        let mac = n
            .mac
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no MAC", n.name));
        assert!(is_mac(mac), "bad MAC format {mac:?} on {}", n.name);
        assert_eq!(n.loopback, n.name == "lo", "{n:?}");
        assert!(
            n.addrs.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates: {n:?}"
        );
        assert!(
            n.addrs
                .iter()
                .filter(|a| is_link_local(a))
                .all(|a| a.prefix_len == 64),
            "{n:?}"
        );
    }

    let lo = nic(&nics, "lo");
    assert!(lo.up && lo.running, "{lo:?}");
    assert_eq!(lo.addrs, vec![a("127.0.0.1/8"), a("::1/128")]);

    let veth_a = nic(&nics, "veth-a");
    assert_eq!(veth_a.mac.as_deref(), Some(VETH_A_MAC));
    assert!(veth_a.up && veth_a.running, "{veth_a:?}");
    assert_eq!(
        global_addrs(veth_a),
        vec![
            a("192.0.2.10/24"),
            a("192.0.2.20/24"),
            a("2001:db8:0:1::1/64")
        ]
    );

    let veth_b = nic(&nics, "veth-b");
    assert!(veth_b.up && veth_b.running, "{veth_b:?}");
    assert_eq!(global_addrs(veth_b), vec![a("198.51.100.1/24")]);

    let ifb = nic(&nics, "ifb0");
    assert!(!ifb.up && !ifb.running, "{ifb:?}");
    assert!(ifb.addrs.is_empty(), "{ifb:?}");
}

/// `ip ARGS` in the current namespace (the child already runs inside it).
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// Waits for notifications until `discover()` shows `what` (5 s at most);
/// panics if `watch()` stays silent.
async fn wait_for(rx: &mut Receiver<()>, what: &str, done: impl Fn(&[KernelNic]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => {
                let nics = discover().await.expect("discover");
                if done(&nics) {
                    println!("watch() noticed: {what}");
                    return;
                }
            }
            Ok(None) => panic!("the watch() channel closed while waiting for: {what}"),
            Err(_) => panic!(
                "watch() gave no notification after which discover() shows: {what}\nnow: {:#?}",
                discover().await
            ),
        }
    }
}

async fn check_watch() {
    let mut rx = watch().await.expect("watch");
    // Let the setup's own echoes (IPv6 link-local addresses, DAD) die down.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        if timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
        {
            break;
        }
    }

    let has = |name: &'static str, addr: KernelAddr| {
        move |nics: &[KernelNic]| {
            nics.iter()
                .any(|n| n.name == name && n.addrs.contains(&addr))
        }
    };

    ip(&["addr", "add", "198.51.100.77/32", "dev", "ifb0"]);
    wait_for(
        &mut rx,
        "198.51.100.77/32 added on ifb0",
        has("ifb0", a("198.51.100.77/32")),
    )
    .await;

    ip(&["addr", "del", "198.51.100.77/32", "dev", "ifb0"]);
    let gone = has("ifb0", a("198.51.100.77/32"));
    wait_for(&mut rx, "198.51.100.77/32 removed from ifb0", |nics| {
        !gone(nics)
    })
    .await;

    ip(&[
        "addr",
        "add",
        "2001:db8:0:2::5/64",
        "dev",
        "veth-b",
        "nodad",
    ]);
    wait_for(
        &mut rx,
        "2001:db8:0:2::5/64 added on veth-b",
        has("veth-b", a("2001:db8:0:2::5/64")),
    )
    .await;

    ip(&["link", "set", "ifb0", "up"]);
    wait_for(&mut rx, "ifb0 up", |nics| nic(nics, "ifb0").up).await;

    ip(&["link", "del", "ifb0"]);
    wait_for(&mut rx, "ifb0 deleted", |nics| {
        nics.iter().all(|n| n.name != "ifb0")
    })
    .await;
}
