//! A test PKI made with rcgen in the tests (root CA → intermediate CA →
//! leaf), and the real `openssl` binary for the formats rcgen does not
//! write (PKCS#12, encrypted PKCS#8, RSA keys). Public behind the
//! `testpki` feature, for the tests of the crates above.

#![allow(missing_debug_implementations)] // test fixtures holding keys

use std::path::Path;
use std::process::Command;

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

use crate::encoding::write_pem;

pub fn ts(rfc3339: &str) -> Timestamp {
    rfc3339.parse().expect("a valid RFC 3339 timestamp")
}

pub fn time(t: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).expect("in range")
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let mut out = String::new();
    write_pem(&mut out, label, der);
    out
}

pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn root(name: &str) -> Ca {
        let key = KeyPair::generate().expect("P-256 key");
        let params = ca_params(name);
        let der = params
            .self_signed(&key)
            .expect("self-signed CA")
            .der()
            .clone();
        Ca { params, key, der }
    }

    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().expect("P-256 key");
        let params = ca_params(name);
        let der = self.sign(&params, &key);
        Ca { params, key, der }
    }

    pub fn sign(&self, params: &CertificateParams, key: &KeyPair) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        params
            .signed_by(key, &issuer)
            .expect("rcgen signs")
            .der()
            .clone()
    }

    /// A P-256 server certificate for `sans`, valid 2020 to 2040.
    pub fn leaf(&self, sans: &[&str]) -> Leaf {
        self.leaf_with(leaf_params(sans), KeyPair::generate().expect("P-256 key"))
    }

    pub fn leaf_with(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        Leaf {
            der: self.sign(&params, &key),
            key,
        }
    }

    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// The CA's private key, PKCS#8 DER: to sign with `openssl x509 -req`.
    pub fn key_der(&self) -> &[u8] {
        self.key.serialized_der()
    }
}

pub fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A hostile upload: a leaf for `voip.example.test` and `cas` CA
/// certificates that all have the subject of the leaf's issuer, each with
/// its own key (only the first issued the leaf).
pub fn same_subject_bundle(cas: usize) -> String {
    let issuer = Ca::root("Same Subject CA");
    let mut text = issuer.leaf(&["voip.example.test"]).pem();
    text.push_str(&issuer.pem());
    for _ in 1..cas {
        text.push_str(&Ca::root("Same Subject CA").pem());
    }
    text
}

pub fn leaf_params(sans: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("valid SANs");
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(
        DnType::CommonName,
        sans.first().copied().unwrap_or("no-san"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = time(ts("2020-01-01T00:00:00Z"));
    params.not_after = time(ts("2040-01-01T00:00:00Z"));
    params
}

pub fn with_validity(
    mut params: CertificateParams,
    from: Timestamp,
    until: Timestamp,
) -> CertificateParams {
    params.not_before = time(from);
    params.not_after = time(until);
    params
}

pub fn without_sans(mut params: CertificateParams) -> CertificateParams {
    params.subject_alt_names.retain(|_| false);
    params
}

pub fn ip_san(params: &mut CertificateParams, ip: &str) {
    params
        .subject_alt_names
        .push(SanType::IpAddress(ip.parse().expect("an IP address")));
}

pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub key: KeyPair,
}

impl Leaf {
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.serialized_der())
    }
}

/// Root CA → intermediate CA → leaf for `voip.example.test` and 10.0.0.1.
pub struct Pki {
    pub root: Ca,
    pub intermediate: Ca,
    pub leaf: Leaf,
}

pub fn pki() -> Pki {
    let root = Ca::root("Test Root CA");
    let intermediate = root.intermediate("Test Intermediate CA");
    let leaf = intermediate.leaf(&["voip.example.test", "10.0.0.1"]);
    Pki {
        root,
        intermediate,
        leaf,
    }
}

/// Runs the real `openssl` in `dir`, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests run the openssl binary: install the openssl package");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dir/output`: the key in `dir/input` as encrypted PKCS#8 (PBES2,
/// AES-256-CBC, PBKDF2 with `iterations`), password `pw`.
pub fn encrypt_key(dir: &Path, input: &str, output: &str, iterations: u32) {
    let iterations = iterations.to_string();
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-iter",
            &iterations,
            "-in",
            input,
            "-passout",
            "pass:pw",
            "-out",
            output,
        ],
    );
}

