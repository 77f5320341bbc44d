//! The ban policy of the SIP edge: when an address that fails SIP digest
//! authentication or floods Kamailio with requests is banned, for how long,
//! and which networks never are.
//!
//! Defaults follow the appliances of the field: fail2ban's common SIP jail
//! (5 failures within 10 minutes) and Grandstream UCM's 300 s ban, doubled
//! for each repeat offence (FreePBX's Responsive Firewall escalates too) up
//! to a day. A [`BanPolicy`] cannot hold a value out of its bounds: it is
//! checked when it is built and when a stored candidate is read.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Bounds of the policy's numbers (inclusive).
pub const FAILURES: (u32, u32) = (1, 100);
pub const WINDOW_SECS: (u32, u32) = (10, 86_400);
pub const BAN_SECS: (u32, u32) = (10, 30 * 86_400);
pub const FLOOD_REQUESTS: (u32, u32) = (5, 10_000);
/// At most this many trusted networks.
pub const MAX_TRUSTED: usize = 64;

/// The ban policy, part of the candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBanPolicy")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanPolicy {
    /// Whether addresses are banned at all.
    pub enabled: bool,
    /// Failed digest authentications from one address, within
    /// `window_secs`, that ban it.
    pub failures: u32,
    /// The window the failures are counted in, seconds.
    pub window_secs: u32,
    /// How long a first ban lasts, seconds.
    pub ban_secs: u32,
    /// A repeat offender's ban doubles each time, up to this, seconds.
    pub max_ban_secs: u32,
    /// Requests per address within 2 seconds that count as a flood (pike),
    /// which bans the address at once.
    pub flood_requests: u32,
    /// Networks never banned (the LAN, a partner's trunk).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub trusted: Vec<IpNetwork>,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            enabled: true,
            failures: 5,
            window_secs: 600,
            ban_secs: 300,
            max_ban_secs: 86_400,
            flood_requests: 100,
            trusted: Vec::new(),
        }
    }
}

/// A policy value out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBanPolicy {
    #[error("{field} must be between {min} and {max}, not {value}")]
    OutOfRange {
        field: &'static str,
        min: u32,
        max: u32,
        value: u32,
    },
    #[error("max_ban_secs ({max}) is shorter than ban_secs ({ban})")]
    MaxBelowBan { ban: u32, max: u32 },
    #[error("at most {MAX_TRUSTED} trusted networks, not {0}")]
    TooManyTrusted(usize),
    #[error("{0}")]
    Network(#[from] InvalidNetwork),
}

impl BanPolicy {
    /// Whether every value is within its bounds.
    pub fn check(&self) -> Result<(), InvalidBanPolicy> {
        let range = |field, (min, max): (u32, u32), value: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(InvalidBanPolicy::OutOfRange {
                    field,
                    min,
                    max,
                    value,
                })
            }
        };
        range("failures", FAILURES, self.failures)?;
        range("window_secs", WINDOW_SECS, self.window_secs)?;
        range("ban_secs", BAN_SECS, self.ban_secs)?;
        range("max_ban_secs", BAN_SECS, self.max_ban_secs)?;
        range("flood_requests", FLOOD_REQUESTS, self.flood_requests)?;
        if self.max_ban_secs < self.ban_secs {
            return Err(InvalidBanPolicy::MaxBelowBan {
                ban: self.ban_secs,
                max: self.max_ban_secs,
            });
        }
        if self.trusted.len() > MAX_TRUSTED {
            return Err(InvalidBanPolicy::TooManyTrusted(self.trusted.len()));
        }
        Ok(())
    }

    /// Whether `addr` is in a trusted network (never banned).
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(addr))
    }

    /// How long the `offence`-th ban of an address lasts (1 is the first):
    /// `ban_secs` doubled for each earlier offence, at most `max_ban_secs`.
    pub fn ban_duration(&self, offence: u32) -> u32 {
        let doublings = offence.saturating_sub(1).min(31);
        self.ban_secs
            .saturating_mul(1u32 << doublings)
            .min(self.max_ban_secs)
    }

    /// Apply a change (absent keeps); the result is checked.
    pub fn changed(&self, change: &BanPolicyChange) -> Result<BanPolicy, InvalidBanPolicy> {
        let mut p = self.clone();
        if let Some(v) = change.enabled {
            p.enabled = v;
        }
        if let Some(v) = change.failures {
            p.failures = v;
        }
        if let Some(v) = change.window_secs {
            p.window_secs = v;
        }
        if let Some(v) = change.ban_secs {
            p.ban_secs = v;
        }
        if let Some(v) = change.max_ban_secs {
            p.max_ban_secs = v;
        }
        if let Some(v) = change.flood_requests {
            p.flood_requests = v;
        }
        if let Some(t) = &change.trusted {
            if t.len() > MAX_TRUSTED {
                return Err(InvalidBanPolicy::TooManyTrusted(t.len()));
            }
            let mut nets = t
                .iter()
                .map(|s| s.parse())
                .collect::<Result<Vec<IpNetwork>, _>>()?;
            nets.sort();
            nets.dedup();
            p.trusted = nets;
        }
        p.check()?;
        Ok(p)
    }
}

