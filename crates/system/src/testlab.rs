//! Helpers for system tests that need root: the skip-or-fail gate and a
//! throw-away network namespace.
//!
//! Enabled by the `testlab` feature; meant for `[dev-dependencies]` only.
//!
//! A system test starts with [`require_root_or_skip`]: without root it prints
//! a loud `SKIPPED` line and the test returns early, unless
//! `SWITCHBOARD_REQUIRE_SYSTEM_TESTS=1` is set (CI), in which case it panics.
//! Then it builds its world in a [`Netns`], which is deleted on drop, even
//! when the test panics.
//!
//! Everything here is synchronous (`std::process`) and shells out to
//! iproute2's `ip`.

use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Set to `1` to turn every skipped system test into a failure.
pub const REQUIRE_ENV: &str = "SWITCHBOARD_REQUIRE_SYSTEM_TESTS";

/// Whether the effective user is root (read from `/proc/self/status`, so no
/// `unsafe` is needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            // Uid: real effective saved fs
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// `true` when the test can go on; when `ok` is false, announces the skip and
/// returns `false`, or panics if [`REQUIRE_ENV`] is `1`.
///
/// The skip line is written straight to the process's stderr, past the test
/// harness's output capture, so it shows in a normal `cargo test` run.
pub fn require_or_skip(test_name: &str, ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test_name}: could not run ({reason}) and {REQUIRE_ENV}=1 requires it to");
    }
    let _ = writeln!(
        io::stderr(),
        "\n*** SKIPPED ({reason}): {test_name} — set {REQUIRE_ENV}=1 to make this a failure ***\n"
    );
    false
}

/// [`require_or_skip`] with "is the effective user root".
pub fn require_root_or_skip(test_name: &str) -> bool {
    require_or_skip(test_name, is_root(), "needs root")
}

/// Runs `command`, returning its output, or an error carrying the command
/// line, exit status and stderr when it cannot start or exits non-zero.
pub fn run(command: &mut Command) -> io::Result<Output> {
    let output = command
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A network namespace that exists as long as this value: created with a
/// unique name by [`Netns::new`], deleted (`ip netns del`) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `<prefix>-<pid>-<counter>`, unique among
    /// concurrent tests and test processes. Keep the prefix short and
    /// recognisable (e.g. `sbt-nic`), so leftovers of a killed run can be
    /// spotted in `ip netns list`.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`, e.g. `ns.ip(["link", "set", "lo", "up"])`.
    pub fn ip<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Run `f` on a thread that has entered this namespace, and return its
    /// result. Sockets created by `f` stay in this namespace whatever thread
    /// uses them afterwards — the way to listen or connect "from" a host of
    /// the lab without spawning programs.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns =
                        std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&ns),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("enter {path}: {e}"));
                    f()
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Give the namespace its own hosts file: `ip netns exec` bind-mounts
    /// `/etc/netns/NAME/hosts` over `/etc/hosts` for what it runs, so
    /// programs started with [`Netns::command`] resolve these names. The
    /// file goes with the namespace.
    pub fn set_hosts(&self, entries: &[(&str, &str)]) -> io::Result<()> {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir)?;
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (addr, name) in entries {
            text.push_str(&format!("{addr} {name}\n"));
        }
        std::fs::write(format!("{dir}/hosts"), text)
    }

    /// Run the test `test` of the current test binary inside this
    /// namespace (`ip netns exec NS <this exe> --exact TEST`), with `env`
    /// set to `1` so that the test knows it is the child; panics with the
    /// child's output unless it ran and passed. The way to run code that
    /// needs a whole process in the namespace (it opens sockets from many
    /// threads, or keeps a process-wide netlink handle).
    pub fn run_test_inside(&self, test: &str, env: &str) {
        let exe = std::env::current_exe().expect("current test binary");
        let output = self
            .command(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, "1")
            .output()
            .expect("run the child test inside the namespace");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = format!(
            "child test {test} in {} ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{report}");
        // A filter that matches nothing also exits 0: make sure the child ran.
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run\n{report}"
        );
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec <ns> <program>`); add arguments, environment and run
    /// it like any [`Command`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            let _ = writeln!(
                io::stderr(),
                "warning: cannot delete network namespace: {e}"
            );
        }
    }
}

/// The appliance and its neighbours, as in the product brief's story:
///
/// ```text
///  admin host (ns lan)          appliance (ns appliance)            phone (ns wan)
///  eth0 192.0.2.2/24  ─veth─  lan0 192.0.2.1/24
///                             wan0 198.51.100.1/24  ─veth─  eth0 198.51.100.2/24
///                             dmz0 (ifb, no address)
/// ```
///
/// Every namespace is deleted on drop (which removes the links with it).
#[derive(Debug)]
pub struct Lab {
    pub appliance: Netns,
    pub lan: Netns,
    pub wan: Netns,
}

