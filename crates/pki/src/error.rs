//! Why an upload was refused. One variant per thing the administrator can
//! fix, each with a stable code and a hint saying what to do.
//!
//! No variant carries key material: messages name certificates by subject,
//! never by content.

use crate::{MAX_ENCRYPTED_KEYS, MAX_UPLOAD};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the upload is {size} bytes; switchboard accepts at most {MAX_UPLOAD} bytes")]
    Oversize { size: usize },
    #[error("the upload is neither PEM nor DER, so it holds no certificate")]
    Unrecognized,
    #[error("the upload is cut short: it ends inside {inside}")]
    Truncated { inside: &'static str },
    #[error("the upload is damaged: {detail}")]
    Malformed { detail: String },
    #[error("the upload holds {found}, not a certificate")]
    NotACertificate { found: String },
    #[error("the upload holds no certificate")]
    NoCertificate,
    #[error("the key file holds no private key")]
    NoKey,
    #[error("the private key does not belong to the certificate {leaf}")]
    KeyMismatch { leaf: String },
    #[error("{subject} is a CA certificate (basicConstraints CA:TRUE), not a server certificate")]
    CaAsLeaf { subject: String },
    #[error("the upload holds several server certificates: {}", subjects.join("; "))]
    SeveralLeaves { subjects: Vec<String> },
    #[error("the upload holds several different private keys")]
    SeveralKeys,
    #[error("the {what} is protected by a password, and none was given")]
    PasswordRequired { what: &'static str },
    #[error("the password does not open the PKCS#12 file")]
    WrongPkcs12Password,
    #[error("the passphrase does not decrypt the private key")]
    WrongKeyPassphrase,
    #[error("the {what} is encrypted in a way switchboard does not support")]
    UnsupportedEncryption { what: &'static str },
    #[error("unsupported key: {what}")]
    UnsupportedKey { what: String },
    #[error("the certificate's public key is unusable: {what}")]
    UnusableKey { what: String },
    #[error("{subject} is not a CA certificate, so it cannot be a trusted CA")]
    NotACa { subject: String },
    #[error(
        "the upload holds {found} certificates; switchboard accepts at most {max} in one upload"
    )]
    TooManyCertificates { found: usize, max: usize },
    #[error(
        "the upload holds {found} private keys; switchboard accepts at most {max} in one upload"
    )]
    TooManyKeys { found: usize, max: usize },
    #[error("the private key is too costly to decrypt: {detail}")]
    KeyTooCostly { detail: String },
}

impl ImportError {
    /// More than [`MAX_ENCRYPTED_KEYS`] encrypted keys in one upload.
    pub(crate) fn too_many_encrypted_keys(found: usize) -> Self {
        ImportError::KeyTooCostly {
            detail: format!(
                "the upload holds {found} encrypted keys; switchboard decrypts at most {MAX_ENCRYPTED_KEYS} per upload"
            ),
        }
    }
}

