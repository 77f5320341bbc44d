//! `cargo xtask lab up | down [--purge] | status`: the story's lab on this
//! machine, to look at and play with (root, Debian/Ubuntu).
//!
//! `up` builds three network namespaces with fixed names (so that `down`
//! finds them again):
//!
//! ```text
//!  host 127.0.0.1:8443 ──socat──► sblab-admin           sblab-app (the appliance)          sblab-phone
//!                                 eth0 192.0.2.2/24 ─veth─ lan0 192.0.2.1/24
//!                                                          wan0 198.51.100.1/24 ─veth─ eth0 198.51.100.2/24
//!                                                          dmz0 (ifb, no address)
//! ```
//!
//! with hosts files naming `console.lan.test` (lan0) and `voip.example.test`
//! (wan0); makes a sample CA and two certificates with `openssl`; starts
//! `switchboard serve --firewall enforce` inside `sblab-app` (with Kamailio
//! when installed, SMS to the outbox), detached; configures it as in the
//! story (certificates, host names, production layout, provisioning,
//! Update, a console password, a sample phone with its activation SMS); and
//! forwards the host's 127.0.0.1:8443 to the console through the admin host.
//! Then it prints what to open and what to try. Everything it keeps is in
//! [`STATE_DIR`]; the host's own firewall, routes and /etc/hosts are never
//! touched (the appliance's nftables table lives in its namespace).
//!
//! `down` stops the forwarder and the daemon (which stops Kamailio), ends
//! whatever else still runs in the lab's namespaces, and deletes them; the
//! state directory (sample CA, logs, the last store) stays unless `--purge`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where the lab keeps its files: the sample PKI, the daemon's store,
/// socket, log and pid file, the forwarder's, the console password.
pub const STATE_DIR: &str = "/var/lib/switchboard-lab";

/// The appliance's namespace.
const NS_APP: &str = "sblab-app";
/// The admin host, on the LAN side.
const NS_ADMIN: &str = "sblab-admin";
/// The phone, on the WAN side.
const NS_PHONE: &str = "sblab-phone";
const NAMESPACES: [&str; 3] = [NS_APP, NS_ADMIN, NS_PHONE];

const LAN_APPLIANCE: &str = "192.0.2.1";
const LAN_ADMIN: &str = "192.0.2.2";
const WAN_APPLIANCE: &str = "198.51.100.1";
const WAN_PHONE: &str = "198.51.100.2";

const CONSOLE_HOST: &str = "console.lan.test";
const VOIP_HOST: &str = "voip.example.test";
/// The console's port on the appliance, and the forwarded one on the host's
/// loopback.
const CONSOLE_PORT: u16 = 8443;

const KAMAILIO: &str = "/usr/sbin/kamailio";
/// The media relay (Debian's rtpengine-daemon), run when installed.
const RTPENGINE: &str = "/usr/bin/rtpengine";

/// The sample phone.
const PHONE_NUMBER: &str = "+15550100";
const PHONE_NAME: &str = "Sample phone";
const PHONE_USERNAME: &str = "1000";

/// The programs `lab up` runs (or tells you to run), each with the Debian
/// package that provides it: the one list the install hint is made from.
const LAB_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),       // namespaces, veth, ifb
    ("nft", "nftables"),      // the daemon enforces its matrix with nftables
    ("openssl", "openssl"),   // the sample CA and certificates
    ("socat", "socat"),       // the forwarder from the host's loopback to the console
    ("curl", "curl"),         // the checks it prints (console, the phone's link)
    ("setsid", "util-linux"), // detaching the daemon and the forwarder
];

/// What `lab up` prints at the end (and `lab status` again).
const SUMMARY: &str = "\
The lab is up. Its files: {state}
  {console_check}
  SIP: {sip}

The console (from this machine, through the admin host {admin_addr} in {admin_ns}):
  1. add this line to the hosts file of the machine your browser runs on:
       127.0.0.1 {console}
     (a browser on another machine: ssh -L {port}:127.0.0.1:{port} root@THIS-MACHINE)
  2. import the sample CA into the browser as an authority: {ca}
  3. open https://{console}:{port}/
     sign in as admin, password: {password}
     (kept in {password_file})
  check from a terminal:
     curl --resolve {console}:{port}:127.0.0.1 --cacert {ca} https://{console}:{port}/login

