//! A fleet: many appliances run one group policy, kept in etcd.
//!
//! The operator writes a [`GroupPolicy`] per group: the matrix by NIC
//! *role* (`internal`, `external`, `dmz`, …), ports, provisioning templates
//! (`voip.{site}.example.com`) and the SIP edge's ban policy. Each appliance
//! knows its own [`Membership`]: its name, its site, which of its NICs plays
//! which role. [`candidate_for`] turns the two into the appliance's
//! candidate, a pure function of the policy, the membership, the local
//! candidate (whose certificate bindings and NIC settings stay local) and
//! the facts.
//!
//! A [`rollout`] moves a policy revision through the group in waves.
//!
//! **Limitations.** The TLS policy is the appliance's one
//! [`crate::TLS_POLICY`] (not a group setting); certificate bindings stay
//! local (a certificate's private key never leaves its appliance). The
//! policy's trusted CAs are added to each appliance's own (trust anchors
//! are not part of a revision): a CA the policy drops stays trusted until
//! the administrator removes it.

pub mod rollout;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bans::BanPolicy;
use crate::candidate::Candidate;
use crate::catalog::{PortRange, ServiceId};
use crate::host::Hostname;
use crate::matrix::Matrix;
use crate::nic::{Facts, NicName};
use crate::provisioning::WebUri;

/// The longest policy document accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// A fleet name: a group, a site, an appliance or a role. Lowercase ASCII
/// letters, digits and `-`, 1 to 63 characters, not starting or ending with
/// `-`: a DNS label, so a site fits into a host name, and safe in an etcd
/// key (no `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

/// Why a string is not a fleet [`Label`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {input:?}: {reason}")]
pub struct InvalidLabel {
    input: String,
    reason: &'static str,
}

impl Label {
    pub const MAX_LEN: usize = 63;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = InvalidLabel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidLabel {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(err("it is longer than 63 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("only lowercase letters, digits and '-' are allowed"));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(err("it starts or ends with '-'"));
        }
        Ok(Label(s.to_owned()))
    }
}

impl TryFrom<String> for Label {
    type Error = InvalidLabel;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Label> for String {
    fn from(l: Label) -> String {
        l.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A text with placeholders, `{site}`, `{group}` and `{appliance}`, filled
/// in by each appliance: `voip.{site}.example.com`. Any other `{…}` or a
/// lone brace is refused when the policy is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template(String);

const PLACEHOLDERS: [&str; 3] = ["site", "group", "appliance"];

impl FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > 300 {
            return Err("a template is at most 300 characters".into());
        }
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("{s:?} has a '}}' without its '{{'"));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("{s:?} has a '{{' without its '}}'"));
            };
            let name = &after[..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "{s:?} names {{{name}}}; a template knows {{site}}, {{group}} and {{appliance}}"
                ));
            }
            rest = &after[close + 1..];
        }
        Ok(Template(s.to_owned()))
    }
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.0
    }
}

impl Template {
    /// The text with every placeholder replaced by the membership's value.
    pub fn fill(&self, m: &Membership) -> String {
        self.0
            .replace("{site}", m.site.as_str())
            .replace("{group}", m.group.as_str())
            .replace("{appliance}", m.appliance.as_str())
    }
}

/// What a group of appliances runs: the operator's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// For each service, the NIC roles it answers on. A service not named
    /// answers nowhere.
    #[serde(default)]
    pub matrix: BTreeMap<ServiceId, BTreeSet<Label>>,
    /// Ports that differ from the catalog's defaults.
    #[serde(default)]
    pub ports: BTreeMap<ServiceId, PortRange>,
    /// The SIP/TLS host name phones are given, e.g. `voip.{site}.example.com`.
    #[serde(default)]
    pub sip_tls_hostname: Option<Template>,
    /// The web services URI phones are given, e.g. `https://voip.{site}.example.com`.
    #[serde(default)]
    pub web_uri: Option<Template>,
    /// The SIP edge's ban policy; absent keeps each appliance's own.
    #[serde(default)]
    pub bans: Option<BanPolicy>,
    /// CA certificates (PEM) every appliance of the group trusts, for the
    /// padlock check, added to each appliance's own trusted CAs.
    #[serde(default)]
    pub trusted_cas: Vec<String>,
}

