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
use switchboard_pki::{Hostname, RequestKeyType, RequestName};
use switchboard_system::acme::{AcmeAccount, AcmeError, Answers};
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

/// The answers to `tls-alpn-01`, shown by the web services' listener.
struct WebListener<'a>(&'a switchboard_pki::acme::Challenges);

impl Answers for WebListener<'_> {
    fn show(&self, name: &str, digest: &[u8]) -> std::result::Result<(), String> {
        let name: Hostname = name
            .parse()
            .map_err(|e| format!("the CA's identifier {name:?}: {e}"))?;
        self.0.add(&name, digest)
    }

    fn withdraw(&self, name: &str) {
        if let Ok(name) = name.parse::<Hostname>() {
            self.0.remove(&name);
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
        let issued = switchboard_system::acme::order(
            &account,
            &domains,
            csr.as_ref(),
            &WebListener(self.tls.web.challenges()),
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
        let (kept, anchors): (Option<String>, _) = {
            let store = self.store.lock().await;
            (store.acme_account(directory)?, self.anchors(&store)?)
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
        Ok(account)
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
