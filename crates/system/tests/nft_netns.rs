//! System test of the nftables adapter (needs root), run in a namespace of
//! its own: the adapter's libnftables context belongs to the process, so
//! the checks run in a child process inside the namespace.

use switchboard_system::nft::{self, NftError};
use switchboard_system::testlab::{Netns, require_root_or_skip};

const CHILD_ENV: &str = "SWITCHBOARD_NFT_NETNS_CHILD";

const RULESET: &str = "table inet sbtest
delete table inet sbtest
table inet sbtest {
\tset allowed {
\t\ttype ifname . inet_proto . inet_service
\t\tflags interval
\t\telements = { \"lan0\" . tcp . 22, \"wan0\" . udp . 10000-20000 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname . meta l4proto . th dport @allowed accept
\t}
}
";

#[test]
fn check_load_read_remove_in_a_netns() {
    if !require_root_or_skip("nft_netns::check_load_read_remove_in_a_netns") {
        return;
    }
    let ns = Netns::new("sbt-nft").expect("namespace");
    ns.run_test_inside("child_in_netns", CHILD_ENV);
}

#[tokio::test]
async fn child_in_netns() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // Someone else's table, which must never be touched.
    nft::load("table inet other {\n\tchain c { type filter hook input priority 10; }\n}\n")
        .await
        .expect("other table");

    // A check changes nothing; a bad script says what is wrong.
    nft::check(RULESET)
        .await
        .expect("valid ruleset passes the check");
    assert_eq!(nft::list_table("sbtest").await.expect("list"), None);
    let err = nft::check("table inet sbtest { chain input { type filter hook input priority filter; policy drop; nonsense } }")
        .await
        .expect_err("invalid");
    assert!(
        matches!(&err, NftError::Check(m) if m.contains("syntax error")),
        "{err}"
    );
    let err = nft::load("table inet sbtest { set s { type ifname; elements = { \"a\" . 1 } } }")
        .await
        .expect_err("invalid");
    assert!(matches!(err, NftError::Load(_)), "{err}");
    assert_eq!(
        nft::list_table("sbtest").await.expect("list"),
        None,
        "a failed load changes nothing"
    );

    // Load, twice (the declare-delete-redeclare script is idempotent).
    for _ in 0..2 {
        nft::load(RULESET).await.expect("load");
    }
    let listed = nft::list_table("sbtest")
        .await
        .expect("list")
        .expect("present");
    assert!(listed.contains("\"wan0\" . udp . 10000-20000"), "{listed}");
    let terse = nft::list_table_terse("sbtest")
        .await
        .expect("list")
        .expect("present");
    assert!(
        terse.contains("chain input") && !terse.contains("wan0"),
        "{terse}"
    );

    // Remove, twice (idempotent), and the other table is still there.
    nft::remove_table("sbtest").await.expect("remove");
    nft::remove_table("sbtest").await.expect("remove again");
    assert_eq!(nft::list_table("sbtest").await.expect("list"), None);
    assert!(nft::list_table("other").await.expect("list").is_some());
    assert_eq!(nft::list_table_terse("sbtest").await.expect("list"), None);

    // Every golden ruleset of the planner passes the kernel's check.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../plan/test_data");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("golden files") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "nft") {
            continue;
        }
        let script = std::fs::read_to_string(&path).expect("read");
        nft::check(&script)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 5, "golden files found: {checked}");

    // Timed elements (the ban sets): added, re-added with a new timeout,
    // read back, kept across a reload of the whole table by the lines
    // restore_elements writes, removed.
    let factory = std::fs::read_to_string(format!("{dir}/factory.nft")).expect("factory");
    nft::load(&factory).await.expect("factory ruleset");
    let a: std::net::IpAddr = "192.0.2.5".parse().expect("ip");
    let b: std::net::IpAddr = "2001:db8::5".parse().expect("ip");
    nft::add_timed("switchboard", "banned_v4", a, 60)
        .await
        .expect("ban");
    nft::add_timed("switchboard", "banned_v4", a, 600)
        .await
        .expect("ban again");
    nft::add_timed("switchboard", "banned_v6", b, 300)
        .await
        .expect("ban v6");
    let v4 = nft::timed_elements("switchboard", "banned_v4")
        .await
        .expect("list");
    assert_eq!(v4.len(), 1, "{v4:?}");
    assert_eq!(
        (v4[0].addr, v4[0].timeout_secs),
        (a, 600),
        "the timeout starts again"
    );
    assert!(v4[0].expires_secs > 590, "{v4:?}");
    let v6 = nft::timed_elements("switchboard", "banned_v6")
        .await
        .expect("list");
    assert_eq!(v6[0].addr, b);
    let script = format!(
        "{factory}{}{}",
        nft::restore_elements("switchboard", "banned_v4", &v4),
        nft::restore_elements("switchboard", "banned_v6", &v6)
    );
    nft::check(&script)
        .await
        .expect("restoring script passes the check");
    nft::load(&script).await.expect("reload with the elements");
    let kept = nft::timed_elements("switchboard", "banned_v4")
        .await
        .expect("list");
    assert_eq!(kept[0].addr, a);
    assert!(
        (600..=601).contains(&kept[0].timeout_secs),
        "the timeout is kept (a second may be added, never taken): {kept:?}"
    );
    assert!(
        kept[0].expires_secs <= v4[0].expires_secs + 1,
        "not restarted: {kept:?}"
    );
    assert_eq!(
        nft::timed_elements("switchboard", "banned_v6")
            .await
            .expect("list")
            .len(),
        1
    );
    nft::load(&factory).await.expect("reload without them");
    assert!(
        nft::timed_elements("switchboard", "banned_v4")
            .await
            .expect("list")
            .is_empty()
    );
    nft::add_timed("switchboard", "banned_v4", a, 60)
        .await
        .expect("ban");
    nft::remove_element("switchboard", "banned_v4", a)
        .await
        .expect("unban");
    nft::remove_element("switchboard", "banned_v4", a)
        .await
        .expect("unban again: nothing");
    assert!(
        nft::timed_elements("switchboard", "banned_v4")
            .await
            .expect("list")
            .is_empty()
    );
    nft::remove_table("switchboard").await.expect("remove");
    assert!(
        nft::timed_elements("switchboard", "banned_v4")
            .await
            .expect("no table")
            .is_empty()
    );
}