impl Lab {
    pub const LAN_APPLIANCE: &'static str = "192.0.2.1";
    pub const LAN_ADMIN: &'static str = "192.0.2.2";
    pub const WAN_APPLIANCE: &'static str = "198.51.100.1";
    pub const WAN_PHONE: &'static str = "198.51.100.2";

    pub fn new() -> io::Result<Lab> {
        let lab = Lab {
            appliance: Netns::new("sbt-app")?,
            lan: Netns::new("sbt-lan")?,
            wan: Netns::new("sbt-wan")?,
        };
        let app = &lab.appliance;
        for ns in [&lab.appliance, &lab.lan, &lab.wan] {
            ns.ip(["link", "set", "lo", "up"])?;
        }
        for (nic, peer, mine, theirs) in [
            ("lan0", &lab.lan, Self::LAN_APPLIANCE, Self::LAN_ADMIN),
            ("wan0", &lab.wan, Self::WAN_APPLIANCE, Self::WAN_PHONE),
        ] {
            app.ip([
                "link",
                "add",
                nic,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.name(),
            ])?;
            app.ip(["addr", "add", &format!("{mine}/24"), "dev", nic])?;
            peer.ip(["addr", "add", &format!("{theirs}/24"), "dev", "eth0"])?;
            app.ip(["link", "set", nic, "up"])?;
            peer.ip(["link", "set", "eth0", "up"])?;
        }
        app.ip(["link", "add", "dmz0", "type", "ifb"])?;
        Ok(lab)
    }
}

/// The services of the lab's appliance, faked: a TCP listener or a UDP echo
/// socket on each given port, on every address of the namespace, answered
/// by one background thread until dropped.
#[derive(Debug)]
pub struct Listeners {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A transport and port to listen on or probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Tcp(u16),
    Udp(u16),
}

