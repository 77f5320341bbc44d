//! The planner: a pure function from (candidate, facts) to a [`Plan`].
//!
//! The plan is everything an Update will put on the system, rendered
//! before anything is touched, section by section:
//!
//! | section | what it is | applied by |
//! |---|---|---|
//! | `matrix`, `ruleset` | the resolved matrix and the nftables script ([`nft`]), with the empty ban sets and their drop rules | the firewall step (which carries the live bans over) |
//! | `sockets` | every socket a service listens on: the built-in HTTPS listeners (every address) and Kamailio's (per address) | the listeners step, Kamailio |
//! | `tls`, `tls_defaults`, `certificates` | the TLS table: per service and NIC, the addresses and the certificate presented there (name, fingerprint); per service the default for any other address; once per certificate its subject, expiry and the names it answers for | the TLS tables step, Kamailio's `tls.cfg` |
//! | `kamailio` | `kamailio.cfg` (registrar, ban policy, limits, and calls through the media relay when there is one) and `tls.cfg` ([`kamailio`]) when the daemon drives Kamailio | the Kamailio step |
//! | `media` | `rtpengine.conf` ([`media`]): an interface per address of every NIC where `rtp` is enabled, the `rtp` ports, when the daemon drives the media relay | the media step |
//! | `nics` | the NICs' declared host names and public addresses | the padlock check |
//! | `provisioning` | the SIP/TLS host name and port, the web services URI, the app store links, and the key pins native documents carry | the documents served to phones |
//!
//! [`diff()`] compares two plans section by section ([`PlanDiff`]), and says
//! what a change does to the people on the other side.
//!
//! **Boundary.** No I/O, no clock: the same candidate, facts and
//! [`Context`] always give the same plan, byte for byte. That is what lets
//! the renderers be golden-tested (`test_data/`, refreshed with
//! `UPDATE_EXPECT=1`) and lets the daemon compare the plan of a revision
//! with what is loaded.
//!
//! **Invariant.** Only names that went through the domain's newtypes reach a
//! renderer, so no interface name or port can inject ruleset syntax.

pub mod diff;
pub mod kamailio;
pub mod media;
pub mod nft;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use switchboard_domain::provisioning::ProvisioningSettings;
use switchboard_domain::{
    Candidate, CertName, Diagnostic, Facts, Hostname, NicName, NicSettings, PortRange,
    ResolvedMatrix, ServiceId, Transport, validate,
};

pub use diff::{PlanDiff, diff};

/// The version of the plan document written now. Plans recorded before
/// the sections beyond `matrix`, `ruleset` and `tls` existed read as
/// version 1, those before the media relay (`media`) are version 2; both
/// are completed by [`Plan::upgrade`].
pub const PLAN_VERSION: u32 = 3;

/// What an Update applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    /// The schema version of this document (1 when absent).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The matrix made concrete: for each service, the NICs it is reachable on.
    pub matrix: ResolvedMatrix,
    /// The complete nftables script: one transaction that replaces
    /// switchboard's own table and touches no other.
    pub ruleset: String,
    /// The ports of every service.
    #[serde(default)]
    pub ports: BTreeMap<ServiceId, PortRange>,
    /// The certificate each TLS service presents on each NIC it is enabled
    /// on (NICs on the system only).
    #[serde(default)]
    pub tls: Vec<TlsAssignment>,
    /// The certificate each TLS service presents on any address no NIC
    /// binding covers (loopback, an address added after the Update).
    #[serde(default)]
    pub tls_defaults: BTreeMap<ServiceId, CertRef>,
    /// What the certificates of the TLS table are, once each.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub certificates: BTreeMap<CertName, CertSummary>,
    /// Every socket a service listens on.
    #[serde(default)]
    pub sockets: Vec<Socket>,
    /// The NICs' declared host names and public addresses.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub nics: BTreeMap<NicName, NicSettings>,
    /// What phones are given.
    #[serde(default)]
    pub provisioning: Provisioning,
    /// Kamailio's files, when the daemon drives Kamailio.
    #[serde(default)]
    pub kamailio: Option<kamailio::KamailioConfig>,
    /// The media relay's files (rtpengine), when the daemon drives it
    /// (version 3).
    #[serde(default)]
    pub media: Option<media::MediaConfig>,
}

