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

/// A bound certificate expiring in less than this is an error of the
/// appliance's status (not of the padlock check: phones still see a closed
/// padlock until the certificate expires).
pub const EXPIRY_ERROR: SignedDuration = SignedDuration::from_hours(7 * 24);

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

    /// The same CAs for a rustls client.
    pub fn root_store(&self) -> rustls::RootCertStore {
        rustls::RootCertStore {
            roots: self.anchors.clone(),
        }
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
    /// A certificate of the bundle is not on the leaf's chain: kept apart,
    /// never sent to clients.
    UnrelatedCertificate,
    /// A certificate sent with the chain is not on the path to a trusted
    /// CA (an alternative a client may ignore), and is expired or is no CA
    /// the path ends at.
    UnusedCertificate,
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
            FindingCode::ExpiresSoon
            | FindingCode::SelfSigned
            | FindingCode::UnrelatedCertificate
            | FindingCode::UnusedCertificate => Severity::Warning,
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
            FindingCode::UnrelatedCertificate => "unrelated-certificate",
            FindingCode::UnusedCertificate => "unused-certificate",
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
///
/// The bundle is a pool, as for a TLS client: when a path to a trusted CA
/// exists now, only its certificates are judged for validity, and the
/// others are warnings. The leaf's public key was found usable when the
/// bundle was made ([`CertBundle::from_parts`]), with or without a key.
pub fn check(
    bundle: &CertBundle,
    key: Option<&PrivateKey>,
    anchors: &TrustAnchors,
    host: &Host,
    now: Timestamp,
) -> PadlockReport {
    let certs: Vec<X509Certificate<'_>> = bundle.chain().iter().map(parse).collect();
    let info = bundle.info();
    let mut findings = Vec::new();

    let (untrusted, path) = trust(bundle, &certs, anchors, now);
    findings.extend(untrusted);
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
    match &path {
        Some(path) => {
            findings.extend(validity(0, &certs[0], now));
            for der in &path.intermediates {
                findings.extend(validity(1, &parse(der), now));
            }
            for (der, cert) in bundle.chain().iter().zip(&certs).skip(1) {
                if path.intermediates.contains(der) {
                    continue;
                }
                let ends_path = split_tlv(cert.subject().as_raw())
                    .is_some_and(|(_, name, _)| name == path.anchor_subject.as_slice())
                    && split_tlv(cert.public_key().raw)
                        .is_some_and(|(_, spki, _)| spki == path.anchor_spki.as_slice());
                let invalid = validity(1, cert, now)
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| f.message);
                match (ends_path, invalid) {
                    // The root the path ends at, sent along: harmless.
                    (true, None) => {}
                    (_, invalid) => findings.push(Finding::new(
                        FindingCode::UnusedCertificate,
                        format!(
                            "the CA certificate {} is sent with the chain but is not on the path to the trusted CA{}",
                            cert.subject(),
                            invalid.map_or_else(String::new, |m| format!(" ({m})"))
                        ),
                        "phones that trust the same CA ignore it; drop it from the bundle unless older phones need it",
                    )),
                }
            }
        }
        None => {
            for (i, cert) in certs.iter().enumerate() {
                findings.extend(validity(i, cert, now));
            }
        }
    }
    for der in bundle.unused() {
        findings.push(Finding::new(
            FindingCode::UnrelatedCertificate,
            format!(
                "the certificate {} is not on the chain of {}: it is ignored and not sent to clients",
                parse(der).subject(),
                info.subject
            ),
            "remove it from the bundle; a bundle needs only the server certificate and its intermediates",
        ));
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

fn parse<'a>(der: &'a CertificateDer<'static>) -> X509Certificate<'a> {
    X509Certificate::from_der(der)
        .expect("a CertBundle holds parsed certificates")
        .1
}

/// The path a TLS client would build now: the intermediates it uses
/// (certificates of the bundle) and the trusted CA it ends at.
struct VerifiedPath {
    intermediates: Vec<CertificateDer<'static>>,
    /// The anchor's subject and SubjectPublicKeyInfo, DER contents.
    anchor_subject: Vec<u8>,
    anchor_spki: Vec<u8>,
}

/// Path validation with webpki, as rustls clients do it, for server
/// authentication, with every certificate of the bundle as a candidate.
/// First at `now`: the path found is returned. Otherwise validity is
/// reported separately, so the chain is checked again at a moment when
/// every certificate of it is valid, if there is one, to tell why.
fn trust(
    bundle: &CertBundle,
    certs: &[X509Certificate<'_>],
    anchors: &TrustAnchors,
    now: Timestamp,
) -> (Option<Finding>, Option<VerifiedPath>) {
    let untrusted = |message: String, hint: &str| {
        Some(Finding::new(FindingCode::ChainUntrusted, message, hint))
    };
    let leaf = match webpki::EndEntityCert::try_from(bundle.leaf()) {
        Ok(leaf) => leaf,
        Err(e) => {
            return (
                untrusted(
                    format!("TLS clients cannot parse the certificate ({e})"),
                    "get the certificate issued again",
                ),
                None,
            );
        }
    };
    let pool: Vec<CertificateDer<'static>> = bundle.chain()[1..]
        .iter()
        .chain(bundle.unused())
        .cloned()
        .collect();
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let verify = |at: i64| {
        let time = UnixTime::since_unix_epoch(Duration::from_secs(at.max(0).unsigned_abs()));
        leaf.verify_for_usage(
            algorithms,
            &anchors.anchors,
            &pool,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|path| VerifiedPath {
            intermediates: path
                .intermediate_certificates()
                .map(|c| c.der().into_owned())
                .collect(),
            anchor_subject: path.anchor().subject.to_vec(),
            anchor_spki: path.anchor().subject_public_key_info.to_vec(),
        })
    };
    if let Ok(path) = verify(now.as_second()) {
        return (None, Some(path));
    }
    let starts = certs.iter().map(|c| c.validity().not_before.timestamp());
    let ends = certs.iter().map(|c| c.validity().not_after.timestamp());
    let (latest_start, earliest_end) = (starts.max().unwrap_or(0), ends.min().unwrap_or(0));
    let mut at = now.as_second();
    if latest_start <= earliest_end {
        at = at.clamp(latest_start, earliest_end);
    }
    let error = match verify(at) {
        Ok(_) => return (None, None),
        Err(error) => error,
    };
    (why_untrusted(error, certs, anchors), None)
}

/// The finding for a path validation error.
fn why_untrusted(
    error: webpki::Error,
    certs: &[X509Certificate<'_>],
    anchors: &TrustAnchors,
) -> Option<Finding> {
    let untrusted = |message: String, hint: &str| {
        Some(Finding::new(FindingCode::ChainUntrusted, message, hint))
    };
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
        webpki::Error::BadDerTime => {
            "a validity date of the chain is not in the form TLS clients require (DER: whole seconds, `Z`)".to_owned()
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
    // TLS clients judge validity in whole seconds (webpki and OpenSSL
    // alike): the second named by notAfter is still valid, and a fraction
    // of a second in a certificate's date (which DER forbids) is ignored.
    let (not_before, not_after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    let shown = |t: i64| Timestamp::from_second(t).unwrap_or(Timestamp::MAX);
    let second = now.as_second();
    let (not_before, not_after, now) = (shown(not_before), shown(not_after), shown(second));
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
    fn an_extra_certificate_off_the_chain_is_a_warning_not_a_refusal() {
        let pki = pki();
        let stranger = Ca::root("Unrelated Root CA");
        let other_leaf = stranger.intermediate("Unrelated Intermediate");
        let b = bundle(&[
            pki.leaf.pem(),
            stranger.pem(),
            pki.intermediate.pem(),
            other_leaf.pem(),
        ]);
        let report = check(
            &b,
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert!(report.ok, "{report:?}");
        assert_eq!(
            codes(&report),
            ["unrelated-certificate", "unrelated-certificate"]
        );
        assert!(
            report.findings[0]
                .message
                .contains("CN=Unrelated Root CA is not on the chain of CN=voip.example.test"),
            "{report:?}"
        );
        assert_eq!(report.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn an_expired_cross_signed_root_off_the_chosen_path_does_not_fail_the_check() {
        // As Let's Encrypt's chain did: the leaf, its intermediate, and the
        // trusted root cross-signed by an older root, since expired.
        let pki = pki();
        let old_root = Ca::root("Old Root CA");
        let cross = pki.root.cross_signed_by(
            &old_root,
            ts("2020-01-01T00:00:00Z"),
            ts("2025-01-01T00:00:00Z"),
        );
        let cross_pem = crate::testpki::pem("CERTIFICATE", &cross);
        let b = bundle(&[pki.leaf.pem(), pki.intermediate.pem(), cross_pem]);
        assert_eq!(b.chain().len(), 3, "the cross-signed root is sent along");
        let report = check(
            &b,
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert!(report.ok, "{report:?}");
        assert_eq!(codes(&report), ["unused-certificate"]);
        assert!(
            report.findings[0].message.contains("CN=Test Root CA")
                && report.findings[0].message.contains("expired at 2025-01-01"),
            "{report:?}"
        );
        // Trusting only the old root, the cross-signed one is on the path,
        // and its expiry is an error.
        let old = check(
            &b,
            None,
            &anchors(&old_root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert_eq!(codes(&old), ["expired"], "{old:?}");
    }

    #[test]
    fn a_fraction_of_a_second_does_not_expire_a_certificate() {
        let (b, roots) = expiring_at("2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z");
        let at = |t: &str| codes(&check(&b, None, &roots, &host("voip.example.test"), ts(t)));
        assert_eq!(at("2031-01-01T00:00:00.005Z"), ["expires-soon"]);
        assert_eq!(at("2031-01-01T00:00:00.999999Z"), ["expires-soon"]);
        assert_eq!(at("2031-01-01T00:00:01Z"), ["expired"]);
        assert_eq!(at("2029-12-31T23:59:59.995Z"), ["not-yet-valid"]);

        // A notAfter written with a fraction (DER forbids it, TLS clients
        // refuse the chain) is judged by its second, not expired 5 ms on.
        let pki = pki();
        let leaf = pki.intermediate.leaf_with(
            with_validity(
                leaf_params(&["voip.example.test"]),
                ts("2030-01-01T00:00:00Z"),
                ts("2031-01-01T00:00:00Z"),
            ),
            KeyPair::generate().expect("key"),
        );
        let fractional = pki
            .intermediate
            .resign_with_not_after(&leaf.der, "20310101000000.5Z");
        let b = bundle(&[
            crate::testpki::pem("CERTIFICATE", &fractional),
            pki.intermediate.pem(),
        ]);
        let roots = anchors(&pki.root);
        let report = check(
            &b,
            None,
            &roots,
            &host("voip.example.test"),
            ts("2031-01-01T00:00:00.005Z"),
        );
        assert_eq!(
            codes(&report),
            ["chain-untrusted", "expires-soon"],
            "{report:?}"
        );
        assert!(
            report.findings[0].message.contains("whole seconds"),
            "{report:?}"
        );
        let later = check(
            &b,
            None,
            &roots,
            &host("voip.example.test"),
            ts("2031-01-01T00:00:01Z"),
        );
        assert_eq!(codes(&later), ["chain-untrusted", "expired"], "{later:?}");
    }

    #[test]
    fn a_leaf_with_an_unusable_public_key_never_gets_a_padlock_even_without_a_key() {
        let pki = pki();
        let mut modulus = [0xc5u8; 256];
        modulus[255] = 0x02;
        let mut odd = modulus;
        odd[255] = 0x03;
        let mut off_curve = [0x11u8; 32];
        off_curve[0] = 0x01;
        let cases = [
            (
                crate::testpki::RawPublicKey::rsa(&modulus, &[1, 0, 1]),
                Some("an even modulus"),
            ),
            (
                crate::testpki::RawPublicKey::rsa(&odd, &[1]),
                Some("the public exponent 1"),
            ),
            (
                crate::testpki::RawPublicKey::rsa(&odd, &[4]),
                Some("the even public exponent 4"),
            ),
            (
                crate::testpki::RawPublicKey::p256(off_curve, off_curve),
                Some("whose point is not on the curve"),
            ),
            (crate::testpki::RawPublicKey::rsa(&odd, &[1, 0, 1]), None),
        ];
        for (key, refused) in cases {
            let der = pki.intermediate.certify_raw(&["voip.example.test"], &key);
            let text = [
                crate::testpki::pem("CERTIFICATE", &der),
                pki.intermediate.pem(),
            ]
            .concat();
            let result = import(text.as_bytes(), None, None);
            match refused {
                Some(what) => {
                    let err = result.expect_err("an unusable key is refused");
                    assert_eq!(err.code(), "unusable-key", "{err}");
                    assert!(err.to_string().contains(what), "{err}");
                }
                None => {
                    let b = result.expect("an odd modulus with e = 65537 is usable");
                    let report = check(
                        &b,
                        None,
                        &anchors(&pki.root),
                        &host("voip.example.test"),
                        ts(NOW),
                    );
                    assert!(report.ok, "{report:?}");
                }
            }
        }
        // A real P-256 key's point is on the curve (checked by arithmetic).
        assert!(
            bundle(&[pki.leaf.pem(), pki.intermediate.pem()])
                .chain()
                .len()
                == 2
        );
    }

    #[test]
    fn a_byte_order_mark_before_the_first_pem_line_keeps_the_leaf() {
        let pki = pki();
        let text = format!(
            "\u{feff}{}\u{feff}{}",
            pki.leaf.pem(),
            pki.intermediate.pem()
        );
        let b = import(text.as_bytes(), None, None).expect("a BOM is accepted");
        assert_eq!(b.leaf(), &pki.leaf.der);
        assert_eq!(b.chain().len(), 2);
        let report = check(
            &b,
            None,
            &anchors(&pki.root),
            &host("voip.example.test"),
            ts(NOW),
        );
        assert!(report.ok, "{report:?}");
        // Anything else before -----BEGIN on its line is refused, not skipped.
        let glued = format!("junk{}{}", pki.leaf.pem(), pki.intermediate.pem());
        let err = import(glued.as_bytes(), None, None).expect_err("refused");
        assert_eq!(err.code(), "malformed", "{err}");
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
