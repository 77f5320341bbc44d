//! The ACME `tls-alpn-01` challenge (RFC 8737) on the built-in listeners.
//!
//! To prove control of a name, the appliance presents, to a TLS client
//! that offers only the `acme-tls/1` protocol and asks for that name, a
//! self-signed certificate for the name carrying the `acmeIdentifier`
//! extension: the SHA-256 digest of the challenge's key authorization.
//! [`Challenges`] holds what is presented while an order is validated;
//! the [`CertTable`](crate::CertTable) resolver consults it for such
//! ClientHellos only, and the listener closes the connection after the
//! handshake (RFC 8737: no data follows). Ordinary clients never see it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::Hostname;

/// The ALPN protocol of the challenge.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge certificates presented now, by name (shared by every
/// configuration of a table).
#[derive(Debug, Default)]
pub struct Challenges(RwLock<HashMap<String, Arc<CertifiedKey>>>);

impl Challenges {
    /// Presents, for `name`, the answer to a challenge whose key
    /// authorization has the SHA-256 `digest`, until [`Challenges::remove`].
    pub fn add(&self, name: &Hostname, digest: &[u8]) -> Result<(), String> {
        let certified = challenge_certificate(name, digest)?;
        self.write().insert(name.to_string(), Arc::new(certified));
        Ok(())
    }

    pub fn remove(&self, name: &Hostname) {
        self.write().remove(&name.to_string());
    }

    /// The challenge certificate for the name a client asked for.
    pub(crate) fn get(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let sni = sni.parse::<Hostname>().ok()?;
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sni.to_string())
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A self-signed certificate for `name` with the critical `acmeIdentifier`
/// extension holding `digest`, and a fresh P-256 key.
fn challenge_certificate(name: &Hostname, digest: &[u8]) -> Result<CertifiedKey, String> {
    if digest.len() != 32 {
        return Err(format!(
            "a key authorization digest is 32 bytes, not {}",
            digest.len()
        ));
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot make a challenge key: {e}"))?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| format!("cannot describe the challenge certificate: {e}"))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the challenge certificate: {e}"))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = any_supported_type(&der).map_err(|e| format!("the challenge key: {e}"))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::*;

    use super::*;

    #[test]
    fn the_challenge_certificate_names_the_host_and_carries_the_digest_critically() {
        let name: Hostname = "voip.example.test".parse().expect("a name");
        let challenges = Challenges::default();
        challenges.add(&name, &[7u8; 32]).expect("made");
        let certified = challenges
            .get("VOIP.example.test")
            .expect("found by SNI, any case");
        let (_, cert) = X509Certificate::from_der(&certified.cert[0]).expect("a certificate");
        let san = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("has SANs");
        assert_eq!(
            san.value.general_names,
            [GeneralName::DNSName("voip.example.test")]
        );
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(ext.value, [[0x04, 32].as_slice(), &[7u8; 32]].concat());
        assert!(challenges.get("other.example.test").is_none());
        challenges.remove(&name);
        assert!(challenges.is_empty());
        assert!(challenges.add(&name, &[1, 2, 3]).is_err(), "not a digest");
    }
}
