//! NIC discovery: the network interfaces and addresses of the current network
//! namespace, read from the kernel over rtnetlink, and a change feed.
//!
//! Both functions work unprivileged: netlink dumps and multicast subscriptions
//! to the link and address groups need no capability.
//!
//! The usual pattern is "subscribe first, then read": call [`watch`], then
//! [`discover`], and call [`discover`] again every time the receiver yields.
//! The subscription is live as soon as [`watch`] returns, so no change that
//! happens after that is missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::proto::Connection;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{MulticastGroup, new_connection, new_multicast_connection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelNic {
    /// Interface index (`ifindex`).
    pub index: u32,
    /// The raw kernel name (`IFLA_IFNAME`), not validated.
    pub name: String,
    /// Hardware address as `aa:bb:cc:dd:ee:ff`, lower-case; `None` when the
    /// link has no 6-byte hardware address (tunnels, WireGuard, ...). The
    /// loopback reports `00:00:00:00:00:00`, as `ip link` shows it.
    pub mac: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub running: bool,
    /// The loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// Every IPv4 and IPv6 address of the link (including IPv6 link-local and
    /// tentative ones), sorted (IPv4 first) and deduplicated.
    pub addrs: Vec<KernelAddr>,
}

/// One address of a [`KernelNic`], with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// Why the kernel's interfaces could not be read or watched.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The rtnetlink socket could not be opened.
    #[error("cannot open a netlink route socket to list the network interfaces: {source}")]
    Socket { source: std::io::Error },
    /// The kernel refused a dump, or answered with something unreadable.
    #[error("listing the network interfaces failed: the netlink {what} dump failed: {source}")]
    Dump {
        /// `"link"` or `"address"`.
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The netlink socket closed in the middle of a dump.
    #[error("listing the network interfaces failed: the netlink socket closed during the dump")]
    ConnectionClosed,
    /// The link/address multicast groups could not be joined.
    #[error(
        "cannot subscribe to network interface changes (netlink link and address groups): {source}"
    )]
    Subscribe { source: std::io::Error },
}

/// Dump every link and every address of the current network namespace
/// (netlink `RTM_GETLINK` + `RTM_GETADDR`), sorted by index.
///
/// Links are listed whether or not they have an address. An address whose
/// link disappeared between the two dumps is dropped.
pub async fn discover() -> Result<Vec<KernelNic>, DiscoveryError> {
    let (connection, handle, _unsolicited) =
        new_connection().map_err(|source| DiscoveryError::Socket { source })?;
    let dumps = async move {
        let links: Vec<LinkMessage> =
            handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| DiscoveryError::Dump {
                    what: "link",
                    source: Box::new(e),
                })?;
        let addrs: Vec<AddressMessage> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| DiscoveryError::Dump {
                what: "address",
                source: Box::new(e),
            })?;
        Ok((links, addrs))
    };
    // The connection is driven right here rather than spawned: it lives
    // exactly as long as this call, and nothing is left behind on error or
    // cancellation.
    let (links, addrs) = tokio::select! {
        biased;
        dumped = dumps => dumped?,
        () = connection => return Err(DiscoveryError::ConnectionClosed),
    };
    Ok(assemble(links, addrs))
}

/// How long [`watch`] gathers a burst of kernel notifications into one `()`.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long [`watch`] waits before retrying a failed resubscription.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Subscribe to link and IPv4/IPv6 address changes (`RTNLGRP_LINK`,
/// `RTNLGRP_IPV4_IFADDR`, `RTNLGRP_IPV6_IFADDR`).
///
/// Returns a receiver that yields `()` each time something changed; the
/// caller then calls [`discover`] again. Notifications that arrive within
/// 50 ms of each other are coalesced into one, and at most one `()` is ever
/// pending: a notification means "the state changed since the last `()` was
/// sent", never "exactly one change". If the kernel drops notifications
/// (socket buffer overrun) or the socket fails, the receiver still gets a
/// `()` (after a resubscription in the second case), so the caller never
/// stays stale.
///
/// The subscription is active when this function returns. The background
/// task ends when the receiver is dropped.
pub async fn watch() -> Result<mpsc::Receiver<()>, DiscoveryError> {
    spawn_watch().map(|(rx, _task)| rx)
}