/// A change of the ban policy: absent fields keep their value; `trusted`
/// replaces the whole list (empty clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanPolicyChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ban_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood_requests: Option<u32>,
    /// Networks as `ADDR/PREFIX` (or a bare address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBanPolicy {
    enabled: bool,
    failures: u32,
    window_secs: u32,
    ban_secs: u32,
    max_ban_secs: u32,
    flood_requests: u32,
    #[serde(default)]
    trusted: Vec<IpNetwork>,
}

impl TryFrom<RawBanPolicy> for BanPolicy {
    type Error = InvalidBanPolicy;
    fn try_from(r: RawBanPolicy) -> Result<Self, Self::Error> {
        let p = BanPolicy {
            enabled: r.enabled,
            failures: r.failures,
            window_secs: r.window_secs,
            ban_secs: r.ban_secs,
            max_ban_secs: r.max_ban_secs,
            flood_requests: r.flood_requests,
            trusted: r.trusted,
        };
        p.check()?;
        Ok(p)
    }
}

/// An IP network, `ADDR/PREFIX` with no host bit set: safe to write into
/// an nftables ruleset or a Kamailio configuration as it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNetwork {
    #[error("not a network (ADDR/PREFIX, e.g. 192.0.2.0/24): {0:?}")]
    Syntax(String),
    #[error("the prefix of {0} is longer than the address")]
    Prefix(String),
    #[error("{given} has host bits set; the network is {network}")]
    HostBits { given: String, network: String },
}

