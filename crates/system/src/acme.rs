//! An ACME CA (RFC 8555), spoken to over HTTPS with instant-acme: accounts,
//! and orders whose names are proven by `tls-alpn-01` or `http-01`. Plain
//! data in and out: the caller decides how a challenge is answered (the
//! engine shows the answer on the web services' listener, or on the plain
//! HTTP port) and where the account's credentials are kept.

use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

/// How long the CA may take to validate, then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// Why an ACME exchange did not end well.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with a problem document (RFC 7807).
    #[error("the CA refused: {detail} ({kind})")]
    Refused { kind: String, detail: String },
    /// The CA could not be reached, trusted, or did not finish in time.
    #[error("the CA could not be reached: {0}")]
    Unreachable(String),
    /// The names were not validated.
    #[error("the CA did not validate the names: {0}")]
    NotValidated(String),
    /// The caller could not show a challenge's answer.
    #[error("the challenge's answer could not be shown: {0}")]
    Answer(String),
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(problem) => AcmeError::Refused {
                kind: problem.r#type.unwrap_or_else(|| "no problem type".into()),
                detail: problem.detail.unwrap_or_else(|| "no detail".into()),
            },
            instant_acme::Error::Timeout(_) => {
                AcmeError::Unreachable("the CA did not finish the order in time".into())
            }
            other => AcmeError::Unreachable(with_causes(&other)),
        }
    }
}

/// `e` and what caused it, down to the root (a TLS client's "Connect"
/// says little; the certificate it refused says what to do).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}

/// How the names of an order are proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Challenge {
    /// RFC 8737: a certificate shown on port 443 to a client offering
    /// `acme-tls/1`.
    #[default]
    TlsAlpn01,
    /// RFC 8555 §8.3: a file at `/.well-known/acme-challenge/TOKEN` on
    /// port 80.
    Http01,
}

/// One challenge's answer, as the CA will look for it.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// The SHA-256 digest of the key authorization, for the certificate
    /// shown to `acme-tls/1` clients.
    TlsAlpn { digest: &'a [u8] },
    /// The key authorization, served at the token's path.
    Http {
        token: &'a str,
        key_authorization: &'a str,
    },
}

/// Shows and withdraws the answers to challenges.
pub trait Answers: Sync {
    /// Show `answer` for the name `name`.
    fn show(&self, name: &str, answer: Answer<'_>) -> Result<(), String>;
    /// Withdraw what `show` showed for `name` (with the same `answer`).
    fn withdraw(&self, name: &str, answer: Answer<'_>);
}

/// An account at a CA's directory.
pub struct AcmeAccount(Account);

impl std::fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeAccount").finish_non_exhaustive()
    }
}

/// The account at `directory`: restored from `kept` credentials, or made
/// (with `contact`), when the new credentials (JSON, with the account's
/// private key: a secret) come back to be kept. `tls` is the client
/// configuration the directory is reached with.
pub async fn account(
    directory: &str,
    tls: rustls::ClientConfig,
    kept: Option<&str>,
    contact: &[String],
) -> Result<(AcmeAccount, Option<String>), AcmeError> {
    let builder = Account::builder_with_http(http_client(tls));
    if let Some(json) = kept {
        let credentials: AccountCredentials = serde_json::from_str(json)
            .map_err(|e| AcmeError::Unreachable(format!("the kept account: {e}")))?;
        return Ok((
            AcmeAccount(builder.from_credentials(credentials).await?),
            None,
        ));
    }
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            None,
        )
        .await?;
    let json = serde_json::to_string(&credentials)
        .map_err(|e| AcmeError::Unreachable(format!("the new account: {e}")))?;
    Ok((AcmeAccount(account), Some(json)))
}

