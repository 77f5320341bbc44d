//! The service catalog: the rows of the matrix.
//!
//! The set of services is fixed by the product (it is what the appliance
//! runs); their ports are configuration and live in the
//! [`Candidate`](crate::Candidate). [`ServiceInfo::default_ports`] is only the
//! factory value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A service the appliance can expose. The string form (`sql`, `console`,
/// `sip-tls`, ...) is stable: it is used in the CLI, the API and the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ServiceId {
    Sql,
    Console,
    Ssh,
    SipTls,
    SipUdp,
    Nrpe,
    Web,
    Rtp,
    Metrics,
    Http,
}

/// Layer-4 protocol a service listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Transport {
    Tcp,
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// What the catalog knows about a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: ServiceId,
    /// The label the console shows (the source document's words, without
    /// a port: the console shows the configured ones next to it).
    pub label: &'static str,
    pub transport: Transport,
    pub default_ports: PortRange,
    /// Whether the service presents a certificate (and so needs bindings).
    pub tls: bool,
    /// The program that answers on the port.
    pub served_by: &'static str,
}

const fn single(port: u16) -> PortRange {
    PortRange {
        first: port,
        last: port,
    }
}

/// The services of the appliance, in the order the console shows them: the
/// eight of the source document, switchboard's own Prometheus metrics, and
/// the plain HTTP port where an ACME CA checks http-01 challenges.
pub const CATALOG: [ServiceInfo; 10] = [
    ServiceInfo {
        id: ServiceId::Sql,
        label: "SQL – Database (remote DBMS access)",
        transport: Transport::Tcp,
        default_ports: single(3306),
        tls: false,
        served_by: "the system's DBMS, if installed",
    },
    ServiceInfo {
        id: ServiceId::Console,
        label: "HTTPS – Management Console",
        transport: Transport::Tcp,
        default_ports: single(8443),
        tls: true,
        served_by: "switchboard",
    },
    ServiceInfo {
        id: ServiceId::Ssh,
        label: "SSH – Secure Shell",
        transport: Transport::Tcp,
        default_ports: single(22),
        tls: false,
        served_by: "OpenSSH",
    },
    ServiceInfo {
        id: ServiceId::SipTls,
        label: "SIP/TLS – secure VoIP signalling",
        transport: Transport::Tcp,
        default_ports: single(5061),
        tls: true,
        served_by: "Kamailio",
    },
    ServiceInfo {
        id: ServiceId::SipUdp,
        label: "SIP/UDP – legacy PBX trunks",
        transport: Transport::Udp,
        default_ports: single(5060),
        tls: false,
        served_by: "Kamailio",
    },
    ServiceInfo {
        id: ServiceId::Nrpe,
        label: "NRPE – Nagios monitoring",
        transport: Transport::Tcp,
        default_ports: single(5666),
        tls: false,
        served_by: "nagios-nrpe-server",
    },
    ServiceInfo {
        id: ServiceId::Web,
        label: "HTTPS – Smartphone Web Services (provisioning, presence, licence cache)",
        transport: Transport::Tcp,
        default_ports: single(443),
        tls: true,
        served_by: "switchboard",
    },
    ServiceInfo {
        id: ServiceId::Rtp,
        label: "RTP/SRTP media",
        transport: Transport::Udp,
        default_ports: PortRange {
            first: 10000,
            last: 20000,
        },
        tls: false,
        served_by: "the media path of the SIP services",
    },
    ServiceInfo {
        id: ServiceId::Metrics,
        label: "HTTP – Prometheus metrics",
        transport: Transport::Tcp,
        default_ports: single(9469),
        tls: false,
        served_by: "switchboard",
    },
    ServiceInfo {
        id: ServiceId::Http,
        label: "HTTP – ACME http-01 challenges",
        transport: Transport::Tcp,
        default_ports: single(80),
        tls: false,
        served_by: "switchboard (the answers to an ACME CA's http-01 challenges, nothing else)",
    },
];

impl ServiceId {
    /// Every service, in catalog order.
    pub fn all() -> impl Iterator<Item = ServiceId> {
        CATALOG.iter().map(|s| s.id)
    }

