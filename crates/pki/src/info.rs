//! What a certificate says, for people and scripts: [`CertInfo`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::key::{KeyType, classify_public_key};
use crate::name::dns_name_covers;
use crate::{Host, ImportError};

/// The SHA-256 digest of a certificate's DER, shown as 32 uppercase hex
/// bytes joined by colons (as `openssl x509 -fingerprint -sha256` does).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint([u8; 32]);

/// Why a string is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fingerprint {input:?}: expected 32 hex bytes, with or without colons")]
pub struct InvalidFingerprint {
    input: String,
}

impl Fingerprint {
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Fingerprint(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        let nibble = |b: u8| char::from(b).to_digit(16);
        let mut out = [0u8; 32];
        if hex.len() != 64 {
            return Err(InvalidFingerprint {
                input: s.chars().take(100).collect(),
            });
        }
        for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
                _ => {
                    return Err(InvalidFingerprint {
                        input: s.chars().take(100).collect(),
                    });
                }
            }
        }
        Ok(Fingerprint(out))
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidFingerprint;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

/// A summary of one certificate. Field names are part of the JSON API:
/// never rename one, only add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertInfo {
    /// The subject distinguished name, RFC 4514 style (`CN=voip.example.test, O=Example`).
    pub subject: String,
    pub issuer: String,
    /// The serial number as colon-separated hex bytes.
    pub serial: String,
    /// DNS names of the subjectAltName extension, as written (wildcards included).
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// SHA-256 of the DER, colon-separated uppercase hex.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub fingerprint: Fingerprint,
    /// The public key; `None` when it is a key switchboard cannot serve
    /// with (which only a CA certificate may have).
    pub key: Option<KeyType>,
    /// Issued by itself (subject = issuer, and its own key verifies its signature).
    pub is_self_signed: bool,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// The DER SubjectPublicKeyInfo of a certificate: what a key pin hashes
/// (it survives a renewal with the same key).
pub fn subject_public_key_info(der: &CertificateDer<'_>) -> Result<Vec<u8>, ImportError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| ImportError::Malformed {
        detail: format!("a certificate does not parse ({e})"),
    })?;
    Ok(cert.public_key().raw.to_vec())
}

impl CertInfo {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, ImportError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| ImportError::Malformed {
            detail: format!("a certificate does not parse ({e})"),
        })?;
        Self::from_parsed(&cert, der)
    }

    pub(crate) fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, ImportError> {
        let malformed = |detail: &str| ImportError::Malformed {
            detail: format!("{}: {detail}", cert.subject()),
        };
        let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
        let san = cert
            .subject_alternative_name()
            .map_err(|_| malformed("its subjectAltName extension is invalid"))?;
        for name in san.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
                    Ok(v4) => ip_addresses.push(IpAddr::from(v4)),
                    Err(_) => ip_addresses
                        .push(IpAddr::from(<[u8; 16]>::try_from(*bytes).map_err(
                            |_| malformed("an IP address SAN is neither IPv4 nor IPv6"),
                        )?)),
                },
                _ => {}
            }
        }
        let time = |t: &x509_parser::time::ASN1Time| {
            Timestamp::from_second(t.timestamp())
                .map_err(|_| malformed("its validity is outside the years -9999 to 9999"))
        };
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            dns_names,
            ip_addresses,
            not_before: time(&validity.not_before)?,
            not_after: time(&validity.not_after)?,
            fingerprint: Fingerprint::of(der),
            key: classify_public_key(cert.public_key().raw).ok(),
            is_self_signed: cert.subject().as_raw() == cert.issuer().as_raw()
                && cert.verify_signature(None).is_ok(),
            is_ca: cert.is_ca(),
        })
    }

    /// Whether the certificate is valid for `host`: a DNS name in the
    /// subjectAltName covers it (RFC 6125: see [`Hostname`](crate::Hostname)
    /// for wildcards), or for an IP address, an IP address SAN equals it.
    /// The subject's CN is not looked at: phones ignore it.
    pub fn covers(&self, host: &Host) -> bool {
        match host {
            Host::Name(name) => self.dns_names.iter().any(|p| dns_name_covers(p, name)),
            Host::Ip(ip) => self
                .ip_addresses
                .iter()
                .any(|a| a.to_canonical() == ip.to_canonical()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_as_colon_separated_uppercase_hex_and_parse_back() {
        let fp = Fingerprint::of(b"hello");
        let shown = fp.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert!(shown.starts_with("2C:F2:4D:BA:5F:B0:A3:0E"), "{shown}");
        assert_eq!(shown.parse(), Ok(fp));
        assert_eq!(shown.replace(':', "").to_lowercase().parse(), Ok(fp));
        assert!("2C:F2".parse::<Fingerprint>().is_err());
        assert!(shown.replace('2', "g").parse::<Fingerprint>().is_err());
        let json = serde_json::to_string(&fp).expect("serializes");
        assert_eq!(json, format!("\"{shown}\""));
    }
}
