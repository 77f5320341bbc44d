//! A fleet on a real 3-member etcd cluster (needs root, `etcd` and
//! `etcdctl`): appliance daemons in network namespaces, each with its own
//! lab NICs and its firewall enforced, join one group; policies roll out
//! in waves and are probed on the wire; the etcd leader is killed
//! mid-rollout; an appliance partitioned from etcd keeps serving and
//! catches up; a canary that fails verification halts the rollout; etcd's
//! roles keep appliance A from writing B's status. Prints the figures of
//! the benchmark (time to applied everywhere vs the sum of the local
//! Updates; etcd requests per appliance per minute at rest).
//!
//! ```text
//!  core namespace: bridge brl 192.0.2.201-203 (etcd members), bridge brw 198.51.100.254 (the phones' side)
//!  appliance i:    lan0 192.0.2.(10+i) ─ brl      wan0 198.51.100.(10+i) ─ brw
//! ```
//!
//! The number of appliances is `SWITCHBOARD_FLEET_APPLIANCES` (default 10).

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Daemon};
use serde_json::Value;
use switchboard_system::testlab::{Listeners, Netns, Port, answers, require_or_skip, run};

const GROUP: &str = "branches";
const WAIT: Duration = Duration::from_millis(400);
const MEMBERS: [&str; 3] = ["192.0.2.201", "192.0.2.202", "192.0.2.203"];

fn etcd_installed() -> bool {
    Path::new("/usr/bin/etcd").exists() && Path::new("/usr/bin/etcdctl").exists()
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test PKI, made with openssl: a CA, etcd's server certificate, a
/// client certificate per user (CN = etcd user name).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_owned(),
        };
        ok(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            ])
            .args(["-subj", "/CN=switchboard fleet test CA"]));
        let ips: Vec<String> = MEMBERS.iter().map(|m| format!("IP:{m}")).collect();
        pki.leaf("server", "etcd", &ips.join(","));
        pki
    }

    fn leaf(&self, name: &str, cn: &str, san: &str) {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
            ),
        )
        .expect("ext");
        ok(Command::new("openssl")
            .current_dir(&self.dir)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ])
            .args(["-subj", &format!("/CN={cn}")]));
        ok(Command::new("openssl")
            .current_dir(&self.dir)
            .args([
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
            ])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
            .args(["-out", &format!("{name}.pem"), "-extfile"])
            .arg(&ext));
    }

    fn client(&self, user: &str) -> [String; 6] {
        let p = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        [
            "--ca".into(),
            p("ca.pem"),
            "--cert".into(),
            p(&format!("{user}.pem")),
            "--key".into(),
            p(&format!("{user}.key")),
        ]
    }
}

