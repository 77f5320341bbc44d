//! Private keys: parsed into something rustls can sign with, held in
//! memory that is wiped on drop, never shown. The only way to get the key
//! bytes out is [`PrivateKey::to_key_pem`], for the store to write to a file
//! only root can read.

use std::fmt;
use std::sync::Arc;

use pkcs8::pkcs5::{self, pbes2};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::SigningKey;
use rustls_pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::ImportError;
use crate::encoding::{self, split_tlv, tlv};

/// The public-key algorithms switchboard serves TLS with: what rustls (with
/// ring) can sign with and what phones verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyAlgorithm {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384",
            KeyAlgorithm::Ed25519 => "Ed25519",
        })
    }
}

/// A public key's algorithm and size in bits (the modulus for RSA, the
/// curve for ECDSA, 256 for Ed25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyType {
    pub algorithm: KeyAlgorithm,
    pub bits: u32,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.algorithm {
            KeyAlgorithm::Rsa => write!(f, "RSA {} bits", self.bits),
            other => other.fmt(f),
        }
    }
}

/// RSA moduli ring signs with.
const RSA_BITS: std::ops::RangeInclusive<u32> = 2048..=4096;

/// The algorithm and size of a public key (a DER SubjectPublicKeyInfo), or
/// why switchboard cannot serve TLS with it.
pub(crate) fn classify_public_key(spki_der: &[u8]) -> Result<KeyType, ImportError> {
    let ok = |algorithm, bits| Ok(KeyType { algorithm, bits });
    let unsupported = |what: String| Err(ImportError::UnsupportedKey { what });
    let unusable = |what: String| Err(ImportError::UnusableKey { what });
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else {
        return unsupported("a public key that cannot be parsed".to_owned());
    };
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return unusable("an RSA public key that cannot be parsed".to_owned());
        };
        let bits = integer_bits(rsa.modulus);
        if !RSA_BITS.contains(&bits) {
            return unsupported(format!(
                "RSA with {bits} bits (switchboard accepts 2048 to 4096)"
            ));
        }
        rsa_usable(rsa.modulus, rsa.exponent)?;
        ok(KeyAlgorithm::Rsa, bits)
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let point = spki.subject_public_key.data.as_ref();
        match curve {
            Some(c) if c == OID_EC_P256 => {
                ec_point_usable(&P256, point)?;
                ok(KeyAlgorithm::EcdsaP256, 256)
            }
            Some(c) if c == OID_NIST_EC_P384 => {
                ec_point_usable(&P384, point)?;
                ok(KeyAlgorithm::EcdsaP384, 384)
            }
            Some(c) if c == OID_NIST_EC_P521 => unsupported("ECDSA P-521".to_owned()),
            _ => unsupported("ECDSA on a curve other than P-256 and P-384".to_owned()),
        }
    } else if *oid == OID_SIG_ED25519 {
        if spki.subject_public_key.data.len() != 32 {
            return unusable("an Ed25519 public key that is not 32 bytes long".to_owned());
        }
        ok(KeyAlgorithm::Ed25519, 256)
    } else if *oid == OID_SIG_ED448 {
        unsupported("Ed448".to_owned())
    } else {
        unsupported(format!("a key of algorithm {oid}"))
    }
}

/// Refuses an RSA public key no signature can be verified with: an even
/// modulus (not a product of two odd primes) or an exponent that is even,
/// below 3 (e = 1 makes every "signature" its own message) or above 2^33
/// (what ring, and so every rustls client, accepts).
fn rsa_usable(modulus: &[u8], exponent: &[u8]) -> Result<(), ImportError> {
    let unusable = |what: &str| {
        Err(ImportError::UnusableKey {
            what: format!("an RSA public key with {what}"),
        })
    };
    if modulus.last().is_none_or(|last| last & 1 == 0) {
        return unusable("an even modulus");
    }
    let exponent = &exponent[exponent.iter().take_while(|&&b| b == 0).count()..];
    if exponent.len() > 5 || integer_bits(exponent) > 33 {
        return unusable("a public exponent above 2^33");
    }
    let e = exponent
        .iter()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
    if e < 3 {
        return unusable(&format!("the public exponent {e}"));
    }
    if e & 1 == 0 {
        return unusable(&format!("the even public exponent {e}"));
    }
    Ok(())
}