fn version_one() -> u32 {
    1
}

/// A certificate by name and fingerprint (the fingerprint tells a
/// certificate deleted and imported again under the same name apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertRef {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub cert: CertName,
    /// SHA-256 of the leaf, `AB:CD:...`.
    pub fingerprint: String,
}

/// What a certificate of the plan is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertSummary {
    pub subject: String,
    /// The leaf's notAfter, RFC 3339.
    pub not_after: String,
    /// The names (SNI) and addresses the leaf is valid for.
    pub names: Vec<String>,
}

/// A certificate as a TLS socket presents it: what the diff shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Presented {
    #[serde(flatten)]
    pub cert: CertRef,
    #[serde(flatten)]
    pub summary: CertSummary,
}

/// "Service S on NIC N (addresses A) presents certificate C".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsAssignment {
    pub service: ServiceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub nic: NicName,
    #[serde(flatten)]
    pub cert: CertRef,
    /// The NIC's addresses, where the certificate is presented.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub addresses: Vec<IpAddr>,
}

/// Who serves a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Server {
    /// switchboard's own HTTPS listeners (console, web).
    Switchboard,
    Kamailio,
}

/// A socket a service listens on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Socket {
    pub service: ServiceId,
    pub server: Server,
    pub transport: Transport,
    /// `None`: every address of the appliance (the firewall decides which
    /// NICs reach it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub address: Option<IpAddr>,
    pub port: u16,
}

impl std::fmt::Display for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match (self.service, self.transport) {
            (ServiceId::SipTls, _) => "tls",
            (_, Transport::Udp) => "udp",
            (_, Transport::Tcp) => "tcp",
        };
        match self.address {
            None => write!(f, "{proto}:*:{}", self.port),
            Some(IpAddr::V6(a)) => write!(f, "{proto}:[{a}]:{}", self.port),
            Some(a) => write!(f, "{proto}:{a}:{}", self.port),
        }
    }
}

/// What phones are given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisioning {
    /// `sip_tls_hostname`, `web_uri`, `app_stores`, as the candidate says.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: ProvisioningSettings,
    /// The SIP/TLS port native documents carry.
    #[serde(default)]
    pub sip_tls_port: u16,
    /// The key pins (`sha256/BASE64`) of every certificate `sip-tls`
    /// presents: native documents carry them, and a phone that enforces
    /// its pins accepts only these keys.
    #[serde(default)]
    pub pins: Vec<String>,
    /// Those of `pins` that are next keys made on the appliance, published
    /// ahead of a rotation (RFC 7469's backup pins), not presented yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_pins: Vec<String>,
}

/// What the plan needs to know of the daemon beyond candidate and facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Where Kamailio's files live, when the daemon drives Kamailio.
    pub kamailio: Option<kamailio::Env>,
    /// Where the media relay's control sockets are, when the daemon drives
    /// it (calls are routed only then).
    pub media: Option<media::Env>,
}

/// Why a candidate cannot be planned: its error diagnostics (warnings are
/// included, so the caller can show everything at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub diagnostics: Vec<Diagnostic>,
}

/// Validate `candidate` against `facts` and, when no diagnostic is an
/// error, render the plan. Returns the warnings alongside the plan.
pub fn plan(
    candidate: &Candidate,
    facts: &Facts,
    context: &Context,
) -> Result<(Plan, Vec<Diagnostic>), Rejected> {
    let diagnostics = validate(candidate, facts);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(Rejected { diagnostics });
    }
    Ok((render(candidate, facts, context), diagnostics))
}