impl Listeners {
    pub fn start(ns: &Netns, ports: &[Port]) -> io::Result<Listeners> {
        use std::net::{TcpListener, UdpSocket};
        let (tcp, udp) = ns.enter(|| -> io::Result<(Vec<TcpListener>, Vec<UdpSocket>)> {
            let (mut tcp, mut udp) = (Vec::new(), Vec::new());
            for port in ports {
                match *port {
                    Port::Tcp(p) => {
                        let l = TcpListener::bind(("0.0.0.0", p))?;
                        l.set_nonblocking(true)?;
                        tcp.push(l);
                    }
                    Port::Udp(p) => {
                        let s = UdpSocket::bind(("0.0.0.0", p))?;
                        s.set_nonblocking(true)?;
                        udp.push(s);
                    }
                }
            }
            Ok((tcp, udp))
        })?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                for l in &tcp {
                    while let Ok((mut conn, _)) = l.accept() {
                        let _ = std::io::Write::write_all(&mut conn, b"ok");
                    }
                }
                for s in &udp {
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        Ok(Listeners {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Does `addr:port` answer, seen from namespace `from`? TCP: the handshake
/// completes. UDP: a datagram comes back. Waits at most `wait`.
pub fn answers(
    from: &Netns,
    addr: std::net::IpAddr,
    port: Port,
    wait: std::time::Duration,
) -> bool {
    from.enter(|| match port {
        Port::Tcp(p) => std::net::TcpStream::connect_timeout(&(addr, p).into(), wait).is_ok(),
        Port::Udp(p) => {
            let Ok(s) = std::net::UdpSocket::bind(("0.0.0.0", 0)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(wait));
            if s.send_to(b"probe", (addr, p)).is_err() {
                return false;
            }
            let mut buf = [0u8; 16];
            matches!(s.recv_from(&mut buf), Ok((5, _)))
        }
    })
}

/// Probe many (from, address, port) at once, one thread each; the answers
/// come back in order.
pub fn answers_all(
    probes: &[(&Netns, std::net::IpAddr, Port)],
    wait: std::time::Duration,
) -> Vec<bool> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(from, addr, port)| scope.spawn(move || answers(from, *addr, *port, wait)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .collect()
    })
}

/// Where Debian's `kannel` package puts the bearerbox (the SMS core).
pub const BEARERBOX: &str = "/usr/sbin/bearerbox";
/// Where Debian's `kannel` package puts the smsbox (the `sendsms` HTTP side).
pub const SMSBOX: &str = "/usr/sbin/smsbox";
/// Where Debian's `kannel-extras` package puts the fake SMS centre.
pub const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

/// Whether Kannel's bearerbox, smsbox and fakesmsc are installed here.
pub fn kannel_installed() -> bool {
    [BEARERBOX, SMSBOX, FAKESMSC]
        .iter()
        .all(|p| std::path::Path::new(p).exists())
}

/// The loopback ports of a [`Kannel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KannelPorts {
    /// bearerbox's HTTP administration (`/status.txt`).
    pub admin: u16,
    /// bearerbox's port for boxes (the smsbox connects here).
    pub smsbox: u16,
    /// The `fake` SMSC group's port (fakesmsc connects here).
    pub smsc: u16,
    /// smsbox's `sendsms-port`: what switchboard talks to.
    pub sendsms: u16,
}

/// A real Kannel on 127.0.0.1, for system tests: bearerbox, smsbox and
/// Kannel's fake SMS centre (`fakesmsc`), each a child process in its own
/// process group, killed (the whole group: smsbox forks a new process of
/// itself when its bearerbox goes away) by [`Kannel::stop`] and on drop,
/// even when the test panics. Needs no root; in a namespace when given one.
///
/// Its configuration (`kannel.conf` in [`Kannel::dir`]): a `core` group
/// (admin, box and fake-SMSC ports on loopback, a file store so that queued
/// messages survive a bearerbox restart), one `fake` SMSC (`smsc-id`
/// `fake`), an `smsbox` with `sendsms-port` and `global-sender`
/// [`Kannel::GLOBAL_SENDER`], and one `sendsms-user` ([`Kannel::USERNAME`],
/// [`Kannel::PASSWORD`], up to 3 concatenated parts).
///
/// What the SMS centre got is read from fakesmsc's output with
/// [`Kannel::received`]; its line protocol cannot carry a newline, so texts
/// of tests should not hold one. The logs of all three stay in
/// [`Kannel::dir`], which is removed on drop unless the test panicked.
#[derive(Debug)]
pub struct Kannel<'ns> {
    netns: Option<&'ns Netns>,
    dir: std::path::PathBuf,
    ports: KannelPorts,
    bearerbox: Option<std::process::Child>,
    smsbox: Option<std::process::Child>,
    fakesmsc: Option<std::process::Child>,
}

/// One message as Kannel's fake SMS centre received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSms {
    pub from: String,
    pub to: String,
    /// fakesmsc's word for it: `text`, `data`, `ucs-2`, `udh` (one part of
    /// a concatenated message), or `concatenated` (parts put together by
    /// [`reassemble`]).
    pub kind: String,
    /// The user data header of a part.
    pub udh: Option<Vec<u8>>,
    /// The message: UTF-8 for GSM-7 text, UTF-16BE for UCS-2.
    pub data: Vec<u8>,
}

