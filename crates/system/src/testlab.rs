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
