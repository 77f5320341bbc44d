//! Host names: what clients connect to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A DNS host name: ASCII letters, digits and `-` in dot-separated labels
/// of 1 to 63 characters, at most 253 characters in all, no label starting
/// or ending with `-`, the last label not all digits (that would be an IP
/// address). Stored lowercase, without a trailing dot. Internationalized
/// names are accepted in their `xn--` form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

/// Why a string is not a host name (or IP address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host name {input:?}: {reason}")]
pub struct InvalidHostname {
    input: String,
    reason: &'static str,
}

impl Hostname {
    pub const MAX_LEN: usize = 253;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Hostname {
    type Err = InvalidHostname;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidHostname {
            input: s.chars().take(80).collect(),
            reason,
        };
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() {
            return Err(err("it is empty"));
        }
        if !name.is_ascii() {
            return Err(err(
                "write an internationalized name in its xn-- (punycode) form",
            ));
        }
        if name.len() > Self::MAX_LEN {
            return Err(err("a host name is at most 253 characters"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(err(
                    "it has an empty label (two dots in a row, or a leading dot)",
                ));
            }
            if label.len() > 63 {
                return Err(err("a label (between dots) is at most 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(err("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("a label cannot start or end with '-'"));
            }
        }
        if name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err(
                "its last label is a number: write an IP address as one",
            ));
        }
        Ok(Hostname(name.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for Hostname {
    type Error = InvalidHostname;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Hostname> for String {
    fn from(h: Hostname) -> String {
        h.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client connects to and checks the certificate against: a host
/// name, or an IP address (which only an IP address SAN covers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Host {
    Name(Hostname),
    Ip(IpAddr),
}

impl FromStr for Host {
    type Err = InvalidHostname;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Ok(Host::Ip(ip.to_canonical())),
            Err(_) => s.parse().map(Host::Name),
        }
    }
}

impl TryFrom<String> for Host {
    type Error = InvalidHostname;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Host> for String {
    fn from(h: Host) -> String {
        h.to_string()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => name.fmt(f),
            Host::Ip(ip) => ip.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Hostname {
        s.parse().expect("a valid host name")
    }

    #[test]
    fn host_names_are_lowercased_and_lose_the_trailing_dot() {
        assert_eq!(host("VoIP.Example.TEST.").as_str(), "voip.example.test");
        assert_eq!(host("localhost").as_str(), "localhost");
        assert_eq!(
            host("xn--bcher-kva.example").as_str(),
            "xn--bcher-kva.example"
        );
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(host(&longest).as_str().len(), 253);
    }

    #[test]
    fn strings_that_are_not_host_names_are_refused_with_a_reason() {
        let too_long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        let long_label = "a".repeat(64) + ".test";
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "-a.test",
            "a-.test",
            "a_b.test",
            "*.example.test",
            "bücher.example",
            "a b",
            "1.2.3.4",
            "10.0.0.1.",
            too_long.as_str(),
            long_label.as_str(),
        ] {
            let err = bad.parse::<Hostname>().expect_err(bad);
            assert!(err.to_string().starts_with("invalid host name"), "{err}");
        }
    }

    #[test]
    fn hosts_are_ip_addresses_when_they_parse_as_one() {
        assert_eq!(
            "10.1.2.3".parse(),
            Ok(Host::Ip("10.1.2.3".parse().expect("ip")))
        );
        assert_eq!("[::1]".parse(), Ok(Host::Ip("::1".parse().expect("ip"))));
        assert_eq!(
            "::ffff:10.1.2.3".parse(),
            Ok(Host::Ip("10.1.2.3".parse().expect("ip")))
        );
        assert_eq!("voip.test".parse(), Ok(Host::Name(host("voip.test"))));
        let json = serde_json::to_string(&Host::Name(host("voip.test"))).expect("serializes");
        assert_eq!(json, "\"voip.test\"");
    }
}