/// Render the plan of `candidate` without validating it first: what an
/// Update would apply, for a diff of a candidate that still has errors.
/// TLS cells without a known certificate are left out rather than guessed.
pub fn render(candidate: &Candidate, facts: &Facts, context: &Context) -> Plan {
    let matrix = candidate.matrix.resolve(facts);
    let ruleset = nft::render(candidate, &matrix);
    let tls = tls_assignments(candidate, facts, &matrix);
    let tls_defaults = tls_defaults(candidate, facts);
    let mut plan = Plan {
        version: PLAN_VERSION,
        ruleset,
        ports: ServiceId::all().map(|s| (s, candidate.port(s))).collect(),
        certificates: certificates(facts, &tls, &tls_defaults),
        tls_defaults,
        sockets: Vec::new(),
        nics: candidate.nics.clone(),
        provisioning: provisioning(candidate, facts, &tls),
        kamailio: None,
        media: None,
        tls,
        matrix,
    };
    plan.media = context
        .media
        .as_ref()
        .map(|env| media::render(candidate, &plan.matrix, facts, env));
    plan.kamailio = context.kamailio.as_ref().map(|env| {
        kamailio::render(
            candidate,
            &plan.matrix,
            facts,
            &plan.tls,
            &sip_aliases(candidate, &plan.matrix),
            env,
            plan.media.as_ref(),
        )
    });
    plan.sockets = sockets(&plan);
    plan
}

/// What runs before the first Update: no firewall (every service answers
/// on every NIC: no ruleset), no SIP server, the built-in listeners on the
/// candidate's ports presenting the candidate's default certificates (the
/// first start's, until the administrator binds others).
pub fn factory(candidate: &Candidate, facts: &Facts, context: &Context) -> Plan {
    let factory = Candidate {
        matrix: switchboard_domain::Matrix::Factory,
        bindings: switchboard_domain::Bindings {
            defaults: candidate.bindings.defaults.clone(),
            ..Default::default()
        },
        ports: candidate.ports.clone(),
        ..Candidate::default()
    };
    let mut plan = render(&factory, facts, context);
    plan.ruleset = String::new();
    plan.kamailio = None;
    plan.media = None;
    plan.sockets.retain(|s| s.server == Server::Switchboard);
    plan
}

impl Plan {
    /// Complete a plan recorded by an older version (its `version` says
    /// which) with the sections it lacks, rendered from the candidate it
    /// was recorded with. The recorded sections (matrix, ruleset, TLS
    /// assignments) stay as they were: they are what ran.
    pub fn upgrade(mut self, candidate: &Candidate, facts: &Facts, context: &Context) -> Plan {
        if self.version >= PLAN_VERSION {
            return self;
        }
        let fresh = render(candidate, facts, context);
        if self.version == 2 {
            // Version 2 lacks the media relay only: its section, and the
            // Kamailio script that routes calls through it.
            if fresh.media.is_some() {
                self.kamailio = fresh.kamailio;
            }
            self.media = fresh.media;
            self.version = PLAN_VERSION;
            self.sockets = sockets(&self);
            return self;
        }
        // A version-1 assignment lacks its NIC's addresses: take them from
        // the fresh rendering of the same cell.
        for a in &mut self.tls {
            if let Some(f) = fresh
                .tls
                .iter()
                .find(|f| f.service == a.service && f.nic == a.nic)
            {
                a.addresses = f.addresses.clone();
            }
        }
        self.version = PLAN_VERSION;
        self.ports = fresh.ports;
        self.tls_defaults = fresh.tls_defaults;
        self.certificates = certificates(facts, &self.tls, &self.tls_defaults);
        self.nics = fresh.nics;
        self.kamailio = fresh.kamailio;
        self.media = fresh.media;
        let (pins, next_pins) = pins(candidate, facts, &self.tls);
        self.provisioning = Provisioning {
            pins,
            next_pins,
            ..fresh.provisioning
        };
        self.sockets = sockets(&self);
        self
    }