/// The most CA certificates a policy may carry.
pub const MAX_POLICY_CAS: usize = 20;

/// What is wrong with a policy, a membership, or their candidate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("the policy is not valid: {0}")]
    Policy(String),
    #[error("the fleet membership is not valid: {0}")]
    Membership(String),
    #[error("NIC {0} is given a role but this appliance has no such NIC")]
    UnknownNic(NicName),
    #[error("the policy's {what} gives {value:?} here, which is not valid: {reason}")]
    Filled {
        what: &'static str,
        value: String,
        reason: String,
    },
}

impl FleetError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            FleetError::Policy(_) => "fleet-invalid-policy",
            FleetError::Membership(_) => "fleet-invalid-membership",
            FleetError::UnknownNic(_) => "fleet-unknown-nic",
            FleetError::Filled { .. } => "fleet-invalid-template",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            FleetError::Policy(_) => {
                "fix the policy document (JSON: matrix, ports, sip_tls_hostname, web_uri, bans) and write it again"
            }
            FleetError::Membership(_) => {
                "join again with valid values: names are lowercase letters, digits and '-', roles NIC=ROLE"
            }
            FleetError::UnknownNic(_) => {
                "join again with the NICs `switchboard nics` lists, or plug the NIC in"
            }
            FleetError::Filled { .. } => {
                "change the template or this appliance's site so that it fills to a valid value"
            }
        }
    }
}

impl GroupPolicy {
    /// Read a policy document (JSON), refusing what is too big, unknown
    /// fields, unknown services, bad ports, bad templates and bad ban
    /// policies.
    pub fn parse(text: &str) -> Result<GroupPolicy, FleetError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(FleetError::Policy(format!(
                "it is {} bytes, at most {MAX_POLICY_BYTES} are accepted",
                text.len()
            )));
        }
        let policy: GroupPolicy =
            serde_json::from_str(text).map_err(|e| FleetError::Policy(e.to_string()))?;
        if policy.trusted_cas.len() > MAX_POLICY_CAS {
            return Err(FleetError::Policy(format!(
                "trusted_cas has {} certificates, at most {MAX_POLICY_CAS} are accepted",
                policy.trusted_cas.len()
            )));
        }
        for (i, pem) in policy.trusted_cas.iter().enumerate() {
            let t = pem.trim();
            if !(t.starts_with("-----BEGIN CERTIFICATE-----")
                && t.ends_with("-----END CERTIFICATE-----"))
                || t.matches("-----BEGIN").count() != 1
            {
                return Err(FleetError::Policy(format!(
                    "trusted_cas[{i}] is not one PEM certificate (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)"
                )));
            }
        }
        if let Some(bans) = &policy.bans {
            bans.check()
                .map_err(|e| FleetError::Policy(format!("bans: {e}")))?;
        }
        Ok(policy)
    }
}

/// What to do with an administrator's own Update on a fleet-managed
/// appliance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DriftMode {
    /// Refuse it: only the fleet changes this appliance.
    #[default]
    Refuse,
    /// Apply it, and report the appliance as drifted in its status.
    Report,
}

impl FromStr for DriftMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(DriftMode::Refuse),
            "report" => Ok(DriftMode::Report),
            other => Err(format!("drift mode {other:?}: refuse or report")),
        }
    }
}

/// Where and how an appliance reaches etcd: file paths, never the keys
/// themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EtcdAccess {
    /// `https://HOST:PORT` (or `http://` without TLS), at least one.
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's server certificates (PEM file).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// This appliance's client certificate and key (PEM files): etcd's user
    /// is the certificate's common name.
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
}

/// An appliance's own side of the fleet: who it is and how its NICs map to
/// the policy's roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub etcd: EtcdAccess,
    pub group: Label,
    pub appliance: Label,
    pub site: Label,
    pub roles: BTreeMap<NicName, Label>,
    #[serde(default)]
    pub drift: DriftMode,
}

