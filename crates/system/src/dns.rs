//! Names: this machine's host name, and what the system resolver (hosts
//! file, DNS) says a name resolves to.

use std::io;
use std::net::IpAddr;

/// The kernel's host name (`uname -n`).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// How long a lookup may take before it counts as failed: a status page
/// must not hang on an unreachable DNS server.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The addresses `name` resolves to, through the system resolver
/// (`getaddrinfo`: `/etc/hosts`, then DNS), without duplicates; an error
/// after [`TIMEOUT`].
pub async fn resolve(name: &str) -> io::Result<Vec<IpAddr>> {
    let lookup = tokio::net::lookup_host((name, 0));
    let mut out: Vec<IpAddr> = tokio::time::timeout(TIMEOUT, lookup)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {TIMEOUT:?}"),
            )
        })??
        .map(|sa| sa.ip().to_canonical())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_loopback_and_nonsense_does_not_resolve() {
        let addrs = resolve("localhost").await.expect("localhost resolves");
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert!(resolve("no-such-host.invalid").await.is_err());
        assert!(!hostname().is_empty());
    }
}
