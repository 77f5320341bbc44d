//! Reading uploads (PEM, DER, PKCS#12; keys plain or encrypted) and
//! assembling what they hold into a [`CertBundle`].

use std::collections::{HashMap, HashSet};
use std::fmt;

use p12_keystore::Pkcs12Archive;
use pkcs8::pkcs5;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivateSec1KeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::encoding::{self, Frame, child_tags, split_tlv};
use crate::key::{classify_public_key, same_public_key};
use crate::{CertInfo, ImportError, PrivateKey};

/// The largest upload accepted, checked before anything is parsed. A
/// certificate with its chain and key is a few kilobytes.
pub const MAX_UPLOAD: usize = 256 * 1024;

/// The most certificates one import holds: a leaf, a few intermediates and
/// a root. Counted before any is parsed.
pub const MAX_CERTIFICATES: usize = 20;

/// The most CA certificates one `cert ca add` upload holds.
pub const MAX_CA_CERTIFICATES: usize = 200;

/// The most private keys one import holds: the leaf's key, in the bundle
/// and perhaps again in the key file.
pub const MAX_KEYS: usize = 2;

/// The most encrypted keys one import decrypts: each costs up to
/// [`MAX_PBKDF2_ITERATIONS`](crate::MAX_PBKDF2_ITERATIONS) of PBKDF2.
pub const MAX_ENCRYPTED_KEYS: usize = 1;

/// How many objects of each kind an upload may still hold, spent as they
/// are counted, before they are parsed or decrypted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    certs: usize,
    keys: usize,
    encrypted_keys: usize,
    max_certs: usize,
}

impl Budget {
    /// The limits of one import: [`MAX_CERTIFICATES`], [`MAX_KEYS`],
    /// [`MAX_ENCRYPTED_KEYS`].
    pub(crate) fn import() -> Self {
        Budget::with_max_certs(MAX_CERTIFICATES)
    }

    /// The limits of one upload of CA certificates.
    fn ca_upload() -> Self {
        Budget::with_max_certs(MAX_CA_CERTIFICATES)
    }

    fn with_max_certs(max_certs: usize) -> Self {
        Budget {
            certs: 0,
            keys: 0,
            encrypted_keys: 0,
            max_certs,
        }
    }

    /// Counts what an upload holds; refuses when a limit is passed.
    fn spend(&mut self, census: Census) -> Result<(), ImportError> {
        self.certs += census.certs;
        self.keys += census.keys;
        self.encrypted_keys += census.encrypted_keys;
        if self.certs > self.max_certs {
            return Err(ImportError::TooManyCertificates {
                found: self.certs,
                max: self.max_certs,
            });
        }
        if self.keys > MAX_KEYS {
            return Err(ImportError::TooManyKeys {
                found: self.keys,
                max: MAX_KEYS,
            });
        }
        if self.encrypted_keys > MAX_ENCRYPTED_KEYS {
            return Err(ImportError::too_many_encrypted_keys(self.encrypted_keys));
        }
        Ok(())
    }
}

/// How many objects of each kind an upload holds, as far as can be told
/// without parsing or decrypting them. A PKCS#12 file counts as nothing
/// here: its contents are counted once opened.
#[derive(Debug, Clone, Copy, Default)]
struct Census {
    certs: usize,
    keys: usize,
    encrypted_keys: usize,
}

/// Counts the certificates and keys of an upload: PEM blocks by label, a
/// DER upload by its shape. What does not look like either counts as
/// nothing (and is refused when read).
fn census(input: &[u8]) -> Result<Census, ImportError> {
    if encoding::is_pem(input) {
        let blocks = encoding::parse_pem(input)?;
        let count =
            |wanted: fn(&str) -> bool| blocks.iter().filter(|b| wanted(b.label.as_str())).count();
        return Ok(Census {
            certs: count(is_certificate_label),
            keys: count(is_key_label),
            encrypted_keys: count(|label| label == "ENCRYPTED PRIVATE KEY"),
        });
    }
    let single = |certs, keys, encrypted_keys| Census {
        certs,
        keys,
        encrypted_keys,
    };
    Ok(if !matches!(encoding::frame(input), Frame::Whole) {
        Census::default()
    } else if X509Certificate::from_der(input).is_ok() {
        single(1, 0, 0)
    } else if is_pkcs12(input) {
        Census::default()
    } else if PrivateKeyDer::try_from(input).is_ok() {
        single(0, 1, 0)
    } else if child_tags(input) == [0x30, 0x04] {
        single(0, 1, 1)
    } else {
        Census::default()
    })
}

fn is_certificate_label(label: &str) -> bool {
    matches!(label, "CERTIFICATE" | "X509 CERTIFICATE")
}

fn is_key_label(label: &str) -> bool {
    matches!(
        label,
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
    )
}

/// What one upload holds.
#[derive(Default)]
pub(crate) struct Objects {
    pub certs: Vec<CertificateDer<'static>>,
    pub keys: Vec<PrivateKey>,
    /// The first thing found that is neither, described for a message.
    pub other: Option<String>,
}