The command line (as root):
  alias sb='{bin} --socket {socket}'
  sb status; sb padlock; sb matrix; sb revisions; sb audit

The sample phone ({phone_name}, {phone_number}, account {phone_user}); its SMS, in the outbox (sb sms list), links to:
  {link}
  be the phone: fetch its configuration document, once (a second fetch gets 404):
     ip netns exec {phone_ns} curl -i --cacert {ca} {link}
  the SIP/TLS certificate, as the phone sees it:
     ip netns exec {phone_ns} openssl s_client -connect {voip}:5061 -verify_hostname {voip} -CAfile {ca} -brief </dev/null
  the console does not answer on the WAN side (times out):
     ip netns exec {phone_ns} curl -k --max-time 3 https://{wan}:{port}/login

Stop it: cargo xtask lab down   (add --purge to remove {state} too)
";

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let lab = Lab::new();
    match (args.first().map(String::as_str), &args[args.len().min(1)..]) {
        (Some("up"), []) => lab.up(),
        (Some("down"), []) => lab.down(false),
        (Some("down"), [purge]) if purge == "--purge" => lab.down(true),
        (Some("status"), []) => lab.status(),
        _ => {
            eprintln!("usage: cargo xtask lab up | down [--purge] | status");
            std::process::exit(2);
        }
    }
}

/// The lab's paths.
#[derive(Debug)]
struct Lab {
    state: PathBuf,
    workspace: PathBuf,
    bin: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let target = if target.is_absolute() {
            target
        } else {
            workspace.join(target)
        };
        Lab {
            state: PathBuf::from(STATE_DIR),
            bin: target.join("release").join("switchboard"),
            workspace,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }
    fn pki(&self, name: &str) -> PathBuf {
        self.state.join("pki").join(name)
    }
    fn socket(&self) -> PathBuf {
        self.path("api.sock")
    }

    // ---------------------------------------------------------------- up