impl FakeSms {
    /// The text: UTF-16BE decoded for `ucs-2`, UTF-8 otherwise.
    pub fn text(&self) -> String {
        if self.kind == "ucs-2" {
            self.ucs2_text()
        } else {
            String::from_utf8_lossy(&self.data).into_owned()
        }
    }

    /// The data decoded as UTF-16BE (for UCS-2 parts, whose kind does not
    /// say so).
    pub fn ucs2_text(&self) -> String {
        let units: Vec<u16> = self
            .data
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16_lossy(&units)
    }

    /// (reference, parts, this part's number from 1) of a concatenated
    /// message's part.
    pub fn concat(&self) -> Option<(u16, u8, u8)> {
        let udh = self.udh.as_deref()?;
        let mut ies = udh.get(1..1 + usize::from(*udh.first()?))?;
        while let [iei, len, rest @ ..] = ies {
            let (ie, next) = rest.split_at_checked(usize::from(*len))?;
            match (iei, ie) {
                (0x00, [r, total, seq]) => return Some((u16::from(*r), *total, *seq)),
                (0x08, [r1, r2, total, seq]) => {
                    return Some((u16::from_be_bytes([*r1, *r2]), *total, *seq));
                }
                _ => ies = next,
            }
        }
        None
    }
}

/// Concatenated parts put together (kind `concatenated`, data joined in
/// order), complete messages only, in the order of their first part; other
/// messages as they are.
pub fn reassemble(received: &[FakeSms]) -> Vec<FakeSms> {
    let mut out: Vec<FakeSms> = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for (i, m) in received.iter().enumerate() {
        let Some((reference, total, _)) = m.concat() else {
            out.push(m.clone());
            continue;
        };
        let key = (m.from.clone(), m.to.clone(), reference, total);
        if done.contains(&key) {
            continue;
        }
        let mut parts: Vec<&FakeSms> = received[i..]
            .iter()
            .filter(|p| {
                p.from == m.from
                    && p.to == m.to
                    && p.concat()
                        .is_some_and(|(r, t, _)| r == reference && t == total)
            })
            .collect();
        parts.sort_by_key(|p| p.concat().map(|(_, _, seq)| seq));
        parts.dedup_by_key(|p| p.concat().map(|(_, _, seq)| seq));
        if parts.len() == usize::from(total) {
            done.insert(key);
            out.push(FakeSms {
                from: m.from.clone(),
                to: m.to.clone(),
                kind: "concatenated".to_owned(),
                udh: None,
                data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
            });
        }
    }
    out
}

/// Kannel's URL decoding: `+` is a space, `%XX` a byte.
fn kannel_url_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// One `Got message N: <FROM TO KIND ...>` line of fakesmsc's output.
fn parse_fakesmsc_line(line: &str) -> Option<FakeSms> {
    let start = line.find("Got message ")?;
    let rest = &line[start..];
    let rest = &rest[rest.find(": <")? + 3..];
    let rest = rest.strip_suffix('>')?;
    let mut words = rest.splitn(4, ' ');
    let from = words.next()?.to_owned();
    let to = words.next()?.to_owned();
    let kind = words.next()?.to_owned();
    let payload = words.next().unwrap_or("");
    let (udh, data) = match kind.as_str() {
        "text" => (None, payload.as_bytes().to_vec()),
        "udh" => {
            let mut parts = payload.splitn(3, ' ');
            let udh = kannel_url_decode(parts.next()?);
            let inner = parts.next()?;
            let msg = parts.next().unwrap_or("");
            let data = if inner == "text" {
                msg.as_bytes().to_vec()
            } else {
                kannel_url_decode(msg)
            };
            (Some(udh), data)
        }
        _ => (None, kannel_url_decode(payload)),
    };
    Some(FakeSms {
        from,
        to,
        kind,
        udh,
        data,
    })
}

