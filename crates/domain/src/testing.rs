//! Builders for tests, here and in the crates above (cargo feature
//! `testing`, for dev-dependencies only).

use crate::candidate::Candidate;
use crate::catalog::ServiceId;
use crate::nic::{Facts, Nic, NicAddr, NicName};
use crate::tls::{CertFacts, CertName, Validity};

/// The certificate every [`facts`] holds and every [`candidate`] binds.
pub const CERT: &str = "test-cert";

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

/// Facts with these NICs, indexed from 2 in order (1 is loopback's), and
/// one valid certificate with its key, [`CERT`].
pub fn facts(nics: &[(&str, Option<&str>)]) -> Facts {
    let test_cert = CertFacts {
        has_key: true,
        validity: Validity::Valid,
        self_signed: false,
        fingerprint: "00".repeat(32),
        subject: "CN=test".into(),
        not_after: "2030-01-01T00:00:00Z".into(),
        names: vec!["test.example.test".into()],
        pin: "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
    };
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
        certificates: [(cert(CERT), test_cert)].into(),
        ..Facts::default()
    }
}

/// The factory candidate with [`CERT`] bound as the default of every TLS
/// service.
pub fn candidate() -> Candidate {
    let mut c = Candidate::default();
    for s in ServiceId::all().filter(|s| s.info().tls) {
        c.bindings.bind(s, None, cert(CERT)).expect("a TLS service");
    }
    c
}

pub fn cert(s: &str) -> CertName {
    s.parse().expect("a valid certificate name")
}

pub fn name(s: &str) -> NicName {
    s.parse().expect("a valid interface name")
}