    fn up(&self) -> anyhow::Result<()> {
        if !super::is_root() {
            bail!("the lab builds network namespaces: run `cargo xtask lab up` as root");
        }
        check_tools()?;

        let daemon = self.daemon_pid();
        let forwarder = self.forwarder_pid();
        let present: Vec<&str> = NAMESPACES.into_iter().filter(|n| netns_exists(n)).collect();
        if daemon.is_some() && forwarder.is_some() && present.len() == NAMESPACES.len() {
            println!("The lab is already up (`cargo xtask lab down` to stop it).\n");
            print!(
                "{}",
                std::fs::read_to_string(self.path("summary.txt")).unwrap_or_default()
            );
            return Ok(());
        }
        if daemon.is_some() || forwarder.is_some() || !present.is_empty() {
            say("a part of an earlier lab is still there: taking it down first");
            self.down(false)?;
        }
        if TcpListener::bind(("127.0.0.1", CONSOLE_PORT)).is_err() {
            bail!(
                "127.0.0.1:{CONSOLE_PORT} is taken on this host (see `ss -ltnp 'sport = :{CONSOLE_PORT}'`): \
                 the lab forwards the console there; stop what listens on it and run `cargo xtask lab up` again"
            );
        }

        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        super::run(Command::new(cargo).current_dir(&self.workspace).args([
            "build",
            "--release",
            "--locked",
            "-p",
            "switchboard",
        ]))?;

        mkdir(&self.state, 0o755)?;
        mkdir(&self.state.join("pki"), 0o755)?;
        self.ensure_pki()?;
        let password = self.ensure_password()?;

        let result = self
            .build_network()
            .and_then(|()| self.start_daemon())
            .and_then(|kamailio| {
                self.configure()?;
                let link = self.sample_phone()?;
                self.start_forwarder()?;
                let console = self.check_console();
                Ok((kamailio, link, console))
            });
        let (kamailio, link, console) = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "\nxtask lab: `lab up` failed: {e:#}\nxtask lab: the daemon's log is {}; taking the lab down\n",
                    self.path("daemon.log").display()
                );
                let _ = self.down(false);
                return Err(e);
            }
        };

        let summary = self.summary(&password, kamailio, &link, &console);
        std::fs::write(self.path("summary.txt"), &summary)?;
        println!("\n{summary}");
        Ok(())
    }

    /// The sample CA, and a certificate (with its key, in one PEM bundle)
    /// for each of the appliance's names; kept across runs (a browser that
    /// trusts the CA goes on trusting the lab), made again when missing or
    /// expiring within 30 days.
    fn ensure_pki(&self) -> anyhow::Result<()> {
        let files = ["ca.pem", "ca.key", "console.pem", "voip.pem"];
        let fresh = files.iter().all(|f| self.pki(f).exists())
            && ["ca.pem", "console.pem", "voip.pem"].iter().all(|f| {
                Command::new("openssl")
                    .args(["x509", "-noout", "-checkend", "2592000", "-in"])
                    .arg(self.pki(f))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
        if fresh {
            say(&format!(
                "sample certificates: reusing {}",
                self.state.join("pki").display()
            ));
            return Ok(());
        }
        say(&format!(
            "sample certificates: making a CA and two certificates in {}",
            self.state.join("pki").display()
        ));
        let genkey = |path: &Path| {
            // Made 0600 first: openssl writes into it without widening it.
            write_private(path, "")?;
            quiet(
                Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-out",
                    ])
                    .arg(path),
            )?;
            chmod(path, 0o600)
        };
        genkey(&self.pki("ca.key"))?;
        quiet(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-sha256", "-days", "3650", "-key"])
                .arg(self.pki("ca.key"))
                .args([
                    "-subj",
                    "/O=switchboard lab/CN=switchboard lab sample CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-out",
                ])
                .arg(self.pki("ca.pem")),
        )?;
        for (name, host) in [("console", CONSOLE_HOST), ("voip", VOIP_HOST)] {
            let key = self.pki(&format!("{name}.key"));
            let csr = self.pki(&format!("{name}.csr"));
            let crt = self.pki(&format!("{name}.crt"));
            let ext = self.pki(&format!("{name}.ext"));
            genkey(&key)?;
            quiet(
                Command::new("openssl")
                    .args(["req", "-new", "-key"])
                    .arg(&key)
                    .args(["-subj", &format!("/O=switchboard lab/CN={host}"), "-out"])
                    .arg(&csr),
            )?;
            std::fs::write(
                &ext,
                format!(
                    "basicConstraints = critical, CA:FALSE\n\
                     keyUsage = critical, digitalSignature\n\
                     extendedKeyUsage = serverAuth\n\
                     subjectAltName = DNS:{host}\n\
                     subjectKeyIdentifier = hash\n\
                     authorityKeyIdentifier = keyid\n"
                ),
            )?;
            let serial = String::from_utf8(
                quiet(Command::new("openssl").args(["rand", "-hex", "16"]))?.stdout,
            )?;
            quiet(
                Command::new("openssl")
                    .args(["x509", "-req", "-sha256", "-days", "825", "-in"])
                    .arg(&csr)
                    .arg("-CA")
                    .arg(self.pki("ca.pem"))
                    .arg("-CAkey")
                    .arg(self.pki("ca.key"))
                    .args(["-set_serial", &format!("0x{}", serial.trim())])
                    .arg("-extfile")
                    .arg(&ext)
                    .arg("-out")
                    .arg(&crt),
            )?;
            // The bundle switchboard imports: the certificate and its key.
            let bundle = self.pki(&format!("{name}.pem"));
            write_private(
                &bundle,
                &format!(
                    "{}{}",
                    std::fs::read_to_string(&crt)?,
                    std::fs::read_to_string(&key)?
                ),
            )?;
            for f in [&csr, &ext] {
                let _ = std::fs::remove_file(f);
            }
        }
        Ok(())
    }

    /// The console password of `admin`: kept in a root-only file and reused
    /// across runs; made (120 random bits) when there is none.
    fn ensure_password(&self) -> anyhow::Result<String> {
        let file = self.path("admin-password");
        if let Ok(p) = std::fs::read_to_string(&file)
            && p.trim().len() >= 12
        {
            // Kept root-only, whatever an earlier run or a hand left it at.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod 600 {}", file.display()))?;
            return Ok(p.trim().to_string());
        }
        let out = quiet(Command::new("openssl").args(["rand", "-base64", "15"]))?;
        let password = String::from_utf8(out.stdout)?.trim().to_string();
        write_private(&file, &format!("{password}\n"))?;
        Ok(password)
    }

    fn build_network(&self) -> anyhow::Result<()> {
        say(&format!(
            "network: namespaces {NS_APP} (the appliance), {NS_ADMIN} (admin host), {NS_PHONE} (phone)"
        ));
        for ns in NAMESPACES {
            quiet(Command::new("ip").args(["netns", "add", ns]))?;
            ip(ns, &["link", "set", "lo", "up"])?;
        }
        for (nic, peer, mine, theirs) in [
            ("lan0", NS_ADMIN, LAN_APPLIANCE, LAN_ADMIN),
            ("wan0", NS_PHONE, WAN_APPLIANCE, WAN_PHONE),
        ] {
            ip(
                NS_APP,
                &[
                    "link", "add", nic, "type", "veth", "peer", "name", "eth0", "netns", peer,
                ],
            )?;
            ip(NS_APP, &["addr", "add", &format!("{mine}/24"), "dev", nic])?;
            ip(
                peer,
                &["addr", "add", &format!("{theirs}/24"), "dev", "eth0"],
            )?;
            ip(NS_APP, &["link", "set", nic, "up"])?;
            ip(peer, &["link", "set", "eth0", "up"])?;
        }
        // A NIC with no address (this kernel has no `dummy`; `ifb` will do).
        ip(NS_APP, &["link", "add", "dmz0", "type", "ifb"])?;
        // DNS of the lab: what `ip netns exec` bind-mounts over /etc/hosts.
        for ns in NAMESPACES {
            let dir = Path::new("/etc/netns").join(ns);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(
                dir.join("hosts"),
                format!(
                    "127.0.0.1 localhost\n::1 localhost\n\
                     {LAN_APPLIANCE} {CONSOLE_HOST}\n{WAN_APPLIANCE} {VOIP_HOST}\n"
                ),
            )?;
        }
        Ok(())
    }

    /// Starts the daemon in the appliance's namespace, detached, on a fresh
    /// store, and waits for its API. Returns whether it runs Kamailio.
    fn start_daemon(&self) -> anyhow::Result<bool> {
        let data = self.path("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("cannot remove {}", data.display()))?;
        }
        let _ = std::fs::remove_file(self.socket());
        let kamailio = Path::new(KAMAILIO).exists();
        let log = log_file(&self.path("daemon.log"))?;
        let mut cmd = Command::new("setsid");
        cmd.args(["ip", "netns", "exec", NS_APP])
            .arg(&self.bin)
            .arg("--data-dir")
            .arg(&data)
            .arg("--socket")
            .arg(self.socket())
            .args(["serve", "--firewall", "enforce", "--sms-gateway", "outbox"]);
        // The media relay too when rtpengine is installed: phones can call.
        let rtpengine = kamailio && Path::new(RTPENGINE).exists();
        if kamailio {
            cmd.args(["--sip", "kamailio"]);
        }
        if rtpengine {
            cmd.args(["--media", "rtpengine"]);
        }
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        say(&format!(
            "daemon: {} serve --firewall enforce{} in {NS_APP}, log {}",
            self.bin.display(),
            match (kamailio, rtpengine) {
                (true, true) => " --sip kamailio --media rtpengine",
                (true, false) => " --sip kamailio",
                _ => "",
            },
            self.path("daemon.log").display()
        ));
        let mut child = cmd.spawn().context("cannot start the daemon")?;
        // `setsid` and `ip netns exec` exec in place: the pid is the daemon's.
        std::fs::write(self.path("daemon.pid"), format!("{}\n", child.id()))?;
        let answered = poll(Duration::from_secs(30), || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the daemon exited at start ({status}); the end of its log:\n{}",
                    tail(&self.path("daemon.log"), 20)
                );
            }
            Ok(self.sb_output(&["status"]).is_ok())
        })?;
        if !answered {
            bail!(
                "the daemon did not answer on {} within 30 s; the end of its log:\n{}",
                self.socket().display(),
                tail(&self.path("daemon.log"), 20)
            );
        }
        Ok(kamailio)
    }

    /// The story's configuration, step by step, each step shown.
    fn configure(&self) -> anyhow::Result<()> {
        let ca = self.pki("ca.pem").display().to_string();
        let console = self.pki("console.pem").display().to_string();
        let voip = self.pki("voip.pem").display().to_string();
        let password = self.path("admin-password").display().to_string();
        let steps: &[&[&str]] = &[
            &["admin", "set-password", "--password-file", &password],
            &["cert", "import", "console", "--bundle", &console],
            &["cert", "import", "voip", "--bundle", &voip],
            &["cert", "ca", "add", &ca],
            &["cert", "bind", "console", "--nic", "lan0", "console"],
            &["cert", "bind", "sip-tls", "--nic", "wan0", "voip"],
            &["cert", "bind", "web", "--nic", "wan0", "voip"],
            &["nic", "set", "lan0", "--hostname", CONSOLE_HOST],
            &["nic", "set", "wan0", "--hostname", VOIP_HOST],
            &[
                "preset",
                "production",
                "--internal",
                "lan0",
                "--external",
                "wan0",
            ],
            &[
                "provisioning",
                "set",
                "--sip-tls-hostname",
                VOIP_HOST,
                "--web-uri",
                &format!("https://{VOIP_HOST}"),
            ],
            &["update", "-m", "lab: the story's production layout"],
        ];
        for step in steps {
            self.sb(step)?;
        }
        Ok(())
    }

    /// Creates the sample phone's account and sends its activation SMS to
    /// the outbox; returns the activation link.
    fn sample_phone(&self) -> anyhow::Result<String> {
        self.sb(&[
            "account",
            "add",
            "--phone",
            PHONE_NUMBER,
            "--name",
            PHONE_NAME,
            "--username",
            PHONE_USERNAME,
        ])?;
        self.sb(&["activate", PHONE_USERNAME])?;
        let outbox = self.sb_output(&["sms", "list"])?;
        outbox
            .split_whitespace()
            .find(|w| w.starts_with(&format!("https://{VOIP_HOST}/")))
            .map(|w| w.trim_end_matches(['.', ',', ')']).to_string())
            .with_context(|| format!("no activation link in the outbox:\n{outbox}"))
    }

    fn start_forwarder(&self) -> anyhow::Result<()> {
        let log = log_file(&self.path("forwarder.log"))?;
        let listen = format!("TCP-LISTEN:{CONSOLE_PORT},bind=127.0.0.1,reuseaddr,fork");
        let connect = format!(
            "EXEC:ip netns exec {NS_ADMIN} socat STDIO TCP\\:{LAN_APPLIANCE}\\:{CONSOLE_PORT}"
        );
        say(&format!(
            "forwarder: socat {listen} {connect} (host loopback → {NS_ADMIN} → the console)"
        ));
        let child = Command::new("setsid")
            .args(["socat", &listen, &connect])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start socat")?;
        std::fs::write(self.path("forwarder.pid"), format!("{}\n", child.id()))?;
        let listens = poll(Duration::from_secs(5), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", CONSOLE_PORT)).is_ok())
        })?;
        if !listens {
            bail!(
                "the forwarder does not listen on 127.0.0.1:{CONSOLE_PORT}; its log:\n{}",
                tail(&self.path("forwarder.log"), 20)
            );
        }
        Ok(())
    }

    /// Fetches the console's sign-in page through the forwarder, verifying
    /// its certificate with the sample CA; returns what to report.
    fn check_console(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args([
                "--resolve",
                &format!("{CONSOLE_HOST}:{CONSOLE_PORT}:127.0.0.1"),
            ])
            .arg("--cacert")
            .arg(self.pki("ca.pem"))
            .arg(format!("https://{CONSOLE_HOST}:{CONSOLE_PORT}/login"))
            .output();
        match out {
            Ok(o) if o.status.success() => format!(
                "checked: the console answered {} through the forwarder, with a certificate the sample CA verifies for {CONSOLE_HOST}",
                String::from_utf8_lossy(&o.stdout)
            ),
            Ok(o) => format!(
                "WARNING: the console did not answer through the forwarder: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("WARNING: cannot run curl: {e}"),
        }
    }

    fn summary(&self, password: &str, kamailio: bool, link: &str, console: &str) -> String {
        let sip = if kamailio {
            format!(
                "Kamailio runs (SIP/TLS on {WAN_APPLIANCE}:5061, SIP/UDP on {LAN_APPLIANCE}:5060)"
            )
        } else {
            format!(
                "{KAMAILIO} is not installed, no SIP server runs (apt-get install kamailio \
                 kamailio-tls-modules kamailio-sqlite-modules, then lab down and up)"
            )
        };
        let fill = [
            ("{state}", self.state.display().to_string()),
            ("{console_check}", console.to_string()),
            ("{sip}", sip),
            ("{ca}", self.pki("ca.pem").display().to_string()),
            ("{password}", password.to_string()),
            (
                "{password_file}",
                self.path("admin-password").display().to_string(),
            ),
            ("{bin}", self.bin.display().to_string()),
            ("{socket}", self.socket().display().to_string()),
            ("{link}", link.to_string()),
            ("{console}", CONSOLE_HOST.to_string()),
            ("{voip}", VOIP_HOST.to_string()),
            ("{port}", CONSOLE_PORT.to_string()),
            ("{admin_ns}", NS_ADMIN.to_string()),
            ("{admin_addr}", LAN_ADMIN.to_string()),
            ("{phone_ns}", NS_PHONE.to_string()),
            ("{wan}", WAN_APPLIANCE.to_string()),
            ("{phone_name}", PHONE_NAME.to_string()),
            ("{phone_number}", PHONE_NUMBER.to_string()),
            ("{phone_user}", PHONE_USERNAME.to_string()),
        ];
        fill.iter()
            .fold(SUMMARY.to_string(), |s, (key, value)| s.replace(key, value))
    }

    // -------------------------------------------------------------- down

    fn down(&self, purge: bool) -> anyhow::Result<()> {
        if !super::is_root() {
            bail!("the lab's namespaces belong to root: run `cargo xtask lab down` as root");
        }
        let mut did = false;
        if let Some(pid) = self.forwarder_pid() {
            say(&format!("stopping the forwarder (socat, pid {pid})"));
            // setsid made it a group leader: its children (one per
            // connection) are in its group.
            stop(&format!("-{pid}"), pid, Duration::from_secs(3));
            did = true;
        }
        if let Some(pid) = self.daemon_pid() {
            say(&format!(
                "stopping the daemon (pid {pid}; it stops Kamailio)"
            ));
            stop(&pid.to_string(), pid, Duration::from_secs(15));
            did = true;
        }
        for ns in NAMESPACES {
            if !netns_exists(ns) {
                continue;
            }
            // Whatever still runs in the namespace (an orphaned Kamailio,
            // a forwarded connection, a shell you opened there) ends with it.
            for pid in netns_pids(ns) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                say(&format!(
                    "stopping {} (pid {pid}), still running in {ns}",
                    comm.trim()
                ));
                stop(&pid.to_string(), pid, Duration::from_secs(3));
            }
            say(&format!("deleting the namespace {ns}"));
            quiet(Command::new("ip").args(["netns", "del", ns]))?;
            did = true;
        }
        for ns in NAMESPACES {
            let dir = Path::new("/etc/netns").join(ns);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        }
        for f in ["daemon.pid", "forwarder.pid", "api.sock", "summary.txt"] {
            let _ = std::fs::remove_file(self.path(f));
        }
        if purge && self.state.exists() {
            say(&format!("removing {}", self.state.display()));
            std::fs::remove_dir_all(&self.state)
                .with_context(|| format!("cannot remove {}", self.state.display()))?;
        }
        if did {
            println!("The lab is down.");
        } else {
            println!("No lab was running.");
        }
        if !purge && self.state.exists() {
            println!(
                "Kept {} (the sample CA, logs, the last store); `cargo xtask lab down --purge` removes it.",
                self.state.display()
            );
        }
        Ok(())
    }

    // ------------------------------------------------------------ status

    fn status(&self) -> anyhow::Result<()> {
        let mut up = true;
        for ns in NAMESPACES {
            let exists = netns_exists(ns);
            up &= exists;
            println!(
                "namespace {ns:<12} {}",
                if exists { "present" } else { "absent" }
            );
        }
        match self.daemon_pid() {
            Some(pid) => println!(
                "daemon       running, pid {pid}, log {}",
                self.path("daemon.log").display()
            ),
            None => {
                up = false;
                println!("daemon       not running");
            }
        }
        let kamailio: Vec<u32> = if netns_exists(NS_APP) {
            netns_pids(NS_APP)
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "kamailio")
                })
                .collect()
        } else {
            Vec::new()
        };
        if kamailio.is_empty() {
            println!("kamailio     not running");
        } else {
            println!("kamailio     running, {} processes", kamailio.len());
        }
        match self.forwarder_pid() {
            Some(pid) => println!(
                "forwarder    running, pid {pid}: 127.0.0.1:{CONSOLE_PORT} → {NS_ADMIN} → {LAN_APPLIANCE}:{CONSOLE_PORT}"
            ),
            None => {
                up = false;
                println!("forwarder    not running");
            }
        }
        if self.daemon_pid().is_some() {
            println!("\n$ switchboard status");
            match self.sb_output(&["status"]) {
                Ok(out) => print!("{out}"),
                Err(e) => println!("{e:#}"),
            }
        }
        if up {
            println!(
                "\n{}",
                std::fs::read_to_string(self.path("summary.txt")).unwrap_or_default()
            );
        } else {
            println!("\nThe lab is not (entirely) up: `cargo xtask lab up` (re)builds it.");
        }
        Ok(())
    }

    // ----------------------------------------------------------- helpers

    /// The daemon's pid, when it runs (its command line names the lab's
    /// socket, so a reused pid is not taken for it).
    fn daemon_pid(&self) -> Option<u32> {
        let socket = self.socket().display().to_string();
        live_pid(&self.path("daemon.pid"), |cmd| {
            cmd.iter().any(|a| a == "serve") && cmd.contains(&socket)
        })
    }

    fn forwarder_pid(&self) -> Option<u32> {
        live_pid(&self.path("forwarder.pid"), |cmd| {
            cmd.first().is_some_and(|a| a.ends_with("socat"))
                && cmd.iter().any(|a| a.contains(NS_ADMIN))
        })
    }

    /// Runs a CLI command against the lab's daemon, showing it.
    fn sb(&self, args: &[&str]) -> anyhow::Result<()> {
        say(&format!("switchboard {}", shell_words(args)));
        self.sb_output(args).map(|_| ())
    }

    fn sb_output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "`switchboard {}` failed:\n{}{}",
                shell_words(args),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Fails with the `apt-get install` line when a program the lab needs is
