//! Validation: the candidate against the facts, as a list of diagnostics.

use std::collections::BTreeSet;

use crate::candidate::Candidate;
use crate::catalog::{ServiceId, Transport};
use crate::diagnostic::{Diagnostic, DiagnosticCode as Code};
use crate::matrix::Matrix;
use crate::matrix::ResolvedMatrix;
use crate::nic::{Facts, NicName};
use crate::tls::Validity;

/// Every problem of `candidate` on a system described by `facts`, errors
/// first, in a stable order.
pub fn validate(candidate: &Candidate, facts: &Facts) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let resolved = candidate.matrix.resolve(facts);
    let known: BTreeSet<&NicName> = match &candidate.matrix {
        Matrix::Factory => BTreeSet::new(),
        Matrix::Explicit { known_nics, .. } => known_nics.iter().collect(),
    };

    for nic in resolved.nics() {
        let services: Vec<&str> = ServiceId::all()
            .filter(|s| resolved.allows(*s, nic))
            .map(ServiceId::as_str)
            .collect();
        match facts.nic(nic) {
            None if !known.contains(nic) => out.push(Diagnostic::new(
                Code::UnknownNic,
                None,
                Some(nic),
                format!("the matrix enables {} on {nic}, which is not a NIC of this system", services.join(", ")),
                format!("check the NIC name with `switchboard nics`, or deny these services on {nic}"),
            )),
            None => out.push(Diagnostic::new(
                Code::NicGone,
                None,
                Some(nic),
                format!("{nic} is no longer on the system; {} stay enabled on it", services.join(", ")),
                format!("if {nic} was renamed or removed for good, move its services to another NIC; if it comes back, its services come back"),
            )),
            Some(n) if !n.configured() => out.push(Diagnostic::new(
                Code::NicWithoutAddress,
                None,
                Some(nic),
                format!("{nic} has no address, so nobody can reach {} there", services.join(", ")),
                format!("check the network configuration of {nic} before relying on it, or deny these services on {nic}"),
            )),
            Some(_) => {}
        }
    }

    let console_reachable = resolved
        .nics_of(ServiceId::Console)
        .iter()
        .any(|n| facts.nic(n).is_some_and(|n| n.configured()));
    if !console_reachable {
        out.push(Diagnostic::new(
            Code::ConsoleUnreachable,
            Some(ServiceId::Console),
            None,
            "the management console would be reachable on no NIC that has an address: this Update would lock every administrator out",
            "allow the console on at least one configured NIC, e.g. `switchboard matrix allow console lan0`",
        ));
    }

    port_conflicts(candidate, &resolved, &mut out);
    tls(candidate, facts, &resolved, &mut out);
    pins(candidate, facts, &resolved, &mut out);
    orphans(candidate, facts, &resolved, &mut out);

    for nic in candidate.matrix.new_nics(facts) {
        out.push(Diagnostic::new(
            Code::NicNew,
            None,
            Some(nic),
            format!("{nic} appeared after the last Update and gets no service"),
            format!("assign services to it with `switchboard matrix allow SERVICE {nic}`; the next Update marks it as seen"),
        ));
    }

    for raw in &facts.unsupported_nics {
        let mut d = Diagnostic::new(
            Code::NicNameUnsupported,
            None,
            None,
            format!(
                "interface {raw:?} has a name switchboard cannot manage; the firewall gives it no service"
            ),
            "rename the interface using only letters, digits, '_', '.' and '-' (e.g. with a udev rule)",
        );
        d.nic = Some(raw.escape_debug().to_string());
        out.push(d);
    }

    let sip_enabled = [ServiceId::SipTls, ServiceId::SipUdp]
        .iter()
        .any(|s| !resolved.nics_of(*s).is_empty());
    let everyone = candidate
        .bans
        .trusted
        .iter()
        .filter(|n| n.prefix() == 0)
        .count();
    if sip_enabled && (!candidate.bans.enabled || everyone > 0) {
        out.push(Diagnostic::new(
            Code::BansOff,
            None,
            None,
            if candidate.bans.enabled {
                "a trusted network covers every IPv4 or IPv6 address: those are never banned for guessing SIP passwords".to_owned()
            } else {
                "the ban policy is off: addresses that guess SIP passwords or flood Kamailio are never banned".to_owned()
            },
            "turn it on with `switchboard bans policy --enabled true`, and trust only your own networks (`--trusted`)",
        ));
    }

    out.sort_by_key(|d| d.severity);
    out
}