    pub fn info(self) -> &'static ServiceInfo {
        CATALOG
            .iter()
            .find(|s| s.id == self)
            .unwrap_or_else(|| unreachable!("every ServiceId is in CATALOG"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceId::Sql => "sql",
            ServiceId::Console => "console",
            ServiceId::Ssh => "ssh",
            ServiceId::SipTls => "sip-tls",
            ServiceId::SipUdp => "sip-udp",
            ServiceId::Nrpe => "nrpe",
            ServiceId::Web => "web",
            ServiceId::Rtp => "rtp",
            ServiceId::Metrics => "metrics",
            ServiceId::Http => "http",
        }
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service id that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown service {0:?}; the services are: sql, console, ssh, sip-tls, sip-udp, nrpe, web, rtp, metrics, http"
)]
pub struct UnknownService(pub String);

impl FromStr for ServiceId {
    type Err = UnknownService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceId::all()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| UnknownService(truncate_for_message(s)))
    }
}

/// Cut user input that is echoed in an error message to a sane length
/// (64 characters and an ellipsis).
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

/// An inclusive range of ports, `first..=last`, never containing port 0.
/// Written `5061` or `10000-20000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why a port range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid port range {input:?}: {reason}; write a port such as 5061 or a range such as 10000-20000"
)]
pub struct InvalidPortRange {
    input: String,
    reason: &'static str,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, InvalidPortRange> {
        let input = format!("{first}-{last}");
        if first == 0 {
            return Err(InvalidPortRange {
                input,
                reason: "port 0 is not a port",
            });
        }
        if first > last {
            return Err(InvalidPortRange {
                input,
                reason: "the first port is greater than the last",
            });
        }
        Ok(PortRange { first, last })
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = InvalidPortRange;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidPortRange {
            input: truncate_for_message(s),
            reason,
        };
        let parse = |p: &str| {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("a port is a number from 1 to 65535"));
            }
            p.parse::<u16>()
                .map_err(|_| err("a port is a number from 1 to 65535"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let p = parse(s)?;
                (p, p)
            }
        };
        PortRange::new(first, last).map_err(|e| err(e.reason))
    }
}

impl TryFrom<String> for PortRange {
    type Error = InvalidPortRange;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_eight_services_of_the_product_brief_metrics_and_http() {
        let ids: Vec<&str> = ServiceId::all().map(ServiceId::as_str).collect();
        assert_eq!(
            ids,
            [
                "sql", "console", "ssh", "sip-tls", "sip-udp", "nrpe", "web", "rtp", "metrics",
                "http"
            ]
        );
        assert_eq!(ServiceId::Http.info().default_ports.to_string(), "80");
        let tls: Vec<ServiceId> = CATALOG.iter().filter(|s| s.tls).map(|s| s.id).collect();
        assert_eq!(tls, [ServiceId::Console, ServiceId::SipTls, ServiceId::Web]);
        assert_eq!(
            ServiceId::Rtp.info().default_ports.to_string(),
            "10000-20000"
        );
        assert_eq!(ServiceId::SipUdp.info().transport, Transport::Udp);
    }

    #[test]
    fn service_ids_round_trip_through_text_and_json() {
        for id in ServiceId::all() {
            assert_eq!(id.as_str().parse::<ServiceId>(), Ok(id));
            let json = serde_json::to_string(&id).expect("serialize");
            assert_eq!(json, format!("\"{id}\""));
        }
        let err = "SIP-TLS".parse::<ServiceId>().expect_err("case matters");
        assert!(err.to_string().contains("the services are"), "{err}");
    }

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!(
            "5061".parse::<PortRange>().map(|p| p.to_string()),
            Ok("5061".into())
        );
        assert_eq!(
            "10000-20000"
                .parse::<PortRange>()
                .map(|p| (p.first(), p.last())),
            Ok((10000, 20000))
        );
        for bad in [
            "",
            "0",
            "65536",
            "-1",
            "1-",
            "20-10",
            "a",
            "1 ",
            "+5",
            "99999999999999999999",
            "1-2-3",
        ] {
            let err = bad.parse::<PortRange>().expect_err(bad);
            assert!(
                err.to_string().contains("write a port such as"),
                "{bad}: {err}"
            );
        }
        let long = "9".repeat(10_000);
        let msg = long.parse::<PortRange>().expect_err("oversize").to_string();
        assert!(
            msg.len() < 300,
            "oversize input is not echoed whole: {} bytes",
            msg.len()
        );
    }

    #[test]
    fn overlap_is_inclusive() {
        let r = |s: &str| s.parse::<PortRange>().expect("valid");
        assert!(r("10-20").overlaps(r("20-30")));
        assert!(!r("10-19").overlaps(r("20-30")));
        assert!(r("15").overlaps(r("10-20")));
    }
}