    /// The plan in words beyond the matrix and the rulesets, one line
    /// each: sockets, TLS table, NIC names, what phones are given, Kamailio.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sockets {
            out.push(format!("listen {s} ({})", s.service));
        }
        let cert = |c: &CertRef| {
            let p = self.presented(c);
            format!(
                "{} (SHA-256 {}, {}, expires {}, for {})",
                c.cert,
                c.fingerprint,
                p.summary.subject,
                p.summary.not_after,
                if p.summary.names.is_empty() {
                    "no name".to_owned()
                } else {
                    p.summary.names.join(", ")
                }
            )
        };
        for (service, c) in &self.tls_defaults {
            out.push(format!("{service} (default): {}", cert(c)));
        }
        for a in &self.tls {
            let addrs: Vec<String> = a.addresses.iter().map(ToString::to_string).collect();
            out.push(format!(
                "{} on {} [{}]: {}",
                a.service,
                a.nic,
                addrs.join(", "),
                cert(&a.cert)
            ));
        }
        for (nic, s) in &self.nics {
            if let Some(h) = &s.hostname {
                out.push(format!("{nic} host name: {h}"));
            }
            if let Some(a) = &s.public_address {
                out.push(format!("{nic} public address: {a}"));
            }
        }
        let p = &self.provisioning;
        let or_none = |v: Option<String>| v.unwrap_or_else(|| "(none)".into());
        out.push(format!(
            "phones: SIP/TLS host name {}, port {}; web services URI {}",
            or_none(
                p.settings
                    .sip_tls_hostname
                    .as_ref()
                    .map(ToString::to_string)
            ),
            p.sip_tls_port,
            or_none(p.settings.web_uri.as_ref().map(ToString::to_string)),
        ));
        for (platform, url) in &p.settings.app_stores {
            out.push(format!("phones: app store page ({platform:?}) {url}").to_lowercase());
        }
        out.push(format!(
            "phones: native documents pin {}",
            if p.pins.is_empty() {
                "no key".to_owned()
            } else {
                p.pins.join(", ")
            }
        ));
        match &self.kamailio {
            Some(k) if !k.is_idle() => out.push(format!(
                "Kamailio: runs, {} TLS profile(s) with {}",
                k.tls_cfg.matches("[server:").count(),
                k.certificates
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(_) => out.push("Kamailio: not running (no SIP service enabled)".into()),
            None => {}
        }
        match &self.media {
            Some(m) if !m.is_idle() => out.push(format!(
                "media relay: runs on {}, ports {}",
                m.interfaces
                    .iter()
                    .map(|i| format!("{} {}", i.nic, i.address))
                    .collect::<Vec<_>>()
                    .join(", "),
                m.ports
            )),
            Some(_) => {
                out.push("media relay: not running (rtp enabled on no NIC with an address)".into())
            }
            None => {}
        }
        out
    }

    /// `c` with what the plan knows of it.
    pub fn presented(&self, c: &CertRef) -> Presented {
        Presented {
            cert: c.clone(),
            summary: self.certificates.get(&c.cert).cloned().unwrap_or_default(),
        }
    }

    /// The sockets of switchboard's own HTTPS listeners.
    pub fn builtin_sockets(&self) -> impl Iterator<Item = &Socket> {
        self.sockets
            .iter()
            .filter(|s| s.server == Server::Switchboard)
    }

    /// The port `service` listens on in this plan.
    pub fn port(&self, service: ServiceId) -> PortRange {
        self.ports
            .get(&service)
            .copied()
            .unwrap_or(service.info().default_ports)
    }
}

/// Validation guarantees every enabled TLS cell of a present NIC has a
/// known certificate; cells without one are left out rather than guessed.
fn tls_assignments(
    candidate: &Candidate,
    facts: &Facts,
    matrix: &ResolvedMatrix,
) -> Vec<TlsAssignment> {
    let mut out = Vec::new();
    for service in ServiceId::all().filter(|s| s.info().tls) {
        for nic in matrix.nics_of(service) {
            let Some(n) = facts.nic(nic) else { continue };
            let Some(cert) = candidate.bindings.resolve(service, nic) else {
                continue;
            };
            let Some(c) = facts.certificates.get(cert) else {
                continue;
            };
            out.push(TlsAssignment {
                service,
                nic: nic.clone(),
                cert: CertRef {
                    cert: cert.clone(),
                    fingerprint: c.fingerprint.clone(),
                },
                addresses: n.addrs.iter().map(|a| a.addr).collect(),
            });
        }
    }
    out
}

