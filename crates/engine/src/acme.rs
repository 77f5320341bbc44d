//! Certificates from an ACME CA (RFC 8555), obtained by the appliance.
//!
//! [`Engine::acme_issue`] makes the key and the signing request on the
//! appliance (as `cert request` does: the key never leaves it), orders a
//! certificate for the names from the CA's directory, proves control of
//! each name with the `tls-alpn-01` challenge (RFC 8737) answered by the
//! web services' own listener (see `switchboard_pki::acme`: no port 80,
//! nothing else listening), finalizes the order with the request, and
//! attaches the CA's chain to the key, like `cert import` of a signed
//! request. The certificate is then bound and applied like any other.
//!
//! The protocol is spoken by `switchboard_system::acme` (the adapter);
//! here the order is put together. The ACME account is made once per
//! directory and its credentials (with its private key) kept in the store.
//! The directory is reached over HTTPS trusting the system's CAs and those
//! added with `cert ca add`.
//!
//! Whatever fails, nothing is left behind: the challenge answers are
//! withdrawn, the key made for the order is forgotten, and the error
//! carries the CA's problem document (type and detail) when it sent one.

use std::sync::Arc;

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use switchboard_domain::CertName;
use switchboard_domain::ServiceId;
use switchboard_pki::{Hostname, RequestKeyType, RequestName};
use switchboard_system::acme::{AcmeAccount, AcmeError, Answer, Answers, Challenge};
use tracing::{info, warn};

use crate::views::CertView;
use crate::{Engine, EngineError, Result};

/// The most names one order may carry.
pub const MAX_ACME_NAMES: usize = 10;
/// The longest an order may take, from the first request to the chain: a
/// CA that stops answering mid-order must not hold a renewal forever.
const ORDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);
/// The problem type of a CA that does not know the account (RFC 8555 §6.7).
const ACCOUNT_UNKNOWN: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// The longest directory URL or contact accepted.
const MAX_URL: usize = 2048;

/// What [`Engine::acme_issue`] is asked for.
#[derive(Debug, Clone)]
pub struct AcmeOrder {
    /// The certificate's name on the appliance.
    pub name: CertName,
    /// The DNS names to certify (the first is the subject's).
    pub domains: Vec<Hostname>,
    /// The CA's directory URL (`https://…`).
    pub directory: String,
    /// Contact URIs for the account (`mailto:…`), used when it is made.
    pub contact: Vec<String>,
    /// How the CA checks the names.
    pub challenge: AcmeChallenge,
}

/// How the CA checks that the appliance answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum AcmeChallenge {
    /// On the web services' port (443 for a public CA), by TLS with ALPN
    /// `acme-tls/1` (RFC 8737): nothing else to open.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// On the `http` service's port, which must be 80 and open where the
    /// CA comes from (RFC 8555 §8.3).
    #[serde(rename = "http-01")]
    Http01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Http01 => "http-01",
        }
    }
}

impl std::fmt::Display for AcmeChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AcmeChallenge {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tls-alpn-01" => Ok(AcmeChallenge::TlsAlpn01),
            "http-01" => Ok(AcmeChallenge::Http01),
            _ => Err(EngineError::Acme {
                code: "invalid-acme-request",
                message: format!(
                    "unknown challenge {:?}: tls-alpn-01 or http-01",
                    s.chars().take(32).collect::<String>()
                ),
            }),
        }
    }
}

/// The longest token of an http-01 challenge accepted (RFC 8555 asks for
/// at least 128 bits of base64url; CAs send 43 characters).
pub const MAX_HTTP01_TOKEN: usize = 128;

