//! The appliance's one TLS policy: what every TLS socket accepts, whether
//! switchboard serves it (the console, the web services, through rustls) or
//! Kamailio does (SIP/TLS, through OpenSSL).
//!
//! TLS 1.2 and 1.3 only; AEAD cipher suites only (AES-GCM and
//! ChaCha20-Poly1305), with ECDHE key exchange in TLS 1.2 (so forward secrecy,
//! no RSA key transport, no CBC, no SHA-1 MAC); the key-exchange groups
//! X25519, P-256 and P-384. [`TLS_POLICY`] is the value; the pki crate turns
//! it into a rustls provider, the plan crate into Kamailio's `tls.cfg`
//! (OpenSSL syntax, [`TlsPolicy::openssl_cipher_list`]).

/// A TLS protocol version the policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// A cipher suite the policy allows, by its IANA name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    Tls13Aes256GcmSha384,
    Tls13Aes128GcmSha256,
    Tls13Chacha20Poly1305Sha256,
    EcdheEcdsaWithAes256GcmSha384,
    EcdheEcdsaWithAes128GcmSha256,
    EcdheEcdsaWithChacha20Poly1305Sha256,
    EcdheRsaWithAes256GcmSha384,
    EcdheRsaWithAes128GcmSha256,
    EcdheRsaWithChacha20Poly1305Sha256,
}

impl CipherSuite {
    /// The protocol version the suite belongs to.
    pub fn version(self) -> TlsVersion {
        match self {
            CipherSuite::Tls13Aes256GcmSha384
            | CipherSuite::Tls13Aes128GcmSha256
            | CipherSuite::Tls13Chacha20Poly1305Sha256 => TlsVersion::Tls13,
            CipherSuite::EcdheEcdsaWithAes256GcmSha384
            | CipherSuite::EcdheEcdsaWithAes128GcmSha256
            | CipherSuite::EcdheEcdsaWithChacha20Poly1305Sha256
            | CipherSuite::EcdheRsaWithAes256GcmSha384
            | CipherSuite::EcdheRsaWithAes128GcmSha256
            | CipherSuite::EcdheRsaWithChacha20Poly1305Sha256 => TlsVersion::Tls12,
        }
    }

    /// The IANA name (what rustls and the RFCs call it).
    pub fn iana_name(self) -> &'static str {
        match self {
            CipherSuite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            CipherSuite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            CipherSuite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            CipherSuite::EcdheEcdsaWithAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::EcdheEcdsaWithAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::EcdheEcdsaWithChacha20Poly1305Sha256 => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            CipherSuite::EcdheRsaWithAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::EcdheRsaWithAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::EcdheRsaWithChacha20Poly1305Sha256 => {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            }
        }
    }

    /// The OpenSSL name (what `cipher_list` and `openssl s_client -cipher`
    /// or `-ciphersuites` take).
    pub fn openssl_name(self) -> &'static str {
        match self {
            CipherSuite::Tls13Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
            CipherSuite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
            CipherSuite::Tls13Chacha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
            CipherSuite::EcdheEcdsaWithAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            CipherSuite::EcdheEcdsaWithAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            CipherSuite::EcdheEcdsaWithChacha20Poly1305Sha256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            CipherSuite::EcdheRsaWithAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            CipherSuite::EcdheRsaWithAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            CipherSuite::EcdheRsaWithChacha20Poly1305Sha256 => "ECDHE-RSA-CHACHA20-POLY1305",
        }
    }
}

/// A key-exchange group the policy allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KxGroup {
    X25519,
    P256,
    P384,
}

impl KxGroup {
    /// The OpenSSL name (`-groups`, `Groups =`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            KxGroup::X25519 => "X25519",
            KxGroup::P256 => "P-256",
            KxGroup::P384 => "P-384",
        }
    }
}

/// What every TLS socket of the appliance accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// The lowest version accepted; every later one the policy knows is too.
    pub min_version: TlsVersion,
    /// In order of preference.
    pub cipher_suites: &'static [CipherSuite],
    /// In order of preference.
    pub kx_groups: &'static [KxGroup],
}

/// The policy of every TLS socket: TLS 1.2+, AEAD suites with ECDHE,
/// X25519, P-256 and P-384.
pub const TLS_POLICY: TlsPolicy = TlsPolicy {
    min_version: TlsVersion::Tls12,
    cipher_suites: &[
        CipherSuite::Tls13Aes256GcmSha384,
        CipherSuite::Tls13Aes128GcmSha256,
        CipherSuite::Tls13Chacha20Poly1305Sha256,
        CipherSuite::EcdheEcdsaWithAes256GcmSha384,
        CipherSuite::EcdheEcdsaWithAes128GcmSha256,
        CipherSuite::EcdheEcdsaWithChacha20Poly1305Sha256,
        CipherSuite::EcdheRsaWithAes256GcmSha384,
        CipherSuite::EcdheRsaWithAes128GcmSha256,
        CipherSuite::EcdheRsaWithChacha20Poly1305Sha256,
    ],
    kx_groups: &[KxGroup::X25519, KxGroup::P256, KxGroup::P384],
};

impl TlsPolicy {
    /// The versions accepted, oldest first.
    pub fn versions(&self) -> Vec<TlsVersion> {
        [TlsVersion::Tls12, TlsVersion::Tls13]
            .into_iter()
            .filter(|v| *v >= self.min_version)
            .collect()
    }

    /// The suites of `version`, in order of preference.
    pub fn suites_of(&self, version: TlsVersion) -> impl Iterator<Item = CipherSuite> + '_ {
        self.cipher_suites
            .iter()
            .copied()
            .filter(move |s| s.version() == version)
    }

    /// The TLS 1.2 suites in OpenSSL's cipher-list syntax (`A:B:C`), for
    /// `SSL_CTX_set_cipher_list` (Kamailio's `cipher_list`).
    pub fn openssl_cipher_list(&self) -> String {
        self.suites_of(TlsVersion::Tls12)
            .map(CipherSuite::openssl_name)
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The TLS 1.3 suites in OpenSSL's syntax, for `SSL_CTX_set_ciphersuites`.
    pub fn openssl_ciphersuites(&self) -> String {
        self.suites_of(TlsVersion::Tls13)
            .map(CipherSuite::openssl_name)
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The groups in OpenSSL's syntax (`X25519:P-256:P-384`).
    pub fn openssl_groups(&self) -> String {
        self.kx_groups
            .iter()
            .map(|g| g.openssl_name())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Kamailio's `method` for the policy's lowest version.
    pub fn kamailio_method(&self) -> &'static str {
        match self.min_version {
            TlsVersion::Tls12 => "TLSv1.2+",
            TlsVersion::Tls13 => "TLSv1.3+",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_aead_with_forward_secrecy_only() {
        for s in TLS_POLICY.cipher_suites {
            let name = s.iana_name();
            assert!(
                name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
            assert!(
                s.version() == TlsVersion::Tls13 || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
        }
        assert_eq!(
            TLS_POLICY.versions(),
            [TlsVersion::Tls12, TlsVersion::Tls13]
        );
    }

    #[test]
    fn openssl_syntax() {
        assert_eq!(
            TLS_POLICY.openssl_cipher_list(),
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
             ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:\
             ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"
        );
        assert_eq!(
            TLS_POLICY.openssl_ciphersuites(),
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(TLS_POLICY.openssl_groups(), "X25519:P-256:P-384");
        assert_eq!(TLS_POLICY.kamailio_method(), "TLSv1.2+");
    }
}
