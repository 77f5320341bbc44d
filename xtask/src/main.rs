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
//! - `bench-tls`: TLS handshakes per second of the HTTPS listener next to
//!   nginx (installed first when missing, which needs root). The benchmark
//!   stops its nginx itself; should it be killed, this stops it afterwards.
//! - `bench-docs`: configuration documents fetched per second over a new
//!   TLS connection each, next to nginx serving a file of the same size
//!   (nginx installed first when missing, which needs root); stopped
//!   afterwards like `bench-tls`'s.
//! - `packages`: print the Debian packages the tests need, one per line.
//! - `lab up | down [--purge] | status` (root): the story's lab to play
//!   with: the appliance and its neighbours in network namespaces, sample
//!   certificates, the console forwarded to the host's 127.0.0.1:8443 (see
//!   `lab.rs` and the README's "Tour: the lab").

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

mod lab;

/// Debian packages the system tests use.
const PACKAGES: &[&str] = &[
    "iproute2",        // ip netns, veth, ifb: the test lab
    "nftables",        // nft: checking and enforcing rulesets
    "openssl",         // openssl s_client, pkcs12: real TLS clients and fixtures
    "ca-certificates", // the system trust store the padlock check reads
    "curl",            // curl --cacert: a real HTTPS client
    "kamailio",        // the SIP server switchboard configures (kamailio -c checks)
    "kamailio-tls-modules",
    "kamailio-sqlite-modules",
    "sipvicious",        // svcrack: the real password-guessing attack of the ban tests
    "kannel",            // bearerbox and smsbox: the real SMS gateway of the SMS tests
    "kannel-extras",     // fakesmsc, the fake SMS centre those tests read
    "chromium",          // headless Chromium: the browser of the console tests
    "chromium-driver",   // chromedriver: WebDriver, how the tests drive Chromium
    "libnss3-tools",     // certutil: the NSS database where Chromium finds the test CA
    "fonts-dejavu-core", // a font, so that pages have text to lay out, click and screenshot
    "pebble",            // pebble and pebble-challtestsrv: the real ACME CA of the ACME tests
    // nrpe and check_nrpe: the real Nagios parts of the monitoring test (the
    // package may start its own nrpe on the host; the test runs another, in
    // the appliance's namespace, and never talks to the host's)
    "nagios-nrpe-server",
    "nagios-nrpe-plugin",
    // the real Prometheus of the metrics test: it runs in the admin host's
    // namespace with its own config and storage (the package's own service,
    // if started on the host, is neither used nor disturbed)
    "prometheus",
    "systemd", // systemd-analyze: the package test verifies the unit and measures its exposure
    "rtpengine-daemon", // rtpengine: the media relay of calls (Kamailio's rtpengine module is in `kamailio`)
    "tcpdump", // captures on the phones' links: the call tests check the media is SRTP on the wire
    "linphone-cli", // linphonec: the real softphones of the linphone call test
    "etcd-server", // etcd 3.4: the real cluster of the fleet tests (the package's own service is not used)
    "etcd-client", // etcdctl: the fleet tests set up etcd's users and roles with it
    "protobuf-compiler", // protoc: the etcd-client crate compiles etcd's protocol at build time
];

/// The cargo subcommand that builds the Debian package (`cargo xtask deb`,
/// and the package test), installed from crates.io when missing.
const CARGO_DEB: &str = "cargo-deb";

/// Debian packages the TLS benchmark uses.
const BENCH_TLS_PACKAGES: &[&str] = &[
    "nginx", // the reference server
];

