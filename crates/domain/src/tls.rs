//! TLS identity in the candidate: which certificate each TLS service
//! presents on each NIC ("bindings"), and what a NIC is called.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::{ServiceId, truncate_for_message};
use crate::host::Hostname;
use crate::nic::NicName;

/// The longest certificate name.
pub const MAX_CERT_NAME: usize = 64;

/// The name a certificate is stored under: 1 to 64 of `A-Z a-z 0-9 _ . -`,
/// starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid certificate name {0:?}: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
)]
pub struct InvalidCertName(String);

impl CertName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CertName {
    type Err = InvalidCertName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=MAX_CERT_NAME).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(CertName(s.to_owned()))
        } else {
            Err(InvalidCertName(truncate_for_message(s)))
        }
    }
}

impl TryFrom<String> for CertName {
    type Error = InvalidCertName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CertName> for String {
    fn from(n: CertName) -> String {
        n.0
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// "Service S on NIC N presents certificate C": a default per TLS service
/// and overrides per (service, NIC), because each NIC has its own address
/// and so possibly its own DNS name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    #[serde(default)]
    pub defaults: BTreeMap<ServiceId, CertName>,
    #[serde(default)]
    pub overrides: BTreeMap<ServiceId, BTreeMap<NicName, CertName>>,
    /// Certificates the administrator bound although they are expired or
    /// not yet valid (`cert bind --force`).
    #[serde(default)]
    pub accept_invalid: BTreeSet<CertName>,
}

/// Why a binding cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} presents no certificate: only console, web and sip-tls are TLS services")]
pub struct NotTls(pub ServiceId);

impl Bindings {
    /// The certificate `service` presents on `nic`.
    pub fn resolve(&self, service: ServiceId, nic: &NicName) -> Option<&CertName> {
        self.overrides
            .get(&service)
            .and_then(|o| o.get(nic))
            .or_else(|| self.defaults.get(&service))
    }

    /// Bind `cert` as the default of `service`, or for `nic` only.
    pub fn bind(
        &mut self,
        service: ServiceId,
        nic: Option<&NicName>,
        cert: CertName,
    ) -> Result<(), NotTls> {
        if !service.info().tls {
            return Err(NotTls(service));
        }
        match nic {
            Some(nic) => {
                self.overrides
                    .entry(service)
                    .or_default()
                    .insert(nic.clone(), cert);
            }
            None => {
                self.defaults.insert(service, cert);
            }
        }
        Ok(())
    }

    /// Remove the default of `service`, or its override for `nic`.
    pub fn unbind(&mut self, service: ServiceId, nic: Option<&NicName>) {
        match nic {
            Some(nic) => {
                if let Some(o) = self.overrides.get_mut(&service) {
                    o.remove(nic);
                    if o.is_empty() {
                        self.overrides.remove(&service);
                    }
                }
            }
            None => {
                self.defaults.remove(&service);
            }
        }
    }

    /// Make every binding of `from` name `to` instead (a renewed
    /// certificate taking its predecessor's place). Whether any did.
    pub fn replace(&mut self, from: &CertName, to: &CertName) -> bool {
        let mut replaced = false;
        let bound = self
            .defaults
            .values_mut()
            .chain(self.overrides.values_mut().flat_map(|o| o.values_mut()));
        for cert in bound.filter(|c| *c == from) {
            *cert = to.clone();
            replaced = true;
        }
        replaced
    }

    /// Every certificate some binding names.
    pub fn certificates(&self) -> BTreeSet<&CertName> {
        ServiceId::all()
            .flat_map(|s| self.certificates_of(s))
            .collect()
    }

    /// The certificates `service` presents somewhere: its default and its
    /// overrides.
    pub fn certificates_of(&self, service: ServiceId) -> BTreeSet<&CertName> {
        self.defaults
            .get(&service)
            .into_iter()
            .chain(
                self.overrides
                    .get(&service)
                    .into_iter()
                    .flat_map(|o| o.values()),
            )
            .collect()
    }
}

/// What the administrator declares about a NIC: the DNS name clients use
/// to reach its address, and the public address in front of it when the
/// appliance is behind NAT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Hostname>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<IpAddr>,
    /// The DNS servers the clients of this NIC use, when they do not see
    /// the names as the appliance's own resolver does (split horizon): the
    /// padlock check asks them.
    #[serde(default, skip_serializing_if = "Resolvers::is_empty")]
    pub resolvers: Resolvers,
}

/// The most DNS servers a NIC's clients are declared to use (as in
/// `resolv.conf`).
pub const MAX_RESOLVERS: usize = 3;

/// Up to [`MAX_RESOLVERS`] unicast addresses of DNS servers, no duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<IpAddr>", into = "Vec<IpAddr>")]
pub struct Resolvers(Vec<IpAddr>);

/// Why a list of DNS servers is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResolvers {
    #[error("{0} DNS servers given: at most {MAX_RESOLVERS} are accepted")]
    TooMany(usize),
    #[error("{0} cannot be a DNS server: give a unicast address")]
    NotUnicast(IpAddr),
    #[error("{0} is given twice")]
    Duplicate(IpAddr),
}