impl Membership {
    /// Checks what types cannot: endpoints, file paths, the TLS files
    /// given together.
    pub fn check(&self) -> Result<(), FleetError> {
        let bad = |m: String| Err(FleetError::Membership(m));
        if self.etcd.endpoints.is_empty() {
            return bad("no etcd endpoint: give --endpoints https://HOST:PORT,…".into());
        }
        if self.etcd.endpoints.len() > 16 {
            return bad("at most 16 etcd endpoints".into());
        }
        let tls = self.etcd.cert_file.is_some();
        for e in &self.etcd.endpoints {
            let rest = e
                .strip_prefix("https://")
                .or_else(|| e.strip_prefix("http://"));
            let ok = rest.is_some_and(|r| {
                r.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
                })
            });
            if !ok {
                return bad(format!("etcd endpoint {e:?} is not http(s)://HOST:PORT"));
            }
            if tls != e.starts_with("https://") {
                return bad(format!(
                    "etcd endpoint {e:?}: a client certificate goes with https:// endpoints, none with http://"
                ));
            }
        }
        let files = [
            &self.etcd.ca_file,
            &self.etcd.cert_file,
            &self.etcd.key_file,
        ];
        if files.iter().any(|f| f.is_some()) && files.iter().any(|f| f.is_none()) {
            return bad("give the CA, the certificate and the key files together".into());
        }
        for f in files.into_iter().flatten() {
            if !f.starts_with('/') || f.contains('\0') || f.len() > 1024 {
                return bad(format!("{f:?} is not an absolute file path"));
            }
        }
        if self.roles.is_empty() {
            return bad("no NIC has a role: give --role NIC=ROLE".into());
        }
        Ok(())
    }
}