/// Every TLS service enabled on a NIC of the system presents a usable
/// certificate there.
fn tls(candidate: &Candidate, facts: &Facts, resolved: &ResolvedMatrix, out: &mut Vec<Diagnostic>) {
    let mut self_signed = BTreeSet::new();
    for service in ServiceId::all().filter(|s| s.info().tls) {
        for nic in resolved
            .nics_of(service)
            .iter()
            .filter(|n| facts.nic(n).is_some())
        {
            let Some(cert) = candidate.bindings.resolve(service, nic) else {
                out.push(Diagnostic::new(
                    Code::TlsUnbound,
                    Some(service),
                    Some(nic),
                    format!("{service} is enabled on {nic}, but no certificate is bound to present there"),
                    format!("bind one with `switchboard cert bind {service} CERT` (or `--nic {nic}` for this NIC only), or deny {service} on {nic}"),
                ));
                continue;
            };
            let unusable = |why: &str, hint: &str| {
                Diagnostic::new(
                    Code::CertUnusable,
                    Some(service),
                    Some(nic),
                    format!("{service} on {nic} is bound to certificate {cert}, which {why}"),
                    hint.to_owned(),
                )
            };
            match facts.certificates.get(cert) {
                None => out.push(Diagnostic::new(
                    Code::CertUnknown,
                    Some(service),
                    Some(nic),
                    format!("{service} on {nic} is bound to certificate {cert}, which is not in the store"),
                    "list the certificates with `switchboard cert list` and bind one of them",
                )),
                Some(c) if !c.has_key => out.push(unusable(
                    "has no private key",
                    "import the certificate again together with its key",
                )),
                Some(c) if c.validity != Validity::Valid => {
                    let why = match c.validity {
                        Validity::Expired => "has expired",
                        _ => "is not valid yet",
                    };
                    if candidate.bindings.accept_invalid.contains(cert) {
                        out.push(Diagnostic::new(
                            Code::CertInvalidAccepted,
                            Some(service),
                            Some(nic),
                            format!("{service} on {nic} presents certificate {cert}, which {why}: clients will refuse it"),
                            "import a valid certificate and bind it",
                        ));
                    } else {
                        out.push(unusable(why, "import a valid certificate and bind it, or bind this one with --force if you really mean to"));
                    }
                }
                Some(c) => {
                    if c.self_signed {
                        self_signed.insert(cert);
                    }
                }
            }
        }
    }
    for cert in self_signed {
        out.push(Diagnostic::new(
            Code::CertSelfSigned,
            None,
            None,
            format!(
                "certificate {cert} is self-signed: browsers and phones show a warning unless they were given it"
            ),
            "import a certificate from a CA the clients trust and bind it",
        ));
    }
}

/// A certificate `sip-tls` would present must be for a key that the native
/// phones already activated pin, or those that enforce their pins refuse
/// it: a warning naming them (a rotation may be meant, with the phones
/// activated again), with the way to rotate without breaking any.
fn pins(
    candidate: &Candidate,
    facts: &Facts,
    resolved: &ResolvedMatrix,
    out: &mut Vec<Diagnostic>,
) {
    let certs: BTreeSet<&crate::tls::CertName> = resolved
        .nics_of(ServiceId::SipTls)
        .iter()
        .filter(|n| facts.nic(n).is_some())
        .filter_map(|nic| candidate.bindings.resolve(ServiceId::SipTls, nic))
        .collect();
    for cert in certs {
        let Some(c) = facts.certificates.get(cert).filter(|c| !c.pin.is_empty()) else {
            continue;
        };
        let broken: Vec<&str> = facts
            .pinned_phones
            .iter()
            .filter(|p| !p.pins.is_empty() && !p.pins.contains(&c.pin))
            .flat_map(|p| p.usernames.iter().map(String::as_str))
            .collect();
        if broken.is_empty() {
            continue;
        }
        const SHOWN: usize = 5;
        let mut shown = broken[..broken.len().min(SHOWN)].join(", ");
        if broken.len() > SHOWN {
            shown.push_str(&format!(" and {} more", broken.len() - SHOWN));
        }
        let host = candidate
            .provisioning
            .sip_tls_hostname
            .as_ref()
            .map_or_else(|| "HOST".to_owned(), ToString::to_string);
        out.push(Diagnostic::new(
            Code::PinsBreakPhones,
            Some(ServiceId::SipTls),
            None,
            format!(
                "sip-tls would present certificate {cert}, whose key {} native phone(s) activated earlier do not pin ({shown}): those that enforce their pins will refuse it",
                broken.len()
            ),
            format!(
                "activate these phones again after the Update (`switchboard activate USER`), or keep a certificate for a key they pin. \
                 To rotate without breaking any: make the next key ahead (`switchboard cert request NAME --dns {host}`) and Update, \
                 so that its pin is published next to the current one; phones activated from then on accept both"
            ),
        ));
    }
}