/// A short-Weierstrass curve y² = x³ - 3x + b over the prime field p (the
/// NIST curves), with its coordinates' size in bytes.
struct Curve {
    name: &'static str,
    bytes: usize,
    p: &'static str,
    b: &'static str,
}

const P256: Curve = Curve {
    name: "P-256",
    bytes: 32,
    p: "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
    b: "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
};

const P384: Curve = Curve {
    name: "P-384",
    bytes: 48,
    p: "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
    b: "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
};

/// Refuses an ECDSA public key that is not a point of its curve (in the
/// uncompressed form TLS clients take): no signature verifies with it.
fn ec_point_usable(curve: &Curve, point: &[u8]) -> Result<(), ImportError> {
    use num_bigint::BigUint;
    let unusable = |what: &str| {
        Err(ImportError::UnusableKey {
            what: format!("an ECDSA {} public key {what}", curve.name),
        })
    };
    let n = curve.bytes;
    if point.first() != Some(&0x04) || point.len() != 1 + 2 * n {
        return unusable("that is not an uncompressed point");
    }
    let hex = |s: &str| BigUint::parse_bytes(s.as_bytes(), 16).expect("a curve constant");
    let (p, b) = (hex(curve.p), hex(curve.b));
    let x = BigUint::from_bytes_be(&point[1..=n]);
    let y = BigUint::from_bytes_be(&point[1 + n..]);
    if x >= p || y >= p {
        return unusable("whose coordinates are outside the field");
    }
    // y² = x³ - 3x + b (mod p), with -3x written as + (p - 3)·x.
    let three = BigUint::from(3u8);
    let left = (&y * &y) % &p;
    let right = ((&x * &x % &p) * &x + (&p - &three) * &x + &b) % &p;
    if left != right {
        return unusable("whose point is not on the curve");
    }
    Ok(())
}

/// Whether two DER SubjectPublicKeyInfos hold the same key (compared
/// parsed, so that encoding variants of the algorithm parameters agree).
pub(crate) fn same_public_key(a: &[u8], b: &[u8]) -> bool {
    match (
        SubjectPublicKeyInfo::from_der(a),
        SubjectPublicKeyInfo::from_der(b),
    ) {
        (Ok((_, a)), Ok((_, b))) => {
            a.algorithm.algorithm == b.algorithm.algorithm
                && a.subject_public_key.data == b.subject_public_key.data
        }
        _ => false,
    }
}

/// The number of significant bits of a DER INTEGER's big-endian bytes.
fn integer_bits(bytes: &[u8]) -> u32 {
    let bytes = &bytes[bytes.iter().take_while(|&&b| b == 0).count()..];
    match bytes.first() {
        Some(first) => bytes.len() as u32 * 8 - first.leading_zeros(),
        None => 0,
    }
}

/// A private key switchboard can serve TLS with.
///
/// `Debug` prints the algorithm and `[redacted]`; the key bytes are wiped
/// when the last copy is dropped.
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    signer: Arc<dyn SigningKey>,
    spki: Vec<u8>,
    key_type: KeyType,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("material", &format_args!("[redacted]"))
            .finish()
    }
}

// The AlgorithmIdentifiers a bare PKCS#1 or SEC1 key implies, to wrap it in
// PKCS#8: SEQUENCE { OID rsaEncryption, NULL } and
// SEQUENCE { OID id-ecPublicKey, OID prime256v1 | secp384r1 }.
const RSA_ALGORITHM: &[u8] = b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00";
const P256_ALGORITHM: &[u8] =
    b"\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07";
const P384_ALGORITHM: &[u8] =
    b"\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x22";

