//! The Debian package: built by cargo-deb from `[package.metadata.deb]`
//! (with this test build's binary, as `cargo xtask deb` does with the
//! release one), its contents and maintainer scripts read with `dpkg-deb`,
//! its systemd unit verified by `systemd-analyze verify` in the unpacked
//! tree and its exposure measured by `systemd-analyze security --offline`.
//!
//! Installing it and booting the unit needs a machine (or container) run
//! by systemd, which CI is not: that is a manual check, written in the
//! README ("Installing the package").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchboard_system::testlab::require_or_skip;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The unit's exposure (`systemd-analyze security`), at most this.
const MAX_EXPOSURE: f64 = 3.0;

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Build the package into `out`: the man pages and completions of this
/// binary beside it, then cargo-deb without building (the dev profile:
/// this test's binary).
fn build_deb(out: &Path) -> PathBuf {
    let bin = Path::new(BIN);
    ok(Command::new(bin)
        .arg("assets")
        .arg("--out")
        .arg(bin.parent().expect("target/debug").join("assets")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ok(Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "-p",
            "switchboard",
            "-o",
        ])
        .arg(out));
    std::fs::read_dir(out)
        .expect("the output directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb")
}

#[test]
fn the_package_holds_the_service_its_config_docs_and_a_unit_that_verifies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tools = runs(&cargo, &["deb", "--version"])
        && runs("dpkg-deb", &["--version"])
        && runs("systemd-analyze", &["--version"]);
    if !require_or_skip(
        "package::the_package_holds_the_service_its_config_docs_and_a_unit_that_verifies",
        tools,
        "needs cargo-deb (cargo xtask test installs it), dpkg-deb and systemd-analyze",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(&dir.path().join("out"));

    // Contents: owner root, the modes given.
    let listing = text(&ok(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/switchboard"),
        ("-rw-r--r--", "./usr/lib/systemd/system/switchboard.service"),
        ("-rw-r--r--", "./etc/switchboard/switchboard.toml"),
        ("-rw-r--r--", "./usr/share/man/man1/switchboard.1"),
        ("-rw-r--r--", "./usr/share/man/man1/switchboard-serve.1"),
        ("-rw-r--r--", "./usr/share/man/man1/switchboard-check.1"),
        (
            "-rw-r--r--",
            "./usr/share/bash-completion/completions/switchboard",
        ),
        (
            "-rw-r--r--",
            "./usr/share/zsh/vendor-completions/_switchboard",
        ),
        (
            "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/switchboard.fish",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/switchboard/examples/nrpe.d/switchboard.cfg",
        ),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        assert!(
            line.starts_with(&format!("{mode} root/root "))
                || line.starts_with(&format!("{mode} 0/0 ")),
            "{line}"
        );
    }
    assert!(
        !listing.contains("man1/switchboard-assets"),
        "the hidden command has no man page"
    );

    // Control: dependencies, the configuration kept across upgrades, the
    // data directory made root's only, the unit enabled and started.
    let depends = text(&ok(Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .arg("Depends")));
    for d in ["libnftables1", "nftables", "openssl"] {
        assert!(depends.contains(d), "Depends: {depends}");
    }
    let control = dir.path().join("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/switchboard/switchboard.toml");
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    for step in [
        "install -d -m 0700 -o root -g root /var/lib/switchboard",
        "deb-systemd-helper enable switchboard.service",
        "deb-systemd-invoke $_dh_action switchboard.service",
    ] {
        assert!(
            postinst.contains(step),
            "postinst lacks {step:?}:\n{postinst}"
        );
    }
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");

    // The unit, in the unpacked tree (with the system's own units beside
    // it, for the targets it names): no error and no warning.
    let root = dir.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").expect("the system's units") {
        let entry = entry.expect("entry");
        let to = units.join(entry.file_name());
        if !to.exists() && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), &to).expect("copy a unit");
        }
    }
    let root_arg = format!("--root={}", root.display());
    let verify = ok(Command::new("systemd-analyze").args([
        "verify",
        "--man=no",
        &root_arg,
        "switchboard.service",
    ]));
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify complains:\n{complaints}"
    );
    let unit = std::fs::read_to_string(units.join("switchboard.service")).expect("unit");
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/switchboard serve",
        "Restart=on-failure",
        "WatchdogSec=60s",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_SYS_NICE CAP_CHOWN",
        "ReadWritePaths=/var/lib/switchboard /run/switchboard",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the unit lacks {line:?}:\n{unit}"
        );
    }
    let security = ok(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        &root_arg,
        "switchboard.service",
    ]));
    let report = text(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for switchboard.service: ")
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no exposure figure in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {exposure} (at most {MAX_EXPOSURE})");
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}:\n{report}");

    // The packaged binary runs, and the packaged configuration is one it takes.
    let packaged = root.join("usr/bin/switchboard");
    let version = text(&ok(Command::new(&packaged).arg("--version")));
    assert_eq!(
        version.trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
    let config = root.join("etc/switchboard/switchboard.toml");
    let data = dir.path().join("data");
    let out = Command::new(&packaged)
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(dir.path().join("api.sock"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        // the shipped file enforces; this test must not touch the host's
        // firewall: an unknown SMS gateway flag value stops it right after
        // the file was read and accepted
        .args(["--sms-gateway", "kannel"])
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("needs --sms-url"),
        "the file was accepted: {err}"
    );
    assert!(!data.exists(), "nothing was touched");
}