fn endpoints() -> String {
    MEMBERS
        .iter()
        .map(|m| format!("https://{m}:2379"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The core namespace with the etcd cluster and the two bridges.
struct Core {
    ns: Netns,
    etcd: Vec<Option<Child>>,
    dir: PathBuf,
}

impl Core {
    fn new(dir: &Path) -> Core {
        let ns = Netns::new("sbt-fcore").expect("core namespace");
        ns.ip(["link", "set", "lo", "up"]).expect("lo");
        for (br, addrs) in [("brl", MEMBERS.to_vec()), ("brw", vec!["198.51.100.254"])] {
            ns.ip(["link", "add", br, "type", "bridge"])
                .expect("bridge");
            for a in addrs {
                ns.ip(["addr", "add", &format!("{a}/24"), "dev", br])
                    .expect("addr");
            }
            ns.ip(["link", "set", br, "up"]).expect("up");
        }
        let mut core = Core {
            ns,
            etcd: Vec::new(),
            dir: dir.to_owned(),
        };
        for i in 0..MEMBERS.len() {
            let child = core.start_member(i);
            core.etcd.push(Some(child));
        }
        core
    }

    fn start_member(&self, i: usize) -> Child {
        let ip = MEMBERS[i];
        let cluster: Vec<String> = MEMBERS
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}=http://{m}:2380"))
            .collect();
        let pem = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        let data = self.dir.join(format!("etcd-m{i}"));
        let state = if data.exists() { "existing" } else { "new" };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("etcd-m{i}.log")))
            .expect("log");
        self.ns
            .command("/usr/bin/etcd")
            .arg(format!("--name=m{i}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls=https://{ip}:2379"))
            .arg(format!("--advertise-client-urls=https://{ip}:2379"))
            .arg(format!("--listen-peer-urls=http://{ip}:2380"))
            .arg(format!("--initial-advertise-peer-urls=http://{ip}:2380"))
            .arg(format!("--listen-metrics-urls=http://{ip}:2381"))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=sbt-fleet")
            .arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", pem("ca.pem")))
            .arg(format!("--cert-file={}", pem("server.pem")))
            .arg(format!("--key-file={}", pem("server.key")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd")
    }

    /// etcdctl as `user` (its client certificate) on the live members.
    fn etcdctl(&self, user: &str, args: &[&str]) -> std::process::Output {
        let pem = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        self.ns
            .command("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints()))
            .arg(format!("--cacert={}", pem("ca.pem")))
            .arg(format!("--cert={}", pem(&format!("{user}.pem"))))
            .arg(format!("--key={}", pem(&format!("{user}.key"))))
            .args(args)
            .output()
            .expect("etcdctl")
    }

    fn etcdctl_ok(&self, user: &str, args: &[&str]) -> String {
        let out = self.etcdctl(user, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} as {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The index of the leader among the members.
    fn leader(&self) -> usize {
        let text = self.etcdctl_ok("root", &["endpoint", "status", "-w", "json"]);
        let v: Value = serde_json::from_str(&text).expect("json");
        for e in v.as_array().expect("list") {
            let status = &e["Status"];
            if status["header"]["member_id"] == status["leader"] {
                let ep = e["Endpoint"].as_str().expect("endpoint");
                return MEMBERS
                    .iter()
                    .position(|m| ep.contains(m))
                    .expect("a member");
            }
        }
        panic!("no leader in {text}")
    }

    /// Messages etcd's members received (gRPC: unary requests and every
    /// message of a stream, e.g. each lease keep-alive), summed.
    fn handled(&self) -> f64 {
        let mut total = 0.0;
        for m in MEMBERS {
            let out = self
                .ns
                .command("curl")
                .args(["-s", &format!("http://{m}:2381/metrics")])
                .output()
                .expect("curl");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if line.starts_with("grpc_server_msg_received_total{")
                    && let Some(v) = line.rsplit(' ').next()
                {
                    total += v.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        total
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        for c in self.etcd.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An appliance: its namespace, its daemon, fake SSH and SQL services.
struct Appliance {
    name: String,
    lan: String,
    wan: String,
    daemon: Option<Daemon>,
    dir: PathBuf,
    _listeners: Listeners,
    ns: Netns,
}

impl Appliance {
    fn new(core: &Core, i: usize, root: &Path) -> Appliance {
        let ns = Netns::new("sbt-fa").expect("namespace");
        ns.ip(["link", "set", "lo", "up"]).expect("lo");
        let lan = format!("192.0.2.{}", 10 + i);
        let wan = format!("198.51.100.{}", 10 + i);
        for (nic, peer, br, addr) in [
            ("lan0", format!("l{i}"), "brl", &lan),
            ("wan0", format!("w{i}"), "brw", &wan),
        ] {
            ns.ip([
                "link",
                "add",
                nic,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                core.ns.name(),
            ])
            .expect("veth");
            ns.ip(["addr", "add", &format!("{addr}/24"), "dev", nic])
                .expect("addr");
            ns.ip(["link", "set", nic, "up"]).expect("up");
            core.ns
                .ip(["link", "set", &peer, "master", br, "up"])
                .expect("bridge port");
        }
        let listeners =
            Listeners::start(&ns, &[Port::Tcp(22), Port::Tcp(3306)]).expect("listeners");
        let dir = root.join(format!("sb-{i:02}"));
        std::fs::create_dir_all(&dir).expect("dir");
        Appliance {
            name: format!("sb-{i:02}"),
            lan,
            wan,
            daemon: None,
            dir,
            _listeners: listeners,
            ns,
        }
    }

    fn start(&mut self, env: &[(&str, &str)]) {
        self.daemon = None;
        self.daemon = Some(Daemon::start_with_env(
            Some(&self.ns),
            &self.dir,
            &["--firewall", "enforce"],
            env,
        ));
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    /// Does `port` answer on the WAN side (from the phones' bridge)?
    fn wan_answers(&self, core: &Core, port: u16) -> bool {
        let addr: IpAddr = self.wan.parse().expect("ip");
        answers(&core.ns, addr, Port::Tcp(port), WAIT)
    }

    fn lan_answers(&self, core: &Core, port: u16) -> bool {
        let addr: IpAddr = self.lan.parse().expect("ip");
        answers(&core.ns, addr, Port::Tcp(port), WAIT)
    }

    /// Cut it off etcd (and only etcd), both ways: unreachable routes to
    /// the members in its namespace, to its LAN address in etcd's.
    fn partition(&self, core: &Core, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        for m in MEMBERS {
            self.ns
                .ip(["route", verb, "prohibit", &format!("{m}/32")])
                .expect("route");
        }
        core.ns
            .ip(["route", verb, "prohibit", &format!("{}/32", self.lan)])
            .expect("route");
    }
}

/// The CLI of the operator's commands, run in the core namespace (where
/// etcd is).
fn operator(core: &Core, pki: &Pki, args: &[&str]) -> Command {
    let mut cmd = core.ns.command(BIN);
    cmd.arg("--json")
        .args(args)
        .args(["--endpoints", &endpoints(), "--group", GROUP])
        .args(pki.client("operator"));
    cmd
}

/// `fleet rollout start --waves WAVES` (a wave may take 120 s), driven by
/// its CLI in the background; its output is piped for the caller to read.
fn start_rollout(core: &Core, pki: &Pki, waves: &str) -> Child {
    operator(
        core,
        pki,
        &[
            "fleet",
            "rollout",
            "start",
            "--waves",
            waves,
            "--wave-timeout",
            "120",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("rollout")
}

/// `fleet rollout start --waves WAVES`, run to its end, which must be
/// `done`; the rollout's document.
fn rollout_to_the_end(core: &Core, pki: &Pki, waves: &str) -> Value {
    let out = ok(&mut operator(
        core,
        pki,
        &[
            "fleet",
            "rollout",
            "start",
            "--waves",
            waves,
            "--wave-timeout",
            "120",
        ],
    ));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    rollout
}

fn set_policy(core: &Core, pki: &Pki, policy: &Value) -> i64 {
    let file = pki.dir.join("policy.json");
    std::fs::write(&file, policy.to_string()).expect("policy file");
    let out = ok(&mut operator(
        core,
        pki,
        &["fleet", "policy", "set", file.to_str().expect("path")],
    ));
    let v: Value = serde_json::from_str(&out).expect("json");
    v["policy_revision"].as_i64().expect("revision")
}

/// The members' statuses, by appliance, read from etcd by the operator.
fn members(core: &Core, pki: &Pki) -> std::collections::BTreeMap<String, Value> {
    let out = ok(&mut operator(core, pki, &["fleet", "status"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    v["members"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| (m["appliance"].as_str().expect("name").to_owned(), m.clone()))
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn policy(ssh_external: bool, sql_external: bool) -> Value {
    let mut ssh = vec!["internal"];
    if ssh_external {
        ssh.push("external");
    }
    let mut sql = vec!["internal"];
    if sql_external {
        sql.push("external");
    }
    serde_json::json!({
        "matrix": {
            "console": ["internal"], "ssh": ssh, "sql": sql, "metrics": ["internal"],
            "sip-tls": ["external"], "web": ["external"], "rtp": ["external"]
        },
        "sip_tls_hostname": "voip.{site}.example.com",
        "web_uri": "https://voip.{site}.example.com"
    })
}

trait TapPorts {
    /// The same policy with NRPE moved to 5668: another policy revision
    /// that leaves the probed ports alone.
    fn tap_ports(self) -> Self;
}

impl TapPorts for Value {
    fn tap_ports(mut self) -> Self {
        self["ports"] = serde_json::json!({"nrpe": "5668"});
        self
    }
}

fn applied_everywhere(
    m: &std::collections::BTreeMap<String, Value>,
    names: &[String],
    revision: i64,
) -> bool {
    names.iter().all(|n| {
        m.get(n).is_some_and(|s| {
            s["policy_revision"].as_i64() == Some(revision) && s["outcome"] == "applied"
        })
    })
}

#[test]
fn a_fleet_on_a_real_etcd_cluster_rolls_policies_out_in_waves_and_stays_safe() {
    if !require_or_skip(
        "fleet",
        switchboard_system::testlab::is_root() && etcd_installed(),
        "needs root, etcd and etcdctl (apt-get install etcd-server etcd-client)",
    ) {
        return;
    }
    let n: usize = std::env::var("SWITCHBOARD_FLEET_APPLIANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    assert!(n >= 3, "at least 3 appliances");
    let tmp = tempfile::tempdir().expect("tmp");
    if std::env::var_os("SWITCHBOARD_FLEET_KEEP").is_some() {
        eprintln!("keeping {}", tmp.path().display());
        let _ = tmp.path().to_owned();
    }
    let tmp_keep = std::env::var_os("SWITCHBOARD_FLEET_KEEP").is_some();
    let pki = Pki::new(tmp.path());
    let names: Vec<String> = (0..n).map(|i| format!("sb-{i:02}")).collect();
    for user in ["root", "operator"] {
        pki.leaf(user, user, "DNS:localhost");
    }
    for name in &names {
        pki.leaf(name, name, "DNS:localhost");
    }

    // The cluster, its users and roles, auth on.
    let core = Core::new(tmp.path());
    wait_for("etcd's cluster", Duration::from_secs(30), || {
        core.etcdctl("root", &["endpoint", "health"])
            .status
            .success()
    });
    let prefix = format!("/switchboard/groups/{GROUP}/");
    for (args, who) in [
        (vec!["user", "add", "root", "--no-password"], "root"),
        (vec!["user", "grant-role", "root", "root"], "root"),
        (vec!["role", "add", "operator"], "operator"),
        (
            vec![
                "role",
                "grant-permission",
                "operator",
                "--prefix=true",
                "readwrite",
                "/switchboard/",
            ],
            "operator",
        ),
        (vec!["user", "add", "operator", "--no-password"], "operator"),
        (
            vec!["user", "grant-role", "operator", "operator"],
            "operator",
        ),
    ] {
        let _ = who;
        core.etcdctl_ok("root", &args);
    }
    for name in &names {
        let role = format!("appliance-{name}");
        let status = format!("{prefix}status/{name}");
        core.etcdctl_ok("root", &["role", "add", &role]);
        core.etcdctl_ok(
            "root",
            &[
                "role",
                "grant-permission",
                &role,
                "--prefix=true",
                "read",
                &prefix,
            ],
        );
        core.etcdctl_ok(
            "root",
            &["role", "grant-permission", &role, "readwrite", &status],
        );
        core.etcdctl_ok("root", &["user", "add", name, "--no-password"]);
        core.etcdctl_ok("root", &["user", "grant-role", name, &role]);
    }
    core.etcdctl_ok("root", &["auth", "enable"]);

    // The appliances join.
    let started = Instant::now();
    let mut fleet: Vec<Appliance> = (0..n)
        .map(|i| Appliance::new(&core, i, tmp.path()))
        .collect();
    for a in fleet.iter_mut() {
        a.start(&[]);
    }
    for (i, a) in fleet.iter().enumerate() {
        let mut args = vec![
            "fleet".to_owned(),
            "join".into(),
            "--endpoints".into(),
            endpoints(),
            "--group".into(),
            GROUP.into(),
            "--appliance".into(),
            a.name.clone(),
            "--site".into(),
            format!("site{i:02}"),
            "--role".into(),
            "lan0=internal".into(),
            "--role".into(),
            "wan0=external".into(),
        ];
        args.extend(pki.client(&a.name));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        a.d().ok(&args);
    }
    // A NIC it does not have, a bad name: refused, nothing kept.
    fleet[0].d().fails(
        &[
            "fleet",
            "join",
            "--endpoints",
            "https://192.0.2.201:2379",
            "--group",
            GROUP,
            "--appliance",
            "sb-00",
            "--site",
            "x",
            "--role",
            "eth9=dmz",
            "--ca",
            "/a",
            "--cert",
            "/b",
            "--key",
            "/c",
        ],
        "fleet-unknown-nic",
    );
    wait_for(
        "every appliance live in etcd",
        Duration::from_secs(60),
        || members(&core, &pki).len() == n,
    );
    eprintln!("{n} appliances up and live in {:?}", started.elapsed());

    // Security: etcd refuses appliance A writing B's status, or the policy.
    let refused = core.etcdctl(
        &names[0],
        &["put", &format!("{prefix}status/{}", names[1]), "{}"],
    );
    assert!(!refused.status.success(), "A wrote B's status");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = core.etcdctl(&names[0], &["put", &format!("{prefix}policy"), "{}"]);
    assert!(!refused.status.success(), "an appliance wrote the policy");

    // Policy 1 in waves: SSH internal only.
    let t0 = Instant::now();
    let mut p1 = policy(false, false);
    p1["trusted_cas"] =
        serde_json::json!([std::fs::read_to_string(pki.dir.join("ca.pem")).expect("ca")]);
    let r1 = set_policy(&core, &pki, &p1);
    let rollout = rollout_to_the_end(&core, &pki, "1,10%,rest");
    let took = t0.elapsed();
    let m = members(&core, &pki);
    assert!(applied_everywhere(&m, &names, r1), "{m:#?}");
    let local_sum: u64 = m.values().filter_map(|s| s["took_ms"].as_u64()).sum();
    eprintln!(
        "BENCH rollout 1,10%,rest to {n} appliances: {:?} from policy write to done, sum of local Updates {} ms, waves {}",
        took,
        local_sum,
        rollout["waves"].as_array().map_or(0, Vec::len)
    );
    for a in [&fleet[0], &fleet[n / 2], &fleet[n - 1]] {
        assert!(a.lan_answers(&core, 22), "{}: ssh on lan", a.name);
        assert!(!a.wan_answers(&core, 22), "{}: ssh on wan", a.name);
        assert!(!a.wan_answers(&core, 3306), "{}: sql on wan", a.name);
        let rev = a.d().json(&["revisions"]);
        assert_eq!(rev[0]["actor"], "fleet", "{rev}");
        assert_eq!(rev[0]["outcome"], "applied", "{rev}");
    }
    // The appliance's own view (API, `fleet show`): in contact, the policy
    // applied, the group's live members as read from etcd (every 10 s).
    wait_for(
        "the group in an appliance's view",
        Duration::from_secs(30),
        || {
            let v = fleet[n / 2].d().json(&["fleet", "show"]);
            v["connected"] == true
                && v["last"]["policy_revision"].as_i64() == Some(r1)
                && v["members"].as_array().is_some_and(|m| {
                    m.len() == n && m.iter().all(|s| s["policy_revision"].as_i64() == Some(r1))
                })
        },
    );

    let cas = fleet[n - 1].d().json(&["cert", "ca", "list"]);
    assert!(
        cas.as_array().is_some_and(|l| l.iter().any(|c| c["subject"]
            .as_str()
            .is_some_and(|s| s.contains("fleet test CA")))),
        "the policy's CA is trusted: {cas}"
    );

    // A local Update on a fleet-managed appliance is refused.
    fleet[1].d().fails(&["update"], "fleet-managed");

    // The benchmark: one wave to everyone, from the policy's write to every
    // appliance applied and reporting.
    let mut bench = policy(false, false);
    bench["ports"] = serde_json::json!({"nrpe": "5667"});
    let t0 = Instant::now();
    let rb = set_policy(&core, &pki, &bench);
    rollout_to_the_end(&core, &pki, "rest");
    let took = t0.elapsed();
    let m = members(&core, &pki);
    assert!(applied_everywhere(&m, &names, rb), "{m:#?}");
    let local: Vec<u64> = m.values().filter_map(|s| s["took_ms"].as_u64()).collect();
    eprintln!(
        "BENCH one wave to {n} appliances: {} ms from policy write to all applied and reported; local Updates (with confirmation): sum {} ms, max {} ms",
        took.as_millis(),
        local.iter().sum::<u64>(),
        local.iter().max().copied().unwrap_or(0)
    );

    // Requests to etcd at rest, per appliance per minute.
    let h0 = core.handled();
    std::thread::sleep(Duration::from_secs(30));
    let h1 = core.handled();
    eprintln!(
        "BENCH etcd requests (gRPC messages received) at rest: {:.1} per appliance per minute ({n} appliances)",
        (h1 - h0) * 2.0 / n as f64
    );

    // Policy 2 (SSH also external), and the leader killed mid-rollout.
    let r2 = set_policy(&core, &pki, &policy(true, false));
    let driver = start_rollout(&core, &pki, "1,rest");
    wait_for(
        "the canary applied policy 2",
        Duration::from_secs(60),
        || applied_everywhere(&members(&core, &pki), &names[..1], r2),
    );
    let mut core = core;
    let leader = core.leader();
    if let Some(mut c) = core.etcd[leader].take() {
        c.kill().expect("kill the leader");
        c.wait().expect("wait");
    }
    eprintln!("killed etcd leader m{leader} mid-rollout");
    let out = driver.wait_with_output().expect("driver");
    assert!(
        out.status.success(),
        "the rollout failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    wait_for("policy 2 everywhere", Duration::from_secs(60), || {
        applied_everywhere(&members(&core, &pki), &names, r2)
    });
    for a in [&fleet[0], &fleet[n - 1]] {
        assert!(
            a.wan_answers(&core, 22),
            "{}: ssh on wan after policy 2",
            a.name
        );
    }
    // The member comes back.
    let child = core.start_member(leader);
    core.etcd[leader] = Some(child);

    // Partitioned during a rollout: keeps serving, catches up when healed.
    // Cut off just before the rollout starts, it is still in the live set
    // (its lease has seconds left), so the rollout gives it the policy
    // while it cannot hear: the others apply, the rollout waits for it.
    let last = &fleet[n - 1];
    let r3 = set_policy(&core, &pki, &policy(true, true));
    last.partition(&core, true);
    let driver = start_rollout(&core, &pki, "rest");
    wait_for("policy 3 on the others", Duration::from_secs(60), || {
        applied_everywhere(&members(&core, &pki), &names[..n - 1], r3)
    });
    wait_for(
        "the partitioned appliance leaves the live set",
        Duration::from_secs(30),
        || !members(&core, &pki).contains_key(&last.name),
    );
    let shown = last.d().json(&["fleet", "show"]);
    assert_eq!(shown["connected"], false, "{shown}");
    assert!(
        last.wan_answers(&core, 22),
        "the partitioned appliance keeps serving on its last applied revision (policy 2): {}",
        last.d().log_text()
    );
    assert!(
        !last.wan_answers(&core, 3306),
        "the partitioned appliance has not seen policy 3: {}",
        last.d().log_text()
    );
    assert!(fleet[0].wan_answers(&core, 3306), "the others run policy 3");
    let rollout = ok(&mut operator(&core, &pki, &["fleet", "rollout", "status"]));
    assert!(
        rollout.contains("\"running\""),
        "waiting for the partitioned one: {rollout}"
    );
    let healed = Instant::now();
    last.partition(&core, false);
    let out = driver.wait_with_output().expect("driver");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    eprintln!("the healed appliance caught up in {:?}", healed.elapsed());
    assert!(applied_everywhere(&members(&core, &pki), &names, r3));
    assert!(last.wan_answers(&core, 3306), "caught up: sql on wan");

    // A daemon killed during a fleet-driven Update (its firewall loaded,
    // the revision not recorded) recovers like any other: boot puts the
    // last recorded revision back, the agent applies the policy again.
    let victim = &mut fleet[1];
    victim.start(&[("SWITCHBOARD_CRASH_AT", "after-firewall")]);
    wait_for("the victim back", Duration::from_secs(30), || {
        members(&core, &pki).contains_key(&names[1])
    });
    let r35 = set_policy(&core, &pki, &policy(true, false));
    let driver = start_rollout(&core, &pki, "rest");
    wait_for(
        "the victim killed mid-Update",
        Duration::from_secs(30),
        || {
            victim
                .daemon
                .as_mut()
                .is_some_and(|d| d.child.try_wait().expect("wait").is_some())
        },
    );
    victim.start(&[]);
    assert!(
        victim.wan_answers(&core, 22),
        "after the crash: ssh on wan (policy 3 or 3.5)"
    );
    let out = driver.wait_with_output().expect("driver");
    let rollout: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    assert!(applied_everywhere(&members(&core, &pki), &names, r35));
    assert!(
        !fleet[1].wan_answers(&core, 3306),
        "policy 3.5 after the crash: no sql on wan"
    );
    let revs = fleet[1].d().json(&["revisions"]);
    assert_eq!(revs[0]["actor"], "fleet", "{revs}");
    assert_eq!(revs[0]["outcome"], "applied", "{revs}");

    // Drift: joined again with --drift report, a local Update is applied
    // and the appliance reports it.
    let mut args = vec![
        "fleet".to_owned(),
        "join".into(),
        "--endpoints".into(),
        endpoints(),
        "--group".into(),
        GROUP.into(),
        "--appliance".into(),
        names[2].clone(),
        "--site".into(),
        "site02".into(),
        "--role".into(),
        "lan0=internal".into(),
        "--role".into(),
        "wan0=external".into(),
        "--drift".into(),
        "report".into(),
    ];
    args.extend(pki.client(&names[2]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet[2].d().ok(&args);
    fleet[2].d().ok(&["matrix", "allow", "nrpe", "wan0"]);
    fleet[2].d().ok(&["update"]);
    wait_for("drift reported", Duration::from_secs(30), || {
        members(&core, &pki)
            .get(&names[2])
            .is_some_and(|s| s["drift"] == true)
    });

    // A canary that fails verification halts the rollout; nobody else moves.
    fleet[0].start(&[("SWITCHBOARD_FAIL_STEP", "firewall")]);
    wait_for("the canary back", Duration::from_secs(30), || {
        members(&core, &pki).contains_key(&names[0])
    });
    let r4 = set_policy(&core, &pki, &policy(false, false));
    let out = operator(
        &core,
        &pki,
        &[
            "fleet",
            "rollout",
            "start",
            "--waves",
            "1,rest",
            "--wave-timeout",
            "120",
        ],
    )
    .output()
    .expect("rollout");
    let rollout: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rollout["state"], "halted", "{rollout}");
    assert!(
        rollout["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sb-00 failed")),
        "{rollout}"
    );
    let m = members(&core, &pki);
    assert_eq!(m[&names[0]]["outcome"], "failed", "{m:#?}");
    assert!(
        applied_everywhere(&m, &names[1..], r35),
        "the others untouched: {m:#?}"
    );
    assert!(
        fleet[0].wan_answers(&core, 22) && !fleet[0].wan_answers(&core, 3306),
        "the canary is back on policy 3.5"
    );
    assert!(fleet[1].wan_answers(&core, 22), "the others on policy 3.5");
    // Fixed, resumed: done everywhere.
    fleet[0].start(&[]);
    let out = ok(&mut operator(&core, &pki, &["fleet", "rollout", "resume"]));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    assert!(applied_everywhere(&members(&core, &pki), &names, r4));
    assert!(
        !fleet[1].wan_answers(&core, 22),
        "policy 4 closed ssh on wan"
    );
    let m = members(&core, &pki);
    assert_eq!(
        m[&names[2]]["drift"], false,
        "the fleet's revision again: {m:#?}"
    );

    // The operator halts a rollout by hand after its canary; resume
    // finishes it.
    let r5 = set_policy(&core, &pki, &policy(true, true));
    let out = ok(&mut operator(
        &core,
        &pki,
        &["fleet", "rollout", "start", "--waves", "1,rest", "--detach"],
    ));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "running", "{rollout}");
    let out = ok(&mut operator(&core, &pki, &["fleet", "rollout", "halt"]));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "halted", "{rollout}");
    std::thread::sleep(Duration::from_secs(2));
    let m = members(&core, &pki);
    assert!(
        applied_everywhere(&m, &names[1..], r4),
        "nobody past the canary moves while halted: {m:#?}"
    );
    let out = ok(&mut operator(&core, &pki, &["fleet", "rollout", "resume"]));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    assert!(applied_everywhere(&members(&core, &pki), &names, r5));
    // A rollout whose coordinator went away (--detach) is taken over.
    let r6 = set_policy(&core, &pki, &policy(true, true).tap_ports());
    let out = ok(&mut operator(
        &core,
        &pki,
        &["fleet", "rollout", "start", "--waves", "1,rest", "--detach"],
    ));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "running", "{rollout}");
    let out = ok(&mut operator(&core, &pki, &["fleet", "rollout", "resume"]));
    let rollout: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(rollout["state"], "done", "{rollout}");
    assert!(applied_everywhere(&members(&core, &pki), &names, r6));

    // etcd loses its quorum (two members of three down, no leader): every
    // appliance keeps running policy 6 and serving; all report again once
    // the members are back.
    for i in [0, 1] {
        if let Some(mut c) = core.etcd[i].take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }
    wait_for("the appliances notice", Duration::from_secs(30), || {
        fleet[0].d().json(&["fleet", "show"])["connected"] == false
    });
    for a in [&fleet[0], &fleet[n - 1]] {
        assert!(
            a.wan_answers(&core, 22) && a.wan_answers(&core, 3306) && a.lan_answers(&core, 22),
            "{} keeps serving policy 6 without etcd",
            a.name
        );
    }
    for i in [0, 1] {
        let child = core.start_member(i);
        core.etcd[i] = Some(child);
    }
    wait_for(
        "every appliance back and reporting",
        Duration::from_secs(60),
        || {
            // etcd elects a leader first: until then the operator's CLI fails.
            let out = operator(&core, &pki, &["fleet", "status"])
                .output()
                .expect("fleet status");
            let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
                return false;
            };
            let m: std::collections::BTreeMap<String, Value> = v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| (m["appliance"].as_str().unwrap_or("").to_owned(), m.clone()))
                .collect();
            out.status.success() && m.len() == n && applied_everywhere(&m, &names, r6)
        },
    );
    let _ = run;
    if tmp_keep {
        let _ = tmp.keep();
    }
}

/// Without root or etcd: what `fleet` refuses, with what words, and that a
/// refused join keeps nothing. etcd is "reached" on a loopback port nothing
/// listens on.
#[test]
fn bad_fleet_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = Daemon::start(None, dir.path(), &[]);
    let shown = d.json(&["fleet", "show"]);
    assert_eq!(shown["joined"], false, "{shown}");
    let join = |extra: &[&str]| {
        let mut args = vec![
            "fleet",
            "join",
            "--endpoints",
            "http://127.0.0.1:9",
            "--group",
            "branches",
            "--appliance",
            "sb-00",
            "--site",
            "paris",
        ];
        args.extend_from_slice(extra);
        d.cli(&args)
    };
    let e = d.fails(
        &[
            "fleet",
            "join",
            "--endpoints",
            "http://127.0.0.1:9",
            "--group",
            "branches",
            "--appliance",
            "sb-00",
            "--site",
            "paris",
            "--role",
            "nosuchnic0=internal",
        ],
        "fleet-unknown-nic",
    );
    assert!(e.contains("nosuchnic0"), "{e}");
    d.fails(
        &[
            "fleet",
            "join",
            "--endpoints",
            "127.0.0.1:2379",
            "--group",
            "branches",
            "--appliance",
            "sb-00",
            "--site",
            "paris",
            "--role",
            "nosuchnic0=internal",
        ],
        "fleet-invalid-membership",
    );
    for (extra, says) in [
        (&["--role", "lan0"][..], "NIC=ROLE"),
        (&["--role", "lan0=Internal"][..], "lowercase"),
        (&["--role", "a;b=internal"][..], "interface name"),
    ] {
        let out = join(extra);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
    let out = d.cli(&[
        "fleet",
        "join",
        "--endpoints",
        "http://127.0.0.1:9",
        "--group",
        "Bad/Group",
        "--appliance",
        "sb-00",
        "--site",
        "paris",
        "--role",
        "x=y",
    ]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad group name");
    let shown = d.json(&["fleet", "show"]);
    assert_eq!(shown["joined"], false, "nothing kept: {shown}");
    d.ok(&["update"]);

    // The operator's commands: a bad policy is refused before etcd is
    // asked; an unreachable etcd is an error, not a hang.
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"matrix": {"telnet": ["internal"]}}"#).expect("file");
    let out = Command::new(BIN)
        .args([
            "fleet",
            "policy",
            "set",
            "--endpoints",
            "http://127.0.0.1:9",
        ])
        .args(["--group", "branches"])
        .arg(&policy)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("telnet") && stderr.contains("hint"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args([
            "fleet",
            "rollout",
            "start",
            "--endpoints",
            "http://127.0.0.1:9",
        ])
        .args([
            "--group",
            "branches",
            "--waves",
            "1,0%",
            "--wave-timeout",
            "10",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad wave is refused by the parser"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1% to 100%"));
    let out = Command::new(BIN)
        .args([
            "fleet",
            "rollout",
            "start",
            "--endpoints",
            "http://127.0.0.1:9",
        ])
        .args(["--group", "branches", "--wave-timeout", "0"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a wave timeout of 0 s is refused"
    );
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "fleet",
            "status",
            "--endpoints",
            "http://127.0.0.1:9",
            "--group",
            "branches",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
