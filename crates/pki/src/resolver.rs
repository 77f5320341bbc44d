//! TLS for the built-in HTTPS listeners: rustls server configurations that
//! present a certificate chosen by the local address a connection arrived
//! on and, where several certificates share an address, by SNI.
//!
//! rustls shows a resolver the ClientHello but not the socket, so the
//! choice by address is made when the connection is accepted: the listener
//! asks [`CertTable::server_config`] for the configuration of the
//! connection's local address (an `ArcSwap` load, a map lookup and an `Arc`
//! clone, all built in advance), and the configuration's resolver picks by
//! SNI among that address's certificates. [`CertTable::swap`] replaces
//! every configuration at once: connections accepted afterwards get the
//! new certificates; established ones keep the configuration they started
//! with and are not disturbed.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;

use switchboard_domain::TLS_POLICY;
use switchboard_domain::tls_policy::{CipherSuite, KxGroup, TlsVersion};

use crate::acme::{ACME_TLS_ALPN, Challenges};
use crate::{CertBundle, CertInfo, Host, Hostname};

/// A certificate chain with its key, ready to present.
#[derive(Clone)]
pub struct TlsIdentity {
    certified: Arc<CertifiedKey>,
    info: CertInfo,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsIdentity({})", self.info.subject)
    }
}

/// A bundle without a private key cannot be presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject} has no private key, so it cannot be presented: import it again with its key")]
pub struct MissingKey {
    pub subject: String,
}

impl TlsIdentity {
    pub fn new(bundle: &CertBundle) -> Result<Self, MissingKey> {
        let key = bundle.key().ok_or_else(|| MissingKey {
            subject: bundle.info().subject.clone(),
        })?;
        Ok(TlsIdentity {
            certified: Arc::new(CertifiedKey::new(bundle.chain().to_vec(), key.signer())),
            info: bundle.info().clone(),
        })
    }
}

/// What to present where: the input of [`CertTable::new`] and [`CertTable::swap`].
#[derive(Debug, Clone, Default)]
pub struct CertBindings {
    default: Option<TlsIdentity>,
    by_addr: HashMap<IpAddr, Vec<TlsIdentity>>,
}

impl CertBindings {
    pub fn new() -> Self {
        Self::default()
    }

    /// What addresses without a binding present.
    pub fn set_default(&mut self, identity: TlsIdentity) {
        self.default = Some(identity);
    }

    /// Presents `identity` on the local address `local`. On each address the
    /// first identity whose names cover the client's SNI is presented, or
    /// else the first one bound there.
    pub fn bind(&mut self, local: IpAddr, identity: TlsIdentity) {
        self.by_addr
            .entry(local.to_canonical())
            .or_default()
            .push(identity);
    }
}

/// The current certificates of a listener, swappable atomically.
#[derive(Debug)]
pub struct CertTable {
    provider: Arc<CryptoProvider>,
    alpn_protocols: Vec<Vec<u8>>,
    /// ACME `tls-alpn-01` answers, presented only to clients that offer
    /// `acme-tls/1` alone (see [`crate::acme`]).
    challenges: Arc<Challenges>,
    /// Shared by every configuration, across swaps, so resumption keeps working.
    sessions: Arc<dyn StoresServerSessions>,
    current: ArcSwap<Configs>,
}

#[derive(Debug, Default)]
struct Configs {
    fallback: Option<Arc<ServerConfig>>,
    by_addr: HashMap<IpAddr, Arc<ServerConfig>>,
    /// The fingerprints behind each configuration, for [`CertTable::presented`].
    fallback_presents: Vec<crate::Fingerprint>,
    presents: HashMap<IpAddr, Vec<crate::Fingerprint>>,
}

impl CertTable {
    /// A table for a listener that speaks `alpn_protocols` (e.g. `http/1.1`),
    /// with the appliance's TLS policy ([`policy_provider`]).
    pub fn new(alpn_protocols: Vec<Vec<u8>>, bindings: CertBindings) -> Self {
        let table = CertTable {
            provider: Arc::new(policy_provider()),
            alpn_protocols,
            challenges: Arc::default(),
            sessions: ServerSessionMemoryCache::new(4096),
            current: ArcSwap::default(),
        };
        table.swap(bindings);
        table
    }

