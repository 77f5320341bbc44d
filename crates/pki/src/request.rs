//! Keys and certificate signing requests made on the appliance, so that the
//! private key never travels: [`make_request`] makes a key and a PKCS#10
//! request for it; the CA's answer is attached to the key with
//! [`CertBundle::with_key`](crate::CertBundle::with_key).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rsa::pkcs8::EncodePrivateKey as _;
use serde::{Deserialize, Serialize};

use crate::{Hostname, ImportError, PrivateKey};

/// The most names one request certifies.
pub const MAX_REQUEST_NAMES: usize = 100;

/// The keys `cert request` makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RequestKeyType {
    /// ECDSA on P-256: small, fast, what every current phone verifies.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA with a 3072-bit modulus, for CAs or clients that want RSA.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
}

impl RequestKeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKeyType::EcdsaP256 => "ecdsa-p256",
            RequestKeyType::Rsa3072 => "rsa-3072",
        }
    }
}

impl fmt::Display for RequestKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKeyType {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(RequestKeyType::EcdsaP256),
            "rsa-3072" => Ok(RequestKeyType::Rsa3072),
            _ => Err(RequestError::UnknownKeyType {
                given: s.chars().take(40).collect(),
            }),
        }
    }
}

/// A name a request asks to be certified: a DNS name (`*.` allowed as the
/// left-most label) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RequestName {
    Dns { wildcard: bool, name: Hostname },
    Ip(IpAddr),
}

impl fmt::Display for RequestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestName::Dns { wildcard, name } => {
                write!(f, "{}{name}", if *wildcard { "*." } else { "" })
            }
            RequestName::Ip(ip) => ip.fmt(f),
        }
    }
}

impl From<RequestName> for String {
    fn from(n: RequestName) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for RequestName {
    type Error = RequestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RequestName::dns(&s)
    }
}

impl RequestName {
    /// A DNS name, `*.NAME` for a wildcard (the name under it needs two
    /// labels at least, as phones require).
    pub fn dns(s: &str) -> Result<Self, RequestError> {
        let invalid = |reason: String| RequestError::InvalidName {
            given: s.chars().take(80).collect(),
            reason,
        };
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name: Hostname = rest.parse().map_err(|e| invalid(format!("{e}")))?;
        if wildcard && !name.as_str().contains('.') {
            return Err(invalid(
                "a wildcard needs two labels under it (*.example.test)".to_owned(),
            ));
        }
        Ok(RequestName::Dns { wildcard, name })
    }
}

/// Why no request was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("a request must name at least one DNS name or IP address")]
    NoNames,
    #[error("a request names at most {MAX_REQUEST_NAMES} names, not {found}")]
    TooManyNames { found: usize },
    #[error("invalid name {given:?} for a request: {reason}")]
    InvalidName { given: String, reason: String },
    #[error("unknown key type {given:?}: switchboard makes ecdsa-p256 or rsa-3072 keys")]
    UnknownKeyType { given: String },
    #[error("the key or request could not be made: {detail}")]
    Failed { detail: String },
}

impl RequestError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NoNames => "request-without-names",
            RequestError::TooManyNames { .. } => "too-many-names",
            RequestError::InvalidName { .. } => "invalid-name",
            RequestError::UnknownKeyType { .. } => "unknown-key-type",
            RequestError::Failed { .. } => "request-failed",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            RequestError::NoNames => {
                "give the names phones connect to: --dns voip.example.test, --ip 192.0.2.10"
            }
            RequestError::TooManyNames { .. } => {
                "request one certificate per service or host, with the names it is reached by"
            }
            RequestError::InvalidName { .. } => {
                "give DNS names (letters, digits, '-', dots; `*.` for a wildcard) with --dns and addresses with --ip"
            }
            RequestError::UnknownKeyType { .. } => "use --key-type ecdsa-p256 or rsa-3072",
            RequestError::Failed { .. } => {
                "try again; if it persists, report it with the daemon's log"
            }
        }
    }
}