impl IpNetwork {
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u128::from(u32::from(n)), 32, self.prefix)
                    == mask(u128::from(u32::from(a)), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask(u128::from(n), 128, self.prefix) == mask(u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn mask(bits: u128, width: u8, prefix: u8) -> u128 {
    let host = u32::from(width - prefix);
    if host >= 128 {
        0
    } else {
        (bits >> host) << host
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || InvalidNetwork::Syntax(s.chars().take(64).collect());
        if s.len() > 64 {
            return Err(syntax());
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                (a, Some(p.parse::<u8>().map_err(|_| syntax())?))
            }
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(InvalidNetwork::Prefix(s.to_owned()));
        }
        let net = IpNetwork { addr, prefix };
        let base = match addr {
            IpAddr::V4(a) => IpAddr::V4((mask(u128::from(u32::from(a)), 32, prefix) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(mask(u128::from(a), 128, prefix).into()),
        };
        if base != addr {
            return Err(InvalidNetwork::HostBits {
                given: s.to_owned(),
                network: format!("{base}/{prefix}"),
            });
        }
        Ok(net)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_canonically_and_bad_ones_say_why() {
        let n: IpNetwork = "192.0.2.0/24".parse().expect("net");
        assert!(n.contains("192.0.2.77".parse().expect("ip")));
        assert!(!n.contains("198.51.100.1".parse().expect("ip")));
        assert!(!n.contains("2001:db8::1".parse().expect("ip")));
        assert_eq!(
            "192.0.2.9".parse::<IpNetwork>().expect("host").to_string(),
            "192.0.2.9/32"
        );
        let v6: IpNetwork = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert_eq!("0.0.0.0/0".parse::<IpNetwork>().expect("all").prefix(), 0);
        assert!(
            "0.0.0.0/0"
                .parse::<IpNetwork>()
                .expect("all")
                .contains("203.0.113.1".parse().expect("ip"))
        );
        for bad in [
            "",
            "/24",
            "192.0.2.0/",
            "192.0.2.0/33",
            "192.0.2.0/-1",
            "192.0.2.0/+8",
            "192.0.2.0/24/1",
            "host.example/24",
            "192.0.2.0 /24",
            "192.0.2.0/0024",
            "192.0.2.0/24; drop",
            "2001:db8::/129",
            &"1".repeat(100),
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "192.0.2.1/24"
                .parse::<IpNetwork>()
                .expect_err("host bits")
                .to_string(),
            "192.0.2.1/24 has host bits set; the network is 192.0.2.0/24"
        );
    }

    #[test]
    fn the_policy_defaults_like_the_field_and_escalates_to_its_cap() {
        let p = BanPolicy::default();
        p.check().expect("defaults are valid");
        assert_eq!((p.failures, p.window_secs, p.ban_secs), (5, 600, 300));
        assert_eq!(p.ban_duration(1), 300);
        assert_eq!(p.ban_duration(2), 600);
        assert_eq!(p.ban_duration(3), 1200);
        assert_eq!(p.ban_duration(40), 86_400);
        assert_eq!(p.ban_duration(u32::MAX), 86_400);
    }

    #[test]
    fn a_change_out_of_bounds_is_refused_and_keeps_nothing() {
        let p = BanPolicy::default();
        let bad = [
            BanPolicyChange {
                failures: Some(0),
                ..Default::default()
            },
            BanPolicyChange {
                failures: Some(101),
                ..Default::default()
            },
            BanPolicyChange {
                window_secs: Some(5),
                ..Default::default()
            },
            BanPolicyChange {
                ban_secs: Some(u32::MAX),
                ..Default::default()
            },
            BanPolicyChange {
                max_ban_secs: Some(100),
                ..Default::default()
            },
            BanPolicyChange {
                flood_requests: Some(1),
                ..Default::default()
            },
            BanPolicyChange {
                trusted: Some(vec!["192.0.2.1/24".into()]),
                ..Default::default()
            },
            BanPolicyChange {
                trusted: Some(vec!["lan".into()]),
                ..Default::default()
            },
            BanPolicyChange {
                trusted: Some((0..65).map(|i| format!("192.0.2.{i}")).collect()),
                ..Default::default()
            },
        ];
        for change in bad {
            assert!(p.changed(&change).is_err(), "{change:?}");
        }
        let ok = p
            .changed(&BanPolicyChange {
                failures: Some(10),
                trusted: Some(vec![
                    "198.51.100.0/24".into(),
                    "192.0.2.0/24".into(),
                    "192.0.2.0/24".into(),
                ]),
                ..Default::default()
            })
            .expect("valid");
        assert_eq!(ok.failures, 10);
        assert_eq!(ok.window_secs, 600, "absent keeps");
        assert_eq!(ok.trusted.len(), 2, "sorted and deduplicated");
        assert!(ok.is_trusted("192.0.2.200".parse().expect("ip")));
    }

    #[test]
    fn a_stored_policy_out_of_bounds_does_not_load() {
        let json = serde_json::to_string(&BanPolicy::default()).expect("json");
        assert_eq!(
            serde_json::from_str::<BanPolicy>(&json).expect("back"),
            BanPolicy::default()
        );
        let bad = json.replace("\"failures\":5", "\"failures\":0");
        assert!(serde_json::from_str::<BanPolicy>(&bad).is_err());
        let bad = json.replace("\"trusted\":[]", "\"trusted\":[\"192.0.2.1/8\"]");
        assert!(serde_json::from_str::<BanPolicy>(&bad).is_err());
    }
}