/// missing.
fn check_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = LAB_TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        let all: Vec<&str> = LAB_TOOLS.iter().map(|(_, p)| *p).collect();
        bail!(
            "the lab needs {} (missing: {}); install them with:\n\n    apt-get install -y {}\n",
            all.join(" "),
            missing.join(" "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

fn say(what: &str) {
    eprintln!("xtask lab: {what}");
}

/// Runs a command, capturing its output; fails with its stderr.
fn quiet(cmd: &mut Command) -> anyhow::Result<std::process::Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    quiet(Command::new("ip").args(["-n", ns]).args(args)).map(|_| ())
}

fn netns_exists(ns: &str) -> bool {
    Path::new("/var/run/netns").join(ns).exists()
}

fn netns_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn mkdir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    chmod(dir, mode)
}

fn chmod(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// A root-only log file, appended to.
fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // pid (comm) STATE ...: the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The pid in `file` if that process runs and its command line passes
/// `is_ours`.
fn live_pid(file: &Path, is_ours: impl Fn(&[String]) -> bool) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (alive(pid) && is_ours(&args)).then_some(pid)
}

/// SIGTERM to `target` (a pid, or `-PGID` for a process group), then
/// SIGKILL if `pid` is still alive after `grace`.
fn stop(target: &str, pid: u32, grace: Duration) {
    let _ = Command::new("kill").args(["-TERM", "--", target]).status();
    let gone = poll(grace, || Ok(!alive(pid))).unwrap_or(false);
    if !gone {
        say(&format!("pid {pid} did not stop within {grace:?}: SIGKILL"));
    } else if !target.starts_with('-') {
        // Gone: its pid may be anyone's now.
        return;
    }
    // A process group's id is not reused while any member is left, so
    // this only reaches what is left of ours.
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Polls `ready` every 50 ms until it says yes (`true`) or `timeout` has
/// passed (`false`); its error ends the wait.
fn poll(
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Arguments as a shell would need them typed (quoted when needed).
fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:+=@,".contains(&b))
            {
                (*a).to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Write `text` to `path`, readable by its owner only from the first byte
/// (a key or a password is never world-readable, even for a moment).
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