/// Reads every certificate and private key in one upload, whatever its
/// format; `password` opens a PKCS#12 file or an encrypted PKCS#8 key.
/// What the upload holds is counted against `budget` before anything is
/// parsed or decrypted.
pub(crate) fn read(
    input: &[u8],
    password: Option<&str>,
    budget: &mut Budget,
) -> Result<Objects, ImportError> {
    if input.len() > MAX_UPLOAD {
        return Err(ImportError::Oversize { size: input.len() });
    }
    budget.spend(census(input)?)?;
    let mut objects = Objects::default();
    if encoding::is_pem(input) {
        let blocks = encoding::parse_pem(input)?;
        for block in blocks {
            let der = block.der.as_slice();
            match block.label.as_str() {
                label if is_certificate_label(label) => objects.certs.push(certificate(der)?),
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" if block.legacy_encrypted => {
                    return Err(ImportError::UnsupportedEncryption {
                        what: "private key",
                    });
                }
                "PRIVATE KEY" => objects
                    .keys
                    .push(plain_key(PrivateKeyDer::Pkcs8(der.into()))?),
                "RSA PRIVATE KEY" => objects
                    .keys
                    .push(plain_key(PrivatePkcs1KeyDer::from(der).into())?),
                "EC PRIVATE KEY" => objects
                    .keys
                    .push(plain_key(PrivateSec1KeyDer::from(der).into())?),
                "ENCRYPTED PRIVATE KEY" => {
                    check_frame(der, "an encrypted private key")?;
                    objects.keys.push(PrivateKey::decrypt(der, password)?);
                }
                // `openssl ecparam -genkey` writes the curve before the key.
                "EC PARAMETERS" => {}
                label => {
                    objects
                        .other
                        .get_or_insert_with(|| describe_pem_label(label));
                }
            }
        }
        return Ok(objects);
    }
    match encoding::frame(input) {
        Frame::Whole => {}
        Frame::Truncated => {
            return Err(ImportError::Truncated {
                inside: "a DER structure",
            });
        }
        Frame::Trailing => {
            return Err(ImportError::Malformed {
                detail: "bytes follow the end of the DER structure".to_owned(),
            });
        }
        Frame::NotDer => return Err(ImportError::Unrecognized),
    }
    if X509Certificate::from_der(input).is_ok() {
        objects.certs.push(CertificateDer::from(input.to_vec()));
    } else if is_pkcs12(input) {
        read_pkcs12(input, password, &mut objects)?;
        budget.spend(Census {
            certs: objects.certs.len(),
            keys: objects.keys.len(),
            encrypted_keys: 0,
        })?;
    } else if let Ok(key) = PrivateKeyDer::try_from(input) {
        objects.keys.push(PrivateKey::from_der(&key)?);
    } else if child_tags(input) == [0x30, 0x04] {
        // EncryptedPrivateKeyInfo { SEQUENCE algorithm, OCTET STRING }
        objects.keys.push(PrivateKey::decrypt(input, password)?);
    } else if child_tags(input) == [0x30, 0x30, 0x03] {
        // Certificate { SEQUENCE tbs, SEQUENCE algorithm, BIT STRING }, damaged.
        certificate(input)?;
    } else {
        objects.other =
            Some("a DER structure that is not a certificate, PKCS#12 file or key".to_owned());
    }
    Ok(objects)
}

fn check_frame(der: &[u8], what: &'static str) -> Result<(), ImportError> {
    match encoding::frame(der) {
        Frame::Whole => Ok(()),
        Frame::Truncated => Err(ImportError::Truncated { inside: what }),
        Frame::Trailing | Frame::NotDer => Err(ImportError::Malformed {
            detail: format!("{what} is not a single DER structure"),
        }),
    }
}

fn certificate(der: &[u8]) -> Result<CertificateDer<'static>, ImportError> {
    check_frame(der, "a certificate")?;
    X509Certificate::from_der(der).map_err(|e| ImportError::Malformed {
        detail: format!("a certificate does not parse ({e})"),
    })?;
    Ok(CertificateDer::from(der.to_vec()))
}

fn plain_key(key: PrivateKeyDer<'_>) -> Result<PrivateKey, ImportError> {
    let der = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
        PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der(),
        PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
        _ => &[],
    };
    check_frame(der, "a private key")?;
    PrivateKey::from_der(&key)
}

fn describe_pem_label(label: &str) -> String {
    match label {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
            "a certificate signing request".to_owned()
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" => "a public key".to_owned(),
        "X509 CRL" => "a certificate revocation list".to_owned(),
        "PKCS7" => "a PKCS#7 structure".to_owned(),
        other => format!("a PEM block labelled {other:?}"),
    }
}

/// A PFX is `SEQUENCE { INTEGER 3, ... }`.
fn is_pkcs12(der: &[u8]) -> bool {
    split_tlv(der)
        .and_then(|(_, fields, _)| split_tlv(fields))
        .is_some_and(|(tag, version, _)| tag == 0x02 && version == [3])
}

fn read_pkcs12(
    der: &[u8],
    password: Option<&str>,
    objects: &mut Objects,
) -> Result<(), ImportError> {
    use p12_keystore::error::Error;
    const WHAT: &str = "PKCS#12 file";
    let wrong = || match password {
        Some(_) => ImportError::WrongPkcs12Password,
        None => ImportError::PasswordRequired { what: WHAT },
    };
    // Without a password, try the empty one (`openssl pkcs12 -passout pass:`).
    let archive = Pkcs12Archive::from_pkcs12(der, password.unwrap_or("")).map_err(|e| match e {
        // The MAC fails on a wrong password; without a MAC, decryption does.
        Error::MacError(_) | Error::UnpadError => wrong(),
        Error::Pkcs5Error(msg) if msg == pkcs5::Error::DecryptFailed.to_string() => wrong(),
        Error::Pkcs5Error(_)
        | Error::UnsupportedEncryptionScheme
        | Error::UnsupportedMacAlgorithm
        | Error::InvalidParameters => ImportError::UnsupportedEncryption { what: WHAT },
        other => ImportError::Malformed {
            detail: format!("the PKCS#12 file does not parse ({other})"),
        },
    })?;
    for bag in archive.keys {
        objects
            .keys
            .push(plain_key(PrivateKeyDer::Pkcs8(bag.key.as_der().into()))?);
    }
    for bag in archive.certs {
        objects.certs.push(certificate(bag.cert.as_der())?);
    }
    Ok(())
}

/// Imports an upload: `bundle` (PEM with certificates and keys in any
/// order, a DER certificate, or a PKCS#12 file) and optionally a separate
/// `key_file`; `password` opens a PKCS#12 file or an encrypted key. Both
/// inputs are size-checked before anything is parsed.
pub fn import(
    bundle: &[u8],
    key_file: Option<&[u8]>,
    password: Option<&str>,
) -> Result<CertBundle, ImportError> {
    if let Some(size) = [Some(bundle), key_file]
        .into_iter()
        .flatten()
        .map(<[u8]>::len)
        .find(|&size| size > MAX_UPLOAD)
    {
        return Err(ImportError::Oversize { size });
    }
    // Both inputs are counted before either is parsed or decrypted.
    let mut counted = Budget::import();
    for input in [Some(bundle), key_file].into_iter().flatten() {
        counted.spend(census(input)?)?;
    }
    let mut budget = Budget::import();
    let mut objects = read(bundle, password, &mut budget)?;
    if let Some(key_file) = key_file {
        let extra = read(key_file, password, &mut budget)?;
        if extra.keys.is_empty() {
            return Err(ImportError::NoKey);
        }
        objects.certs.extend(extra.certs);
        objects.keys.extend(extra.keys);
    }
    if objects.certs.is_empty() {
        return Err(match objects.other {
            _ if !objects.keys.is_empty() => ImportError::NoCertificate,
            Some(found) => ImportError::NotACertificate { found },
            None => ImportError::Unrecognized,
        });
    }
    let mut keys = objects.keys;
    let key = keys.pop();
    if let Some(key) = &key
        && keys
            .iter()
            .any(|other| other.public_key() != key.public_key())
    {
        return Err(ImportError::SeveralKeys);
    }
    CertBundle::from_parts(objects.certs, key)
}