type Unsolicited =
    futures::channel::mpsc::UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// [`watch`], also returning the background task (for tests).
fn spawn_watch() -> Result<(mpsc::Receiver<()>, JoinHandle<()>), DiscoveryError> {
    let subscription = Subscription::open()?;
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(run_watch(subscription, tx));
    Ok((rx, task))
}

/// A multicast netlink socket: the connection task and its messages.
struct Subscription {
    /// Held for its `Drop`: the socket closes with the subscription.
    _connection: AbortOnDrop,
    messages: Unsolicited,
}

impl Subscription {
    fn open() -> Result<Self, DiscoveryError> {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ];
        // The handle (for requests) is dropped at once: the connection keeps
        // running as long as `messages` is alive and the socket is healthy.
        let (connection, _handle, messages): (Connection<RouteNetlinkMessage>, _, _) =
            new_multicast_connection(&groups)
                .map_err(|source| DiscoveryError::Subscribe { source })?;
        Ok(Subscription {
            _connection: AbortOnDrop(tokio::spawn(connection)),
            messages,
        })
    }
}

/// Aborts the netlink connection task when the subscription goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_watch(mut subscription: Subscription, tx: mpsc::Sender<()>) {
    loop {
        let message = tokio::select! {
            () = tx.closed() => return,
            message = subscription.messages.next() => message,
        };
        if message.is_none() {
            // The connection ended (socket error): changes may have been
            // missed. Resubscribe, then tell the caller to look again.
            tracing::warn!("netlink interface watch lost its socket; resubscribing");
            drop(subscription);
            subscription = loop {
                match Subscription::open() {
                    Ok(subscription) => break subscription,
                    Err(error) => {
                        tracing::warn!(%error, "resubscribing to interface changes failed; retrying");
                        tokio::select! {
                            () = tx.closed() => return,
                            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                        }
                    }
                }
            };
        } else {
            // Any message of these groups, including the overrun marker that
            // netlink-proto synthesises on ENOBUFS, means "look again".
            // Let the burst settle, then swallow what arrived meanwhile.
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
            while let Some(Some(_)) = subscription.messages.next().now_or_never() {}
        }
        match tx.try_send(()) {
            // Full: a `()` is already pending, and the caller has not yet
            // looked; when it does, it sees these changes too.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}

/// Joins the two dumps into NICs, sorted by index.
fn assemble(links: Vec<LinkMessage>, addrs: Vec<AddressMessage>) -> Vec<KernelNic> {
    let mut nics: BTreeMap<u32, KernelNic> = links
        .iter()
        .filter_map(nic_from_link)
        .map(|nic| (nic.index, nic))
        .collect();
    for message in &addrs {
        if let (Some(nic), Some(addr)) = (
            nics.get_mut(&message.header.index),
            addr_from_message(message),
        ) {
            nic.addrs.push(addr);
        }
    }
    for nic in nics.values_mut() {
        nic.addrs.sort();
        nic.addrs.dedup();
    }
    nics.into_values().collect()
}

fn nic_from_link(link: &LinkMessage) -> Option<KernelNic> {
    let mut name = None;
    let mut mac = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = format_mac(bytes),
            _ => {}
        }
    }
    let index = link.header.index;
    let Some(name) = name else {
        // The kernel always sends IFLA_IFNAME; a link without one cannot be
        // named in any configuration anyway.
        tracing::warn!(index, "netlink reported a link without a name; ignoring it");
        return None;
    };
    let flags = link.header.flags;
    Some(KernelNic {
        index,
        name,
        mac,
        up: flags.contains(LinkFlags::Up),
        running: flags.contains(LinkFlags::LowerUp),
        loopback: flags.contains(LinkFlags::Loopback),
        addrs: Vec::new(),
    })
}

/// The interface's own address: `IFA_LOCAL` when present (on point-to-point
/// links `IFA_ADDRESS` is the peer), else `IFA_ADDRESS` (IPv6 sends only that).
fn addr_from_message(message: &AddressMessage) -> Option<KernelAddr> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Some(KernelAddr {
        addr: local.or(address)?,
        prefix_len: message.header.prefix_len,
    })
}