impl Resolvers {
    pub fn new(addrs: Vec<IpAddr>) -> Result<Resolvers, InvalidResolvers> {
        if addrs.len() > MAX_RESOLVERS {
            return Err(InvalidResolvers::TooMany(addrs.len()));
        }
        for (i, a) in addrs.iter().enumerate() {
            let unicast = match a {
                IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
                IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
            };
            if !unicast {
                return Err(InvalidResolvers::NotUnicast(*a));
            }
            if addrs[..i].contains(a) {
                return Err(InvalidResolvers::Duplicate(*a));
            }
        }
        Ok(Resolvers(addrs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn addrs(&self) -> &[IpAddr] {
        &self.0
    }
}

impl TryFrom<Vec<IpAddr>> for Resolvers {
    type Error = InvalidResolvers;
    fn try_from(v: Vec<IpAddr>) -> Result<Self, Self::Error> {
        Resolvers::new(v)
    }
}

impl From<Resolvers> for Vec<IpAddr> {
    fn from(r: Resolvers) -> Self {
        r.0
    }
}

impl fmt::Display for Resolvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// A change of a NIC's settings: a field left `None` keeps its value,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicSettingsChange {
    pub hostname: Option<Option<Hostname>>,
    pub public_address: Option<Option<IpAddr>>,
    pub resolvers: Option<Resolvers>,
}

impl NicSettingsChange {
    /// `settings` with this change applied.
    pub fn applied_to(&self, settings: &NicSettings) -> NicSettings {
        NicSettings {
            hostname: self
                .hostname
                .clone()
                .unwrap_or_else(|| settings.hostname.clone()),
            public_address: self.public_address.unwrap_or(settings.public_address),
            resolvers: self
                .resolvers
                .clone()
                .unwrap_or_else(|| settings.resolvers.clone()),
        }
    }
}

/// What validation needs to know about a stored certificate, computed by
/// the engine at the time of validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    pub has_key: bool,
    pub validity: Validity,
    pub self_signed: bool,
    /// SHA-256 of the leaf, `AB:CD:...`: what a plan records.
    pub fingerprint: String,
    /// The leaf's subject, RFC 4514 style.
    #[serde(default)]
    pub subject: String,
    /// The leaf's notAfter, RFC 3339 (`2028-01-05T00:00:00Z`).
    #[serde(default)]
    pub not_after: String,
    /// The DNS names and IP addresses of the leaf's subjectAltName: the
    /// names (SNI) it answers for.
    #[serde(default)]
    pub names: Vec<String>,
    /// The pin of the leaf's key, `sha256/BASE64` of its
    /// SubjectPublicKeyInfo: what native documents carry.
    #[serde(default)]
    pub pin: String,
}

/// A key made on the appliance ahead of its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextKey {
    /// The name its certificate will have.
    pub name: CertName,
    /// The DNS names and addresses it was requested for.
    pub names: Vec<String>,
    /// Its pin, `sha256/BASE64` of its SubjectPublicKeyInfo.
    pub pin: String,
}

impl NextKey {
    /// Whether it was requested for `host` (exactly, or by a wildcard
    /// standing for `host`'s left-most label).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == host
                || n.strip_prefix("*.").is_some_and(|parent| {
                    host.split_once('.').is_some_and(|(_, rest)| rest == parent)
                })
        })
    }
}