/// The names phones were given must keep pointing at a NIC where their
/// service answers: the SIP/TLS host name at one with `sip-tls`, the web
/// services URI's host at one with `web`. A NIC is known by the host name
/// declared for it (`nic set --hostname`).
fn orphans(
    candidate: &Candidate,
    facts: &Facts,
    resolved: &ResolvedMatrix,
    out: &mut Vec<Diagnostic>,
) {
    let p = &candidate.provisioning;
    let web_host = p.web_uri.as_ref().map(|u| u.host().to_string());
    let names = [
        (
            ServiceId::SipTls,
            p.sip_tls_hostname.as_ref().map(|h| h.to_string()),
            "SIP/TLS host name",
        ),
        (ServiceId::Web, web_host, "web services URI"),
    ];
    for (service, name, what) in names {
        let Some(name) = name else { continue };
        let enabled_somewhere = resolved
            .nics_of(service)
            .iter()
            .any(|n| facts.nic(n).is_some());
        let named: Vec<&NicName> = candidate
            .nics
            .iter()
            .filter(|(_, s)| s.hostname.as_ref().is_some_and(|h| h.as_str() == name))
            .map(|(n, _)| n)
            .collect();
        for nic in named.iter().filter(|n| !resolved.allows(service, n)) {
            out.push(Diagnostic::new(
                Code::ProvisioningOrphaned,
                Some(service),
                Some(nic),
                format!("the {what} {name} is {nic}'s name, but {service} is not enabled on {nic}: phones already activated will not reach it"),
                format!("allow {service} on {nic} again, or change the provisioning settings and activate the phones again"),
            ));
        }
        if named.is_empty() && !enabled_somewhere {
            out.push(Diagnostic::new(
                Code::ProvisioningOrphaned,
                Some(service),
                None,
                format!("the {what} is {name}, but {service} is enabled on no NIC: phones already activated will not reach it"),
                format!("allow {service} on the NIC that {name} points at"),
            ));
        }
    }
}