/// The appliance's candidate under `policy`: the matrix from the roles of
/// its NICs, the policy's ports, provisioning settings and ban policy; the
/// local candidate's certificate bindings, NIC settings and app stores
/// kept.
pub fn candidate_for(
    policy: &GroupPolicy,
    membership: &Membership,
    local: &Candidate,
    facts: &Facts,
) -> Result<Candidate, FleetError> {
    for nic in membership.roles.keys() {
        if facts.nic(nic).is_none() {
            return Err(FleetError::UnknownNic(nic.clone()));
        }
    }
    let cells = ServiceId::all()
        .map(|service| {
            let roles = policy.matrix.get(&service);
            let nics = membership
                .roles
                .iter()
                .filter(|(_, role)| roles.is_some_and(|r| r.contains(*role)))
                .map(|(nic, _)| nic.clone())
                .collect::<BTreeSet<_>>();
            (service, nics)
        })
        .collect();
    let mut known_nics: BTreeSet<NicName> = facts.names().cloned().collect();
    if let Matrix::Explicit { known_nics: k, .. } = &local.matrix {
        known_nics.extend(k.iter().cloned());
    }
    let mut candidate = local.clone();
    candidate.matrix = Matrix::Explicit { known_nics, cells };
    candidate.ports = BTreeMap::new();
    for (service, ports) in &policy.ports {
        candidate.set_port(*service, *ports);
    }
    candidate.provisioning.sip_tls_hostname = match &policy.sip_tls_hostname {
        Some(t) => {
            let value = t.fill(membership);
            Some(value.parse::<Hostname>().map_err(|e| FleetError::Filled {
                what: "sip_tls_hostname",
                value: value.clone(),
                reason: e.to_string(),
            })?)
        }
        None => None,
    };
    candidate.provisioning.web_uri = match &policy.web_uri {
        Some(t) => {
            let value = t.fill(membership);
            Some(value.parse::<WebUri>().map_err(|e| FleetError::Filled {
                what: "web_uri",
                value: value.clone(),
                reason: e.to_string(),
            })?)
        }
        None => None,
    };
    if let Some(bans) = &policy.bans {
        candidate.bans = bans.clone();
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{facts, name};

    fn label(s: &str) -> Label {
        s.parse().expect("label")
    }

    fn membership(site: &str) -> Membership {
        Membership {
            etcd: EtcdAccess {
                endpoints: vec!["http://192.0.2.201:2379".into()],
                ..Default::default()
            },
            group: label("branches"),
            appliance: label(&format!("sb-{site}")),
            site: label(site),
            roles: [
                (name("lan0"), label("internal")),
                (name("wan0"), label("external")),
            ]
            .into(),
            drift: DriftMode::Refuse,
        }
    }

    fn policy() -> GroupPolicy {
        GroupPolicy::parse(
            r#"{
              "matrix": {"console": ["internal"], "ssh": ["internal"],
                         "sip-tls": ["external"], "web": ["external", "dmz"]},
              "ports": {"sip-tls": "5063"},
              "sip_tls_hostname": "voip.{site}.example.com",
              "web_uri": "https://voip.{site}.example.com:8444"
            }"#,
        )
        .expect("policy")
    }

    fn lab() -> Facts {
        facts(&[
            ("lan0", Some("192.0.2.1")),
            ("wan0", Some("198.51.100.1")),
            ("dmz0", None),
        ])
    }

    #[test]
    fn a_policy_and_the_local_roles_make_the_candidate() {
        let c = candidate_for(
            &policy(),
            &membership("paris"),
            &Candidate::default(),
            &lab(),
        )
        .expect("candidate");
        let m = c.matrix.resolve(&lab());
        assert_eq!(
            m.nics_of(ServiceId::Console),
            &BTreeSet::from([name("lan0")])
        );
        assert_eq!(m.nics_of(ServiceId::Ssh), &BTreeSet::from([name("lan0")]));
        assert_eq!(
            m.nics_of(ServiceId::SipTls),
            &BTreeSet::from([name("wan0")])
        );
        // dmz0 has no role here: a role it does not play opens nothing.
        assert_eq!(m.nics_of(ServiceId::Web), &BTreeSet::from([name("wan0")]));
        assert!(m.nics_of(ServiceId::Sql).is_empty());
        assert!(m.nics_of(ServiceId::Rtp).is_empty());
        assert_eq!(c.port(ServiceId::SipTls).to_string(), "5063");
        assert_eq!(
            c.provisioning
                .sip_tls_hostname
                .as_ref()
                .map(|h| h.to_string()),
            Some("voip.paris.example.com".into())
        );
        assert_eq!(
            c.provisioning.web_uri.as_ref().map(|u| u.to_string()),
            Some("https://voip.paris.example.com:8444".into())
        );
        // A NIC that appears later is not known, so it stays closed.
        let mut more = lab();
        more.nics.push(crate::testing::nic("eth9", None));
        assert!(c.matrix.resolve(&more).nics_of(ServiceId::Web).len() == 1);
    }

    #[test]
    fn local_bindings_and_nic_settings_stay_and_the_same_inputs_give_the_same_candidate() {
        let mut local = Candidate::default();
        local
            .bindings
            .bind(ServiceId::SipTls, None, crate::testing::cert("voip"))
            .expect("bind");
        local
            .ports
            .insert(ServiceId::Ssh, "2222".parse().expect("port"));
        let a = candidate_for(&policy(), &membership("oslo"), &local, &lab()).expect("a");
        let b = candidate_for(&policy(), &membership("oslo"), &local, &lab()).expect("b");
        assert_eq!(a, b);
        assert_eq!(a.bindings, local.bindings);
        // Ports are the policy's: the local override does not survive.
        assert_eq!(a.port(ServiceId::Ssh), ServiceId::Ssh.info().default_ports);
        // Two sites, two host names.
        let c = candidate_for(&policy(), &membership("rome"), &local, &lab()).expect("c");
        assert_ne!(a.provisioning, c.provisioning);
    }

    #[test]
    fn hostile_policies_are_refused_with_what_is_wrong() {
        for (text, wants) in [
            ("{", "EOF"),
            (r#""policy""#, "invalid type"),
            (r#"{"matrix": {"telnet": ["internal"]}}"#, "telnet"),
            (r#"{"matrix": {"ssh": ["Internal"]}}"#, "lowercase"),
            (r#"{"matrix": {"ssh": ["a/b"]}}"#, "lowercase"),
            (r#"{"ports": {"ssh": "0"}}"#, "port"),
            (
                r#"{"sip_tls_hostname": "voip.{city}.example.com"}"#,
                "{city}",
            ),
            (
                r#"{"sip_tls_hostname": "voip.{site.example.com"}"#,
                "without",
            ),
            (
                r#"{"sip_tls_hostname": "voip.}site{.example.com"}"#,
                "without",
            ),
            (r#"{"firewall": "off"}"#, "unknown field"),
            (r#"{"trusted_cas": ["hello"]}"#, "trusted_cas[0]"),
            (
                r#"{"trusted_cas": ["-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----"]}"#,
                "not one PEM certificate",
            ),
            (
                r#"{"bans": {"enabled": true, "failures": 0, "window_secs": 60, "ban_secs": 60, "max_ban_secs": 60, "flood_requests": 10}}"#,
                "failures must be",
            ),
        ] {
            let e = GroupPolicy::parse(text).expect_err(text);
            assert_eq!(e.code(), "fleet-invalid-policy");
            assert!(e.to_string().contains(wants), "{text}: {e}");
        }
        let huge = format!(r#"{{"web_uri": "{}"}}"#, "a".repeat(MAX_POLICY_BYTES));
        assert!(
            GroupPolicy::parse(&huge)
                .expect_err("huge")
                .to_string()
                .contains("at most")
        );
    }

    #[test]
    fn a_template_that_fills_to_nothing_valid_or_a_missing_nic_gives_no_candidate() {
        let mut p = policy();
        p.sip_tls_hostname = Some("{site}-.example.com".parse().expect("template"));
        let e = candidate_for(&p, &membership("paris"), &Candidate::default(), &lab())
            .expect_err("bad host");
        assert_eq!(e.code(), "fleet-invalid-template");
        assert!(e.to_string().contains("paris-.example.com"), "{e}");
        let mut p = policy();
        p.web_uri = Some("ftp://{site}".parse().expect("template"));
        assert_eq!(
            candidate_for(&p, &membership("paris"), &Candidate::default(), &lab())
                .expect_err("bad uri")
                .code(),
            "fleet-invalid-template"
        );
        let mut m = membership("paris");
        m.roles.insert(name("eth7"), label("dmz"));
        assert_eq!(
            candidate_for(&policy(), &m, &Candidate::default(), &lab()),
            Err(FleetError::UnknownNic(name("eth7")))
        );
    }

    #[test]
    fn labels_and_memberships_refuse_what_does_not_fit() {
        for bad in ["", "-a", "a-", "A", "a_b", "a/b", "a.b", &"a".repeat(64)] {
            assert!(bad.parse::<Label>().is_err(), "{bad:?}");
        }
        assert!(membership("x").check().is_ok());
        let mut m = membership("x");
        m.etcd.endpoints = vec!["192.0.2.1:2379".into()];
        assert!(m.check().is_err());
        m.etcd.endpoints = vec!["http://192.0.2.1:0".into()];
        assert!(m.check().is_err());
        m.etcd.endpoints = vec!["http://a b:1".into()];
        assert!(m.check().is_err());
        m.etcd.endpoints = vec![];
        assert!(m.check().is_err());
        let mut m = membership("x");
        m.etcd.cert_file = Some("/a.pem".into());
        assert!(m.check().is_err(), "TLS files go together, with https");
        m.etcd.ca_file = Some("/ca.pem".into());
        m.etcd.key_file = Some("relative.pem".into());
        m.etcd.endpoints = vec!["https://192.0.2.1:2379".into()];
        assert!(m.check().is_err(), "relative path");
        m.etcd.key_file = Some("/k.pem".into());
        assert!(m.check().is_ok());
        m.roles.clear();
        assert!(m.check().is_err());
        // A membership document with a stray field does not load.
        assert!(
            serde_json::from_str::<Membership>(
                r#"{"etcd":{"endpoints":[]},"group":"g","appliance":"a","site":"s","roles":{},"x":1}"#
            )
            .is_err()
        );
    }
}