/// PKCS#8 `PrivateKeyInfo { version 0, algorithm, privateKey }`.
fn wrap_pkcs8(algorithm: &[u8], key: &[u8]) -> Zeroizing<Vec<u8>> {
    tlv(0x30, &[b"\x02\x01\x00", algorithm, &tlv(0x04, &[key])])
}

/// Work factors above these are refused before deriving anything: an
/// upload must not be able to tie up the appliance. OpenSSL's defaults
/// (PBKDF2 2048 iterations, scrypt N=16384 r=8) are far below.
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
const MAX_SCRYPT_MEMORY: u64 = 64 << 20;

/// Refuses a key derivation whose work factor is above the limits, with
/// what is too high: checked before deriving anything.
fn kdf_within_limits(scheme: &pkcs5::EncryptionScheme) -> Result<(), ImportError> {
    let too_costly = |detail: String| Err(ImportError::KeyTooCostly { detail });
    match scheme {
        pkcs5::EncryptionScheme::Pbes2(params) => match &params.kdf {
            pbes2::Kdf::Pbkdf2(p) if p.iteration_count > MAX_PBKDF2_ITERATIONS => {
                too_costly(format!(
                    "PBKDF2 with {} iterations (at most {MAX_PBKDF2_ITERATIONS})",
                    p.iteration_count
                ))
            }
            pbes2::Kdf::Pbkdf2(_) => Ok(()),
            pbes2::Kdf::Scrypt(s) => {
                let memory = 128u64
                    .checked_mul(s.cost_parameter)
                    .and_then(|m| m.checked_mul(u64::from(s.block_size)));
                match memory {
                    Some(m) if m <= MAX_SCRYPT_MEMORY && s.parallelization <= 4 => Ok(()),
                    _ => too_costly(format!(
                        "scrypt with N={} r={} p={} (at most {} MiB and p=4)",
                        s.cost_parameter,
                        s.block_size,
                        s.parallelization,
                        MAX_SCRYPT_MEMORY >> 20
                    )),
                }
            }
            _ => Err(ImportError::UnsupportedEncryption {
                what: "private key",
            }),
        },
        // PBES1 (and whatever comes later) is refused when decrypting anyway.
        _ => Ok(()),
    }
}

