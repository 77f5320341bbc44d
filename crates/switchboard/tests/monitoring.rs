//! Monitoring with the real parts: Debian's `nagios-nrpe-server` runs the
//! shipped NRPE command (`switchboard check --nagios`, as the unprivileged
//! `nagios` user, through the monitoring socket) and `check_nrpe` (from
//! `nagios-nrpe-plugin`) reads it, inside the appliance's namespace:
//! OK, WARNING once a bound certificate nears its end, CRITICAL while a
//! commit-confirmed revision is past half its window and while Kamailio is
//! down.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::console::{chain, production_with_real_certificates, story_files, story_hosts};
use common::{BIN, Daemon, kamailio_pid};
use switchboard_pki::testpki::{self, leaf_params, pki, with_validity};
use switchboard_system::testlab::{Lab, Netns, require_root_or_skip};

const NRPE: &str = "/usr/sbin/nrpe";
const CHECK_NRPE: &str = "/usr/lib/nagios/plugins/check_nrpe";

/// The NRPE daemon, stopped on drop.
struct Nrpe(Child);

impl Drop for Nrpe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `nrpe` in `ns` on 127.0.0.1:5666 as user `nagios`, with the
/// package's command definition (`check_switchboard`) pointing at `bin`
/// and `socket`.
fn start_nrpe(ns: &Netns, dir: &Path, bin: &Path, socket: &Path) -> Nrpe {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/debian/nrpe.cfg"))
        .expect("the shipped nrpe.d snippet");
    // The shipped command, with this test's binary and socket.
    let command = shipped
        .lines()
        .find(|l| l.starts_with("command[check_switchboard]="))
        .expect("the shipped command")
        .replace(
            "/usr/bin/switchboard",
            &format!("{} --socket {}", bin.display(), socket.display()),
        );
    let cfg = dir.join("nrpe.cfg");
    std::fs::write(
        &cfg,
        format!(
            "log_file={log}\npid_file={pid}\nserver_address=127.0.0.1\nserver_port=5666\n\
             nrpe_user=nagios\nnrpe_group=nagios\nallowed_hosts=127.0.0.1\n\
             dont_blame_nrpe=0\ncommand_timeout=30\nconnection_timeout=60\n{command}\n",
            log = dir.join("nrpe.log").display(),
            pid = dir.join("nrpe.pid").display(),
        ),
    )
    .expect("nrpe.cfg");
    let child = ns
        .command(NRPE)
        .args(["-n", "-c"])
        .arg(&cfg)
        .arg("-f")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nrpe");
    let nrpe = Nrpe(child);
    // It answers once it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_nrpe_version(ns).is_none() {
        assert!(
            Instant::now() < deadline,
            "nrpe did not answer; its log:\n{}",
            std::fs::read_to_string(dir.join("nrpe.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nrpe
}

fn check_nrpe_version(ns: &Netns) -> Option<String> {
    let out = ns
        .command(CHECK_NRPE)
        .args(["-H", "127.0.0.1", "-p", "5666", "-n"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `check_nrpe -c check_switchboard`: its exit status and line.
fn check(ns: &Netns) -> (i32, String) {
    let out = ns
        .command(CHECK_NRPE)
        .args([
            "-H",
            "127.0.0.1",
            "-p",
            "5666",
            "-n",
            "-t",
            "30",
            "-c",
            "check_switchboard",
        ])
        .output()
        .expect("check_nrpe");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
    )
}

#[test]
fn nrpe_reads_ok_then_warning_for_a_certificate_near_its_end_then_critical() {
    if !require_root_or_skip(
        "monitoring::nrpe_reads_ok_then_warning_for_a_certificate_near_its_end_then_critical",
    ) {
        return;
    }
    for program in [NRPE, CHECK_NRPE] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: apt-get install nagios-nrpe-server nagios-nrpe-plugin (cargo xtask test installs them)"
        );
    }
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let p = pki();
    let files = testpki::tempdir();
    let d0 = files.path();
    story_files(&p, d0);
    // A certificate for the console that ends in 20 days.
    let now = jiff::Timestamp::now();
    let short = p.intermediate.leaf_with(
        with_validity(
            leaf_params(&["console.lan.test"]),
            now - jiff::SignedDuration::from_hours(24),
            now + jiff::SignedDuration::from_hours(20 * 24 + 12),
        ),
        rcgen::KeyPair::generate().expect("key"),
    );
    testpki::write(d0, "short.pem", chain(&p, &short));
    let f = |n: &str| d0.join(n).display().to_string();

    // The daemon's directory must be reachable by `nagios` (the socket's
    // group gives it the rest); so must the binary NRPE runs.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.path().join("switchboard");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    let d = Daemon::start(
        Some(&lab.appliance),
        dir.path(),
        &[
            "--firewall",
            "enforce",
            "--sip",
            "kamailio",
            "--monitor-group",
            "nagios",
        ],
    );
    d.ok(&["cert", "import", "short", "--bundle", &f("short.pem")]);
    production_with_real_certificates(&d, d0);
    // The monitoring socket: the nagios group's, and one read only.
    let monitor_sock = d.socket.with_file_name("monitor.sock");
    let meta = std::fs::metadata(&monitor_sock).expect("monitor.sock");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let nagios_gid = std::fs::read_to_string("/etc/group")
        .expect("/etc/group")
        .lines()
        .find_map(|l| {
            l.strip_prefix("nagios:x:")?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("the nagios group");
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), nagios_gid);
    for (method, path) in [
        ("GET", "/v1/status"),
        ("POST", "/v1/update"),
        ("GET", "/v1/certs/voip"),
        ("POST", "/v1/monitor"),
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .arg("--unix-socket")
            .arg(&monitor_sock)
            .arg(format!("http://switchboard{path}"))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            code == "404" || code == "405",
            "{method} {path} on the monitoring socket: {code}"
        );
    }
    let _nrpe = start_nrpe(&lab.appliance, dir.path(), &bin, &d.socket);

    // OK: every padlock closed, Kamailio running, nothing pending.
    let (code, line) = check(&lab.appliance);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("SWITCHBOARD OK - all is well | revision=1 "),
        "{line}"
    );
    assert!(line.contains("open_padlocks=0;1;;0;3"), "{line}");
    assert!(line.contains("kamailio_up=1"), "{line}");

    // WARNING: the console presents a certificate that ends in 20 days.
    d.ok(&["cert", "bind", "console", "short"]);
    d.ok(&["update", "-m", "a certificate near its end"]);
    let (code, line) = check(&lab.appliance);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("SWITCHBOARD WARNING - certificate short expires in 20 day(s)"),
        "{line}"
    );
    assert!(line.contains("cert_days_left=20;30;7"), "{line}");
    d.ok(&["cert", "bind", "console", "console"]);
    d.ok(&["update", "-m", "the long certificate again"]);
    assert_eq!(check(&lab.appliance).0, 0);

    // CRITICAL: a commit-confirmed revision past half its window.
    d.ok(&["matrix", "allow", "ssh", "wan0"]);
    d.ok(&[
        "update",
        "--confirm-within",
        "8",
        "-m",
        "ssh from outside, on trial",
    ]);
    let (code, line) = check(&lab.appliance);
    assert_eq!(code, 1, "pending, before half its window: {line}");
    std::thread::sleep(Duration::from_millis(4_200));
    let (code, line) = check(&lab.appliance);
    assert_eq!(code, 2, "{line}");
    assert!(
        line.starts_with("SWITCHBOARD CRITICAL - revision 4 pending confirmation for "),
        "{line}"
    );
    d.ok(&["confirm"]);
    assert_eq!(check(&lab.appliance).0, 0);

    // CRITICAL: Kamailio down. The supervisor starts it again after a
    // pause; a check in that pause reads CRITICAL.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Some(pid) = kamailio_pid(&d) {
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pid).expect("pid"),
                rustix::process::Signal::KILL,
            );
        }
        let (code, line) = check(&lab.appliance);
        if code == 2 {
            break line;
        }
        assert!(Instant::now() < deadline, "never CRITICAL: {line}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        line.starts_with("SWITCHBOARD CRITICAL - kamailio is not running"),
        "{line}"
    );
    assert!(line.contains("kamailio_up=0"), "{line}");
    // And back to OK once the supervisor has it running again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, line) = check(&lab.appliance);
        if code == 0 {
            assert!(!line.contains("kamailio_restarts=0c"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "never OK again: {line}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn check_says_unknown_when_no_daemon_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(dir.path().join("api.sock"))
        .args(["check", "--nagios"])
        .output()
        .expect("check");
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{line}");
    assert!(
        line.starts_with("SWITCHBOARD UNKNOWN - cannot read the daemon's state on "),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
}

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Prometheus, stopped on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PromQL instant query against Prometheus's HTTP API in `ns`: the
/// first sample's value, when there is one.
fn promql(ns: &Netns, query: &str) -> Option<f64> {
    let out = ns
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-G",
            "http://127.0.0.1:9090/api/v1/query",
            "--data-urlencode",
        ])
        .arg(format!("query={query}"))
        .output()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    assert_ne!(doc["status"], "error", "{query}: {doc}");
    doc["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Poll `query` until it has a value meeting `good` (at most 60 s).
fn wait_for_value(ns: &Netns, query: &str, good: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = promql(ns, query);
        if let Some(v) = got.filter(|v| good(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: no good value in time (last {got:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_the_metrics_service_from_the_lan_and_promql_reads_them() {
    if !require_root_or_skip(
        "monitoring::prometheus_scrapes_the_metrics_service_from_the_lan_and_promql_reads_them",
    ) {
        return;
    }
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: apt-get install prometheus (cargo xtask test installs it)"
    );
    let lab = Lab::new().expect("lab");
    story_hosts(&lab);
    let p = pki();
    let files = testpki::tempdir();
    let d0 = files.path();
    story_files(&p, d0);
    let f = |n: &str| d0.join(n).display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(Some(&lab.appliance), dir.path(), &["--firewall", "enforce"]);
    d.ok(&["cert", "import", "voip", "--bundle", &f("voip.pem")]);
    d.ok(&["cert", "ca", "add", &f("ca.pem")]);
    d.ok(&["cert", "bind", "web", "voip"]);
    d.ok(&[
        "preset",
        "production",
        "--internal",
        "lan0",
        "--external",
        "wan0",
    ]);
    d.ok(&["update", "-m", "production"]);
    let not_after = d.json(&["cert", "show", "voip"])["cert"]["not_after"]
        .as_str()
        .expect("not_after")
        .parse::<jiff::Timestamp>()
        .expect("a time")
        .as_second();

    // The phone's side does not reach the metrics; the admin's does.
    let target = format!("{}:9469", Lab::LAN_APPLIANCE);
    let from_wan = lab
        .wan
        .command("curl")
        .args(["-sS", "--max-time", "2"])
        .arg(format!("http://{}:9469/metrics", Lab::WAN_APPLIANCE))
        .output()
        .expect("curl");
    assert!(!from_wan.status.success(), "metrics answered on wan0");
    // A TLS handshake on the web services, to be counted.
    let healthz = lab
        .wan
        .command("curl")
        .args(["-sS", "--max-time", "5", "--cacert", &f("ca.pem")])
        .arg("https://voip.example.test/healthz")
        .output()
        .expect("curl");
    assert!(healthz.status.success(), "{healthz:?}");

    // Prometheus on the admin host, scraping every second.
    let prom = tempfile::tempdir().expect("tempdir");
    let cfg = prom.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: switchboard\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("prometheus.yml");
    let log = std::fs::File::create(prom.path().join("prometheus.log")).expect("log");
    let _prometheus = Prometheus(
        lab.lan
            .command(PROMETHEUS)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );

    let up = wait_for_value(&lab.lan, "up{job=\"switchboard\"}", |v| v == 1.0);
    assert_eq!(up, 1.0);
    // The Update count, two ways: revisions applied and the histogram.
    let applied = wait_for_value(
        &lab.lan,
        "switchboard_revisions{outcome=\"applied\"}",
        |v| v >= 1.0,
    );
    assert_eq!(applied, 1.0);
    let updates = wait_for_value(&lab.lan, "switchboard_update_duration_seconds_count", |v| {
        v >= 1.0
    });
    assert_eq!(updates, 1.0);
    // The certificate's end, as Unix time.
    let end = wait_for_value(
        &lab.lan,
        "switchboard_certificate_not_after_timestamp_seconds{cert=\"voip\"}",
        |_| true,
    );
    assert_eq!(end, not_after as f64);
    assert!(
        wait_for_value(
            &lab.lan,
            "switchboard_tls_handshakes_total{service=\"web\"}",
            |v| v >= 1.0
        ) >= 1.0
    );

    // A second Update shows in the next scrapes.
    d.ok(&["matrix", "allow", "ssh", "wan0"]);
    d.ok(&["update", "-m", "ssh from outside"]);
    wait_for_value(&lab.lan, "switchboard_revision", |v| v == 2.0);
    wait_for_value(&lab.lan, "switchboard_update_duration_seconds_count", |v| {
        v == 2.0
    });
}

#[test]
fn a_failed_last_update_is_a_warning_until_one_succeeds_in_three_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nagios = |d: &Daemon| {
        let out = d.cli(&["check", "--nagios"]);
        (
            out.status.code().expect("an exit status"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // The pipeline's firewall step fails its verification after a change
    // (test-only), so the Update fails and the previous state stays.
    let d = Daemon::start_with_env(
        None,
        dir.path(),
        &[],
        &[("SWITCHBOARD_FAIL_STEP", "firewall")],
    );
    // A fresh appliance presents its self-signed certificate: open padlocks.
    let (code, line) = nagios(&d);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("SWITCHBOARD WARNING - open padlock: "),
        "{line}"
    );
    assert!(!line.contains("the last Update"), "{line}");
    let out = d.cli(&["update", "-m", "a change that fails"]);
    assert!(!out.status.success(), "the Update should fail");
    let (code, line) = nagios(&d);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with(
            "SWITCHBOARD WARNING - the last Update (revision 1) failed; open padlock: "
        ),
        "{line}"
    );
    assert!(line.contains("updates_failed=1c"), "{line}");
    // The human form says the same, with the exit status.
    let out = d.cli(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("WARNING\n  WARNING: the last Update (revision 1) failed\n"),
        "{text}"
    );
    // --json: the view, the state and the reasons (exit status 1 still).
    let out = d.cli(&["--json", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["state"], "WARNING", "{doc}");
    assert_eq!(doc["updates"]["failed"], 1, "{doc}");
    assert_eq!(doc["last_update"]["outcome"], "failed", "{doc}");
    drop(d);

    // Without the injected failure, the next Update succeeds: no longer.
    let d = Daemon::start(None, dir.path(), &[]);
    d.ok(&["update", "-m", "this one applies"]);
    let (_, line) = nagios(&d);
    assert!(!line.contains("the last Update"), "{line}");
    assert!(line.contains("revision=2 "), "{line}");
}