/// The native phones whose last activation gave them `pins`: a phone that
/// enforces its pins accepts only a certificate for one of these keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedPhones {
    pub pins: Vec<String>,
    /// Their accounts' user names.
    pub usernames: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Validity {
    Valid,
    Expired,
    NotYetValid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CertName {
        s.parse().expect("name")
    }

    #[test]
    fn cert_names_are_plain() {
        for ok in ["voip", "voip.example.test-2026", "A_1"] {
            assert!(ok.parse::<CertName>().is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "a\"b", &"x".repeat(65)] {
            assert!(bad.parse::<CertName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_override_wins_over_the_default_and_only_tls_services_bind() {
        let lan: NicName = "lan0".parse().expect("nic");
        let wan: NicName = "wan0".parse().expect("nic");
        let mut b = Bindings::default();
        b.bind(ServiceId::SipTls, None, c("default")).expect("bind");
        b.bind(ServiceId::SipTls, Some(&wan), c("public"))
            .expect("bind");
        assert_eq!(b.resolve(ServiceId::SipTls, &lan), Some(&c("default")));
        assert_eq!(b.resolve(ServiceId::SipTls, &wan), Some(&c("public")));
        assert_eq!(b.resolve(ServiceId::Web, &wan), None);
        assert_eq!(
            b.bind(ServiceId::Ssh, None, c("x")),
            Err(NotTls(ServiceId::Ssh))
        );
        assert_eq!(b.certificates().len(), 2);
        assert_eq!(
            b.certificates_of(ServiceId::SipTls),
            [&c("default"), &c("public")].into()
        );
        assert!(b.certificates_of(ServiceId::Web).is_empty());
        b.unbind(ServiceId::SipTls, Some(&wan));
        assert_eq!(b.resolve(ServiceId::SipTls, &wan), Some(&c("default")));
        assert!(b.overrides.is_empty());
    }

    #[test]
    fn a_renewed_certificate_takes_every_place_of_its_predecessor_and_no_other() {
        let lan: NicName = "lan0".parse().expect("nic");
        let wan: NicName = "wan0".parse().expect("nic");
        let mut b = Bindings::default();
        b.bind(ServiceId::Web, None, c("old")).expect("bind");
        b.bind(ServiceId::Web, Some(&wan), c("old")).expect("bind");
        b.bind(ServiceId::SipTls, Some(&lan), c("old"))
            .expect("bind");
        b.bind(ServiceId::SipTls, Some(&wan), c("other"))
            .expect("bind");
        assert!(b.replace(&c("old"), &c("new")));
        assert_eq!(b.resolve(ServiceId::Web, &lan), Some(&c("new")));
        assert_eq!(b.resolve(ServiceId::Web, &wan), Some(&c("new")));
        assert_eq!(b.resolve(ServiceId::SipTls, &lan), Some(&c("new")));
        assert_eq!(b.resolve(ServiceId::SipTls, &wan), Some(&c("other")));
        assert!(!b.replace(&c("old"), &c("newer")), "nothing names it now");
    }

    #[test]
    fn resolvers_are_a_few_distinct_unicast_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let ok = Resolvers::new(vec![ip("198.51.100.53"), ip("2001:db8::53")]).expect("ok");
        assert_eq!(ok.to_string(), "198.51.100.53, 2001:db8::53");
        let json = serde_json::to_string(&ok).expect("json");
        assert_eq!(json, r#"["198.51.100.53","2001:db8::53"]"#);
        assert_eq!(serde_json::from_str::<Resolvers>(&json).expect("back"), ok);
        for (bad, err) in [
            (vec!["0.0.0.0"], InvalidResolvers::NotUnicast(ip("0.0.0.0"))),
            (
                vec!["224.0.0.1"],
                InvalidResolvers::NotUnicast(ip("224.0.0.1")),
            ),
            (
                vec!["255.255.255.255"],
                InvalidResolvers::NotUnicast(ip("255.255.255.255")),
            ),
            (vec!["::"], InvalidResolvers::NotUnicast(ip("::"))),
            (vec!["ff02::1"], InvalidResolvers::NotUnicast(ip("ff02::1"))),
            (
                vec!["192.0.2.1", "192.0.2.1"],
                InvalidResolvers::Duplicate(ip("192.0.2.1")),
            ),
            (
                vec!["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
                InvalidResolvers::TooMany(4),
            ),
        ] {
            let addrs = bad.iter().map(|s| ip(s)).collect();
            assert_eq!(Resolvers::new(addrs), Err(err));
        }
        assert!(serde_json::from_str::<Resolvers>(r#"["0.0.0.0"]"#).is_err());
        // Absent from a NIC's settings when empty: older documents still read.
        let settings: NicSettings = serde_json::from_str("{}").expect("settings");
        assert!(settings.resolvers.is_empty());
        assert_eq!(serde_json::to_string(&settings).expect("json"), "{}");
    }
}
