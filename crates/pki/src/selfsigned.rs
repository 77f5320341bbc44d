//! The certificate of the first start: self-signed, so the console works
//! out of the box, and flagged as such everywhere ([`CertInfo::is_self_signed`](crate::CertInfo)).

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::PrivateKeyDer;

use crate::{CertBundle, Hostname, PrivateKey};

/// Apple's limit for any TLS server certificate, even a user-trusted one.
const LIFETIME: SignedDuration = SignedDuration::from_hours(825 * 24);

/// A self-signed ECDSA P-256 certificate for `host` and `ips`, valid from an
/// hour before `now` (clock skew) for 825 days.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn self_signed(host: &Hostname, ips: &[IpAddr], now: Timestamp) -> CertBundle {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("the OS random number generator works");
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, host.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "switchboard (self-signed)");
    params.subject_alt_names = std::iter::once(SanType::DnsName(
        host.as_str().try_into().expect("a Hostname is ASCII"),
    ))
    .chain(ips.iter().map(|&ip| SanType::IpAddress(ip.to_canonical())))
    .collect();
    let time = |t: Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.as_second())
            .expect("jiff and time cover the same years")
    };
    params.not_before = time(
        now.checked_sub(SignedDuration::from_hours(1))
            .unwrap_or(now),
    );
    params.not_after = time(now.checked_add(LIFETIME).unwrap_or(Timestamp::MAX));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .expect("rcgen signs valid parameters");
    let key = PrivateKey::from_der(&PrivateKeyDer::Pkcs8(key.serialized_der().into()))
        .expect("rcgen makes ring-compatible P-256 keys");
    CertBundle::from_parts(vec![cert.der().clone()], Some(key))
        .expect("a self-signed server certificate with its key is a valid bundle")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpki::ts;
    use crate::{Host, KeyAlgorithm, import};

    #[test]
    fn the_first_start_certificate_is_self_signed_for_the_host_and_every_address() {
        let host: Hostname = "appliance.example.test".parse().expect("host");
        let ips = [
            "192.0.2.10".parse().expect("ip"),
            "2001:db8::10".parse().expect("ip"),
        ];
        let now = ts("2030-01-01T12:00:00Z");
        let bundle = self_signed(&host, &ips, now);
        let info = bundle.info();
        assert!(info.is_self_signed && !info.is_ca);
        assert_eq!(
            info.subject,
            "CN=appliance.example.test, O=switchboard (self-signed)"
        );
        assert_eq!(info.dns_names, ["appliance.example.test"]);
        assert_eq!(info.ip_addresses, ips);
        assert_eq!(info.not_before, ts("2030-01-01T11:00:00Z"));
        assert_eq!(info.not_after, now.checked_add(LIFETIME).expect("in range"));
        assert_eq!(info.key.map(|k| k.algorithm), Some(KeyAlgorithm::EcdsaP256));
        for name in ["appliance.example.test", "192.0.2.10", "2001:db8::10"] {
            assert!(info.covers(&name.parse::<Host>().expect("host")), "{name}");
        }
        let key = bundle.key().expect("a key").to_key_pem();
        let stored = import(
            bundle.chain_pem().as_bytes(),
            Some(key.expose_secret().as_bytes()),
            None,
        )
        .expect("the stored form imports back");
        assert_eq!(stored.info(), info);
    }
}