/// A CA's answer to a signing request, as `openssl x509 -req` makes it:
/// `csr` (a file in `dir`) signed by `ca` and `ca_key` for `days`, its
/// extensions (the names) copied, written to `out`.
pub fn sign_request(dir: &Path, csr: &str, ca: &str, ca_key: &str, days: u32, out: &str) {
    let days = days.to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-days",
            &days,
            "-copy_extensions",
            "copy",
            "-out",
            out,
        ],
    );
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("openssl wrote the file")
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).expect("the temporary directory is writable");
}

/// The values inside the outer value of `der`, each whole (tag, length
/// and contents).
fn children(der: &[u8]) -> Vec<&[u8]> {
    let mut rest = crate::encoding::split_tlv(der).map_or(&[][..], |(_, value, _)| value);
    std::iter::from_fn(|| {
        let (_, _, next) = crate::encoding::split_tlv(rest)?;
        let whole = &rest[..rest.len() - next.len()];
        rest = next;
        Some(whole)
    })
    .collect()
}

impl Ca {
    /// This CA's certificate (its name and key) issued by `other`, valid
    /// `from` to `until`: a cross-signed CA.
    pub fn cross_signed_by(
        &self,
        other: &Ca,
        from: Timestamp,
        until: Timestamp,
    ) -> CertificateDer<'static> {
        other.sign(&with_validity(self.params.clone(), from, until), &self.key)
    }

    /// `cert` (issued by this CA) with its notAfter replaced by the
    /// GeneralizedTime `not_after` (such as `20310101000000.5Z`, which rcgen
    /// does not write), signed again.
    pub fn resign_with_not_after(&self, cert: &[u8], not_after: &str) -> CertificateDer<'static> {
        use crate::encoding::tlv;
        use rcgen::SigningKey as _;
        let parts = children(cert);
        let (tbs, algorithm) = (parts[0], parts[1]);
        let mut fields = children(tbs);
        // version [0], serial, signature, issuer, validity, ...
        let validity_at = 4;
        let not_before = children(fields[validity_at])[0];
        let time = tlv(0x18, &[not_after.as_bytes()]);
        let validity = tlv(0x30, &[not_before, &time]);
        fields[validity_at] = &validity;
        let tbs = tlv(0x30, &fields);
        let signature = self.key.sign(&tbs).expect("signs");
        let bits = tlv(0x03, &[&[0], &signature]);
        CertificateDer::from(tlv(0x30, &[&tbs, algorithm, &bits]).to_vec())
    }
}

/// A public key of any bytes, to certify keys no key pair has (an EC point
/// off the curve, an RSA key with an even modulus).
pub struct RawPublicKey {
    /// The subjectPublicKey: the point, or the DER RSAPublicKey.
    pub bytes: Vec<u8>,
    pub algorithm: &'static rcgen::SignatureAlgorithm,
}

impl RawPublicKey {
    /// `RSAPublicKey { modulus, publicExponent }` from big-endian bytes.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Self {
        use crate::encoding::tlv;
        let integer = |bytes: &[u8]| match bytes.first() {
            Some(b) if b & 0x80 != 0 => tlv(0x02, &[&[0], bytes]),
            _ => tlv(0x02, &[bytes]),
        };
        RawPublicKey {
            bytes: tlv(0x30, &[&integer(modulus), &integer(exponent)]).to_vec(),
            algorithm: &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// An uncompressed P-256 point `04 || x || y`.
    pub fn p256(x: [u8; 32], y: [u8; 32]) -> Self {
        RawPublicKey {
            bytes: [&[4][..], &x, &y].concat(),
            algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl rcgen::PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl Ca {
    /// A server certificate for `sans` certifying `key`, which has no
    /// private half.
    pub fn certify_raw(&self, sans: &[&str], key: &RawPublicKey) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        leaf_params(sans)
            .signed_by(key, &issuer)
            .expect("rcgen signs")
            .der()
            .clone()
    }
}