/// The answers to http-01 challenges being checked now: token → key
/// authorization, served on the `http` service's port.
#[derive(Debug, Default)]
pub struct Http01Answers(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Http01Answers {
    /// The key authorization for `token`, while its challenge is checked.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn add(&self, token: &str, key_authorization: &str) -> std::result::Result<(), String> {
        let plain = !token.is_empty()
            && token.len() <= MAX_HTTP01_TOKEN
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return Err("the CA's token is not base64url".into());
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    fn remove(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

impl AcmeOrder {
    /// Refuses what no CA could accept, before anything is made.
    fn check(&self) -> Result<()> {
        let invalid = |message: String| {
            Err(EngineError::Acme {
                code: "invalid-acme-request",
                message,
            })
        };
        if self.domains.is_empty() || self.domains.len() > MAX_ACME_NAMES {
            return invalid(format!(
                "an order names 1 to {MAX_ACME_NAMES} DNS names, not {}",
                self.domains.len()
            ));
        }
        let url_like =
            |s: &str| s.len() <= MAX_URL && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        let rest = self.directory.strip_prefix("https://").unwrap_or("");
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || !url_like(&self.directory) {
            return invalid("the directory is an https:// URL, e.g. https://acme-v02.api.letsencrypt.org/directory".into());
        }
        for c in &self.contact {
            if !c.starts_with("mailto:") || c.len() <= "mailto:".len() || !url_like(c) {
                return invalid(
                    "a contact is a mailto: URI, e.g. mailto:admin@example.test".into(),
                );
            }
        }
        Ok(())
    }
}

/// The CA's words (or why it could not be heard), as an error with its code.
fn acme_error(e: AcmeError) -> EngineError {
    let code = match e {
        AcmeError::Refused { .. } => "acme-refused",
        AcmeError::Unreachable(_) => "acme-unreachable",
        AcmeError::NotValidated(_) => "acme-challenge-failed",
        AcmeError::Answer(_) => return EngineError::System(e.to_string()),
    };
    EngineError::Acme {
        code,
        message: e.to_string(),
    }
}

/// The answers to `tls-alpn-01`, shown by the web services' listener, and
/// to `http-01`, served on the `http` port.
struct Listeners<'a> {
    tls_alpn: &'a switchboard_pki::acme::Challenges,
    http: &'a Http01Answers,
}

impl Answers for Listeners<'_> {
    fn show(&self, name: &str, answer: Answer<'_>) -> std::result::Result<(), String> {
        match answer {
            Answer::TlsAlpn { digest } => {
                let name: Hostname = name
                    .parse()
                    .map_err(|e| format!("the CA's identifier {name:?}: {e}"))?;
                self.tls_alpn.add(&name, digest)
            }
            Answer::Http {
                token,
                key_authorization,
            } => {
                self.http.add(token, key_authorization)?;
                info!(%name, "ACME http-01 answer shown on the http port");
                Ok(())
            }
        }
    }

    fn withdraw(&self, name: &str, answer: Answer<'_>) {
        match answer {
            Answer::TlsAlpn { .. } => {
                if let Ok(name) = name.parse::<Hostname>() {
                    self.tls_alpn.remove(&name);
                }
            }
            Answer::Http { token, .. } => self.http.remove(token),
        }
    }
}

impl Engine {
    /// Obtains a certificate for `order.domains` from the ACME CA at
    /// `order.directory`, stored under `order.name` (see the module), and
    /// renewed by itself from then on (see [`crate::renewal`]).
    pub async fn acme_issue(&self, order: AcmeOrder) -> Result<CertView> {
        order.check()?;
        let view = self.acme_certificate(&order, None).await?;
        let record = crate::renewal::Renewal::first(&order);
        let json = serde_json::to_string(&record).expect("a renewal record serializes");
        let mut store = self.store.lock().await;
        store.set_acme_renewal(order.name.as_str(), Some(&json))?;
        let view = CertView {
            acme: crate::renewal::view_of(&store, &order.name)?,
            ..view
        };
        Ok(view)
    }

    /// The certificate of `order`: key and request made here, the order
    /// put, the chain attached to the key. Nothing is left of a failed
    /// order. `replaces` is the leaf (DER) of the certificate renewed.
    pub(crate) async fn acme_certificate(
        &self,
        order: &AcmeOrder,
        replaces: Option<&[u8]>,
    ) -> Result<CertView> {
        if order.challenge == AcmeChallenge::Http01 {
            self.http01_reachable().await?;
        }
        let names = order
            .domains
            .iter()
            .map(|d| RequestName::Dns {
                wildcard: false,
                name: d.clone(),
            })
            .collect();
        let request = self
            .request_cert(&order.name, RequestKeyType::EcdsaP256, names)
            .await?;
        let issued = match tokio::time::timeout(
            ORDER_TIMEOUT,
            self.acme_order(order, &request.csr_pem, replaces),
        )
        .await
        {
            Ok(issued) => issued,
            Err(_) => Err(EngineError::Acme {
                code: "acme-unreachable",
                message: format!(
                    "the CA did not finish the order within {} s",
                    ORDER_TIMEOUT.as_secs()
                ),
            }),
        };
        let chain = match issued {
            Ok(chain) => chain,
            Err(e) => {
                if let Err(cleanup) = self.delete_cert(&order.name).await {
                    warn!(cert = %order.name, error = %cleanup, "the key made for a failed ACME order could not be forgotten");
                }
                return Err(e);
            }
        };
        let view = self
            .import_cert(&order.name, chain.as_bytes(), None, None)
            .await?;
        info!(cert = %order.name, directory = %order.directory, names = ?order.domains.iter().map(ToString::to_string).collect::<Vec<_>>(), "certificate issued by the ACME CA");
        Ok(view)
    }

    /// The answers to http-01 challenges being checked now.
    pub fn http01(&self) -> &Http01Answers {
        &self.http01
    }

    /// Refuses http-01 unless the running revision opens the `http`
    /// service on port 80 (where every CA looks) on a NIC with an address.
    async fn http01_reachable(&self) -> Result<()> {
        let store = self.store.lock().await;
        let applied = self.applied(&store)?;
        let facts = self.facts();
        let open = applied.as_ref().is_some_and(|r| {
            let reachable = r
                .plan
                .matrix
                .nics_of(ServiceId::Http)
                .iter()
                .any(|nic| facts.nic(nic).is_some_and(|n| !n.addrs.is_empty()));
            reachable && r.candidate.port(ServiceId::Http).first() == 80
        });
        if open {
            return Ok(());
        }
        Err(EngineError::Acme {
            code: "invalid-acme-request",
            message: "http-01 needs the http service on port 80, open on the NIC the CA reaches (allow http there and Update), or choose tls-alpn-01".into(),
        })
    }

    /// The order itself: the CA's chain (PEM) for the request `csr_pem`.
    async fn acme_order(
        &self,
        order: &AcmeOrder,
        csr_pem: &str,
        replaces: Option<&[u8]>,
    ) -> Result<String> {
        let csr = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| EngineError::System(format!("the signing request just made: {e}")))?;
        let account = self.acme_account(&order.directory, &order.contact).await?;
        let domains: Vec<String> = order.domains.iter().map(ToString::to_string).collect();
        let challenge = match order.challenge {
            AcmeChallenge::TlsAlpn01 => Challenge::TlsAlpn01,
            AcmeChallenge::Http01 => Challenge::Http01,
        };
        let answers = Listeners {
            tls_alpn: self.tls.web.challenges(),
            http: &self.http01,
        };
        let issued = switchboard_system::acme::order(
            &account,
            &domains,
            csr.as_ref(),
            challenge,
            &answers,
            replaces,
        )
        .await;
        if let Err(AcmeError::Refused { kind, .. }) = &issued
            && kind == ACCOUNT_UNKNOWN
        {
            // The CA lost or removed the account: the next order makes a
            // new one instead of failing the same way for ever.
            self.store
                .lock()
                .await
                .forget_acme_account(&order.directory)?;
            warn!(directory = %order.directory, "the CA no longer knows the kept ACME account: forgotten, the next order makes a new one");
        }
        issued.map_err(acme_error)
    }

    /// The account at the order's directory: made (and kept) the first
    /// time, then restored from its credentials. The directory is trusted
    /// like any HTTPS server, with the appliance's TLS policy.
    pub(crate) async fn acme_account(
        &self,
        directory: &str,
        contact: &[String],
    ) -> Result<AcmeAccount> {
        let account = self.account_at(directory, Some(contact)).await?;
        Ok(account.expect("an account is made when none is kept"))
    }

    /// The account kept for `directory`, if there is one: none is made
    /// (asking a CA for renewal information must not make accounts).
    pub(crate) async fn kept_acme_account(&self, directory: &str) -> Result<Option<AcmeAccount>> {
        self.account_at(directory, None).await
    }

    /// The account at `directory`, restored, or made with `contact` when
    /// it is given and none is kept.
    async fn account_at(
        &self,
        directory: &str,
        contact: Option<&[String]>,
    ) -> Result<Option<AcmeAccount>> {
        let (kept, anchors): (Option<String>, _) = {
            let store = self.store.lock().await;
            (store.acme_account(directory)?, self.anchors(&store)?)
        };
        let contact = match (&kept, contact) {
            (None, None) => return Ok(None),
            (_, contact) => contact.unwrap_or_default(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            switchboard_pki::policy_provider(),
        ))
        .with_protocol_versions(&switchboard_pki::policy_versions())
        .expect("the policy's versions are the provider's")
        .with_root_certificates(anchors.root_store())
        .with_no_client_auth();
        let (account, made) =
            switchboard_system::acme::account(directory, tls, kept.as_deref(), contact)
                .await
                .map_err(acme_error)?;
        if let Some(credentials) = made {
            self.store
                .lock()
                .await
                .set_acme_account(directory, &credentials)?;
            info!(%directory, "ACME account made");
        }
        Ok(Some(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(directory: &str, domains: usize, contact: &[&str]) -> AcmeOrder {
        AcmeOrder {
            name: "acme".parse().expect("a name"),
            domains: (0..domains)
                .map(|i| format!("n{i}.example.test").parse().expect("a name"))
                .collect(),
            directory: directory.into(),
            contact: contact.iter().map(|c| (*c).to_owned()).collect(),
            challenge: AcmeChallenge::TlsAlpn01,
        }
    }

    #[test]
    fn an_http01_answer_is_served_while_checked_and_only_for_a_plain_token() {
        let answers = Http01Answers::default();
        assert_eq!(answers.get("tok_en-1"), None);
        answers.add("tok_en-1", "tok_en-1.thumb").expect("shown");
        assert_eq!(answers.get("tok_en-1").as_deref(), Some("tok_en-1.thumb"));
        for bad in [
            "",
            "../etc/passwd",
            "a b",
            "a/b",
            &"a".repeat(MAX_HTTP01_TOKEN + 1),
        ] {
            assert!(answers.add(bad, "x").is_err(), "{bad:?}");
            assert_eq!(answers.get(bad), None);
        }
        answers.remove("tok_en-1");
        assert_eq!(answers.get("tok_en-1"), None, "withdrawn");
        assert!("dns-01".parse::<AcmeChallenge>().is_err());
        for c in [AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01] {
            assert_eq!(c.as_str().parse::<AcmeChallenge>().expect("parses"), c);
            assert_eq!(serde_json::to_string(&c).expect("json"), format!("\"{c}\""));
        }
    }

    #[test]
    fn an_order_no_ca_could_accept_is_refused_before_anything_is_made() {
        let ok = "https://acme.example.test/directory";
        assert!(order(ok, 1, &["mailto:admin@example.test"]).check().is_ok());
        for bad in [
            order(ok, 0, &[]),
            order(ok, MAX_ACME_NAMES + 1, &[]),
            order("http://acme.example.test/directory", 1, &[]),
            order("https://", 1, &[]),
            order("https://acme.example.test/dir ectory", 1, &[]),
            order(&format!("https://{}", "a".repeat(MAX_URL)), 1, &[]),
            order(ok, 1, &["admin@example.test"]),
            order(ok, 1, &["mailto:"]),
            order(ok, 1, &["mailto:a@b\nInjected: header"]),
        ] {
            match bad.check() {
                Err(EngineError::Acme {
                    code: "invalid-acme-request",
                    ..
                }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