impl<'ns> Kannel<'ns> {
    /// The `sendsms-user` of the configuration.
    pub const USERNAME: &'static str = "switchboard";
    /// Its password, with characters that need URL-encoding.
    pub const PASSWORD: &'static str = "sbt-pa55&+x";
    /// The sender Kannel puts on messages that name none.
    pub const GLOBAL_SENDER: &'static str = "12345";
    /// The `smsc-id` of the fake SMS centre.
    pub const SMSC_ID: &'static str = "fake";
    const ADMIN_PASSWORD: &'static str = "sbt-admin";
    /// How long starting may take before it is an error.
    const START_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

    /// Write the configuration on free loopback ports (of `netns`, when
    /// given) and start bearerbox, fakesmsc and smsbox; returns once the
    /// SMS centre is online and `sendsms` answers.
    pub fn start(netns: Option<&'ns Netns>) -> io::Result<Kannel<'ns>> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sbt-kannel-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pick = || -> io::Result<Vec<u16>> {
            let listeners = (0..4)
                .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
                .collect::<io::Result<Vec<_>>>()?;
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect()
        };
        let ports = within(netns, pick)?;
        let ports = KannelPorts {
            admin: ports[0],
            smsbox: ports[1],
            smsc: ports[2],
            sendsms: ports[3],
        };
        let mut kannel = Kannel {
            netns,
            dir,
            ports,
            bearerbox: None,
            smsbox: None,
            fakesmsc: None,
        };
        std::fs::write(kannel.config_path(), kannel.config())?;
        kannel.start_again()?;
        Ok(kannel)
    }

