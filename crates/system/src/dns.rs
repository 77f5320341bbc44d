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

/// The addresses `name` resolves to, through the system resolver
/// (`getaddrinfo`: `/etc/hosts`, then DNS), without duplicates.
pub async fn resolve(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = tokio::net::lookup_host((name, 0))
        .await?
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