/// Reads an upload of CA certificates (PEM or DER), for
/// [`TrustAnchors::from_ca_certs`](crate::TrustAnchors::from_ca_certs).
/// Private keys have no business there and are refused.
pub fn read_certificates(upload: &[u8]) -> Result<Vec<CertificateDer<'static>>, ImportError> {
    let objects = read(upload, None, &mut Budget::ca_upload())?;
    if !objects.keys.is_empty() {
        return Err(ImportError::NotACertificate {
            found: "a private key".to_owned(),
        });
    }
    if objects.certs.is_empty() {
        return Err(match objects.other {
            Some(found) => ImportError::NotACertificate { found },
            None => ImportError::Unrecognized,
        });
    }
    Ok(objects.certs)
}

/// A server certificate with its chain and, usually, its private key.
///
/// Whoever holds one holds: a chain ordered leaf first, each certificate
/// followed by its issuer (of several candidates, the one that signed it and
/// is valid longest); the other certificates of the upload apart; a leaf that is not a CA and has a key switchboard
/// can serve with; a key, if any, that matches the leaf. `Debug` never shows
/// the key.
#[derive(Clone)]
pub struct CertBundle {
    chain: Vec<CertificateDer<'static>>,
    /// Certificates of the upload that are not on the leaf's chain.
    unused: Vec<CertificateDer<'static>>,
    key: Option<PrivateKey>,
    info: CertInfo,
}

impl CertBundle {
    /// Assembles certificates in any order (duplicates dropped) and an
    /// optional key into a bundle, refusing what cannot be served.
    pub fn from_parts(
        certs: Vec<CertificateDer<'static>>,
        key: Option<PrivateKey>,
    ) -> Result<Self, ImportError> {
        if certs.len() > MAX_CERTIFICATES {
            return Err(ImportError::TooManyCertificates {
                found: certs.len(),
                max: MAX_CERTIFICATES,
            });
        }
        let mut seen = HashSet::with_capacity(certs.len());
        let certs: Vec<CertificateDer<'static>> = certs
            .into_iter()
            .filter(|cert| seen.insert(cert.to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(ImportError::NoCertificate);
        }
        let parsed = certs
            .iter()
            .map(|der| {
                X509Certificate::from_der(der)
                    .map(|(_, c)| c)
                    .map_err(|e| ImportError::Malformed {
                        detail: format!("a certificate does not parse ({e})"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = IssuerIndex::new(&parsed);
        let subject = |i: usize| parsed[i].subject().to_string();

        let leaves: Vec<usize> = (0..parsed.len()).filter(|&i| !parsed[i].is_ca()).collect();
        let leaf = match leaves[..] {
            [leaf] => leaf,
            [] => {
                // Name the CA that issued none of the others: the intended leaf.
                let bottom = (0..parsed.len())
                    .find(|&i| !index.issued_another(i))
                    .unwrap_or(0);
                return Err(ImportError::CaAsLeaf {
                    subject: subject(bottom),
                });
            }
            _ => {
                return Err(ImportError::SeveralLeaves {
                    subjects: leaves.into_iter().map(subject).collect(),
                });
            }
        };

        let mut order = vec![leaf];
        let mut placed = vec![false; parsed.len()];
        placed[leaf] = true;
        while let Some(&current) = order.last() {
            if index.is_self_issued(current) && parsed[current].verify_signature(None).is_ok() {
                // A root: nothing above it belongs to the chain.
                break;
            }
            let candidates: Vec<usize> =
                index.issuers_of(current).filter(|&j| !placed[j]).collect();
            // A signature is checked only for candidates the index found.
            let signs = |&&j: &&usize| {
                parsed[current]
                    .verify_signature(Some(parsed[j].public_key()))
                    .is_ok()
            };
            // Of several that sign (a renewed intermediate with the same key,
            // a cross-signed CA), the one valid longest.
            let not_after = |&&j: &&usize| parsed[j].validity().not_after.timestamp();
            let Some(&next) = candidates
                .iter()
                .filter(signs)
                .max_by_key(not_after)
                .or(candidates.first())
            else {
                break;
            };
            placed[next] = true;
            order.push(next);
        }
        // A bundle is a pool of candidate intermediates, as for a TLS
        // client: what is not on the leaf's chain is kept apart, not served.
        let unused = (0..parsed.len())
            .filter(|&i| !placed[i])
            .map(|i| certs[i].clone())
            .collect();

        let leaf_key = parsed[leaf].public_key().raw;
        classify_public_key(leaf_key)?;
        if let Some(key) = &key
            && !same_public_key(key.public_key(), leaf_key)
        {
            return Err(ImportError::KeyMismatch {
                leaf: subject(leaf),
            });
        }
        let info = CertInfo::from_parsed(&parsed[leaf], &certs[leaf])?;
        let chain = order.into_iter().map(|i| certs[i].clone()).collect();
        Ok(CertBundle {
            chain,
            unused,
            key,
            info,
        })
    }

    /// This bundle with `key`, made on the appliance for the leaf (see
    /// [`make_request`](crate::make_request)): refused when the leaf
    /// certifies another key.
    pub fn with_key(mut self, key: PrivateKey) -> Result<Self, ImportError> {
        if !same_public_key(
            key.public_key(),
            crate::subject_public_key_info(self.leaf())?.as_slice(),
        ) {
            return Err(ImportError::KeyMismatch {
                leaf: self.info.subject.clone(),
            });
        }
        self.key = Some(key);
        Ok(self)
    }

    /// The chain, leaf first, each certificate followed by its issuer.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The certificates of the upload that are not on the leaf's chain:
    /// candidates the padlock check may still use, never served.
    pub fn unused(&self) -> &[CertificateDer<'static>] {
        &self.unused
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    pub fn key(&self) -> Option<&PrivateKey> {
        self.key.as_ref()
    }

    /// The summary of the leaf.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// The chain as PEM, leaf first: public, safe to show and store.
    pub fn chain_pem(&self) -> String {
        let mut pem = String::new();
        for cert in &self.chain {
            encoding::write_pem(&mut pem, "CERTIFICATE", cert);
        }
        pem
    }
}

/// Candidate issuers by name and key identifier, so that ordering a chain
/// looks up each certificate's issuer instead of trying every pair.
struct IssuerIndex<'c> {
    by_subject: HashMap<&'c [u8], Vec<usize>>,
    /// How many certificates name each issuer.
    issued: HashMap<&'c [u8], usize>,
    /// Subject and issuer name (DER) of each certificate.
    subjects: Vec<&'c [u8]>,
    issuers: Vec<&'c [u8]>,
    /// Subject key identifier of each certificate, if it has one.
    ski: Vec<Option<&'c [u8]>>,
    /// Authority key identifier (its keyIdentifier) of each certificate.
    aki: Vec<Option<&'c [u8]>>,
}

impl<'c> IssuerIndex<'c> {
    fn new(parsed: &'c [X509Certificate<'c>]) -> Self {
        let mut index = IssuerIndex {
            by_subject: HashMap::with_capacity(parsed.len()),
            issued: HashMap::with_capacity(parsed.len()),
            subjects: Vec::with_capacity(parsed.len()),
            issuers: Vec::with_capacity(parsed.len()),
            ski: Vec::with_capacity(parsed.len()),
            aki: Vec::with_capacity(parsed.len()),
        };
        for (i, cert) in parsed.iter().enumerate() {
            let (subject, issuer) = (cert.subject().as_raw(), cert.issuer().as_raw());
            index.by_subject.entry(subject).or_default().push(i);
            *index.issued.entry(issuer).or_default() += 1;
            index.subjects.push(subject);
            index.issuers.push(issuer);
            let (mut own, mut authority) = (None, None);
            for ext in cert.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => own = Some(id.0),
                    ParsedExtension::AuthorityKeyIdentifier(id) => {
                        authority = id.key_identifier.as_ref().map(|k| k.0);
                    }
                    _ => {}
                }
            }
            index.ski.push(own);
            index.aki.push(authority);
        }
        index
    }

    /// The other certificates named as `child`'s issuer whose subject key
    /// identifier does not contradict `child`'s authority key identifier.
    fn issuers_of(&self, child: usize) -> impl Iterator<Item = usize> + '_ {
        self.by_subject
            .get(self.issuers[child])
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&j| j != child)
            .filter(move |&j| match (self.aki[child], self.ski[j]) {
                (Some(authority), Some(subject)) => authority == subject,
                _ => true,
            })
    }

    fn is_self_issued(&self, i: usize) -> bool {
        self.subjects[i] == self.issuers[i]
    }

    /// Whether certificate `i` is named as the issuer of another one.
    fn issued_another(&self, i: usize) -> bool {
        let self_issued = usize::from(self.is_self_issued(i));
        self.issued.get(self.subjects[i]).copied().unwrap_or(0) > self_issued
    }
}

impl fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertBundle")
            .field("leaf", &self.info.subject)
            .field("fingerprint", &self.info.fingerprint)
            .field("chain_len", &self.chain.len())
            .field("unused", &self.unused.len())
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::KeyPair;

