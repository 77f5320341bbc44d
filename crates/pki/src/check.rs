//! The padlock check, offline: would a phone connecting to `host` get a
//! closed padlock from this bundle? Trust, name, key and validity are
//! checked independently, so one report lists every problem at once.

use std::fmt;
use std::io;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::encoding::{self, split_tlv};
use crate::key::same_public_key;
use crate::{CertBundle, Host, ImportError, PrivateKey};

/// Where Debian's `ca-certificates` package puts the system roots.
pub const DEBIAN_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A certificate expiring in less than this gets a warning.
pub const EXPIRY_WARNING: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The CAs a chain may end at: system roots and CA certificates the
/// administrator added.
#[derive(Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustAnchors({} CAs)", self.anchors.len())
    }
}

impl TrustAnchors {
    /// Administrator-supplied CA certificates (see
    /// [`read_certificates`](crate::read_certificates)); each must be a CA.
    pub fn from_ca_certs(certs: &[CertificateDer<'_>]) -> Result<Self, ImportError> {
        let mut anchors = Vec::with_capacity(certs.len());
        for der in certs {
            let info = crate::CertInfo::from_der(der)?;
            if !info.is_ca {
                return Err(ImportError::NotACa {
                    subject: info.subject,
                });
            }
            let anchor =
                webpki::anchor_from_trusted_cert(der).map_err(|e| ImportError::Malformed {
                    detail: format!("{}: not usable as a trusted CA ({e})", info.subject),
                })?;
            anchors.push(anchor.to_owned());
        }
        Ok(TrustAnchors { anchors })
    }

    /// Every certificate of a PEM bundle that can serve as an anchor;
    /// the others are skipped, as TLS clients do.
    fn from_pem_bundle(pem: &[u8]) -> Result<Self, ImportError> {
        let anchors = encoding::parse_pem(pem)?
            .iter()
            .filter(|block| block.label == "CERTIFICATE")
            .filter_map(|block| {
                let der = CertificateDer::from(block.der.as_slice());
                webpki::anchor_from_trusted_cert(&der)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect();
        Ok(TrustAnchors { anchors })
    }

    pub fn extend(&mut self, other: TrustAnchors) {
        self.anchors.extend(other.anchors);
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Whether an anchor has this subject (the DER contents of a Name).
    fn has_subject(&self, name_contents: &[u8]) -> bool {
        self.anchors
            .iter()
            .any(|a| a.subject.as_ref() == name_contents)
    }
}

/// The system's root CAs, read from [`DEBIAN_CA_BUNDLE`]: the one function
/// of this crate that touches the file system.
pub fn system_roots() -> io::Result<TrustAnchors> {
    let pem = std::fs::read(DEBIAN_CA_BUNDLE)?;
    TrustAnchors::from_pem_bundle(&pem).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The stable codes of the padlock check. Their kebab-case names are part
/// of the API: never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// No path from the leaf to a trusted CA, for a reason other than a missing intermediate.
    ChainUntrusted,
    /// The chain stops at a certificate whose issuer is neither supplied nor trusted.
    MissingIntermediate,
    /// The certificate does not cover the host name or address.
    NameMismatch,
    /// The private key is not the one the certificate certifies.
    KeyMismatch,
    Expired,
    NotYetValid,
    /// Valid for less than [`EXPIRY_WARNING`].
    ExpiresSoon,
    /// The leaf is self-signed: only clients that were given it trust it.
    SelfSigned,
}

impl FindingCode {
    pub fn severity(self) -> Severity {
        match self {
            FindingCode::ChainUntrusted
            | FindingCode::MissingIntermediate
            | FindingCode::NameMismatch
            | FindingCode::KeyMismatch
            | FindingCode::Expired
            | FindingCode::NotYetValid => Severity::Error,
            FindingCode::ExpiresSoon | FindingCode::SelfSigned => Severity::Warning,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::ChainUntrusted => "chain-untrusted",
            FindingCode::MissingIntermediate => "missing-intermediate",
            FindingCode::NameMismatch => "name-mismatch",
            FindingCode::KeyMismatch => "key-mismatch",
            FindingCode::Expired => "expired",
            FindingCode::NotYetValid => "not-yet-valid",
            FindingCode::ExpiresSoon => "expires-soon",
            FindingCode::SelfSigned => "self-signed",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    pub message: String,
    pub hint: String,
}

impl Finding {
    fn new(code: FindingCode, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            code,
            severity: code.severity(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Finding {
    /// Compiler-style: `error[name-mismatch]: message` then `  = hint: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}[{}]: {}\n  = hint: {}",
            self.code, self.message, self.hint
        )
    }
}

/// The outcome of the padlock check: `ok` when no finding is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadlockReport {
    pub ok: bool,
    pub findings: Vec<Finding>,
}

/// Checks `bundle` as a phone connecting to `host` at time `now` would,
/// trusting `anchors`; with `key`, also that it is the leaf's key (the
/// bundle's own key always is: pass a separately loaded key to check it).
pub fn check(
    bundle: &CertBundle,
    key: Option<&PrivateKey>,
    anchors: &TrustAnchors,
    host: &Host,
    now: Timestamp,
) -> PadlockReport {
    let certs: Vec<X509Certificate<'_>> = bundle
        .chain()
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .expect("a CertBundle holds parsed certificates")
                .1
        })
        .collect();
    let info = bundle.info();
    let mut findings = Vec::new();

    findings.extend(trust(bundle, &certs, anchors, now));
    if !info.covers(host) {
        let names: Vec<String> = info
            .dns_names
            .iter()
            .cloned()
            .chain(info.ip_addresses.iter().map(|ip| ip.to_string()))
            .collect();
        let message = match names.is_empty() {
            true => format!(
                "the certificate names nothing in its subjectAltName, so it is valid for no host, not {host} (phones ignore the CN)"
            ),
            false => format!(
                "the certificate is valid for {}, not for {host}",
                names.join(", ")
            ),
        };
        findings.push(Finding::new(
            FindingCode::NameMismatch,
            message,
            format!("use a certificate whose subjectAltName covers {host}, or publish the service under a name it covers"),
        ));
    }
    if let Some(key) = key
        && !same_public_key(key.public_key(), certs[0].public_key().raw)
    {
        findings.push(Finding::new(
            FindingCode::KeyMismatch,
            format!(
                "the private key does not belong to the certificate {}",
                info.subject
            ),
            "use the key made with this certificate's signing request",
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        findings.extend(validity(i, cert, now));
    }
    if info.is_self_signed {
        findings.push(Finding::new(
            FindingCode::SelfSigned,
            "the certificate is self-signed: phones refuse it unless it was installed on them",
            "import a certificate from a CA the phones trust (public, or your own CA installed on them) and bind it",
        ));
    }
    PadlockReport {
        ok: findings.iter().all(|f| f.severity != Severity::Error),
        findings,
    }
}

/// Path validation with webpki, as rustls clients do it, for server
/// authentication. Validity is reported separately, so the path is checked
/// at a moment when every certificate of the chain is valid, if there is one.
fn trust(
    bundle: &CertBundle,
    certs: &[X509Certificate<'_>],
    anchors: &TrustAnchors,
    now: Timestamp,
) -> Option<Finding> {
    let untrusted = |message: String, hint: &str| {
        Some(Finding::new(FindingCode::ChainUntrusted, message, hint))
    };
    let leaf = match webpki::EndEntityCert::try_from(bundle.leaf()) {
        Ok(leaf) => leaf,
        Err(e) => {
            return untrusted(
                format!("TLS clients cannot parse the certificate ({e})"),
                "get the certificate issued again",
            );
        }
    };
    let starts = certs.iter().map(|c| c.validity().not_before.timestamp());
    let ends = certs.iter().map(|c| c.validity().not_after.timestamp());
    let (latest_start, earliest_end) = (starts.max().unwrap_or(0), ends.min().unwrap_or(0));
    let mut at = now.as_second();
    if latest_start <= earliest_end {
        at = at.clamp(latest_start, earliest_end);
    }
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at.max(0).unsigned_abs()));
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let error = leaf
        .verify_for_usage(
            algorithms,
            &anchors.anchors,
            &bundle.chain()[1..],
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .err()?;

    let ca_hint =
        "if it is your own CA, add it with `switchboard cert ca add` and install it on the phones";
    if matches!(error, webpki::Error::UnknownIssuer) {
        for cert in certs {
            let issuer = split_tlv(cert.issuer().as_raw()).map_or(&[][..], |(_, name, _)| name);
            if anchors.has_subject(issuer) {
                return untrusted(
                    format!(
                        "the chain names the trusted CA {} but does not verify against it",
                        cert.issuer()
                    ),
                    "the bundle holds a different CA certificate of the same name: get the current chain from your CA",
                );
            }
        }
        let top = certs.last().expect("a chain has a leaf");
        if top.subject().as_raw() == top.issuer().as_raw() {
            return untrusted(
                format!(
                    "the chain ends at {}, which is not a trusted CA",
                    top.subject()
                ),
                ca_hint,
            );
        }
        return Some(Finding::new(
            FindingCode::MissingIntermediate,
            format!(
                "the chain stops at {}: its issuer {} is neither in the bundle nor a trusted CA",
                top.subject(),
                top.issuer()
            ),
            format!(
                "add the intermediate CA certificate(s) to the bundle: phones do not fetch missing intermediates; {ca_hint}"
            ),
        ));
    }
    let message = match error {
        webpki::Error::InvalidSignatureForPublicKey => {
            "a signature in the chain does not verify: a certificate was not issued by the CA it names".to_owned()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the certificate is not for TLS servers: its extended key usage lacks serverAuth".to_owned()
        }
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            "the certificates of the chain are never all valid at the same time".to_owned()
        }
        other => format!("path validation fails: {other}"),
    };
    untrusted(
        message,
        "get a certificate and chain from your CA that TLS clients accept",
    )
}

/// Expired, not yet valid, or expiring soon: certificate `index` of the chain.
fn validity(index: usize, cert: &X509Certificate<'_>, now: Timestamp) -> Option<Finding> {
    let what = match index {
        0 => "the certificate".to_owned(),
        _ => format!("the CA certificate {}", cert.subject()),
    };
    let renew = match index {
        0 => "renew the certificate and import the new one",
        _ => "get the current intermediate from your CA and import the bundle again",
    };
    let time = |t: &x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::MAX)
    };
    let (not_before, not_after) = (
        time(&cert.validity().not_before),
        time(&cert.validity().not_after),
    );
    if now > not_after {
        Some(Finding::new(
            FindingCode::Expired,
            format!("{what} expired at {not_after}"),
            renew,
        ))
    } else if now < not_before {
        Some(Finding::new(
            FindingCode::NotYetValid,
            format!("{what} is valid only from {not_before}"),
            "check the appliance's clock; otherwise bind a certificate that is valid now",
        ))
    } else if not_after.duration_since(now) < EXPIRY_WARNING {
        let days = not_after.duration_since(now).as_hours() / 24;
        Some(Finding::new(
            FindingCode::ExpiresSoon,
            format!("{what} expires at {not_after}, in {days} days"),
            renew,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{ExtendedKeyUsagePurpose, KeyPair};

    use super::*;
    use crate::import;
    use crate::testpki::{Ca, ip_san, leaf_params, pki, ts, with_validity, without_sans};

    fn host(s: &str) -> Host {
        s.parse().expect("a valid host")
    }

    fn anchors(ca: &Ca) -> TrustAnchors {
        TrustAnchors::from_ca_certs(std::slice::from_ref(&ca.der)).expect("a CA certificate")
    }

    fn bundle(parts: &[String]) -> CertBundle {
        import(parts.concat().as_bytes(), None, None).expect("the bundle imports")
    }

    fn codes(report: &PadlockReport) -> Vec<&'static str> {
        report.findings.iter().map(|f| f.code.as_str()).collect()
    }

    const NOW: &str = "2030-06-01T00:00:00Z";

    #[test]
    fn a_complete_chain_to_a_trusted_root_gives_a_closed_padlock() {
        let pki = pki();
        let full = bundle(&[pki.leaf.pem(), pki.intermediate.pem(), pki.leaf.key_pem()]);
        let report = check(
            &full,
            full.key(),
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(
            report,
            PadlockReport {
                ok: true,
                findings: vec![]
            }
        );
        let by_ip = check(&full, None, &anchors(&pki.root), &host("10.0.0.1"), ts(NOW));
        assert!(by_ip.ok, "{by_ip:?}");
    }

    #[test]
    fn a_chain_without_its_intermediate_reports_the_missing_intermediate() {
        let pki = pki();
        let report = check(
            &bundle(&[pki.leaf.pem()]),
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert!(!report.ok);
        assert_eq!(codes(&report), ["missing-intermediate"]);
        let finding = &report.findings[0];
        assert!(
            finding.message.contains("CN=Test Intermediate CA"),
            "{finding}"
        );
        assert!(
            finding
                .hint
                .contains("phones do not fetch missing intermediates"),
            "{finding}"
        );
    }

    #[test]
    fn a_chain_ending_at_an_unknown_root_is_untrusted() {
        let pki = pki();
        let full = bundle(&[pki.leaf.pem(), pki.intermediate.pem(), pki.root.pem()]);
        let stranger = Ca::root("Some Other Root CA");
        let report = check(
            &full,
            None,
            &anchors(&stranger),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["chain-untrusted"]);
        assert!(
            report.findings[0]
                .message
                .contains("ends at CN=Test Root CA"),
            "{report:?}"
        );
        let trusted = check(
            &full,
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert!(trusted.ok, "a root in the bundle does no harm: {trusted:?}");
    }

    #[test]
    fn a_chain_naming_a_trusted_ca_it_was_not_signed_by_is_untrusted() {
        let pki = pki();
        let impostor = Ca::root("Test Intermediate CA");
        let report = check(
            &bundle(&[pki.leaf.pem()]),
            None,
            &anchors(&impostor),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["chain-untrusted"]);
    }

    #[test]
    fn system_roots_are_read_from_the_debian_bundle() {
        let roots = system_roots().expect("ca-certificates is installed");
        assert!(roots.len() > 50, "{roots:?}");
        let pki = pki();
        let report = check(
            &bundle(&[pki.leaf.pem(), pki.intermediate.pem()]),
            None,
            &roots,
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["missing-intermediate"]);
    }

    #[test]
    fn only_ca_certificates_can_be_trusted_cas() {
        let pki = pki();
        let err = TrustAnchors::from_ca_certs(std::slice::from_ref(&pki.leaf.der))
            .expect_err("a leaf is no CA");
        assert_eq!(
            err,
            ImportError::NotACa {
                subject: "CN=voip.example.test".to_owned()
            }
        );
        let mut both = anchors(&pki.root);
        both.extend(anchors(&pki.intermediate));
        assert_eq!(both.len(), 2);
        let read =
            crate::read_certificates([pki.root.pem(), pki.intermediate.pem()].concat().as_bytes())
                .expect("a CA upload reads");
        assert_eq!(TrustAnchors::from_ca_certs(&read).expect("CAs").len(), 2);
        let with_key =
            crate::read_certificates([pki.root.pem(), pki.leaf.key_pem()].concat().as_bytes());
        assert_eq!(
            with_key.expect_err("a key is refused").code(),
            "not-a-certificate"
        );
    }

    #[test]
    fn names_are_checked_against_dns_and_ip_subject_alt_names_only() {
        let pki = pki();
        let roots = anchors(&pki.root);
        let mut params = leaf_params(&["*.example.test", "voip.example.test"]);
        ip_san(&mut params, "2001:db8::1");
        let leaf = pki
            .intermediate
            .leaf_with(params, KeyPair::generate().expect("key"));
        let wild = bundle(&[leaf.pem(), pki.intermediate.pem()]);
        for (name, covered) in [
            ("voip.example.test", true),
            ("other.example.test", true),
            ("VOIP.Example.Test", true),
            ("example.test", false),
            ("a.b.example.test", false),
            ("voip.example.org", false),
            ("2001:db8::1", true),
            ("[2001:db8::1]", true),
            ("2001:db8::2", false),
            ("10.0.0.1", false),
        ] {
            let report = check(&wild, None, &roots, &host(name), ts(NOW));
            assert_eq!(report.ok, covered, "{name}: {report:?}");
        }
        let report = check(&wild, None, &roots, &host("example.test"), ts(NOW));
        assert_eq!(codes(&report), ["name-mismatch"]);
        assert!(
            report.findings[0]
                .message
                .contains("*.example.test, voip.example.test, 2001:db8::1"),
            "{report:?}"
        );
    }

    #[test]
    fn the_common_name_alone_covers_nothing() {
        let pki = pki();
        let leaf = pki.intermediate.leaf_with(
            without_sans(leaf_params(&["voip.example.test"])),
            KeyPair::generate().expect("key"),
        );
        let report = check(
            &bundle(&[leaf.pem(), pki.intermediate.pem()]),
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["name-mismatch"]);
        assert!(
            report.findings[0].message.contains("phones ignore the CN"),
            "{report:?}"
        );
    }

    #[test]
    fn a_separately_loaded_key_that_does_not_match_is_reported() {
        let pki = pki();
        let full = bundle(&[pki.leaf.pem(), pki.intermediate.pem()]);
        let other = KeyPair::generate().expect("key");
        let key = PrivateKey::parse(other.serialized_der(), None).expect("a key");
        let report = check(
            &full,
            Some(&key),
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["key-mismatch"]);
        let own = PrivateKey::parse(pki.leaf.key.serialized_der(), None).expect("a key");
        assert!(
            check(
                &full,
                Some(&own),
                &anchors(&pki.root),
                &host("voip.example.test"),
                ts(NOW)
            )
            .ok
        );
    }

    #[test]
    fn a_certificate_for_clients_only_is_not_trusted_for_a_server() {
        let pki = pki();
        let mut params = leaf_params(&["voip.example.test"]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = pki
            .intermediate
            .leaf_with(params, KeyPair::generate().expect("key"));
        let report = check(
            &bundle(&[leaf.pem(), pki.intermediate.pem()]),
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["chain-untrusted"]);
        assert!(
            report.findings[0].message.contains("serverAuth"),
            "{report:?}"
        );
    }

    fn expiring_at(not_before: &str, not_after: &str) -> (CertBundle, TrustAnchors) {
        let pki = pki();
        let params = with_validity(
            leaf_params(&["voip.example.test"]),
            ts(not_before),
            ts(not_after),
        );
        let leaf = pki
            .intermediate
            .leaf_with(params, KeyPair::generate().expect("key"));
        (
            bundle(&[leaf.pem(), pki.intermediate.pem()]),
            anchors(&pki.root),
        )
    }

    #[test]
    fn expiry_is_inclusive_of_not_after_and_warned_30_days_ahead() {
        let (b, roots) = expiring_at("2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z");
        let at = |t: &str| check(&b, None, &roots, &host("voip.example.test"), ts(t));
        let cases = [
            ("2031-01-01T00:00:01Z", vec!["expired"], false),
            ("2031-01-01T00:00:00Z", vec!["expires-soon"], true),
            ("2030-12-03T00:00:00Z", vec!["expires-soon"], true),
            ("2030-12-02T00:00:00Z", vec![], true),
            ("2030-12-01T00:00:00Z", vec![], true),
            ("2030-01-01T00:00:00Z", vec![], true),
            ("2029-12-31T23:59:59Z", vec!["not-yet-valid"], false),
        ];
        for (now, expected, ok) in cases {
            let report = at(now);
            assert_eq!(
                (codes(&report), report.ok),
                (expected, ok),
                "at {now}: {report:?}"
            );
        }
        let soon = at("2030-12-03T00:00:00Z");
        assert!(soon.findings[0].message.contains("in 29 days"), "{soon:?}");
        assert_eq!(soon.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn an_expired_intermediate_is_named_and_trust_is_judged_apart_from_time() {
        let root = Ca::root("Test Root CA");
        let key = KeyPair::generate().expect("key");
        let mut params = leaf_params(&[]);
        params.distinguished_name.remove(rcgen::DnType::CommonName);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Short-lived Intermediate");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.extended_key_usages.clear();
        let params = with_validity(
            params,
            ts("2020-01-01T00:00:00Z"),
            ts("2030-01-01T00:00:00Z"),
        );
        let intermediate = root.sign(&params, &key);
        let inter_pem = crate::testpki::pem("CERTIFICATE", &intermediate);
        let issuer = rcgen::Issuer::new(params, key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = leaf_params(&["voip.example.test"])
            .signed_by(&leaf_key, &issuer)
            .expect("signed");
        let b = bundle(&[crate::testpki::pem("CERTIFICATE", leaf.der()), inter_pem]);
        let report = check(
            &b,
            None,
            &anchors(&root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["expired"]);
        assert!(
            report.findings[0]
                .message
                .contains("the CA certificate CN=Short-lived Intermediate expired"),
            "{report:?}"
        );
    }

    #[test]
    fn a_self_signed_certificate_is_flagged_and_untrusted() {
        let name: crate::Hostname = "switchboard.local".parse().expect("host");
        let b = crate::self_signed(&name, &[], ts(NOW));
        let report = check(
            &b,
            b.key(),
            &TrustAnchors::default(),
            &Host::Name(name),
            ts(NOW),
        );
        assert_eq!(codes(&report), ["chain-untrusted", "self-signed"]);
        assert!(!report.ok);
    }

    #[test]
    fn reports_serialize_with_stable_names() {
        let pki = pki();
        let report = check(
            &bundle(&[pki.leaf.pem()]),
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["ok"], false);
        assert_eq!(json["findings"][0]["code"], "missing-intermediate");
        assert_eq!(json["findings"][0]["severity"], "error");
        assert!(
            report.findings[0]
                .to_string()
                .starts_with("error[missing-intermediate]: the chain stops at")
        );
    }
}
