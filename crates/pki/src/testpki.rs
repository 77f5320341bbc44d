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

fn time(t: Timestamp) -> time::OffsetDateTime {
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
}

fn ca_params(name: &str) -> CertificateParams {
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

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("openssl wrote the file")
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).expect("the temporary directory is writable");
}
