//! What the kernel says about a local client process (`/proc`).
//!
//! Used to know where a request on the local socket really comes from: an
//! administrator logged in over SSH runs the CLI in a session whose
//! environment carries `SSH_CONNECTION` (set by sshd, inherited by every
//! child). `sudo` resets the environment, so the ancestors of the client
//! process are searched too.

use std::net::IpAddr;

/// The SSH session a process belongs to, as sshd announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshConnection {
    pub client: IpAddr,
    pub client_port: u16,
    /// The appliance address the session arrived on.
    pub server: IpAddr,
    pub server_port: u16,
}

impl SshConnection {
    /// Parse sshd's `CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT`.
    pub fn parse(value: &str) -> Option<SshConnection> {
        let mut parts = value.split_ascii_whitespace();
        let conn = SshConnection {
            client: parts.next()?.parse().ok()?,
            client_port: parts.next()?.parse().ok()?,
            server: parts.next()?.parse().ok()?,
            server_port: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(conn)
    }
}

/// The SSH session of process `pid` or of its nearest ancestor that has one.
pub fn ssh_connection(pid: u32) -> Option<SshConnection> {
    let mut pid = pid;
    for _ in 0..32 {
        if pid <= 1 {
            return None;
        }
        if let Some(conn) = env_var(pid, "SSH_CONNECTION").and_then(|v| SshConnection::parse(&v)) {
            return Some(conn);
        }
        pid = parent(pid)?;
    }
    None
}

fn env_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        let (k, v) = entry.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_format_parses_and_garbage_does_not() {
        let c = SshConnection::parse("192.0.2.2 50122 192.0.2.1 22").expect("valid");
        assert_eq!(c.server, "192.0.2.1".parse::<IpAddr>().expect("ip"));
        assert_eq!((c.client_port, c.server_port), (50122, 22));
        assert!(SshConnection::parse("2001:db8::2 1 2001:db8::1 22").is_some());
        for bad in [
            "",
            "1.2.3.4",
            "a b c d",
            "192.0.2.2 x 192.0.2.1 22",
            "192.0.2.2 1 192.0.2.1 22 extra",
        ] {
            assert_eq!(SshConnection::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_process_is_found_through_its_ancestors() {
        // This test process has no SSH_CONNECTION unless run over SSH; a
        // child spawned with one must be found, and its child too.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "env -u SSH_CONNECTION sleep 5 & echo $!; wait"])
            .env("SSH_CONNECTION", "192.0.2.9 4000 192.0.2.1 22")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
            &mut line,
        )
        .expect("pid");
        let grandchild: u32 = line.trim().parse().expect("pid");
        let found = ssh_connection(grandchild).expect("found through the parent shell");
        assert_eq!(found.client, "192.0.2.9".parse::<IpAddr>().expect("ip"));
        let _ = child.kill();
        let _ = child.wait();
    }
}