/// Where the TLS benchmark puts nginx's files (read by the benchmark).
const NGINX_PREFIX_VAR: &str = "SWITCHBOARD_BENCH_NGINX_PREFIX";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("bench") => bench(),
        Some("bench-tls") => bench_with_nginx("handshakes", "bench-tls"),
        Some("bench-docs") => bench_with_nginx("documents", "bench-docs"),
        Some("lab") => lab::main(&args[1..]),
        Some("deb") => deb().map(|path| println!("{}", path.display())),
        // For running a browser test by hand:
        // SWITCHBOARD_AXE=$(cargo xtask axe) cargo test ...
        Some("axe") => ensure_axe().map(|path| println!("{}", path.display())),
        Some("packages") => {
            for p in PACKAGES {
                println!("{p}");
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask test [CARGO TEST ARGS...] | lint | deb | bench | bench-tls | bench-docs | packages | axe | lab up|down [--purge]|status"
            );
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

fn missing(packages: &[&'static str]) -> Vec<&'static str> {
    packages.iter().copied().filter(|p| !installed(p)).collect()
}

fn install_packages(packages: &[&'static str]) -> anyhow::Result<()> {
    let missing = missing(packages);
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
    cmd.args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .args(extra);
    // The package test builds the .deb with cargo-deb.
    ensure_cargo_deb()?;
    if is_root() {
        install_packages(PACKAGES)?;
        cmd.env("SWITCHBOARD_REQUIRE_SYSTEM_TESTS", "1");
        cmd.env("SWITCHBOARD_AXE", ensure_axe()?);
    } else {
        eprintln!(
            "xtask: not root: system tests (network namespaces, nftables) will be SKIPPED; run as root to include them"
        );
    }
    run(&mut cmd)
}

/// axe-core, the accessibility engine the browser tests run in Chromium:
/// the npm registry's tarball of a pinned version, checked against its
/// published SHA-512, kept under `target/`.
const AXE_VERSION: &str = "4.10.3";
const AXE_SHA512: &str =
    "Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg==";

/// The path of `axe.min.js`, downloaded and checked if not there yet.
fn ensure_axe() -> anyhow::Result<std::path::PathBuf> {
    let dir = workspace_root().join(format!("target/axe-core-{AXE_VERSION}"));
    let script = dir.join("package/axe.min.js");
    if script.exists() {
        return Ok(script);
    }
    std::fs::create_dir_all(&dir)?;
    let tarball = dir.join("axe-core.tgz");
    run(Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "3",
            "--output",
        ])
        .arg(&tarball)
        .arg(format!(
            "https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz"
        )))?;
    let digest = Command::new("sh")
        .arg("-c")
        .arg("openssl dgst -sha512 -binary \"$1\" | base64 -w0")
        .arg("sh")
        .arg(&tarball)
        .output()?;
    let digest = String::from_utf8_lossy(&digest.stdout);
    anyhow::ensure!(
        digest.trim() == AXE_SHA512,
        "axe-core {AXE_VERSION}: the tarball's SHA-512 is {digest}, not the published one"
    );
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .arg("package/axe.min.js"))?;
    Ok(script)
}

/// Install cargo-deb (`cargo install --locked`) unless `cargo deb` runs.
fn ensure_cargo_deb() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let present = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    run(Command::new(&cargo).args(["install", "--locked", CARGO_DEB]))
}

/// The workspace's root (xtask lives one level down).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_owned()
}

/// Build the Debian package of the release binary: the binary, then its man
/// pages and completions (`switchboard assets`), then the .deb (cargo-deb,
/// from `[package.metadata.deb]` of crates/switchboard). Returns its path.
fn deb() -> anyhow::Result<std::path::PathBuf> {
    ensure_cargo_deb()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    run(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "switchboard",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let release = target.join("release");
    run(Command::new(release.join("switchboard"))
        .arg("assets")
        .arg("--out")
        .arg(release.join("assets")))?;
    let out = target.join("debian");
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["deb", "--locked", "--no-build", "-p", "switchboard", "-o"])
        .arg(&out))?;
    let version = env!("CARGO_PKG_VERSION");
    let deb = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("switchboard_{version}-")) && n.ends_with(".deb")
            })
        })
        .with_context(|| format!("no switchboard_{version}-*.deb in {}", out.display()))?;
    Ok(deb)
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
    install_packages(PACKAGES)?;
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

/// Run `cargo bench -p switchboard-web --bench BENCH` next to nginx
/// (installed if missing, as root), with a prefix for nginx's files that is
/// cleaned up even if the benchmark was killed. `task` names the xtask.
fn bench_with_nginx(bench: &str, task: &str) -> anyhow::Result<()> {
    let missing = missing(BENCH_TLS_PACKAGES);
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "the benchmark compares with nginx: install {} or run `cargo xtask {task}` as root",
                missing.join(" ")
            );
        }
        install_packages(BENCH_TLS_PACKAGES)?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let prefix = std::env::temp_dir().join(format!("switchboard-{task}-{}", std::process::id()));
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    let result = run(Command::new(&cargo)
        .args([
            "bench",
            "--locked",
            "-p",
            "switchboard-web",
            "--bench",
            bench,
        ])
        .env(NGINX_PREFIX_VAR, &prefix));
    let cleanup = stop_nginx(&prefix);
    result.and(cleanup)
}

/// Stops the nginx of the TLS benchmark if it is still running (the
/// benchmark stops it, unless it was killed), and removes its files.
fn stop_nginx(prefix: &Path) -> anyhow::Result<()> {
    // nginx removes its pid file when it exits.
    if let Ok(pid) = std::fs::read_to_string(prefix.join("nginx.pid")) {
        let pid = pid.trim();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "nginx" {
            eprintln!("xtask: stopping the benchmark's nginx (pid {pid})");
            run(Command::new("kill").args(["-TERM", pid]))?;
        }
    }
    std::fs::remove_dir_all(prefix).with_context(|| format!("cannot remove {}", prefix.display()))
}
