//! Builders for tests, here and in the crates above (cargo feature
//! `testing`, for dev-dependencies only).

use crate::nic::{Facts, Nic, NicAddr, NicName};

/// A NIC that is up, with `addr`/24 when given (a NIC without address
/// otherwise).
pub fn nic(name: &str, addr: Option<&str>) -> Nic {
    Nic {
        name: self::name(name),
        index: 0,
        mac: None,
        up: true,
        running: true,
        addrs: addr
            .map(|a| NicAddr {
                addr: a.parse().expect("an IP address"),
                prefix_len: 24,
            })
            .into_iter()
            .collect(),
    }
}

/// Facts with these NICs, indexed from 2 in order (1 is loopback's).
pub fn facts(nics: &[(&str, Option<&str>)]) -> Facts {
    Facts {
        nics: nics
            .iter()
            .zip(2..)
            .map(|((n, a), index)| Nic {
                index,
                ..nic(n, *a)
            })
            .collect(),
        unsupported_nics: vec![],
    }
}

pub fn name(s: &str) -> NicName {
    s.parse().expect("a valid interface name")
}