impl PrivateKey {
    /// Parses a key file: PEM or DER; PKCS#8 (plain or encrypted with
    /// `passphrase`), PKCS#1 RSA or SEC1 EC. Certificates in the same file
    /// are ignored; more than one key is an error.
    pub fn parse(input: &[u8], passphrase: Option<&str>) -> Result<Self, ImportError> {
        let mut keys =
            crate::import::read(input, passphrase, &mut crate::import::Budget::import())?.keys;
        match keys.len() {
            0 => Err(ImportError::NoKey),
            1 => Ok(keys.remove(0)),
            _ => Err(ImportError::SeveralKeys),
        }
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo of the public half (public: what a
    /// certificate for this key certifies, and what a pin hashes).
    pub fn subject_public_key_info(&self) -> &[u8] {
        &self.spki
    }

    /// The key as an unencrypted PKCS#8 PEM: the one way key bytes leave
    /// this crate, for the store to write to a file mode 0600.
    pub fn to_key_pem(&self) -> KeyPem {
        let mut pem = Zeroizing::new(String::new());
        encoding::write_pem(&mut pem, "PRIVATE KEY", &self.pkcs8);
        KeyPem(pem)
    }

    /// Loads a key written by [`PrivateKey::to_key_pem`].
    pub fn from_key_pem(pem: &KeyPem) -> Result<Self, ImportError> {
        Self::parse(pem.expose_secret().as_bytes(), None)
    }

    /// A plain (unencrypted) key in any of the three DER forms.
    pub(crate) fn from_der(key: &PrivateKeyDer<'_>) -> Result<Self, ImportError> {
        let candidates = match key {
            PrivateKeyDer::Pkcs8(k) => vec![Zeroizing::new(k.secret_pkcs8_der().to_vec())],
            PrivateKeyDer::Pkcs1(k) => vec![wrap_pkcs8(RSA_ALGORITHM, k.secret_pkcs1_der())],
            // SEC1 may omit its curve: try both that rustls can sign with.
            PrivateKeyDer::Sec1(k) => [P256_ALGORITHM, P384_ALGORITHM]
                .map(|alg| wrap_pkcs8(alg, k.secret_sec1_der()))
                .into(),
            _ => vec![],
        };
        for pkcs8 in candidates {
            let Ok(signer) = any_supported_type(&PrivateKeyDer::Pkcs8(pkcs8.as_slice().into()))
            else {
                continue;
            };
            let Some(spki) = signer.public_key().map(|spki| spki.to_vec()) else {
                continue;
            };
            let key_type = classify_public_key(&spki)?;
            return Ok(PrivateKey {
                pkcs8,
                signer,
                spki,
                key_type,
            });
        }
        Err(ImportError::UnsupportedKey {
            what: describe_unusable(key),
        })
    }

    /// An `EncryptedPrivateKeyInfo` (PKCS#8 with PBES2).
    pub(crate) fn decrypt(der: &[u8], passphrase: Option<&str>) -> Result<Self, ImportError> {
        const WHAT: &str = "private key";
        // pkcs5 does not even parse the algorithm of schemes it does not
        // implement (PKCS#12-style PBES1 such as PBE-SHA1-3DES).
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
            .map_err(|_| ImportError::UnsupportedEncryption { what: WHAT })?;
        kdf_within_limits(&info.encryption_algorithm)?;
        let passphrase = passphrase.ok_or(ImportError::PasswordRequired { what: WHAT })?;
        let plain = info.decrypt(passphrase).map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed)
            | pkcs8::Error::Asn1(_) => ImportError::WrongKeyPassphrase,
            _ => ImportError::UnsupportedEncryption { what: WHAT },
        })?;
        // A wrong passphrase yields valid padding once in 256 tries: the
        // plaintext is then not a PrivateKeyInfo.
        if pkcs8::PrivateKeyInfoRef::try_from(plain.as_bytes()).is_err() {
            return Err(ImportError::WrongKeyPassphrase);
        }
        Self::from_der(&PrivateKeyDer::Pkcs8(plain.as_bytes().into()))
    }

    pub(crate) fn signer(&self) -> Arc<dyn SigningKey> {
        self.signer.clone()
    }

    /// The DER SubjectPublicKeyInfo of the key's public half.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.spki
    }
}