fn port_conflicts(candidate: &Candidate, resolved: &ResolvedMatrix, out: &mut Vec<Diagnostic>) {
    let services: Vec<ServiceId> = ServiceId::all().collect();
    for (i, &a) in services.iter().enumerate() {
        for &b in &services[i + 1..] {
            let (ia, ib) = (a.info(), b.info());
            if ia.transport != ib.transport || !candidate.port(a).overlaps(candidate.port(b)) {
                continue;
            }
            if (a, b) == (ServiceId::Console, ServiceId::Web) {
                // switchboard serves both itself, each on every address:
                // one port cannot be both, whatever NICs they are on.
                out.push(Diagnostic::new(
                    Code::PortConflict,
                    Some(b),
                    None,
                    format!(
                        "{a} and {b} both use tcp/{}: switchboard listens for each on every address, so they need different ports, even on different NICs",
                        candidate.port(b)
                    ),
                    format!("give {b} another port with `switchboard port {b} PORT`"),
                ));
                continue;
            }
            for nic in resolved.nics_of(a).intersection(resolved.nics_of(b)) {
                let proto = match ia.transport {
                    Transport::Tcp => "tcp",
                    Transport::Udp => "udp",
                };
                out.push(Diagnostic::new(
                    Code::PortConflict,
                    Some(b),
                    Some(nic),
                    format!(
                        "{a} ({proto}/{}) and {b} ({proto}/{}) both listen on {nic}",
                        candidate.port(a),
                        candidate.port(b)
                    ),
                    format!("give {b} another port with `switchboard port {b} PORT`, or keep the two services on different NICs"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{candidate, facts, name, nic};

    fn codes(diags: &[Diagnostic]) -> Vec<(String, Option<String>, Option<String>)> {
        diags
            .iter()
            .map(|d| {
                (
                    d.code.to_string(),
                    d.service.map(|s| s.to_string()),
                    d.nic.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_clean_factory_candidate_has_nothing_to_say() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        assert_eq!(validate(&candidate(), &f), vec![]);
    }

    #[test]
    fn services_on_a_nic_without_address_are_warned_about() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("dmz0", None)]);
        let mut c = candidate();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("dmz0"), &f)
            .expect("preset");
        let d = validate(&c, &f);
        assert_eq!(
            codes(&d),
            [("nic-without-address".into(), None, Some("dmz0".into()))]
        );
        assert!(d[0].message.contains("sip-tls, web, rtp"), "{}", d[0]);
        assert!(d.iter().all(|d| !d.is_error()));
        assert!(
            d[0].hint.contains("deny these services on dmz0"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn console_on_no_configured_nic_is_an_error() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("dmz0", None)]);
        let mut c = candidate();
        c.matrix
            .set(ServiceId::Console, &name("lan0"), false, &f)
            .expect("edit");
        let d = validate(&c, &f);
        assert!(d[0].is_error());
        assert_eq!(d[0].code, Code::ConsoleUnreachable);
        assert!(
            d[0].to_string().starts_with("error[console-unreachable]: "),
            "{}",
            d[0]
        );
    }

    #[test]
    fn gone_new_and_unknown_nics_are_reported() {
        let mut f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        let mut c = candidate();
        c.matrix.settle(&f);
        f.nics.retain(|n| n.name.as_str() != "wan0");
        f.nics.push(nic("eth5", Some("192.0.2.9")));
        f.unsupported_nics.push("bad\"name".into());
        if let Matrix::Explicit { cells, .. } = &mut c.matrix {
            cells
                .entry(ServiceId::Ssh)
                .or_default()
                .insert(name("ghost0"));
        }
        let got = codes(&validate(&c, &f));
        assert_eq!(
            got,
            [
                ("unknown-nic".into(), None, Some("ghost0".into())),
                ("nic-gone".into(), None, Some("wan0".into())),
                ("nic-new".into(), None, Some("eth5".into())),
                (
                    "nic-name-unsupported".into(),
                    None,
                    Some("bad\\\"name".into())
                ),
            ]
        );
    }

    #[test]
    fn overlapping_ports_on_a_shared_nic_conflict() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        let mut c = candidate();
        c.set_port(ServiceId::Ssh, "5061".parse().expect("port"));
        let d = validate(&c, &f);
        assert_eq!(
            codes(&d),
            [
                (
                    "port-conflict".into(),
                    Some("sip-tls".into()),
                    Some("lan0".into())
                ),
                (
                    "port-conflict".into(),
                    Some("sip-tls".into()),
                    Some("wan0".into())
                ),
            ]
        );
        // Same port on different NICs is fine (SSH on LAN, SIP/TLS on WAN).
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        assert_eq!(validate(&c, &f), vec![]);
        // But not for the console and the web services: switchboard
        // listens for each on every address.
        c.set_port(ServiceId::Console, "443".parse().expect("port"));
        assert_eq!(
            codes(&validate(&c, &f)),
            [("port-conflict".into(), Some("web".into()), None)]
        );
        c.set_port(ServiceId::Console, "8443".parse().expect("port"));
        // RTP's range overlapping SIP/UDP's port conflicts; TCP vs UDP does not.
        c.set_port(ServiceId::SipUdp, "10000".parse().expect("port"));
        c.set_port(ServiceId::SipTls, "10000".parse().expect("port"));
        c.matrix
            .set(ServiceId::SipUdp, &name("wan0"), true, &f)
            .expect("edit");
        assert_eq!(
            codes(&validate(&c, &f)),
            [(
                "port-conflict".into(),
                Some("rtp".into()),
                Some("wan0".into())
            )]
        );
    }

    #[test]
    fn every_tls_service_needs_a_usable_certificate_on_every_nic() {
        use crate::testing::cert;
        use crate::tls::Validity;
        let mut f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        let mut c = Candidate::default();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        let got = codes(&validate(&c, &f));
        assert_eq!(
            got,
            [
                (
                    "tls-unbound".into(),
                    Some("console".into()),
                    Some("lan0".into())
                ),
                (
                    "tls-unbound".into(),
                    Some("sip-tls".into()),
                    Some("wan0".into())
                ),
                (
                    "tls-unbound".into(),
                    Some("web".into()),
                    Some("wan0".into())
                ),
            ]
        );
        c.bindings
            .bind(ServiceId::Console, None, cert("nokey"))
            .expect("bind");
        c.bindings
            .bind(ServiceId::SipTls, None, cert("gone"))
            .expect("bind");
        c.bindings
            .bind(ServiceId::Web, Some(&name("wan0")), cert("old"))
            .expect("bind");
        let mut nokey = f.certificates[&cert(crate::testing::CERT)].clone();
        nokey.has_key = false;
        let mut old = nokey.clone();
        old.has_key = true;
        old.validity = Validity::Expired;
        f.certificates.insert(cert("nokey"), nokey);
        f.certificates.insert(cert("old"), old);
        let d = validate(&c, &f);
        assert_eq!(
            codes(&d),
            [
                (
                    "cert-unusable".into(),
                    Some("console".into()),
                    Some("lan0".into())
                ),
                (
                    "cert-unknown".into(),
                    Some("sip-tls".into()),
                    Some("wan0".into())
                ),
                (
                    "cert-unusable".into(),
                    Some("web".into()),
                    Some("wan0".into())
                ),
            ]
        );
        assert!(
            d[0].message.contains("no private key") && d[2].message.contains("expired"),
            "{d:?}"
        );
        c.bindings.accept_invalid.insert(cert("old"));
        c.bindings
            .bind(ServiceId::SipTls, None, cert(crate::testing::CERT))
            .expect("bind");
        f.certificates
            .get_mut(&cert(crate::testing::CERT))
            .expect("cert")
            .self_signed = true;
        let d = validate(&c, &f);
        assert_eq!(
            codes(&d),
            [
                (
                    "cert-unusable".into(),
                    Some("console".into()),
                    Some("lan0".into())
                ),
                (
                    "cert-invalid-accepted".into(),
                    Some("web".into()),
                    Some("wan0".into())
                ),
                ("cert-self-signed".into(), None, None),
            ]
        );
    }

    #[test]
    fn moving_a_provisioned_service_off_its_nic_warns_about_orphaned_phones() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        let mut c = candidate();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        c.provisioning.sip_tls_hostname = Some("voip.example.test".parse().expect("host"));
        c.provisioning.web_uri = Some("https://voip.example.test".parse().expect("uri"));
        c.nics.insert(
            name("wan0"),
            crate::tls::NicSettings {
                hostname: Some("voip.example.test".parse().expect("host")),
                ..Default::default()
            },
        );
        assert_eq!(validate(&c, &f), vec![]);
        c.matrix
            .set(ServiceId::SipTls, &name("wan0"), false, &f)
            .expect("deny");
        assert_eq!(
            codes(&validate(&c, &f)),
            [(
                "provisioning-orphaned".into(),
                Some("sip-tls".into()),
                Some("wan0".into())
            )]
        );
        c.nics.clear();
        c.matrix
            .set(ServiceId::Web, &name("wan0"), false, &f)
            .expect("deny");
        let got = codes(&validate(&c, &f));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .all(|(code, _, nic)| code == "provisioning-orphaned" && nic.is_none())
        );
    }

    #[test]
    fn bans_off_or_trusting_everyone_is_a_warning_when_sip_is_enabled() {
        let f = facts(&[("lan0", Some("192.0.2.1"))]);
        let mut c = Candidate::default();
        let codes =
            |c: &Candidate| -> Vec<Code> { validate(c, &f).iter().map(|d| d.code).collect() };
        assert!(!codes(&c).contains(&Code::BansOff));
        c.bans.trusted = vec!["0.0.0.0/0".parse().expect("net")];
        assert!(codes(&c).contains(&Code::BansOff));
        c.bans.trusted.clear();
        c.bans.enabled = false;
        let d = validate(&c, &f);
        let off = d.iter().find(|d| d.code == Code::BansOff).expect("warned");
        assert!(!off.is_error() && off.message.contains("off"), "{off:?}");
        for s in [ServiceId::SipTls, ServiceId::SipUdp] {
            c.matrix.set(s, &name("lan0"), false, &f).expect("deny");
        }
        assert!(
            !codes(&c).contains(&Code::BansOff),
            "no SIP service: nothing to say"
        );
    }
}