/// A key made on the appliance and its request. `Debug` shows no key.
#[derive(Debug)]
pub struct KeyRequest {
    pub key: PrivateKey,
    /// The PKCS#10 request, PEM: public, to give to the CA.
    pub csr_pem: String,
}

/// Makes a key of `key_type` and a PKCS#10 request, signed with it, for
/// `names` (subjectAltNames, in order; the first is also the subject's
/// common name). RSA key generation takes a moment: run it off the async
/// workers.
pub fn make_request(
    key_type: RequestKeyType,
    names: &[RequestName],
) -> Result<KeyRequest, RequestError> {
    if names.is_empty() {
        return Err(RequestError::NoNames);
    }
    if names.len() > MAX_REQUEST_NAMES {
        return Err(RequestError::TooManyNames { found: names.len() });
    }
    let failed = |detail: String| RequestError::Failed { detail };
    let pkcs8 = match key_type {
        RequestKeyType::EcdsaP256 => zeroize::Zeroizing::new(
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| failed(format!("ECDSA key generation ({e})")))?
                .serialized_der()
                .to_vec(),
        ),
        RequestKeyType::Rsa3072 => {
            // rsa's default: a 3072-bit modulus, exponent 65537, from the
            // operating system's random number generator.
            const _: () = assert!(rsa::PrivateKey::DEFAULT_BITS == 3072);
            let key = <rsa::PrivateKey as rsa::Generate>::try_generate()
                .map_err(|e| failed(format!("RSA key generation ({e})")))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| failed(format!("RSA key encoding ({e})")))?;
            zeroize::Zeroizing::new(der.as_bytes().to_vec())
        }
    };
    let algorithm = match key_type {
        RequestKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        RequestKeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = PrivateKey::parse(&pkcs8, None)
        .map_err(|e: ImportError| failed(format!("the new key does not load ({e})")))?;
    let signer = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), algorithm)
        .map_err(|e| failed(format!("the new key cannot sign ({e})")))?;

    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].to_string());
    for name in names {
        params.subject_alt_names.push(match name {
            RequestName::Dns { .. } => SanType::DnsName(
                name.to_string()
                    .try_into()
                    .map_err(|e| failed(format!("{name}: {e}")))?,
            ),
            RequestName::Ip(ip) => SanType::IpAddress(*ip),
        });
    }
    let csr = params
        .serialize_request(&signer)
        .map_err(|e| failed(format!("the request cannot be written ({e})")))?;
    let mut csr_pem = String::new();
    crate::encoding::write_pem(&mut csr_pem, "CERTIFICATE REQUEST", csr.der());
    Ok(KeyRequest { key, csr_pem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpki::{openssl, pki, read, tempdir, write};

    fn names(list: &[&str]) -> Vec<RequestName> {
        list.iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => RequestName::Ip(ip),
                Err(_) => RequestName::dns(n).expect("a valid name"),
            })
            .collect()
    }

    /// Signs `csr.pem` in `dir` with the test intermediate, as a CA would
    /// (`openssl x509 -req`, the request's extensions copied).
    fn sign_with_openssl(dir: &std::path::Path, pki: &crate::testpki::Pki) {
        write(dir, "ca.pem", pki.intermediate.pem());
        write(
            dir,
            "ca.key",
            crate::testpki::pem("PRIVATE KEY", pki.intermediate.key_der()),
        );
        crate::testpki::sign_request(dir, "csr.pem", "ca.pem", "ca.key", 30, "signed.pem");
    }

    #[test]
    fn a_request_is_a_pkcs10_that_openssl_verifies_and_a_ca_signs_for_the_key() {
        for key_type in [RequestKeyType::EcdsaP256, RequestKeyType::Rsa3072] {
            let started = std::time::Instant::now();
            let made = make_request(
                key_type,
                &names(&["voip.example.test", "*.example.test", "192.0.2.10"]),
            )
            .expect("a request");
            eprintln!("{key_type}: key and request in {:?}", started.elapsed());
            assert!(
                made.csr_pem
                    .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
            );
            assert!(!made.csr_pem.contains("PRIVATE"), "no key in a request");
            assert!(
                !format!("{made:?}").contains("PRIVATE"),
                "Debug shows no key"
            );
            let dir = tempdir();
            let d = dir.path();
            write(d, "csr.pem", &made.csr_pem);
            openssl(
                d,
                &[
                    "req", "-in", "csr.pem", "-verify", "-noout", "-text", "-out", "csr.txt",
                ],
            );
            let text = String::from_utf8(read(d, "csr.txt")).expect("text");
            assert!(
                text.contains("DNS:voip.example.test, DNS:*.example.test, IP Address:192.0.2.10"),
                "{text}"
            );
            assert!(
                text.contains("CN=voip.example.test") || text.contains("CN = voip.example.test"),
                "{text}"
            );
            let expected = match key_type {
                RequestKeyType::EcdsaP256 => "prime256v1",
                RequestKeyType::Rsa3072 => "(3072 bit)",
            };
            assert!(text.contains(expected), "{key_type}: {text}");

            let pki = pki();
            sign_with_openssl(d, &pki);
            let signed = [read(d, "signed.pem"), pki.intermediate.pem().into_bytes()].concat();
            let bundle =
                crate::import(&signed, None, None).expect("the signed certificate imports");
            assert!(bundle.key().is_none());
            let key_type_seen = made.key.key_type();
            let bundle = bundle
                .with_key(made.key)
                .expect("the certificate is for the key");
            assert_eq!(bundle.key().map(PrivateKey::key_type), Some(key_type_seen));
            assert_eq!(
                bundle.info().dns_names,
                ["voip.example.test", "*.example.test"]
            );
        }
    }

    #[test]
    fn a_certificate_for_another_key_is_refused_when_attached() {
        let pki = pki();
        let made =
            make_request(RequestKeyType::EcdsaP256, &names(&["voip.example.test"])).expect("made");
        let bundle = crate::import(
            [pki.leaf.pem(), pki.intermediate.pem()].concat().as_bytes(),
            None,
            None,
        )
        .expect("imports");
        let err = bundle.with_key(made.key).expect_err("another key");
        assert_eq!(err.code(), "key-mismatch");
        assert!(err.to_string().contains("CN=voip.example.test"), "{err}");
    }

    #[test]
    fn bad_names_and_key_types_are_refused_before_any_key_is_made() {
        assert_eq!(
            make_request(RequestKeyType::EcdsaP256, &[]).expect_err("none"),
            RequestError::NoNames
        );
        let many: Vec<RequestName> = (0..=MAX_REQUEST_NAMES)
            .map(|i| RequestName::dns(&format!("h{i}.example.test")).expect("valid"))
            .collect();
        assert_eq!(
            make_request(RequestKeyType::EcdsaP256, &many)
                .expect_err("too many")
                .code(),
            "too-many-names"
        );
        for bad in [
            "",
            "*",
            "*.test",
            "a..b",
            "-a.test",
            "a b.test",
            "*.*.example.test",
            "voip.example.test\n",
            "\u{e9}.test",
            &"a".repeat(300),
        ] {
            let err = RequestName::dns(bad).expect_err(bad);
            assert_eq!(err.code(), "invalid-name", "{bad:?}");
            assert!(err.to_string().len() < 400, "the message is bounded: {err}");
        }
        for bad in ["rsa-1024", "ed25519", "", "RSA-3072"] {
            assert_eq!(
                bad.parse::<RequestKeyType>().expect_err(bad).code(),
                "unknown-key-type"
            );
        }
        assert_eq!("rsa-3072".parse(), Ok(RequestKeyType::Rsa3072));
        assert_eq!(
            serde_json::to_value(RequestKeyType::EcdsaP256).expect("json"),
            "ecdsa-p256"
        );
    }
}