    /// Replaces every certificate at once. Connections accepted before keep
    /// the configuration they got.
    pub fn swap(&self, bindings: CertBindings) {
        self.current.store(Arc::new(self.configs(bindings)));
    }

    /// The configuration for a connection that arrived on `local`; `None`
    /// when there is nothing to present there (close the connection).
    pub fn server_config(&self, local: IpAddr) -> Option<Arc<ServerConfig>> {
        let configs = self.current.load();
        configs
            .by_addr
            .get(&local.to_canonical())
            .or(configs.fallback.as_ref())
            .cloned()
    }

    /// The fingerprints of the certificates a connection arriving on
    /// `local` may be presented (by SNI, the first one without): what an
    /// Update verifies after a swap.
    pub fn presented(&self, local: IpAddr) -> Vec<crate::Fingerprint> {
        let configs = self.current.load();
        configs
            .presents
            .get(&local.to_canonical())
            .unwrap_or(&configs.fallback_presents)
            .clone()
    }

    fn configs(&self, bindings: CertBindings) -> Configs {
        let fingerprints = |ids: &[TlsIdentity]| ids.iter().map(|id| id.info.fingerprint).collect();
        Configs {
            fallback_presents: bindings
                .default
                .iter()
                .map(|id| id.info.fingerprint)
                .collect(),
            presents: bindings
                .by_addr
                .iter()
                .map(|(addr, ids)| (*addr, fingerprints(ids)))
                .collect(),
            fallback: bindings.default.map(|id| self.config(vec![id])),
            by_addr: bindings
                .by_addr
                .into_iter()
                .map(|(addr, ids)| (addr, self.config(ids)))
                .collect(),
        }
    }

    /// The ACME challenges this table answers (on every address).
    pub fn challenges(&self) -> &Challenges {
        &self.challenges
    }

    fn config(&self, identities: Vec<TlsIdentity>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&policy_versions())
            .expect("the policy's suites and groups are the ring provider's own")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver {
                identities,
                challenges: self.challenges.clone(),
            }));
        config.alpn_protocols = self.alpn_protocols.clone();
        // Chosen only when a client offers nothing else the table speaks.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        config.session_storage = self.sessions.clone();
        Arc::new(config)
    }
}

/// The ring provider narrowed to [`TLS_POLICY`]: its cipher suites and
/// key-exchange groups, in the policy's order of preference.
pub fn policy_provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    let suite = |s: CipherSuite| match s {
        CipherSuite::Tls13Aes256GcmSha384 => cs::TLS13_AES_256_GCM_SHA384,
        CipherSuite::Tls13Aes128GcmSha256 => cs::TLS13_AES_128_GCM_SHA256,
        CipherSuite::Tls13Chacha20Poly1305Sha256 => cs::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::EcdheEcdsaWithAes256GcmSha384 => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheEcdsaWithAes128GcmSha256 => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheEcdsaWithChacha20Poly1305Sha256 => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        CipherSuite::EcdheRsaWithAes256GcmSha384 => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::EcdheRsaWithAes128GcmSha256 => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::EcdheRsaWithChacha20Poly1305Sha256 => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
    };
    let group = |g: KxGroup| -> &'static dyn SupportedKxGroup {
        match g {
            KxGroup::X25519 => kx_group::X25519,
            KxGroup::P256 => kx_group::SECP256R1,
            KxGroup::P384 => kx_group::SECP384R1,
        }
    };
    CryptoProvider {
        cipher_suites: TLS_POLICY.cipher_suites.iter().map(|s| suite(*s)).collect(),
        kx_groups: TLS_POLICY.kx_groups.iter().map(|g| group(*g)).collect(),
        ..rustls::crypto::ring::default_provider()
    }
}

/// The protocol versions of [`TLS_POLICY`], for a rustls config builder.
pub fn policy_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    TLS_POLICY
        .versions()
        .into_iter()
        .rev()
        .map(|v| match v {
            TlsVersion::Tls13 => &rustls::version::TLS13,
            TlsVersion::Tls12 => &rustls::version::TLS12,
        })
        .collect()
}