    /// The configuration, logs and message store live here.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn ports(&self) -> KannelPorts {
        self.ports
    }

    /// smsbox's `sendsms` URL, for `Gateway::Kannel`.
    pub fn sendsms_url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.ports.sendsms)
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("kannel.conf")
    }

    fn config(&self) -> String {
        let KannelPorts {
            admin,
            smsbox,
            smsc,
            sendsms,
        } = self.ports;
        let store = self.dir.join("kannel.store");
        format!(
            "group = core\n\
             admin-port = {admin}\n\
             admin-interface = 127.0.0.1\n\
             admin-password = \"{admin_password}\"\n\
             admin-allow-ip = 127.0.0.1\n\
             smsbox-port = {smsbox}\n\
             smsbox-interface = 127.0.0.1\n\
             box-allow-ip = 127.0.0.1\n\
             store-type = file\n\
             store-location = \"{store}\"\n\
             \n\
             group = smsc\n\
             smsc = fake\n\
             smsc-id = {smsc_id}\n\
             port = {smsc}\n\
             our-host = 127.0.0.1\n\
             connect-allow-ip = 127.0.0.1\n\
             \n\
             group = smsbox\n\
             bearerbox-host = 127.0.0.1\n\
             bearerbox-port = {smsbox}\n\
             sendsms-port = {sendsms}\n\
             sendsms-interface = 127.0.0.1\n\
             global-sender = {sender}\n\
             \n\
             group = sendsms-user\n\
             username = {user}\n\
             password = \"{password}\"\n\
             max-messages = 3\n\
             concatenation = true\n",
            admin_password = Self::ADMIN_PASSWORD,
            store = store.display(),
            smsc_id = Self::SMSC_ID,
            sender = Self::GLOBAL_SENDER,
            user = Self::USERNAME,
            password = Self::PASSWORD,
        )
    }

    /// A command for `program`, in the namespace when there is one, in a
    /// process group of its own, its output appended to `log` in the
    /// directory.
    fn command(&self, program: &str, log: &str) -> io::Result<Command> {
        use std::os::unix::process::CommandExt as _;
        let mut command = match self.netns {
            Some(ns) => ns.command(program),
            None => Command::new(program),
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))?;
        command
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        Ok(command)
    }

    fn spawn(&self, program: &str, args: &[&str], log: &str) -> io::Result<std::process::Child> {
        self.command(program, log)?
            .args(args)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))
    }

    /// Start what is not running (all three after [`Kannel::stop`]), and
    /// wait until the SMS centre is online and `sendsms` answers.
    pub fn start_again(&mut self) -> io::Result<()> {
        let deadline = std::time::Instant::now() + Self::START_WAIT;
        let config = self.config_path();
        let config = config.to_str().unwrap_or_default().to_owned();
        if self.bearerbox.is_none() {
            self.bearerbox = Some(self.spawn(BEARERBOX, &["-v", "1", &config], "bearerbox.log")?);
            let ports = [self.ports.admin, self.ports.smsbox, self.ports.smsc];
            self.wait_until(deadline, "bearerbox listens", |k| {
                ports.iter().all(|p| k.port_open(*p))
            })?;
        }
        if self.fakesmsc.is_none() {
            self.start_smsc_process()?;
        }
        if self.smsbox.is_none() {
            self.smsbox = Some(self.spawn(SMSBOX, &["-v", "1", &config], "smsbox.log")?);
        }
        let sendsms = self.ports.sendsms;
        self.wait_until(deadline, "the SMSC is online and sendsms answers", |k| {
            k.port_open(sendsms)
                && k.status().is_ok_and(|s| {
                    Self::smsc_online_in(&s) && s.contains("smsbox:") && s.contains("on-line")
                })
        })
    }

    fn start_smsc_process(&mut self) -> io::Result<()> {
        let port = self.ports.smsc.to_string();
        // `-m 0`: send no message of its own, print what it gets.
        self.fakesmsc = Some(self.spawn(
            FAKESMSC,
            &["-H", "127.0.0.1", "-r", &port, "-m", "0", "0 0 text nop"],
            "fakesmsc.log",
        )?);
        Ok(())
    }

    /// Kill everything (an outage); [`Kannel::start_again`] brings it back
    /// on the same ports, with the messages bearerbox had stored.
    pub fn stop(&mut self) {
        // smsbox first: it restarts itself when its bearerbox goes away.
        for child in [&mut self.smsbox, &mut self.fakesmsc, &mut self.bearerbox] {
            if let Some(mut c) = child.take() {
                kill_group(&mut c);
            }
        }
    }

    /// Disconnect the SMS centre only: Kannel then queues what it is sent.
    pub fn stop_smsc(&mut self) {
        if let Some(mut c) = self.fakesmsc.take() {
            kill_group(&mut c);
        }
        let deadline = std::time::Instant::now() + Self::START_WAIT;
        let _ = self.wait_until(deadline, "the SMSC is offline", |k| {
            k.status().is_ok_and(|s| !Self::smsc_online_in(&s))
        });
    }

    /// Connect the SMS centre again and wait until it is online.
    pub fn start_smsc(&mut self) -> io::Result<()> {
        if self.fakesmsc.is_none() {
            self.start_smsc_process()?;
        }
        let deadline = std::time::Instant::now() + Self::START_WAIT;
        self.wait_until(deadline, "the SMSC is online", |k| {
            k.status().is_ok_and(|s| Self::smsc_online_in(&s))
        })
    }

    fn smsc_online_in(status: &str) -> bool {
        status
            .lines()
            .any(|l| l.contains(&format!("[{}]", Self::SMSC_ID)) && l.contains("(online"))
    }

    /// bearerbox's `/status.txt`.
    pub fn status(&self) -> io::Result<String> {
        let port = self.ports.admin;
        let get = move || -> io::Result<String> {
            use std::io::Read as _;
            let wait = std::time::Duration::from_secs(2);
            let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), wait)?;
            s.set_read_timeout(Some(wait))?;
            write!(
                s,
                "GET /status.txt?password={} HTTP/1.0\r\nConnection: close\r\n\r\n",
                Self::ADMIN_PASSWORD
            )?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        };
        within(self.netns, get)
    }

    fn port_open(&self, port: u16) -> bool {
        let probe = move || {
            std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                std::time::Duration::from_millis(200),
            )
            .is_ok()
        };
        within(self.netns, probe)
    }

    /// Polls `ready` until `deadline`; fails early, with the logs, when a
    /// started process died.
    fn wait_until(
        &mut self,
        deadline: std::time::Instant,
        what: &str,
        ready: impl Fn(&Self) -> bool,
    ) -> io::Result<()> {
        loop {
            if ready(self) {
                return Ok(());
            }
            let mut died = None;
            for (name, child) in [
                ("bearerbox", &mut self.bearerbox),
                ("smsbox", &mut self.smsbox),
                ("fakesmsc", &mut self.fakesmsc),
            ] {
                if let Some(c) = child
                    && let Ok(Some(status)) = c.try_wait()
                {
                    // Its group may live on (smsbox's restarted self).
                    if let Some(mut c) = child.take() {
                        kill_group(&mut c);
                    }
                    died = Some((name, status));
                    break;
                }
            }
            if let Some((name, status)) = died {
                return Err(io::Error::other(format!(
                    "waiting until {what}: {name} exited ({status})\n{}",
                    self.logs()
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "Kannel: gave up waiting until {what}\n{}",
                    self.logs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The last lines of each log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for log in ["bearerbox.log", "smsbox.log", "fakesmsc.log"] {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {log} (last lines)\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Every message the fake SMS centre got so far, across restarts, in
    /// order (concatenated messages as their parts: see [`reassemble`]).
    pub fn received(&self) -> Vec<FakeSms> {
        std::fs::read_to_string(self.dir.join("fakesmsc.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(parse_fakesmsc_line)
            .collect()
    }

    /// Waits until the SMS centre got at least `count` messages (parts),
    /// and returns all it got; an error, with the logs, after `wait`.
    pub fn wait_received(
        &self,
        count: usize,
        wait: std::time::Duration,
    ) -> io::Result<Vec<FakeSms>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let got = self.received();
            if got.len() >= count {
                return Ok(got);
            }
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the fake SMSC got {} message(s), not {count}, within {wait:?}: {got:?}\n{}",
                    got.len(),
                    self.logs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}

/// Run `f` in `netns` when given, on this thread otherwise.
fn within<T: Send>(netns: Option<&Netns>, f: impl FnOnce() -> T + Send) -> T {
    match netns {
        Some(ns) => ns.enter(f),
        None => f(),
    }
}

/// SIGKILL to the child's process group (it leads it), then reap it.
fn kill_group(child: &mut std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Kannel<'_> {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let _ = writeln!(
                io::stderr(),
                "Kannel's configuration and logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod kannel_tests {
    use super::*;

    #[test]
    fn fakesmsc_lines() {
        let l = "2026-11-26 08:30:12 [29265] [0] DEBUG: Got message 1: <12345 +4915112345678 text Hello & you +1>";
        let m = parse_fakesmsc_line(l).unwrap();
        assert_eq!(
            (m.from.as_str(), m.to.as_str(), m.kind.as_str()),
            ("12345", "+4915112345678", "text")
        );
        assert_eq!(m.text(), "Hello & you +1");
        let l = "x DEBUG: Got message 2: <12345 +49151 ucs-2 %00G%00r%00%FC%00%DF%00e%00++%AC%D8%3D%DE%00>";
        assert_eq!(parse_fakesmsc_line(l).unwrap().text(), "Grüße €😀");
        let p1 =
            parse_fakesmsc_line("Got message 3: <1 2 udh %05%00%03%07%02%01 data AB+C>").unwrap();
        let p2 =
            parse_fakesmsc_line("Got message 4: <1 2 udh %05%00%03%07%02%02 data D%2BE>").unwrap();
        assert_eq!(p1.concat(), Some((7, 2, 1)));
        let whole = reassemble(&[p2.clone(), p1.clone()]);
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].text(), "AB CD+E");
        assert!(reassemble(&[p1]).is_empty());
        assert!(parse_fakesmsc_line("INFO: fakesmsc starting").is_none());
    }
}