fn format_mac(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 6 {
        return None;
    }
    let mut mac = String::with_capacity(17);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            mac.push(':');
        }
        let _ = write!(mac, "{byte:02x}");
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(a: [u8; 4], prefix_len: u8) -> KernelAddr {
        KernelAddr {
            addr: IpAddr::V4(Ipv4Addr::from(a)),
            prefix_len,
        }
    }

    #[tokio::test]
    async fn discover_finds_loopback() {
        let nics = discover().await.expect("discover");
        let lo = nics
            .iter()
            .find(|nic| nic.name == "lo")
            .unwrap_or_else(|| panic!("no lo in {nics:#?}"));
        assert!(lo.loopback, "{lo:?}");
        assert!(lo.up, "{lo:?}");
        assert!(lo.addrs.contains(&v4([127, 0, 0, 1], 8)), "{lo:?}");
        assert_eq!(lo.mac.as_deref(), Some("00:00:00:00:00:00"));
        assert!(
            nics.windows(2).all(|w| w[0].index < w[1].index),
            "not sorted by index: {nics:#?}"
        );
        assert!(
            nics.iter()
                .all(|nic| nic.addrs.windows(2).all(|w| w[0] < w[1]))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn discover_works_on_the_current_thread_runtime_too() {
        assert!(!discover().await.expect("discover").is_empty());
    }

    #[tokio::test]
    async fn watch_task_ends_when_the_receiver_is_dropped() {
        let (rx, task) = spawn_watch().expect("subscribe");
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watch task did not end")
            .expect("the watch task panicked");
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(
            format_mac(&[0xAA, 0x0b, 0, 0xff, 0x10, 0x01]).as_deref(),
            Some("aa:0b:00:ff:10:01")
        );
        assert_eq!(format_mac(&[]), None);
        assert_eq!(format_mac(&[10, 0, 0, 1]), None);
        assert_eq!(format_mac(&[0; 20]), None);
    }

    #[test]
    fn assemble_joins_sorts_and_dedups() {
        let mut eth = LinkMessage::default();
        eth.header.index = 7;
        eth.header.flags = LinkFlags::Up;
        eth.attributes = vec![
            LinkAttribute::IfName("eth1".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
        ];
        let mut tun = LinkMessage::default();
        tun.header.index = 3;
        tun.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        tun.attributes = vec![
            LinkAttribute::IfName("tun0".into()),
            LinkAttribute::Address(vec![192, 0, 2, 9]),
        ];
        let nameless = LinkMessage::default();

        let addr = |index: u32, prefix_len: u8, attributes: Vec<AddressAttribute>| {
            let mut message = AddressMessage::default();
            message.header.index = index;
            message.header.prefix_len = prefix_len;
            message.attributes = attributes;
            message
        };
        let a = |o: [u8; 4]| IpAddr::V4(Ipv4Addr::from(o));
        let six = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let addrs = vec![
            addr(7, 64, vec![AddressAttribute::Address(six)]),
            addr(7, 24, vec![AddressAttribute::Address(a([192, 0, 2, 20]))]),
            // point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer
            addr(
                3,
                32,
                vec![
                    AddressAttribute::Address(a([198, 51, 100, 2])),
                    AddressAttribute::Local(a([198, 51, 100, 1])),
                ],
            ),
            addr(7, 24, vec![AddressAttribute::Address(a([192, 0, 2, 10]))]),
            addr(7, 24, vec![AddressAttribute::Address(a([192, 0, 2, 20]))]),
            // link gone between the dumps, and an address without address
            addr(99, 24, vec![AddressAttribute::Address(a([192, 0, 2, 99]))]),
            addr(7, 24, vec![]),
        ];

        let nics = assemble(vec![eth, tun, nameless], addrs);
        assert_eq!(
            nics,
            vec![
                KernelNic {
                    index: 3,
                    name: "tun0".into(),
                    mac: None,
                    up: true,
                    running: true,
                    loopback: false,
                    addrs: vec![v4([198, 51, 100, 1], 32)],
                },
                KernelNic {
                    index: 7,
                    name: "eth1".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    up: true,
                    running: false,
                    loopback: false,
                    addrs: vec![
                        v4([192, 0, 2, 10], 24),
                        v4([192, 0, 2, 20], 24),
                        KernelAddr {
                            addr: six,
                            prefix_len: 64
                        },
                    ],
                },
            ]
        );
    }
}
