//! Project automation, run as `cargo xtask <task>`.
//!
//! - `test`: the whole test suite. As root it first installs the Debian
//!   packages the system tests need (only the missing ones) and makes every
//!   system test mandatory (`SWITCHBOARD_REQUIRE_SYSTEM_TESTS=1`): a system
//!   test that cannot run fails instead of skipping. Not as root, system
//!   tests print a loud SKIPPED line and the rest runs.
//! - `lint`: `cargo fmt --check` and `cargo clippy --all-targets -D warnings`.
//! - `bench`: the benchmarks (root): Update latency next to raw `nft -f`,
//!   run inside a network namespace made for it and removed afterwards.
//! - `packages`: print the Debian packages the tests need, one per line.

use std::process::Command;

use anyhow::{Context, bail};

/// Debian packages the system tests use.
const PACKAGES: &[&str] = &[
    "iproute2",        // ip netns, veth, ifb: the test lab
    "nftables",        // nft: checking and enforcing rulesets
    "openssl",         // openssl s_client, pkcs12: real TLS clients and fixtures
    "ca-certificates", // the system trust store the padlock check reads
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("bench") => bench(),
        Some("packages") => {
            for p in PACKAGES {
                println!("{p}");
            }
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo xtask test [CARGO TEST ARGS...] | lint | bench | packages");
            std::process::exit(2);
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn install_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--workspace", "--locked"]).args(extra);
    if is_root() {
        install_packages()?;
        cmd.env("SWITCHBOARD_REQUIRE_SYSTEM_TESTS", "1");
    } else {
        eprintln!(
            "xtask: not root: system tests (network namespaces, nftables) will be SKIPPED; run as root to include them"
        );
    }
    run(&mut cmd)
}

fn lint() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).args(["fmt", "--all", "--", "--check"]))?;
    run(Command::new(&cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))
}

fn bench() -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmarks load nftables rulesets: run `cargo xtask bench` as root");
    }
    install_packages()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Build first, outside the namespace, so the timing run only runs.
    run(Command::new(&cargo).args([
        "bench",
        "--locked",
        "-p",
        "switchboard",
        "--bench",
        "update",
        "--no-run",
    ]))?;
    let ns = format!("sbb-{}", std::process::id());
    run(Command::new("ip").args(["netns", "add", &ns]))?;
    let result = run(Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            &cargo,
            "bench",
            "--locked",
            "-p",
            "switchboard",
            "--bench",
            "update",
        ])
        .env("SWITCHBOARD_BENCH_NETNS", &ns));
    let cleanup = run(Command::new("ip").args(["netns", "del", &ns]));
    result.and(cleanup)
}
