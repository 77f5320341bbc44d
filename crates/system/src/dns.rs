//! Names: this machine's host name, and what a name resolves to, for the
//! system resolver (hosts file, DNS) or for given DNS servers (those the
//! phones use, with hickory's resolver: split horizon).

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

/// The addresses (A and AAAA) `name` resolves to for the DNS servers
/// `servers` (port 53, asked in turn), without duplicates, ignoring the
/// hosts file and the system's resolver; an error after [`TIMEOUT`] per
/// server.
pub async fn resolve_with(name: &str, servers: &[IpAddr]) -> io::Result<Vec<IpAddr>> {
    use hickory_resolver::config::{
        LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
    };
    let group = NameServerConfigGroup::from_ips_clear(servers, 53, true);
    let config = ResolverConfig::from_parts(None, vec![], group);
    let mut opts = ResolverOpts::default();
    opts.timeout = TIMEOUT;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.ndots = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    let resolver = hickory_resolver::Resolver::builder_with_config(
        config,
        hickory_resolver::name_server::TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build();
    // A fully qualified name: no search domain is ever appended.
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let budget = TIMEOUT * u32::try_from(servers.len().max(1)).unwrap_or(u32::MAX);
    let found = tokio::time::timeout(budget, resolver.lookup_ip(fqdn))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {budget:?}"),
            )
        })?
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out: Vec<IpAddr> = found.iter().map(|a| a.to_canonical()).collect();
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
