//! Network interfaces: the columns of the matrix.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::truncate_for_message;

/// The name of a network interface, as the kernel knows it.
///
/// Linux accepts almost any byte in an interface name; switchboard accepts
/// only `A-Z a-z 0-9 _ . -` (1 to 15 bytes, not `.` or `..`). That covers
/// every name distributions and udev produce, and it guarantees that a name
/// can be written inside an nftables quoted string or a Kamailio listen line
/// without any escaping: no quote, no space, no `*` wildcard, no `;`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NicName(String);

/// Why a string is not an acceptable interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {input:?}: {reason}")]
pub struct InvalidNicName {
    input: String,
    reason: &'static str,
}

impl NicName {
    /// The longest name the kernel accepts (IFNAMSIZ - 1).
    pub const MAX_LEN: usize = 15;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NicName {
    type Err = InvalidNicName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidNicName {
            input: truncate_for_message(s),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(err("interface names are at most 15 bytes"));
        }
        if s == "." || s == ".." {
            return Err(err("\".\" and \"..\" are not interface names"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(err(
                "switchboard accepts only letters, digits, '_', '.' and '-' in interface names",
            ));
        }
        Ok(NicName(s.to_owned()))
    }
}

impl TryFrom<String> for NicName {
    type Error = InvalidNicName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NicName> for String {
    fn from(n: NicName) -> String {
        n.0
    }
}

impl fmt::Display for NicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address configured on a NIC, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NicAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl NicAddr {
    /// IPv6 link-local (fe80::/10) and IPv4 link-local (169.254/16)
    /// addresses exist on every up interface without any configuration; they
    /// do not make a NIC "configured".
    pub fn is_link_local(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
        }
    }
}

impl fmt::Display for NicAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One NIC as observed on the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub name: NicName,
    pub index: u32,
    pub mac: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// Carrier present.
    pub running: bool,
    pub addrs: Vec<NicAddr>,
}

impl Nic {
    /// "Configured" means the NIC has an address a neighbour could reach:
    /// at least one address that is not link-local.
    pub fn configured(&self) -> bool {
        self.addrs.iter().any(|a| !a.is_link_local())
    }
}

/// What the system looks like right now: the input of validation and
/// planning next to the candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Every NIC except loopback (which is always allowed and never in the matrix).
    pub nics: Vec<Nic>,
    /// Kernel interfaces whose names switchboard cannot manage (see [`NicName`]).
    pub unsupported_nics: Vec<String>,
    /// The certificates in the store, as validation needs them.
    #[serde(default)]
    pub certificates: std::collections::BTreeMap<crate::tls::CertName, crate::tls::CertFacts>,
    /// Keys made on the appliance that wait for their certificate (`cert
    /// request`): the next keys, whose pins are published ahead of a
    /// rotation.
    #[serde(default)]
    pub next_keys: Vec<crate::tls::NextKey>,
    /// The native phones activated so far, by the pins their document
    /// carried.
    #[serde(default)]
    pub pinned_phones: Vec<crate::tls::PinnedPhones>,
}

impl Facts {
    pub fn nic(&self, name: &NicName) -> Option<&Nic> {
        self.nics.iter().find(|n| &n.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &NicName> {
        self.nics.iter().map(|n| &n.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for ok in [
            "eth0",
            "lan0",
            "enp3s0f1",
            "wlan0",
            "br-lan",
            "eth0.100",
            "veth_a",
            "a",
            "abcdefghijklmno",
        ] {
            assert_eq!(
                ok.parse::<NicName>().map(|n| n.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn names_that_could_inject_syntax_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "eth0\"",
            "a b",
            "eth*",
            "x;y",
            "a}b",
            "a\nb",
            "eth0:1",
            "a/b",
            "é0",
            "a\\b",
            "a@b",
            "$(x)",
        ] {
            let err = bad.parse::<NicName>().expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid interface name"),
                "{err}"
            );
        }
    }

    #[test]
    fn json_form_is_validated_too() {
        assert!(serde_json::from_str::<NicName>("\"lan0\"").is_ok());
        assert!(serde_json::from_str::<NicName>("\"lan0\\\" accept\"").is_err());
    }

    #[test]
    fn link_local_addresses_do_not_configure_a_nic() {
        let addr = |s: &str, p| NicAddr {
            addr: s.parse().expect("ip"),
            prefix_len: p,
        };
        let mut nic = Nic {
            name: "dmz0".parse().expect("name"),
            index: 3,
            mac: None,
            up: true,
            running: true,
            addrs: vec![addr("fe80::1", 64), addr("169.254.3.4", 16)],
        };
        assert!(!nic.configured());
        nic.addrs.push(addr("192.0.2.1", 24));
        assert!(nic.configured());
    }
}
