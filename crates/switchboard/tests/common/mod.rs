//! Driving the real `switchboard` binary: a daemon on a temporary data
//! directory, and CLI calls against its socket.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod acme;
pub mod browser;
pub mod console;
pub mod phone;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_pki::testpki::{self, Pki, pki};
use switchboard_system::testlab::{Kannel, Lab, Netns};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A running `switchboard serve`, killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// The daemon's stderr (appended to across restarts).
    pub log: PathBuf,
}

/// How to start the daemon: in the current namespace or inside one.
pub fn serve_command(
    netns: Option<&Netns>,
    data_dir: &Path,
    socket: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = match netns {
        Some(ns) => ns.command(BIN),
        None => Command::new(BIN),
    };
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--socket")
        .arg(socket)
        .arg("serve")
        .args(extra)
        .env("RUST_LOG", "info")
        // No configuration file, whatever /etc holds on this machine (an
        // empty file is every default); a test names its own with --config.
        .env("SWITCHBOARD_CONFIG", "/dev/null");
    cmd
}

impl Daemon {
    /// Start the daemon and wait until its API answers.
    pub fn start(netns: Option<&Netns>, dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(netns, dir, extra, &[])
    }

    /// [`Daemon::start`] with these environment variables.
    pub fn start_with_env(
        netns: Option<&Netns>,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let data_dir = dir.join("data");
        let socket = dir.join("api.sock");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .expect("log file");
        let child = serve_command(netns, &data_dir, &socket, extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start switchboard serve");
        let mut d = Daemon {
            child,
            data_dir,
            socket,
            log: dir.join("daemon.log"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = d.child.try_wait().expect("wait") {
                panic!("the daemon exited early ({status}); log:\n{}", d.log_text());
            }
            if d.cli(&["status"]).status.success() {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer in time; log:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CLI, on this daemon's socket.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run the CLI")
    }

    /// Run a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`switchboard {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// A read command with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// A CLI command that must fail with the given error code; returns stderr.
    pub fn fails(&self, args: &[&str], code: &str) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "`switchboard {}` should fail: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "expected {code}, got: {stderr}"
        );
        assert!(
            stderr.contains("= hint: "),
            "every error has a hint: {stderr}"
        );
        stderr
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, without waiting.
    fn send_term(&self) -> rustix::io::Result<()> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        self.send_term().expect("SIGTERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for Daemon {
    /// A clean stop (what it runs, Kamailio, stops with it), then SIGKILL
    /// if it has not ended within 5 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.send_term();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill9();
    }
}

/// The appliance of the story, ready to activate phones: the lab, its
/// hosts files, the test CA's certificate for voip.example.test bound to
/// `web` and `sip-tls`, the production layout, the provisioning settings,
/// applied. Returns the daemon, the directory of the test's files
/// ([`console::story_files`]) and the test PKI.
pub fn ready_appliance(lab: &Lab, dir: &Path, serve: &[&str]) -> (Daemon, tempfile::TempDir, Pki) {
    lab.wan
        .set_hosts(&[(Lab::WAN_APPLIANCE, "voip.example.test")])
        .expect("phone's hosts");
    lab.appliance
        .set_hosts(&[(Lab::WAN_APPLIANCE, "voip.example.test")])
        .expect("appliance's hosts");
    let p = pki();
    let files = testpki::tempdir();
    let d0 = files.path();
    console::story_files(&p, d0);
    let f = |n: &str| d0.join(n).display().to_string();
    let mut args = vec!["--firewall", "enforce"];
    args.extend_from_slice(serve);
    let d = Daemon::start(Some(&lab.appliance), dir, &args);
    d.ok(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "web", "voip"]);
    d.ok(&["cert", "bind", "sip-tls", "voip"]);
    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);

    // Provisioning settings are checked against the bound certificates.
    d.fails(
        &[
            "provisioning",
            "set",
            "--sip-tls-hostname",
            "other.example.test",
        ],
        "sip-tls-hostname-not-covered",
    );
    d.fails(
        &[
            "provisioning",
            "set",
            "--web-uri",
            "http://voip.example.test",
        ],
        "invalid-web-uri",
    );
    d.fails(&["activate", "1000"], "no-such-account");
    d.ok(&[
        "provisioning",
        "set",
        "--sip-tls-hostname",
        "voip.example.test",
        "--web-uri",
        "https://voip.example.test",
    ]);
    d.ok(&["update", "-m", "production with provisioning"]);
    (d, files, p)
}

/// The `serve` arguments that send SMS through `kannel`, its password
/// written to `dir/sms.pw`.
pub fn kannel_serve_args(kannel: &Kannel, dir: &Path) -> [String; 8] {
    let secret = dir.join("sms.pw");
    testpki::write(dir, "sms.pw", format!("{}\n", Kannel::PASSWORD));
    [
        "--sms-gateway",
        "kannel",
        "--sms-url",
        &kannel.sendsms_url(),
        "--sms-user",
        Kannel::USERNAME,
        "--sms-secret-file",
        &secret.display().to_string(),
    ]
    .map(str::to_owned)
}

/// The pid in `status`'s "kamailio running (pid N, ...)".
pub fn kamailio_pid(d: &Daemon) -> Option<i32> {
    d.json(&["status"])["sip"]
        .as_str()?
        .strip_prefix("kamailio running (pid ")?
        .split(',')
        .next()?
        .parse()
        .ok()
}

/// The SHA-256 fingerprint (`AB:CD:...`, as openssl prints it) of the
/// certificate `addr:port` presents to a client in `ns` that verifies it
/// for `name` against the CA file `ca`; `None` if it does not verify.
pub fn presented(ns: &Netns, ca: &str, addr: &str, port: u16, name: &str) -> Option<String> {
    let connect = format!("{addr}:{port}");
    let out = ns
        .command("sh")
        .args([
            "-c",
            "openssl s_client -connect \"$1\" -servername \"$2\" -verify_return_error -verify_hostname \"$2\" -CAfile \"$3\" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            "sh",
            &connect,
            name,
            ca,
        ])
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("sha256 Fingerprint=")
        .or_else(|| text.trim().strip_prefix("SHA256 Fingerprint="))
        .map(str::to_owned)
}
