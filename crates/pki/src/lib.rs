//! Certificates for switchboard: the PKI core.
//!
//! - [`import`] turns an upload (PEM bundle in any order, separate key file,
//!   DER, PKCS#12, encrypted PKCS#8) into a [`CertBundle`]: the chain in
//!   order, leaf first, and the [`PrivateKey`] that matches the leaf, or a
//!   precise [`ImportError`] with a stable code and a hint. The work of one
//!   upload is bounded before it starts: [`MAX_UPLOAD`] bytes, at most
//!   [`MAX_CERTIFICATES`] certificates and [`MAX_KEYS`] keys, counted before
//!   any is parsed, and at most [`MAX_ENCRYPTED_KEYS`] encrypted key, at most
//!   [`MAX_PBKDF2_ITERATIONS`], decrypted. Chains are ordered through an
//!   index of subjects and key identifiers; a signature is verified only
//!   for the candidate issuers it finds.
//! - [`CertInfo`] summarizes a certificate for people and scripts.
//! - [`check`] is the offline padlock check: trust (webpki path validation
//!   against [`TrustAnchors`], the bundle as a pool of candidate
//!   intermediates), missing intermediates, the host name or address
//!   (RFC 6125), the key, validity (in whole seconds, of the certificates on
//!   the path found): a [`PadlockReport`]. A leaf's public key is checked
//!   for usability when the bundle is made (an EC point on its curve, an RSA
//!   modulus odd and an exponent odd and at least 3), key or no key.
//! - [`make_request`] makes a key on the appliance (ECDSA P-256, or RSA
//!   3072) and a PKCS#10 request for it; [`CertBundle::with_key`] attaches
//!   the CA's answer to that key, refusing a certificate for another.
//! - [`self_signed`] makes the certificate of the first start.
//! - [`CertTable`] holds what the built-in HTTPS listeners present, per
//!   local address and SNI, swapped atomically.
//!
//! **Boundary.** Pure functions over bytes, with the clock passed in. The
//! only I/O is [`system_roots`], which reads the system's CA bundle, and
//! the operating system's random numbers that key generation draws. No
//! async, no sockets: listeners call [`CertTable::server_config`] for each
//! accepted connection. Private keys never appear in `Debug` output or
//! error messages, and leave this crate only through
//! [`PrivateKey::to_key_pem`], for storage in a root-only file.
//!
//! **Limitations.** No revocation (CRL, OCSP) and no OCSP stapling; no
//! AIA fetching (a missing intermediate is reported, as phones would fail);
//! the resolver does not pick between an RSA and an ECDSA certificate for
//! the same name by the client's signature schemes; chains are linked by
//! issuer name, key identifier and signature (of several that sign, the one
//! valid longest is served; the check explores every alternative);
//! Ed25519 public keys are checked for their length only; the contents of a PKCS#12 file are counted only once it is
//! opened (`p12-keystore` caps each of its key derivations at 1,000,000
//! iterations, not their number);
//! PKCS#12 key bytes pass through `p12-keystore` buffers that are not
//! wiped; legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`) and PBES1 are
//! refused rather than decrypted; requests name DNS names and addresses
//! only (no other subject fields, no extensions but subjectAltName).
//!
//! **Tests** build their PKI with rcgen and run the real `openssl` binary
//! for what rcgen does not write (PKCS#12, encrypted PKCS#8, RSA keys);
//! the resolver test handshakes over 127.0.0.1 and 127.0.0.2.

pub mod acme;
mod check;
mod encoding;
mod error;
mod import;
mod info;
mod key;
mod name;
mod request;
mod resolver;
mod selfsigned;

pub use check::{
    DEBIAN_CA_BUNDLE, EXPIRY_ERROR, EXPIRY_WARNING, Finding, FindingCode, PadlockReport, Severity,
    TrustAnchors, check, system_roots,
};
pub use error::ImportError;
pub use import::{
    CertBundle, MAX_CA_CERTIFICATES, MAX_CERTIFICATES, MAX_ENCRYPTED_KEYS, MAX_KEYS, MAX_UPLOAD,
    import, read_certificates,
};
pub use info::{CertInfo, Fingerprint, InvalidFingerprint, subject_public_key_info};
pub use key::{KeyAlgorithm, KeyPem, KeyType, MAX_PBKDF2_ITERATIONS, PrivateKey};
pub use request::{
    KeyRequest, MAX_REQUEST_NAMES, RequestError, RequestKeyType, RequestName, make_request,
};
pub use resolver::{
    CertBindings, CertTable, MissingKey, TlsIdentity, policy_provider, policy_versions,
};
pub use selfsigned::self_signed;
pub use switchboard_domain::host::{Host, Hostname, InvalidHostname};

#[cfg(any(test, feature = "testpki"))]
pub mod testpki;