/// The CA's suggested renewal window (RFC 9773, ACME Renewal
/// Information) for the certificate `leaf_der`, as Unix seconds (start,
/// end), with how long to wait before asking again; `None` when the CA
/// offers no renewal information.
pub async fn renewal_window(
    account: &AcmeAccount,
    leaf_der: &[u8],
) -> Result<Option<RenewalWindow>, AcmeError> {
    let leaf = rustls::pki_types::CertificateDer::from(leaf_der);
    // A certificate without an authority key identifier cannot be named
    // to the CA: it has no renewal information.
    let Ok(id) = instant_acme::CertificateIdentifier::try_from(&leaf) else {
        return Ok(None);
    };
    match account.0.renewal_info(&id).await {
        Ok((info, ask_again)) => Ok(Some(RenewalWindow {
            start: info.suggested_window.start.unix_timestamp(),
            end: info.suggested_window.end.unix_timestamp(),
            ask_again,
            explanation: info.explanation_url,
        })),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A CA's suggested renewal window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    /// The CA's `Retry-After`: when to ask again.
    pub ask_again: Duration,
    /// A page explaining the window, if the CA gave one.
    pub explanation: Option<String>,
}

/// Orders a certificate for `domains`, proves each by `challenge`
/// through `answers` (every answer withdrawn at the end, whatever
/// happens), finalizes with the request `csr_der`, and returns the CA's
/// chain (PEM). `replaces` is the certificate renewed, named to a CA that
/// offers renewal information (RFC 9773 §5).
pub async fn order(
    account: &AcmeAccount,
    domains: &[String],
    csr_der: &[u8],
    challenge: Challenge,
    answers: &dyn Answers,
    replaces: Option<&[u8]>,
) -> Result<String, AcmeError> {
    let identifiers: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let replaced = replaces.map(rustls::pki_types::CertificateDer::from);
    let id = replaced
        .as_ref()
        .and_then(|leaf| instant_acme::CertificateIdentifier::try_from(leaf).ok());
    let mut order = match id {
        Some(id) => {
            let renewal = NewOrder::new(&identifiers).replaces(id);
            match account.0.new_order(&renewal).await {
                // A CA without renewal information: a plain order.
                Err(instant_acme::Error::Unsupported(_)) => {
                    account.0.new_order(&NewOrder::new(&identifiers)).await?
                }
                other => other?,
            }
        }
        None => account.0.new_order(&NewOrder::new(&identifiers)).await?,
    };
    let mut shown = Shown {
        answers,
        names: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::NotValidated(format!(
                    "an authorization is {other:?}, not pending"
                )));
            }
        }
        let (kind, named) = match challenge {
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
            Challenge::Http01 => (ChallengeType::Http01, "http-01"),
        };
        let mut offered = authorization
            .challenge(kind)
            .ok_or_else(|| AcmeError::Refused {
                kind: format!("no {named}"),
                detail: format!(
                    "the CA offers no {named} challenge for this name: choose the other challenge"
                ),
            })?;
        let name = offered.identifier().to_string();
        let key_authorization = offered.key_authorization();
        let token = offered.token.clone();
        let digest = key_authorization.digest();
        let kept = match challenge {
            Challenge::TlsAlpn01 => Kept::TlsAlpn(digest.as_ref().to_vec()),
            Challenge::Http01 => Kept::Http {
                token,
                key_authorization: key_authorization.as_str().to_owned(),
            },
        };
        answers
            .show(&name, kept.answer())
            .map_err(AcmeError::Answer)?;
        shown.names.push((name, kept));
        offered.set_ready().await?;
    }
    let status = order.poll_ready(&POLL).await?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map_or_else(|| format!("the order is {status:?}"), ToString::to_string);
        return Err(AcmeError::NotValidated(why));
    }
    drop(shown);
    order.finalize_csr(csr_der).await?;
    Ok(order.poll_certificate(&POLL).await?)
}

/// The answers shown for an order, withdrawn when it ends, whichever way.
struct Shown<'a> {
    answers: &'a dyn Answers,
    names: Vec<(String, Kept)>,
}

/// An answer shown, kept to be withdrawn.
enum Kept {
    TlsAlpn(Vec<u8>),
    Http {
        token: String,
        key_authorization: String,
    },
}

impl Kept {
    fn answer(&self) -> Answer<'_> {
        match self {
            Kept::TlsAlpn(digest) => Answer::TlsAlpn { digest },
            Kept::Http {
                token,
                key_authorization,
            } => Answer::Http {
                token,
                key_authorization,
            },
        }
    }
}

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        for (name, kept) in &self.names {
            self.answers.withdraw(name, kept.answer());
        }
    }
}

/// An HTTPS-only client with `tls`.
fn http_client(tls: rustls::ClientConfig) -> Box<dyn instant_acme::HttpClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Box::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, instant_acme::BodyWrapper<bytes::Bytes>>(https),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_unreachable_ca_is_described_down_to_its_cause() {
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            with_causes(&e),
            "outer: invalid peer certificate: UnknownIssuer"
        );
    }
}