/// The certificates of one address.
#[derive(Debug)]
struct SniResolver {
    identities: Vec<TlsIdentity>,
    challenges: Arc<Challenges>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A validation server offers `acme-tls/1` alone: it gets the
        // challenge's answer for the name it asks, or nothing.
        if hello
            .alpn()
            .is_some_and(|mut offered| offered.all(|p| p == ACME_TLS_ALPN))
        {
            return hello.server_name().and_then(|n| self.challenges.get(n));
        }
        let sni = hello.server_name().and_then(|s| s.parse::<Hostname>().ok());
        sni.and_then(|name| {
            let host = Host::Name(name);
            self.identities.iter().find(|id| id.info.covers(&host))
        })
        .or(self.identities.first())
        .map(|id| id.certified.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::import;
    use crate::testpki::{Ca, pki};

    fn identity(
        ca: &Ca,
        names: &[&str],
    ) -> (TlsIdentity, rustls_pki_types::CertificateDer<'static>) {
        let leaf = ca.leaf(names);
        let bundle = import(
            [leaf.pem(), leaf.key_pem(), ca.pem()].concat().as_bytes(),
            None,
            None,
        )
        .expect("imports");
        (TlsIdentity::new(&bundle).expect("has a key"), leaf.der)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP address")
    }

    /// Accepts TLS connections forever, echoing what each client sends.
    async fn serve(table: Arc<CertTable>, local: &str) -> SocketAddr {
        let listener = TcpListener::bind((ip(local), 0))
            .await
            .expect("loopback addresses can be bound");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let local = stream.local_addr().expect("connected").ip();
                let config = table.server_config(local).expect("something to present");
                tokio::spawn(async move {
                    let tls = TlsAcceptor::from(config)
                        .accept(stream)
                        .await
                        .expect("handshake");
                    let (mut reader, mut writer) = tokio::io::split(tls);
                    tokio::io::copy(&mut reader, &mut writer).await.ok();
                });
            }
        });
        addr
    }

    async fn connect(addr: SocketAddr, name: &str, root: &Ca) -> TlsStream<TcpStream> {
        connect_with(addr, name, root, rustls::DEFAULT_VERSIONS).await
    }

    async fn connect_with(
        addr: SocketAddr,
        name: &str,
        root: &Ca,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(root.der.clone()).expect("a CA");
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("supported versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        let stream = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from(name.to_owned()).expect("a server name");
        TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .expect("the certificate verifies")
    }

    fn presented(tls: &TlsStream<TcpStream>) -> rustls_pki_types::CertificateDer<'static> {
        tls.get_ref()
            .1
            .peer_certificates()
            .expect("a server certificate")[0]
            .clone()
    }

    #[tokio::test]
    async fn the_certificate_depends_on_the_local_address_and_sni_and_swaps_without_dropping_connections()
     {
        let pki = pki();
        let ca = &pki.intermediate;
        let (a, a_der) = identity(ca, &["a.example.test", "127.0.0.1"]);
        let (c, c_der) = identity(ca, &["c.example.test"]);
        let (b, b_der) = identity(ca, &["b.example.test", "127.0.0.2"]);
        let mut bindings = CertBindings::new();
        bindings.bind(ip("127.0.0.1"), a);
        bindings.bind(ip("127.0.0.1"), c);
        bindings.bind(ip("127.0.0.2"), b);
        let table = Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings));
        let one = serve(table.clone(), "127.0.0.1").await;
        let two = serve(table.clone(), "127.0.0.2").await;

        // Connecting by IP address sends no SNI: only the local address decides.
        let mut before = connect(one, "127.0.0.1", &pki.root).await;
        assert_eq!(presented(&before), a_der);
        assert_eq!(
            presented(&connect(two, "127.0.0.2", &pki.root).await),
            b_der
        );
        assert_eq!(
            presented(&connect(one, "c.example.test", &pki.root).await),
            c_der
        );
        assert_eq!(
            presented(&connect(one, "a.example.test", &pki.root).await),
            a_der
        );
        let tls12 =
            connect_with(one, "a.example.test", &pki.root, &[&rustls::version::TLS12]).await;
        assert_eq!(
            tls12.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(
            before.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );

        let (renewed, renewed_der) = identity(ca, &["a.example.test", "127.0.0.1"]);
        let mut next = CertBindings::new();
        next.bind(ip("127.0.0.1"), renewed);
        table.swap(next);

        assert_eq!(
            presented(&connect(one, "127.0.0.1", &pki.root).await),
            renewed_der
        );
        before
            .write_all(b"still here")
            .await
            .expect("the old connection writes");
        let mut echo = [0u8; 10];
        before
            .read_exact(&mut echo)
            .await
            .expect("the old connection reads");
        assert_eq!(&echo, b"still here");
        assert_eq!(presented(&before), a_der);
    }

    #[test]
    fn addresses_without_a_binding_get_the_default_or_nothing() {
        let pki = pki();
        let (a, _) = identity(&pki.intermediate, &["a.example.test"]);
        let mut bindings = CertBindings::new();
        bindings.bind(ip("192.0.2.1"), a.clone());
        let table = CertTable::new(vec![], bindings.clone());
        assert!(table.server_config(ip("192.0.2.1")).is_some());
        assert!(table.server_config(ip("::ffff:192.0.2.1")).is_some());
        assert!(table.server_config(ip("192.0.2.2")).is_none());
        bindings.set_default(a);
        table.swap(bindings);
        assert!(table.server_config(ip("192.0.2.2")).is_some());
    }

    #[test]
    fn a_bundle_without_a_key_cannot_be_presented() {
        let pki = pki();
        let bundle = import(&pki.leaf.der, None, None).expect("imports");
        let err = TlsIdentity::new(&bundle).expect_err("no key");
        assert_eq!(err.subject, "CN=voip.example.test");
    }

    /// Accepts any server certificate: the challenge's is self-signed.
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        // webpki refuses to parse a certificate with an unknown critical
        // extension (acmeIdentifier) at all: the signatures go unchecked.
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A handshake offering only `acme-tls/1`, as a validation server
    /// makes: the certificate presented and the protocol agreed.
    async fn acme_handshake(
        addr: SocketAddr,
        name: &str,
    ) -> std::io::Result<(rustls_pki_types::CertificateDer<'static>, Option<Vec<u8>>)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let stream = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).expect("a server name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await?;
        let (_, conn) = tls.get_ref();
        Ok((
            conn.peer_certificates().expect("a certificate")[0].clone(),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        ))
    }

    #[tokio::test]
    async fn a_validation_server_gets_the_challenge_answer_and_other_clients_the_bound_certificate()
    {
        let pki = pki();
        let (a, a_der) = identity(&pki.intermediate, &["acme.example.test"]);
        let mut bindings = CertBindings::new();
        bindings.bind(ip("127.0.0.1"), a);
        let table = Arc::new(CertTable::new(vec![b"http/1.1".to_vec()], bindings));
        let addr = serve(table.clone(), "127.0.0.1").await;
        let name: Hostname = "acme.example.test".parse().expect("a name");

        // No challenge: a validation server gets nothing.
        assert!(acme_handshake(addr, "acme.example.test").await.is_err());
        table.challenges().add(&name, &[9u8; 32]).expect("added");
        let (answer, protocol) = acme_handshake(addr, "acme.example.test")
            .await
            .expect("the challenge's answer");
        assert_eq!(protocol.as_deref(), Some(ACME_TLS_ALPN));
        assert_ne!(answer, a_der);
        let (_, cert) = x509_parser::parse_x509_certificate(&answer).expect("a certificate");
        assert!(
            cert.extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31" && e.critical)
        );
        // Another name, or an ordinary client, is not shown the answer.
        assert!(acme_handshake(addr, "other.example.test").await.is_err());
        assert_eq!(
            presented(&connect(addr, "acme.example.test", &pki.root).await),
            a_der
        );
        table.challenges().remove(&name);
        assert!(acme_handshake(addr, "acme.example.test").await.is_err());
    }
}