fn tls_defaults(candidate: &Candidate, facts: &Facts) -> BTreeMap<ServiceId, CertRef> {
    candidate
        .bindings
        .defaults
        .iter()
        .filter_map(|(service, cert)| {
            let c = facts.certificates.get(cert)?;
            Some((
                *service,
                CertRef {
                    cert: cert.clone(),
                    fingerprint: c.fingerprint.clone(),
                },
            ))
        })
        .collect()
}

/// What the certificates the TLS table names are.
fn certificates(
    facts: &Facts,
    tls: &[TlsAssignment],
    defaults: &BTreeMap<ServiceId, CertRef>,
) -> BTreeMap<CertName, CertSummary> {
    let names: std::collections::BTreeSet<&CertName> = tls
        .iter()
        .map(|a| &a.cert.cert)
        .chain(defaults.values().map(|c| &c.cert))
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let f = facts.certificates.get(name)?;
            Some((
                name.clone(),
                CertSummary {
                    subject: f.subject.clone(),
                    not_after: f.not_after.clone(),
                    names: f.names.clone(),
                },
            ))
        })
        .collect()
}

/// The pins of the keys `sip-tls` presents, in the order of the TLS table,
/// then those of the next keys made on the appliance for the SIP/TLS host
/// name (backup pins, as RFC 7469 describes): a phone activated now keeps
/// accepting the certificate after a planned rotation to one of them.
fn pins(candidate: &Candidate, facts: &Facts, tls: &[TlsAssignment]) -> (Vec<String>, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    let mut next_pins = Vec::new();
    for a in tls.iter().filter(|a| a.service == ServiceId::SipTls) {
        if let Some(c) = facts.certificates.get(&a.cert.cert)
            && !c.pin.is_empty()
            && !out.contains(&c.pin)
        {
            out.push(c.pin.clone());
        }
    }
    if out.is_empty() {
        return (out, next_pins);
    }
    if let Some(host) = &candidate.provisioning.sip_tls_hostname {
        for next in facts.next_keys.iter().filter(|k| k.covers(host.as_str())) {
            if !next.pin.is_empty() && !out.contains(&next.pin) {
                out.push(next.pin.clone());
                next_pins.push(next.pin.clone());
            }
        }
    }
    (out, next_pins)
}

fn provisioning(candidate: &Candidate, facts: &Facts, tls: &[TlsAssignment]) -> Provisioning {
    let (pins, next_pins) = pins(candidate, facts, tls);
    Provisioning {
        settings: candidate.provisioning.clone(),
        sip_tls_port: candidate.port(ServiceId::SipTls).first(),
        pins,
        next_pins,
    }
}

/// The names the SIP/TLS service is known by: the provisioned host name,
/// then the host names of the NICs it is enabled on.
fn sip_aliases(candidate: &Candidate, matrix: &ResolvedMatrix) -> Vec<Hostname> {
    let mut aliases: Vec<Hostname> = candidate
        .provisioning
        .sip_tls_hostname
        .iter()
        .cloned()
        .collect();
    for nic in matrix.nics_of(ServiceId::SipTls) {
        if let Some(h) = candidate.nics.get(nic).and_then(|s| s.hostname.clone())
            && !aliases.contains(&h)
        {
            aliases.push(h);
        }
    }
    aliases
}

fn sockets(plan: &Plan) -> Vec<Socket> {
    let mut out: Vec<Socket> = [
        ServiceId::Console,
        ServiceId::Web,
        ServiceId::Metrics,
        ServiceId::Http,
    ]
    .into_iter()
    .map(|service| Socket {
        service,
        server: Server::Switchboard,
        transport: Transport::Tcp,
        address: None,
        port: plan.port(service).first(),
    })
    .collect();
    if let Some(k) = &plan.kamailio {
        out.extend(k.sockets.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests;