/// Why ring would not load a key, as precisely as the key's DER allows.
fn describe_unusable(key: &PrivateKeyDer<'_>) -> String {
    let rsa = |pkcs1: &[u8]| {
        // RSAPrivateKey ::= SEQUENCE { version INTEGER, modulus INTEGER, ... }
        let bits = split_tlv(pkcs1)
            .and_then(|(_, fields, _)| split_tlv(fields))
            .and_then(|(_, _, rest)| split_tlv(rest))
            .map_or(0, |(_, modulus, _)| integer_bits(modulus));
        format!("RSA with {bits} bits (switchboard accepts 2048 to 4096)")
    };
    match key {
        PrivateKeyDer::Pkcs1(k) => rsa(k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(_) => "ECDSA on a curve other than P-256 and P-384".to_owned(),
        PrivateKeyDer::Pkcs8(k) => match pkcs8::PrivateKeyInfoRef::try_from(k.secret_pkcs8_der()) {
            Ok(info) if info.algorithm.oid.as_bytes() == OID_PKCS1_RSAENCRYPTION.as_bytes() => {
                rsa(info.private_key.as_bytes())
            }
            Ok(info) if info.algorithm.oid.as_bytes() == OID_KEY_TYPE_EC_PUBLIC_KEY.as_bytes() => {
                "ECDSA on a curve other than P-256 and P-384".to_owned()
            }
            Ok(info) => format!("a key of algorithm {}", info.algorithm.oid),
            Err(_) => "a private key that cannot be parsed".to_owned(),
        },
        _ => "a private key in an unknown format".to_owned(),
    }
}

/// A private key as PKCS#8 PEM text, for storage. `Debug` prints
/// `[redacted]`; the text is wiped on drop.
pub struct KeyPem(Zeroizing<String>);

impl KeyPem {
    /// Wraps PEM text read back from storage.
    pub fn from_stored(pem: String) -> Self {
        KeyPem(Zeroizing::new(pem))
    }

    /// The secret PEM text, to write to a file only root can read. Never
    /// log, display or send it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use rcgen::KeyPair;

    use super::*;
    use crate::testpki::{openssl, read, tempdir, write};

    #[test]
    fn a_key_exported_as_pem_loads_back_as_the_same_key() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let generated = KeyPair::generate_for(alg).expect("key");
            let key =
                PrivateKey::parse(generated.serialized_der(), None).expect("a DER PKCS#8 key");
            let pem = key.to_key_pem();
            assert!(
                pem.expose_secret()
                    .starts_with("-----BEGIN PRIVATE KEY-----\n")
            );
            let stored = KeyPem::from_stored(pem.expose_secret().to_owned());
            let loaded = PrivateKey::from_key_pem(&stored).expect("loads back");
            assert_eq!(loaded.public_key(), key.public_key());
            assert_eq!(loaded.key_type(), key.key_type());
            assert_eq!(format!("{stored:?}"), "KeyPem([redacted])");
        }
    }

    #[test]
    fn sec1_and_pkcs1_keys_are_exported_as_pkcs8_that_openssl_reads() {
        let dir = tempdir();
        let d = dir.path();
        openssl(
            d,
            &["ecparam", "-genkey", "-name", "secp384r1", "-out", "ec.pem"],
        );
        openssl(d, &["genrsa", "-traditional", "-out", "rsa.pem", "3072"]);
        for (file, shown) in [("ec.pem", "ECDSA P-384"), ("rsa.pem", "RSA 3072 bits")] {
            let original = read(d, file);
            assert!(
                !String::from_utf8_lossy(&original).contains("BEGIN PRIVATE KEY"),
                "{file} is not PKCS#8"
            );
            let key = PrivateKey::parse(&original, None).expect("a SEC1 or PKCS#1 key");
            assert_eq!(key.key_type().to_string(), shown);
            write(d, "out.pem", key.to_key_pem().expose_secret());
            openssl(
                d,
                &["pkey", "-in", "out.pem", "-pubout", "-out", "pub_ours.pem"],
            );
            openssl(
                d,
                &["pkey", "-in", file, "-pubout", "-out", "pub_theirs.pem"],
            );
            assert_eq!(read(d, "pub_ours.pem"), read(d, "pub_theirs.pem"), "{file}");
        }
    }

    #[test]
    fn excessive_key_derivation_work_is_refused_before_deriving() {
        let dir = tempdir();
        let d = dir.path();
        write(
            d,
            "k.pem",
            crate::testpki::pem(
                "PRIVATE KEY",
                KeyPair::generate().expect("key").serialized_der(),
            ),
        );
        crate::testpki::encrypt_key(d, "k.pem", "slow.pem", 2_000_000);
        let err = PrivateKey::parse(&read(d, "slow.pem"), Some("pw")).expect_err("refused");
        assert_eq!(
            err,
            ImportError::KeyTooCostly {
                detail: "PBKDF2 with 2000000 iterations (at most 1000000)".to_owned()
            }
        );
    }

    #[test]
    fn a_key_file_must_hold_exactly_one_key() {
        let key = || {
            crate::testpki::pem(
                "PRIVATE KEY",
                KeyPair::generate().expect("key").serialized_der(),
            )
        };
        assert_eq!(
            PrivateKey::parse(key().as_bytes(), None).map(|k| k.key_type().to_string()),
            Ok("ECDSA P-256".to_owned())
        );
        assert_eq!(
            PrivateKey::parse((key() + &key()).as_bytes(), None)
                .expect_err("two keys")
                .code(),
            "several-keys"
        );
        assert_eq!(
            PrivateKey::parse(b"-----BEGIN X-----\nMAA=\n-----END X-----\n", None)
                .expect_err("no key")
                .code(),
            "no-key"
        );
    }
}