impl ImportError {
    /// A stable kebab-case code: scripts and the console key on it. Never
    /// rename one, only add.
    pub fn code(&self) -> &'static str {
        match self {
            ImportError::Oversize { .. } => "oversize",
            ImportError::Unrecognized => "unrecognized-format",
            ImportError::Truncated { .. } => "truncated",
            ImportError::Malformed { .. } => "malformed",
            ImportError::NotACertificate { .. } => "not-a-certificate",
            ImportError::NoCertificate => "no-certificate",
            ImportError::NoKey => "no-key",
            ImportError::KeyMismatch { .. } => "key-mismatch",
            ImportError::CaAsLeaf { .. } => "ca-as-leaf",
            ImportError::SeveralLeaves { .. } => "several-leaves",
            ImportError::SeveralKeys => "several-keys",
            ImportError::PasswordRequired { .. } => "password-required",
            ImportError::WrongPkcs12Password => "wrong-pkcs12-password",
            ImportError::WrongKeyPassphrase => "wrong-key-passphrase",
            ImportError::UnsupportedEncryption { .. } => "unsupported-encryption",
            ImportError::UnsupportedKey { .. } => "unsupported-key",
            ImportError::UnusableKey { .. } => "unusable-key",
            ImportError::NotACa { .. } => "not-a-ca",
            ImportError::TooManyCertificates { .. } => "too-many-certificates",
            ImportError::TooManyKeys { .. } => "too-many-keys",
            ImportError::KeyTooCostly { .. } => "key-too-costly",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ImportError::Oversize { .. } => {
                "a certificate, its chain and its key take a few kilobytes: check that you picked the right file"
            }
            ImportError::Unrecognized => {
                "upload a PEM file (text with -----BEGIN CERTIFICATE-----), a DER certificate or a PKCS#12 (.p12/.pfx) file"
            }
            ImportError::Truncated { .. } => {
                "the file was cut while copying or downloading: fetch it again and upload the complete file"
            }
            ImportError::Malformed { .. } => {
                "export or download the file again from where it came from; if it was pasted, paste it whole"
            }
            ImportError::NotACertificate { .. } => {
                "upload the certificate your CA issued (a signing request, public key or CRL is not one); \
                 for PKCS#7 run `openssl pkcs7 -print_certs` first"
            }
            ImportError::NoCertificate => {
                "upload the certificate too: with the key in one PEM file, or as the bundle with the key as the key file"
            }
            ImportError::NoKey => {
                "upload the private key file: PEM (-----BEGIN PRIVATE KEY----- or similar) or DER"
            }
            ImportError::KeyMismatch { .. } => {
                "upload the key made with the signing request for this certificate: \
                 `openssl x509 -noout -pubkey` and `openssl pkey -pubout` must print the same key"
            }
            ImportError::CaAsLeaf { .. } => {
                "upload the server certificate issued for your host name; add CA certificates as trusted CAs instead. \
                 A self-signed certificate made with `openssl req -x509` needs `-addext basicConstraints=critical,CA:FALSE`"
            }
            ImportError::SeveralLeaves { .. } => {
                "import one server certificate at a time, each with its own chain and key"
            }
            ImportError::SeveralKeys => "upload only the private key of this certificate",
            ImportError::PasswordRequired { .. } => "give the password that protects the file",
            ImportError::WrongPkcs12Password => {
                "give the password that was set when the PKCS#12 file was exported"
            }
            ImportError::WrongKeyPassphrase => "give the passphrase the key was encrypted with",
            ImportError::UnsupportedEncryption { .. } => {
                "re-encrypt with current defaults: `openssl pkcs8 -topk8 -v2 aes-256-cbc` for a key, \
                 `openssl pkcs12 -export` (OpenSSL 3) for a PKCS#12 file"
            }
            ImportError::UnsupportedKey { .. } => {
                "get a certificate for an RSA key of 2048 to 4096 bits, an ECDSA P-256 or P-384 key, or an Ed25519 key"
            }
            ImportError::UnusableKey { .. } => {
                "no client can verify a signature made with this key, whatever the private key: make a new key \
                 (`switchboard cert request` makes one on the appliance) and get a certificate for it"
            }
            ImportError::NotACa { .. } => {
                "add the CA certificate that issued your server certificates, not a server certificate"
            }
            ImportError::TooManyCertificates { .. } => {
                "upload the server certificate with its own chain only (the intermediates, the root at most); \
                 trust other CAs with `switchboard cert ca add`"
            }
            ImportError::TooManyKeys { .. } => {
                "upload only the private key of this certificate, once"
            }
            ImportError::KeyTooCostly { .. } => {
                "upload one key, encrypted with current defaults (`openssl pkcs8 -topk8 -v2 aes-256-cbc`: \
                 PBKDF2 with 2048 iterations; switchboard accepts up to 1000000), or unencrypted"
            }
        }
    }
}