    use super::*;
    use crate::testpki::{Ca, openssl, pem, pki, read as read_file, tempdir, write};

    fn codes<T: fmt::Debug>(result: Result<T, ImportError>) -> &'static str {
        result.expect_err("the upload is refused").code()
    }

    fn permutations(items: &[String]) -> Vec<Vec<String>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        (0..items.len())
            .flat_map(|i| {
                let mut rest = items.to_vec();
                let first = rest.remove(i);
                permutations(&rest).into_iter().map(move |mut p| {
                    p.insert(0, first.clone());
                    p
                })
            })
            .collect()
    }

    #[test]
    fn a_pem_bundle_in_any_order_is_put_in_chain_order_leaf_first() {
        let pki = pki();
        let parts = [
            pki.root.pem(),
            pki.leaf.key_pem(),
            pki.leaf.pem(),
            pki.intermediate.pem(),
        ];
        for order in permutations(&parts) {
            let bundle =
                import(order.concat().as_bytes(), None, None).expect("a complete bundle imports");
            assert_eq!(
                bundle.chain(),
                [
                    pki.leaf.der.clone(),
                    pki.intermediate.der.clone(),
                    pki.root.der.clone()
                ]
            );
            assert!(bundle.key().is_some());
        }
    }

    #[test]
    fn duplicate_certificates_and_a_repeated_key_are_tolerated() {
        let pki = pki();
        let text = [
            pki.leaf.pem(),
            pki.intermediate.pem(),
            pki.leaf.pem(),
            pki.leaf.key_pem(),
        ]
        .concat();
        let bundle = import(text.as_bytes(), Some(pki.leaf.key_pem().as_bytes()), None)
            .expect("duplicates are dropped");
        assert_eq!(bundle.chain().len(), 2);
    }

    #[test]
    fn a_separate_key_file_is_matched_to_the_leaf() {
        let pki = pki();
        let bundle = [pki.leaf.pem(), pki.intermediate.pem()].concat();
        let imported = import(bundle.as_bytes(), Some(pki.leaf.key_pem().as_bytes()), None)
            .expect("bundle and key file import");
        assert_eq!(imported.leaf(), &pki.leaf.der);
        assert!(imported.key().is_some());
        let der_key = import(bundle.as_bytes(), Some(pki.leaf.key.serialized_der()), None)
            .expect("a DER key file imports");
        assert!(der_key.key().is_some());
    }

    #[test]
    fn a_der_certificate_imports_without_a_key() {
        let pki = pki();
        let bundle = import(&pki.leaf.der, None, None).expect("a DER certificate imports");
        assert_eq!(bundle.chain(), std::slice::from_ref(&pki.leaf.der));
        assert!(bundle.key().is_none());
        assert_eq!(bundle.info().dns_names, ["voip.example.test"]);
    }

    #[test]
    fn ecdsa_p384_and_ed25519_keys_are_accepted() {
        let ca = Ca::root("Test Root CA");
        for (alg, expected) in [
            (&rcgen::PKCS_ECDSA_P384_SHA384, "ECDSA P-384"),
            (&rcgen::PKCS_ED25519, "Ed25519"),
        ] {
            let key = KeyPair::generate_for(alg).expect("key");
            let leaf = ca.leaf_with(crate::testpki::leaf_params(&["voip.example.test"]), key);
            let bundle = import([leaf.pem(), leaf.key_pem()].concat().as_bytes(), None, None)
                .expect("the key type is supported");
            let key_type = bundle.key().expect("key").key_type();
            assert_eq!(key_type.to_string(), expected);
            assert_eq!(bundle.info().key, Some(key_type));
        }
    }

    #[test]
    fn rsa_2048_keys_from_openssl_are_accepted_in_pkcs8_and_pkcs1_form() {
        let dir = tempdir();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "k.pem",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER", "-out", "k.der",
            ],
        );
        openssl(
            d,
            &["pkey", "-in", "k.pem", "-outform", "DER", "-out", "k1.der"],
        );
        openssl(
            d,
            &["pkey", "-in", "k.pem", "-traditional", "-out", "k1.pem"],
        );
        let der = read_file(d, "k.der");
        let key =
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &rcgen::PKCS_RSA_SHA256)
                .expect("rcgen loads the RSA key");
        let leaf = Ca::root("Test Root CA")
            .leaf_with(crate::testpki::leaf_params(&["voip.example.test"]), key);
        let pkcs1 = String::from_utf8(read_file(d, "k1.pem")).expect("PEM is text");
        assert!(
            pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "{pkcs1}"
        );
        assert_eq!(
            read_file(d, "k1.der")[4..8],
            [0x02, 0x01, 0x00, 0x02],
            "PKCS#1: version, then the modulus"
        );
        for key_file in [
            read_file(d, "k.pem"),
            pkcs1.into_bytes(),
            read_file(d, "k1.der"),
        ] {
            let bundle =
                import(leaf.pem().as_bytes(), Some(&key_file), None).expect("RSA 2048 imports");
            assert_eq!(
                bundle.key().expect("key").key_type().to_string(),
                "RSA 2048 bits"
            );
        }
    }

    #[test]
    fn rsa_1024_is_refused_as_an_unsupported_key() {
        let dir = tempdir();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:1024",
                "-nodes",
                "-keyout",
                "k.pem",
                "-out",
                "c.pem",
                "-subj",
                "/CN=old.example.test",
                "-days",
                "30",
            ],
        );
        let err = import(&read_file(d, "c.pem"), Some(&read_file(d, "k.pem")), None)
            .expect_err("RSA 1024 is refused");
        assert_eq!(err.code(), "unsupported-key");
        assert!(err.to_string().contains("1024 bits"), "{err}");
        let key_alone =
            PrivateKey::parse(&read_file(d, "k.pem"), None).expect_err("RSA 1024 is refused");
        assert_eq!(key_alone.code(), "unsupported-key");
        assert!(key_alone.to_string().contains("1024 bits"), "{key_alone}");
    }

    #[test]
    fn a_key_that_does_not_match_the_leaf_is_refused() {
        let pki = pki();
        let other = KeyPair::generate().expect("key");
        let err = import(
            pki.leaf.pem().as_bytes(),
            Some(pem("PRIVATE KEY", other.serialized_der()).as_bytes()),
            None,
        )
        .expect_err("a foreign key is refused");
        assert_eq!(
            err,
            ImportError::KeyMismatch {
                leaf: "CN=voip.example.test".to_owned()
            }
        );
    }

    #[test]
    fn a_ca_certificate_offered_as_the_leaf_is_refused() {
        let pki = pki();
        assert_eq!(
            import(pki.root.pem().as_bytes(), None, None).expect_err("a CA is not a leaf"),
            ImportError::CaAsLeaf {
                subject: "CN=Test Root CA".to_owned()
            }
        );
        let chain_only = [pki.root.pem(), pki.intermediate.pem()].concat();
        assert_eq!(
            import(chain_only.as_bytes(), None, None).expect_err("a CA is not a leaf"),
            ImportError::CaAsLeaf {
                subject: "CN=Test Intermediate CA".to_owned()
            }
        );
    }

    #[test]
    fn several_unrelated_leaves_are_refused() {
        let pki = pki();
        let other = pki.intermediate.leaf(&["other.example.test"]);
        let text = [pki.leaf.pem(), other.pem(), pki.intermediate.pem()].concat();
        assert_eq!(codes(import(text.as_bytes(), None, None)), "several-leaves");
    }

    #[test]
    fn a_certificate_outside_the_leaf_chain_is_kept_apart_not_refused() {
        let pki = pki();
        let stranger = Ca::root("Unrelated Root CA");
        let text = [pki.leaf.pem(), stranger.pem(), pki.intermediate.pem()].concat();
        let bundle =
            import(text.as_bytes(), None, None).expect("a stray CA is no reason to refuse");
        assert_eq!(
            bundle.chain(),
            [pki.leaf.der.clone(), pki.intermediate.der.clone()]
        );
        assert_eq!(bundle.unused(), std::slice::from_ref(&stranger.der));
        assert!(
            !bundle.chain_pem().contains(&stranger.pem()),
            "never served"
        );
    }

    #[test]
    fn of_two_issuers_with_one_key_the_one_valid_longest_is_chained() {
        // A renewed intermediate: same name and key, later notAfter. The
        // expired one is kept apart whatever the order of the upload.
        let root = Ca::root("Test Root CA");
        let key = KeyPair::generate().expect("key");
        let params = |until: &str| {
            let mut p = crate::testpki::ca_params("Renewed Intermediate");
            p.not_before = crate::testpki::time(crate::testpki::ts("2020-01-01T00:00:00Z"));
            p.not_after = crate::testpki::time(crate::testpki::ts(until));
            p
        };
        let old = root.sign(&params("2025-01-01T00:00:00Z"), &key);
        let new = root.sign(&params("2035-01-01T00:00:00Z"), &key);
        let issuer = rcgen::Issuer::new(params("2035-01-01T00:00:00Z"), key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = crate::testpki::leaf_params(&["voip.example.test"])
            .signed_by(&leaf_key, &issuer)
            .expect("signed");
        for (a, b) in [(&old, &new), (&new, &old)] {
            let text = [
                pem("CERTIFICATE", leaf.der()),
                pem("CERTIFICATE", a),
                pem("CERTIFICATE", b),
            ]
            .concat();
            let bundle = import(text.as_bytes(), None, None).expect("imports");
            assert_eq!(bundle.chain(), [leaf.der().clone(), new.clone()]);
            assert_eq!(bundle.unused(), std::slice::from_ref(&old));
        }
    }

    #[test]
    fn two_different_keys_are_refused() {
        let pki = pki();
        let other = KeyPair::generate().expect("key");
        let text = [
            pki.leaf.pem(),
            pki.leaf.key_pem(),
            pem("PRIVATE KEY", other.serialized_der()),
        ]
        .concat();
        assert_eq!(codes(import(text.as_bytes(), None, None)), "several-keys");
    }

    #[test]
    fn uploads_without_a_certificate_say_what_they_hold_instead() {
        let pki = pki();
        assert_eq!(
            codes(import(pki.leaf.key_pem().as_bytes(), None, None)),
            "no-certificate"
        );
        let csr = crate::testpki::leaf_params(&["voip.example.test"])
            .serialize_request(&pki.leaf.key)
            .expect("a CSR");
        let err = import(pem("CERTIFICATE REQUEST", csr.der()).as_bytes(), None, None)
            .expect_err("a CSR is refused");
        assert_eq!(
            err,
            ImportError::NotACertificate {
                found: "a certificate signing request".to_owned()
            }
        );
        assert_eq!(
            codes(import(pki.leaf.key.serialized_der(), None, None)),
            "no-certificate"
        );
        assert_eq!(
            codes(import(
                pki.leaf.pem().as_bytes(),
                Some(pki.leaf.pem().as_bytes()),
                None
            )),
            "no-key"
        );
    }

    #[test]
    fn garbage_is_not_recognized() {
        for garbage in [&b""[..], b"hello world", b"\x00\x01\x02", b"{\"cert\": 1}"] {
            let err = import(garbage, None, None).expect_err("garbage is refused");
            assert!(
                ["unrecognized-format", "malformed"].contains(&err.code()),
                "{garbage:?}: {err:?}"
            );
        }
        // A DER SEQUENCE that is none of the things an upload can be.
        let err = import(&crate::encoding::tlv(0x30, &[b"\x01\x01\xff"]), None, None)
            .expect_err("refused");
        assert_eq!(err.code(), "not-a-certificate");
    }

    #[test]
    fn truncated_pem_and_der_are_reported_as_truncated() {
        let pki = pki();
        let text = [pki.leaf.pem(), pki.intermediate.pem()].concat();
        let leaf_len = pki.leaf.pem().len();
        for cut in [leaf_len / 2, leaf_len + 15, text.len() - 30] {
            assert_eq!(
                codes(import(&text.as_bytes()[..cut], None, None)),
                "truncated",
                "cut at {cut}"
            );
        }
        for cut in [pki.leaf.der.len() - 1, pki.leaf.der.len() / 2, 3, 1] {
            assert_eq!(
                codes(import(&pki.leaf.der[..cut], None, None)),
                "truncated",
                "cut at {cut}"
            );
        }
        let short_der_in_pem = pem("CERTIFICATE", &pki.leaf.der[..pki.leaf.der.len() - 10]);
        assert_eq!(
            codes(import(short_der_in_pem.as_bytes(), None, None)),
            "truncated"
        );
    }

    #[test]
    fn oversize_uploads_are_refused_before_anything_is_parsed() {
        let pki = pki();
        let huge = vec![b'x'; MAX_UPLOAD + 1];
        assert_eq!(
            import(&huge, None, None).expect_err("too big"),
            ImportError::Oversize {
                size: MAX_UPLOAD + 1
            }
        );
        let err = import(b"garbage", Some(&huge), None).expect_err("too big");
        assert_eq!(err.code(), "oversize");
        let mut padded = pki.leaf.pem().into_bytes();
        padded.resize(MAX_UPLOAD, b'\n');
        import(&padded, None, None).expect("exactly MAX_UPLOAD bytes is accepted");
    }

    /// `count` PEM blocks labelled `label` whose contents are not DER: a
    /// limit that refuses them was checked before anything was parsed.
    fn junk_blocks(label: &str, count: usize) -> String {
        (0..count).map(|i| pem(label, &[i as u8; 40])).collect()
    }

    #[test]
    fn more_than_max_certificates_are_refused_before_any_is_parsed() {
        let pki = pki();
        let text = [pki.leaf.pem(), junk_blocks("CERTIFICATE", MAX_CERTIFICATES)].concat();
        assert_eq!(
            import(text.as_bytes(), None, None).expect_err("refused"),
            ImportError::TooManyCertificates {
                found: MAX_CERTIFICATES + 1,
                max: MAX_CERTIFICATES
            }
        );
        // The key file counts too.
        let bundle = junk_blocks("CERTIFICATE", MAX_CERTIFICATES);
        let key_file = [pki.leaf.pem(), pki.leaf.key_pem()].concat();
        assert_eq!(
            codes(import(bundle.as_bytes(), Some(key_file.as_bytes()), None)),
            "too-many-certificates"
        );
        let many = vec![pki.leaf.der.clone(); MAX_CERTIFICATES + 1];
        assert_eq!(
            codes(CertBundle::from_parts(many, None)),
            "too-many-certificates"
        );
    }

    #[test]
    fn a_chain_of_max_certificates_is_accepted() {
        let root = Ca::root("Root CA");
        let mut cas = vec![root];
        for i in 1..MAX_CERTIFICATES - 1 {
            let next = cas[i - 1].intermediate(&format!("Intermediate {i}"));
            cas.push(next);
        }
        let leaf = cas[cas.len() - 1].leaf(&["voip.example.test"]);
        let mut blocks: Vec<String> = cas.iter().rev().map(Ca::pem).collect();
        blocks.insert(blocks.len() / 2, leaf.pem());
        let text = blocks.concat();
        let bundle = import(text.as_bytes(), None, None).expect("20 certificates import");
        let expected: Vec<_> = std::iter::once(leaf.der.clone())
            .chain(cas.iter().rev().map(|ca| ca.der.clone()))
            .collect();
        assert_eq!(bundle.chain(), expected);
    }

    #[test]
    fn a_bundle_of_400_certificates_with_one_subject_is_refused_at_once() {
        let text = crate::testpki::same_subject_bundle(400);
        assert!(text.len() <= MAX_UPLOAD, "{} bytes", text.len());
        assert_eq!(
            import(text.as_bytes(), None, None).expect_err("refused"),
            ImportError::TooManyCertificates {
                found: 401,
                max: MAX_CERTIFICATES
            }
        );
    }

    #[test]
    fn same_subject_cas_within_the_limit_are_ordered_by_signature() {
        // The leaf's issuer is one of 19 CAs of the same name: the index
        // finds them all, the signature picks the right one, and the root
        // ends the chain, so the 18 others are strays.
        let text = crate::testpki::same_subject_bundle(MAX_CERTIFICATES - 1);
        let bundle = import(text.as_bytes(), None, None).expect("strays are kept apart");
        assert_eq!((bundle.chain().len(), bundle.unused().len()), (2, 18));
        let issuer_and_leaf: String = text
            .split_inclusive("-----END CERTIFICATE-----\n")
            .take(2)
            .collect();
        let bundle = import(issuer_and_leaf.as_bytes(), None, None).expect("leaf and issuer");
        assert_eq!(bundle.chain().len(), 2);
    }

    #[test]
    fn a_ca_upload_holds_at_most_max_ca_certificates() {
        let pki = pki();
        let many = [
            pki.root.pem(),
            junk_blocks("CERTIFICATE", MAX_CA_CERTIFICATES),
        ]
        .concat();
        assert_eq!(
            read_certificates(many.as_bytes()).expect_err("refused"),
            ImportError::TooManyCertificates {
                found: MAX_CA_CERTIFICATES + 1,
                max: MAX_CA_CERTIFICATES
            }
        );
        let roots: String = (0..MAX_CERTIFICATES + 1)
            .map(|i| Ca::root(&format!("Root {i}")).pem())
            .collect();
        assert_eq!(
            read_certificates(roots.as_bytes())
                .expect("more CAs than an import holds")
                .len(),
            MAX_CERTIFICATES + 1
        );
    }

    #[test]
    fn more_than_max_keys_are_refused_before_any_is_parsed() {
        let pki = pki();
        let text = [pki.leaf.pem(), junk_blocks("PRIVATE KEY", MAX_KEYS + 1)].concat();
        assert_eq!(
            import(text.as_bytes(), None, None).expect_err("refused"),
            ImportError::TooManyKeys {
                found: MAX_KEYS + 1,
                max: MAX_KEYS
            }
        );
        // The leaf's key in the bundle and again in the key file is fine.
        let with_key = [pki.leaf.pem(), pki.leaf.key_pem()].concat();
        import(
            with_key.as_bytes(),
            Some(pki.leaf.key_pem().as_bytes()),
            None,
        )
        .expect("the same key twice");
        assert_eq!(
            codes(import(
                with_key.as_bytes(),
                Some(junk_blocks("EC PRIVATE KEY", 2).as_bytes()),
                None
            )),
            "too-many-keys"
        );
    }

    #[test]
    fn a_second_encrypted_key_is_refused_before_any_is_decrypted() {
        let pki = pki();
        let two = junk_blocks("ENCRYPTED PRIVATE KEY", 2);
        let err = import([pki.leaf.pem(), two].concat().as_bytes(), None, Some("pw"))
            .expect_err("refused");
        assert_eq!(err.code(), "key-too-costly", "{err}");
        // One in the bundle and one in the key file: the same.
        let one = junk_blocks("ENCRYPTED PRIVATE KEY", 1);
        let err = import(
            [pki.leaf.pem(), one.clone()].concat().as_bytes(),
            Some(one.as_bytes()),
            Some("pw"),
        )
        .expect_err("refused");
        assert_eq!(err.code(), "key-too-costly", "{err}");
    }

    #[test]
    fn a_key_encrypted_with_too_many_iterations_is_refused_before_deriving() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        crate::testpki::encrypt_key(d, "key.pem", "costly.pem", crate::MAX_PBKDF2_ITERATIONS + 1);
        let err = import(
            pki.leaf.pem().as_bytes(),
            Some(&read_file(d, "costly.pem")),
            Some("pw"),
        )
        .expect_err("refused");
        assert_eq!(err.code(), "key-too-costly", "{err}");
        assert!(
            err.to_string()
                .contains(&(crate::MAX_PBKDF2_ITERATIONS + 1).to_string()),
            "{err}"
        );
    }

    /// leaf.pem, key.pem and chain.pem (intermediate + root) in a new directory.
    fn pki_files() -> (crate::testpki::Pki, tempfile::TempDir) {
        let pki = pki();
        let dir = tempdir();
        write(dir.path(), "leaf.pem", pki.leaf.pem());
        write(dir.path(), "key.pem", pki.leaf.key_pem());
        write(
            dir.path(),
            "chain.pem",
            [pki.intermediate.pem(), pki.root.pem()].concat(),
        );
        (pki, dir)
    }

    #[test]
    fn a_pkcs12_file_from_openssl_3_opens_with_its_password_only() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        openssl(
            d,
            &[
                "pkcs12",
                "-export",
                "-in",
                "leaf.pem",
                "-inkey",
                "key.pem",
                "-certfile",
                "chain.pem",
                "-passout",
                "pass:s3cret",
                "-out",
                "b.p12",
            ],
        );
        let p12 = read_file(d, "b.p12");
        let bundle = import(&p12, None, Some("s3cret")).expect("the right password opens it");
        assert_eq!(
            bundle.chain(),
            [
                pki.leaf.der.clone(),
                pki.intermediate.der.clone(),
                pki.root.der.clone()
            ]
        );
        assert!(bundle.key().is_some());
        assert_eq!(
            import(&p12, None, Some("wrong")).expect_err("refused"),
            ImportError::WrongPkcs12Password
        );
        assert_eq!(
            import(&p12, None, None).expect_err("refused"),
            ImportError::PasswordRequired {
                what: "PKCS#12 file"
            }
        );
    }

    #[test]
    fn a_legacy_3des_pkcs12_file_still_opens() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        openssl(
            d,
            &[
                "pkcs12",
                "-export",
                "-in",
                "leaf.pem",
                "-inkey",
                "key.pem",
                "-passout",
                "pass:old",
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
                "-out",
                "old.p12",
            ],
        );
        let bundle =
            import(&read_file(d, "old.p12"), None, Some("old")).expect("3DES PKCS#12 opens");
        assert_eq!(bundle.leaf(), &pki.leaf.der);
    }

    #[test]
    fn an_encrypted_pkcs8_key_from_openssl_opens_with_its_passphrase_only() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                "key.pem",
                "-passout",
                "pass:pw",
                "-out",
                "enc.pem",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                "key.pem",
                "-passout",
                "pass:pw",
                "-outform",
                "DER",
                "-out",
                "enc.der",
            ],
        );
        let leaf = pki.leaf.pem();
        for key_file in [read_file(d, "enc.pem"), read_file(d, "enc.der")] {
            let bundle = import(leaf.as_bytes(), Some(&key_file), Some("pw"))
                .expect("the passphrase opens it");
            assert!(bundle.key().is_some());
            assert_eq!(
                import(leaf.as_bytes(), Some(&key_file), Some("nope")).expect_err("refused"),
                ImportError::WrongKeyPassphrase
            );
            assert_eq!(
                import(leaf.as_bytes(), Some(&key_file), None).expect_err("refused"),
                ImportError::PasswordRequired {
                    what: "private key"
                }
            );
        }
    }

    #[test]
    fn legacy_key_encryption_is_refused_as_unsupported() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-v1",
                "PBE-SHA1-3DES",
                "-in",
                "key.pem",
                "-passout",
                "pass:pw",
                "-out",
                "pbes1.pem",
            ],
        );
        openssl(
            d,
            &[
                "ec", "-in", "key.pem", "-aes256", "-passout", "pass:pw", "-out", "trad.pem",
            ],
        );
        assert!(
            String::from_utf8_lossy(&read_file(d, "trad.pem")).contains("Proc-Type: 4,ENCRYPTED")
        );
        for file in ["pbes1.pem", "trad.pem"] {
            let err = import(
                pki.leaf.pem().as_bytes(),
                Some(&read_file(d, file)),
                Some("pw"),
            )
            .expect_err(file);
            assert_eq!(err.code(), "unsupported-encryption", "{file}: {err}");
        }
    }

    #[test]
    fn every_error_has_a_distinct_code_and_a_hint() {
        let s = || "x".to_owned();
        let all = [
            ImportError::Oversize { size: 1 },
            ImportError::Unrecognized,
            ImportError::Truncated { inside: "x" },
            ImportError::Malformed { detail: s() },
            ImportError::NotACertificate { found: s() },
            ImportError::NoCertificate,
            ImportError::NoKey,
            ImportError::KeyMismatch { leaf: s() },
            ImportError::CaAsLeaf { subject: s() },
            ImportError::SeveralLeaves {
                subjects: vec![s()],
            },
            ImportError::SeveralKeys,
            ImportError::PasswordRequired { what: "x" },
            ImportError::WrongPkcs12Password,
            ImportError::WrongKeyPassphrase,
            ImportError::UnsupportedEncryption { what: "x" },
            ImportError::UnsupportedKey { what: s() },
            ImportError::UnusableKey { what: s() },
            ImportError::NotACa { subject: s() },
            ImportError::TooManyCertificates { found: 1, max: 1 },
            ImportError::TooManyKeys { found: 1, max: 1 },
            ImportError::KeyTooCostly { detail: s() },
        ];
        let mut codes: Vec<_> = all.iter().map(ImportError::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in &all {
            let kebab = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
            assert!(e.code().bytes().all(kebab), "{}", e.code());
            assert!(e.hint().len() > 20, "{}", e.code());
        }
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let pki = pki();
        let bundle = import(
            [pki.leaf.pem(), pki.leaf.key_pem()].concat().as_bytes(),
            None,
            None,
        )
        .expect("imports");
        let key_pem = bundle.key().expect("key").to_key_pem();
        for shown in [
            format!("{bundle:?}"),
            format!("{bundle:#?}"),
            format!("{key_pem:?}"),
        ] {
            assert!(shown.contains("[redacted]"), "{shown}");
            for line in pki.leaf.key_pem().lines().skip(1).filter(|l| l.len() > 20) {
                assert!(!shown.contains(line), "{shown}");
            }
            let der = pki.leaf.key.serialized_der();
            let hex: String = der[der.len() - 8..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(!shown.contains(&hex), "{shown}");
            assert!(
                !shown.contains(&format!("{:?}", &der[der.len() - 8..])),
                "{shown}"
            );
        }
    }

    /// A deterministic xorshift generator: the same inputs on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_and_mutated_uploads_never_panic() {
        let (pki, dir) = pki_files();
        let d = dir.path();
        openssl(
            d,
            &[
                "pkcs12", "-export", "-in", "leaf.pem", "-inkey", "key.pem", "-passout", "pass:pw",
                "-out", "b.p12",
            ],
        );
        let seeds = [
            [pki.leaf.pem(), pki.leaf.key_pem(), pki.intermediate.pem()]
                .concat()
                .into_bytes(),
            pki.leaf.der.to_vec(),
            pki.leaf.key.serialized_der().to_vec(),
            read_file(d, "b.p12"),
        ];
        let anchors =
            crate::TrustAnchors::from_ca_certs(std::slice::from_ref(&pki.root.der)).expect("a CA");
        let host: crate::Host = "voip.example.test".parse().expect("host");
        let now = crate::testpki::ts("2030-01-01T00:00:00Z");
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for round in 0..1500 {
            let mut input = seeds[round % seeds.len()].clone();
            match rng.below(4) {
                0 => input.truncate(rng.below(input.len())),
                1 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(input.len());
                        input[i] = rng.next() as u8;
                    }
                }
                2 => {
                    let i = rng.below(input.len());
                    input.insert(i, rng.next() as u8);
                }
                _ => input = (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
            }
            // Any outcome but a panic is fine for a mutation that kept the
            // upload valid (a flipped signature byte, say); the check must
            // then not panic either.
            if let Ok(bundle) = import(&input, None, Some("pw")) {
                crate::check(&bundle, bundle.key(), &anchors, &host, now);
            }
            let _ = PrivateKey::parse(&input, Some("pw"));
            let _ = read_certificates(&input);
        }
        for len in [1, 2, 16, 100, 1000, 5000] {
            let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(import(&noise, None, None).is_err(), "{len} random bytes");
        }
    }
}
