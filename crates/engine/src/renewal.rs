//! ACME certificates renew themselves.
//!
//! A certificate issued by [`Engine::acme_issue`] keeps its order (names,
//! directory, contact) in a renewal record, kept in the store under the
//! certificate's first name. When a third of its lifetime is left (or
//! when the CA's renewal information, RFC 9773, says: a CA that offers it
//! is asked daily, or when it says), the daemon's timer ([`Engine::acme_renew_due`]) orders a new one, with a new
//! key, under a new name (`NAME-2`, `NAME-3`, ...): a certificate never
//! changes under its name, so every revision keeps presenting exactly what
//! it recorded, and a rollback brings back the certificate it had.
//!
//! The renewed certificate takes its predecessor's place in every binding
//! of the running revision, applied as a new revision by the actor `acme`
//! (its diff shows the certificate change like any other), and in the
//! candidate (the administrator's edits there are kept and not applied).
//! While a revision is on trial, the renewal waits for its confirmation or
//! rollback. The certificate before the one replaced is deleted when no
//! binding names it; the one replaced is kept, for a rollback.
//!
//! A failed attempt (the CA unreachable, a refused order, an Update that
//! failed) leaves the running certificate in place and is tried again
//! after a delay that doubles with each failure, from a thousandth of the
//! certificate's lifetime (at least a second, at most a minute) up to
//! [`MAX_RETRY`]. `cert show` tells the next renewal, the last attempt and
//! its error.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use switchboard_domain::CertName;
use switchboard_store::{RevisionKind, Store};
use tracing::{info, warn};

use crate::acme::AcmeOrder;
use crate::views::{AcmeView, RenewalView};
use crate::{Change, Engine, EngineError, Origin, Result, certs};

/// The longest wait between two attempts after failures.
pub const MAX_RETRY: SignedDuration = SignedDuration::from_hours(6);
/// The actor of the revisions a renewal applies.
pub const ACTOR: &str = "acme";

/// How an ACME certificate is renewed, and how its renewals went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Renewal {
    pub domains: Vec<String>,
    pub directory: String,
    pub contact: Vec<String>,
    #[serde(default)]
    pub challenge: crate::acme::AcmeChallenge,
    /// The certificate in use: the first name, or a renewal's.
    pub current: CertName,
    /// The one it replaced, kept for a rollback.
    pub previous: Option<CertName>,
    /// How many certificates this one is (1 for the first).
    pub generation: u32,
    /// A renewed certificate issued but not in place yet (a revision was
    /// on trial, or its Update failed): the next attempt applies it.
    pub issued: Option<CertName>,
    pub last_attempt: Option<Timestamp>,
    pub last_error: Option<String>,
    pub failures: u32,
    /// Not before then, after a failure.
    pub retry_at: Option<Timestamp>,
    pub renewed_at: Option<Timestamp>,
    /// When the CA's renewal information (RFC 9773) says to renew the
    /// current certificate: a moment in its suggested window.
    #[serde(default)]
    pub ari_at: Option<Timestamp>,
    /// When to ask the CA for it (again).
    #[serde(default)]
    pub ari_ask_at: Option<Timestamp>,
}

impl Renewal {
    pub(crate) fn first(order: &AcmeOrder) -> Renewal {
        Renewal {
            domains: order.domains.iter().map(ToString::to_string).collect(),
            directory: order.directory.clone(),
            contact: order.contact.clone(),
            challenge: order.challenge,
            current: order.name.clone(),
            previous: None,
            generation: 1,
            issued: None,
            last_attempt: None,
            last_error: None,
            failures: 0,
            retry_at: None,
            renewed_at: None,
            ari_at: None,
            ari_ask_at: None,
        }
    }

    /// When the current certificate (valid from `not_before` to
    /// `not_after`) is due: when the CA's renewal information says, or
    /// else a third of its lifetime before its end; later after failures.
    pub(crate) fn due(&self, not_before: Timestamp, not_after: Timestamp) -> Timestamp {
        let renew_at = self
            .ari_at
            .unwrap_or_else(|| renew_at(not_before, not_after));
        match self.retry_at {
            Some(retry) if retry > renew_at => retry,
            _ => renew_at,
        }
    }

    fn failed(&mut self, now: Timestamp, lifetime: SignedDuration, error: String) {
        self.failures = self.failures.saturating_add(1);
        self.last_attempt = Some(now);
        self.last_error = Some(error);
        self.retry_at = Some(now + retry_after(lifetime, self.failures));
    }
}

/// Two thirds into the validity period.
pub(crate) fn renew_at(not_before: Timestamp, not_after: Timestamp) -> Timestamp {
    let lifetime = not_after.duration_since(not_before);
    not_before + lifetime * 2 / 3
}

/// The moment to renew in a CA's suggested window `[start, end]`: spread
/// over the window by the certificate's fingerprint (RFC 9773 §4.2 asks
/// for a random point, so that a CA's many clients do not come at once;
/// this one is stable for a certificate). A moment past is due at once.
pub(crate) fn in_window(start: Timestamp, end: Timestamp, fingerprint: &str) -> Timestamp {
    if end <= start {
        return start;
    }
    let spread: u32 = fingerprint
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 1000;
    start + end.duration_since(start) * (spread as i32) / 1000
}

/// How long to wait before asking a CA for renewal information again:
/// what it said (`Retry-After`), within a minute and a day.
fn ask_again(said: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(said)
        .unwrap_or(SignedDuration::from_hours(24))
        .clamp(SignedDuration::from_mins(1), SignedDuration::from_hours(24))
}

/// The wait after the `failures`-th failure in a row, for a certificate
/// valid for `lifetime`: from a thousandth of it (at least a second, at
/// most a minute), doubling, up to [`MAX_RETRY`].
pub(crate) fn retry_after(lifetime: SignedDuration, failures: u32) -> SignedDuration {
    let first = (lifetime / 1000).clamp(SignedDuration::from_secs(1), SignedDuration::from_mins(1));
    let doublings = failures.saturating_sub(1).min(20);
    (first * (1i32 << doublings)).min(MAX_RETRY)
}

/// The name of generation `generation` of the certificate first named
/// `first`: `first-N`, shortened to stay a certificate name.
fn generation_name(first: &str, generation: u32) -> CertName {
    let suffix = format!("-{generation}");
    let room = switchboard_domain::tls::MAX_CERT_NAME.saturating_sub(suffix.len());
    let stem: String = first.chars().take(room).collect();
    format!("{stem}{suffix}")
        .parse()
        .expect("a certificate name with a number after it is one")
}

/// The leaf (DER) of a stored chain.
fn leaf_der(chain_pem: &str) -> Option<Vec<u8>> {
    switchboard_pki::read_certificates(chain_pem.as_bytes())
        .ok()?
        .into_iter()
        .next()
        .map(|c| c.as_ref().to_vec())
}

/// The renewal records of `store`, by first name; a record that no longer
/// reads is skipped, with a warning.
pub(crate) fn records(store: &Store) -> Result<Vec<(String, Renewal)>> {
    Ok(store
        .acme_renewals()?
        .into_iter()
        .filter_map(|(first, json)| match serde_json::from_str(&json) {
            Ok(r) => Some((first, r)),
            Err(e) => {
                warn!(cert = %first, error = %e, "an ACME renewal record does not read: not renewed");
                None
            }
        })
        .collect())
}

fn keep(store: &mut Store, first: &str, record: &Renewal) -> Result<()> {
    let json = serde_json::to_string(record).expect("a renewal record serializes");
    Ok(store.set_acme_renewal(first, Some(&json))?)
}

/// `cert delete NAME`: a deleted certificate is no longer renewed.
pub(crate) fn forget(store: &mut Store, name: &CertName) -> Result<()> {
    for (first, mut record) in records(store)? {
        if record.current == *name {
            store.set_acme_renewal(&first, None)?;
            info!(cert = %name, "ACME certificate deleted: no longer renewed");
        } else if record.issued.as_ref() == Some(name) {
            record.issued = None;
            keep(store, &first, &record)?;
        }
    }
    Ok(())
}

/// What `cert show` says of `name`'s renewal, if it is an ACME certificate
/// in use.
pub(crate) fn view_of(store: &Store, name: &CertName) -> Result<Option<AcmeView>> {
    let Some((first, record)) = records(store)?
        .into_iter()
        .find(|(_, r)| r.current == *name)
    else {
        return Ok(None);
    };
    let Some(cert) = store.cert(name)? else {
        return Ok(None);
    };
    let next_renewal = record.due(cert.info.not_before, cert.info.not_after);
    let waiting = store
        .pending()?
        .filter(|_| next_renewal <= Timestamp::now())
        .map(|p| {
            format!(
                "revision {} is on trial: the renewal waits for its confirmation or rollback",
                p.revision
            )
        });
    Ok(Some(AcmeView {
        first_name: first,
        directory: record.directory,
        domains: record.domains,
        challenge: record.challenge.to_string(),
        generation: record.generation,
        next_renewal,
        renewed_at: record.renewed_at,
        last_attempt: record.last_attempt,
        last_error: record.last_error,
        failures: record.failures,
        waiting,
    }))
}

impl Engine {
    /// Renews every ACME certificate that is due at `now` (the daemon's
    /// timer). Failures are recorded in each certificate's renewal state,
    /// and logged.
    /// While a revision is on trial, nothing is due (`cert show` says so).
    /// The CAs that offer renewal information are asked about their
    /// certificates first, when it is time to (see [`Renewal::ari_ask_at`]).
    pub async fn acme_renew_due(&self, now: Timestamp) {
        self.ask_renewal_info(now).await;
        let due: Vec<String> = {
            let store = self.store.lock().await;
            let Ok(None) = store.pending() else {
                return;
            };
            let Ok(records) = records(&store) else {
                return;
            };
            records
                .into_iter()
                .filter(|(_, r)| {
                    store
                        .cert(&r.current)
                        .ok()
                        .flatten()
                        .is_some_and(|c| r.due(c.info.not_before, c.info.not_after) <= now)
                })
                .map(|(first, _)| first)
                .collect()
        };
        for first in due {
            // What the renewal changes (the new certificate) is recorded
            // under `acme`, as its revision is.
            let origin = Origin {
                actor: ACTOR.into(),
                address: format!("renewal of the ACME certificate {first}"),
                arrival: None,
            };
            let (done, _) =
                crate::audit::on_behalf_of(origin, self.renew(&first, now, false)).await;
            if let Err(e) = done {
                warn!(cert = %first, error = %e, "ACME renewal not done");
            }
        }
    }

    /// Asks each CA for the renewal information (RFC 9773) of its
    /// certificates whose time has come; a CA without it is asked again a
    /// day later, one that failed to answer (or whose account is not kept:
    /// none is made for this) an hour later.
    async fn ask_renewal_info(&self, now: Timestamp) {
        let asking: Vec<(String, Renewal, Vec<u8>, String)> = {
            let store = self.store.lock().await;
            let Ok(records) = records(&store) else {
                return;
            };
            records
                .into_iter()
                .filter(|(_, r)| r.ari_ask_at.is_none_or(|t| t <= now))
                .filter_map(|(first, r)| {
                    let cert = store.cert(&r.current).ok().flatten()?;
                    let der = leaf_der(&cert.chain_pem)?;
                    Some((first, r, der, cert.info.fingerprint.to_string()))
                })
                .collect()
        };
        for (first, mut record, der, fingerprint) in asking {
            let answer = match self.kept_acme_account(&record.directory).await {
                Ok(Some(account)) => switchboard_system::acme::renewal_window(&account, &der)
                    .await
                    .map_err(|e| e.to_string()),
                Ok(None) => Err("no account kept for the directory".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let next_ask = match answer {
                Ok(Some(w)) => {
                    let at = |unix: i64| Timestamp::from_second(unix).unwrap_or(now);
                    record.ari_at = Some(in_window(at(w.start), at(w.end), &fingerprint));
                    info!(cert = %record.current, renew_at = ?record.ari_at, explanation = ?w.explanation, "the CA's renewal information");
                    ask_again(w.ask_again)
                }
                Ok(None) => {
                    record.ari_at = None;
                    SignedDuration::from_hours(24)
                }
                Err(e) => {
                    tracing::debug!(cert = %record.current, error = %e, "no renewal information from the CA");
                    SignedDuration::from_hours(1)
                }
            };
            record.ari_ask_at = Some(now + next_ask);
            let mut store = self.store.lock().await;
            // Only if nothing renewed or deleted it meanwhile.
            let unchanged = records(&store)
                .ok()
                .and_then(|rs| rs.into_iter().find(|(f, _)| *f == first))
                .is_some_and(|(_, r)| r.current == record.current);
            if unchanged && let Err(e) = keep(&mut store, &first, &record) {
                warn!(cert = %record.current, error = %e, "the CA's renewal information not kept");
            }
        }
    }

    /// Renews the ACME certificate `name` now, whatever its schedule
    /// (`cert renew NAME`).
    pub async fn acme_renew(&self, name: &CertName) -> Result<RenewalView> {
        let first = {
            let store = self.store.lock().await;
            records(&store)?
                .into_iter()
                .find(|(_, r)| r.current == *name)
                .map(|(first, _)| first)
        };
        let Some(first) = first else {
            let store = self.store.lock().await;
            return Err(match store.cert(name)? {
                None => EngineError::NoSuchCert(name.clone()),
                Some(_) => EngineError::Acme {
                    code: "not-renewable",
                    message: format!(
                        "{name} was not issued by an ACME CA through the appliance (or a newer certificate replaced it)"
                    ),
                },
            });
        };
        self.renew(&first, Timestamp::now(), true).await
    }

    /// One attempt at renewing the certificate first named `first`.
    async fn renew(&self, first: &str, now: Timestamp, asked: bool) -> Result<RenewalView> {
        let _one_at_a_time = self.renewing.lock().await;
        let (mut record, lifetime) = {
            let store = self.store.lock().await;
            let Some((_, record)) = records(&store)?.into_iter().find(|(f, _)| f == first) else {
                return Err(EngineError::System(format!(
                    "the ACME certificate {first} is no longer renewed"
                )));
            };
            let Some(cert) = store.cert(&record.current)? else {
                return Err(EngineError::NoSuchCert(record.current));
            };
            if !asked && record.due(cert.info.not_before, cert.info.not_after) > now {
                // Renewed by hand meanwhile.
                return Ok(RenewalView::not_due(&record.current));
            }
            if let Some(p) = store.pending()? {
                return Err(EngineError::PendingConfirmation {
                    revision: p.revision,
                    deadline: p.deadline,
                });
            }
            (
                record,
                cert.info.not_after.duration_since(cert.info.not_before),
            )
        };
        let issued = match record.issued.clone() {
            Some(name) => Ok(name),
            None => self.issue_generation(first, &record).await,
        };
        let outcome = match issued {
            Ok(name) => {
                record.issued = Some(name.clone());
                self.put_in_place(first, &record, &name).await
            }
            Err(e) => Err(e),
        };
        let mut store = self.store.lock().await;
        // Deleted meanwhile (`cert delete`): nothing to record.
        if !records(&store)?.iter().any(|(f, _)| f == first) {
            return outcome.map(|_| RenewalView::not_due(&record.current));
        }
        match outcome {
            Ok(revision) => {
                let replaced = record.current.clone();
                let renewed = record.issued.take().expect("issued before put in place");
                if let Some(older) = record.previous.take()
                    && !certs::uses(&store)?.contains_key(&older)
                {
                    store.delete_cert(&older)?;
                    info!(cert = %older, "certificate two renewals old deleted");
                }
                record.previous = Some(replaced.clone());
                record.current = renewed.clone();
                record.generation += 1;
                record.failures = 0;
                record.last_error = None;
                record.retry_at = None;
                record.last_attempt = Some(now);
                record.renewed_at = Some(Timestamp::now());
                // The CA is asked about the new certificate.
                record.ari_at = None;
                record.ari_ask_at = None;
                keep(&mut store, first, &record)?;
                info!(cert = %replaced, renewed = %renewed, revision = ?revision, "ACME certificate renewed");
                Ok(RenewalView {
                    renewed: true,
                    cert: renewed.to_string(),
                    replaced: Some(replaced.to_string()),
                    revision,
                })
            }
            Err(e) => {
                record.failed(now, lifetime, e.to_string());
                keep(&mut store, first, &record)?;
                warn!(cert = %record.current, failures = record.failures, retry_at = ?record.retry_at, error = %e, "ACME renewal failed; the current certificate stays");
                Err(e)
            }
        }
    }

    /// Orders the next generation of `first`, with a new key, under the
    /// first name `first-N` not taken (N from the next generation up).
    async fn issue_generation(&self, first: &str, record: &Renewal) -> Result<CertName> {
        let mut generation = record.generation + 1;
        let name = {
            let store = self.store.lock().await;
            loop {
                let name = generation_name(first, generation);
                if store.cert(&name)?.is_none() && store.request(&name)?.is_none() {
                    break name;
                }
                generation += 1;
            }
        };
        let order = AcmeOrder {
            name: name.clone(),
            domains: record
                .domains
                .iter()
                .map(|d| d.parse())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| EngineError::System(format!("a name of the kept order: {e}")))?,
            directory: record.directory.clone(),
            contact: record.contact.clone(),
            challenge: record.challenge,
        };
        let replaces = {
            let store = self.store.lock().await;
            store
                .cert(&record.current)?
                .and_then(|c| leaf_der(&c.chain_pem))
        };
        self.acme_certificate(&order, replaces.as_deref()).await?;
        Ok(name)
    }

    /// Makes `renewed` take `record.current`'s place: in the running
    /// revision (a new revision, actor `acme`) when it presents it, and in
    /// the candidate. The new revision's number, if one was needed.
    async fn put_in_place(
        &self,
        first: &str,
        record: &Renewal,
        renewed: &CertName,
    ) -> Result<Option<u64>> {
        let replaced = &record.current;
        let kernel = self.current_facts().await?;
        let mut store = self.store.lock().await;
        let facts = certs::with_certificates(kernel, &store)?;
        // The administrator's candidate, kept as it is but for the
        // renewed certificate: in the same transaction as the revision.
        let mut edited = Self::candidate_of(&store)?;
        let rebound = edited.bindings.replace(replaced, renewed);
        if let Some(applied) = self.applied(&store)? {
            let mut candidate = applied.candidate;
            if candidate.bindings.replace(replaced, renewed) {
                let origin = Origin {
                    actor: ACTOR.into(),
                    address: format!("renewal of the ACME certificate {first}"),
                    arrival: None,
                };
                let comment = format!("ACME renewal: {renewed} replaces {replaced}")
                    .parse()
                    .map_err(crate::InputError::from)?;
                let change = Change {
                    origin: &origin,
                    comment: &comment,
                    candidate,
                    kind: RevisionKind::Update,
                    rollback_of: None,
                    window: None,
                    next_candidate: Some(edited),
                };
                return Ok(self.apply(&mut store, &facts, change).await?.revision);
            }
        }
        if rebound {
            store.save_candidate(&edited, Timestamp::now())?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    fn order() -> AcmeOrder {
        AcmeOrder {
            name: "voip".parse().expect("name"),
            domains: vec!["voip.example.test".parse().expect("name")],
            directory: "https://ca.example.test/dir".into(),
            contact: vec![],
            challenge: Default::default(),
        }
    }

    #[test]
    fn a_certificate_is_due_two_thirds_into_its_life_or_after_its_retry() {
        let nb = at("2026-12-01T00:00:00Z");
        let na = at("2027-03-01T00:00:00Z"); // 90 days
        assert_eq!(renew_at(nb, na), at("2027-01-30T00:00:00Z"));
        let order = order();
        let mut r = Renewal::first(&order);
        assert_eq!(r.due(nb, na), renew_at(nb, na));
        r.failed(
            at("2027-01-30T00:00:00Z"),
            na.duration_since(nb),
            "x".into(),
        );
        assert_eq!(r.due(nb, na), at("2027-01-30T00:01:00Z"));
        // A retry earlier than the due time does not bring it forward.
        r.retry_at = Some(at("2027-01-01T00:00:00Z"));
        assert_eq!(r.due(nb, na), renew_at(nb, na));
    }

    #[test]
    fn the_wait_after_failures_doubles_from_a_thousandth_of_the_lifetime_up_to_six_hours() {
        let days90 = SignedDuration::from_hours(24 * 90);
        let waits: Vec<_> = (1..=11).map(|f| retry_after(days90, f).as_secs()).collect();
        assert_eq!(
            waits,
            [
                60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600
            ]
        );
        assert_eq!(retry_after(days90, u32::MAX), MAX_RETRY);
        // A short-lived certificate is retried sooner, never under a second.
        let short = SignedDuration::from_secs(20);
        assert_eq!(retry_after(short, 1), SignedDuration::from_secs(1));
        assert_eq!(retry_after(short, 3), SignedDuration::from_secs(4));
        assert_eq!(
            retry_after(SignedDuration::from_hours(10), 1),
            SignedDuration::from_secs(36)
        );
    }

    #[test]
    fn the_cas_window_decides_when_it_gives_one_spread_by_certificate() {
        let (start, end) = (at("2027-01-10T00:00:00Z"), at("2027-01-12T00:00:00Z"));
        let a = in_window(start, end, "AA:BB");
        let b = in_window(start, end, "CC:DD");
        for t in [a, b] {
            assert!(start <= t && t <= end, "{t}");
        }
        assert_ne!(a, b, "two certificates, two moments");
        assert_eq!(a, in_window(start, end, "AA:BB"), "stable for one");
        assert_eq!(in_window(end, start, "AA:BB"), end, "an empty window");
        let nb = at("2026-12-01T00:00:00Z");
        let na = at("2027-03-01T00:00:00Z");
        let order = order();
        let mut r = Renewal::first(&order);
        // Sooner than two thirds (the CA wants it replaced) or later.
        r.ari_at = Some(at("2026-12-15T00:00:00Z"));
        assert_eq!(r.due(nb, na), at("2026-12-15T00:00:00Z"));
        r.ari_at = Some(at("2027-02-10T00:00:00Z"));
        assert_eq!(r.due(nb, na), at("2027-02-10T00:00:00Z"));
        assert_eq!(
            ask_again(std::time::Duration::from_secs(5)),
            SignedDuration::from_mins(1)
        );
        assert_eq!(
            ask_again(std::time::Duration::from_secs(6 * 3600)),
            SignedDuration::from_hours(6)
        );
        assert_eq!(
            ask_again(std::time::Duration::MAX),
            SignedDuration::from_hours(24)
        );
        // A record kept before these fields existed still reads.
        let mut old = serde_json::to_value(Renewal::first(&order)).expect("json");
        old.as_object_mut().expect("object").remove("ari_at");
        old.as_object_mut().expect("object").remove("ari_ask_at");
        let back: Renewal = serde_json::from_value(old).expect("reads");
        assert_eq!(back.ari_at, None);
    }

    #[test]
    fn a_generation_is_named_after_the_first_and_stays_a_certificate_name() {
        assert_eq!(generation_name("voip", 2).to_string(), "voip-2");
        let long = "v".repeat(switchboard_domain::tls::MAX_CERT_NAME);
        let named = generation_name(&long, 12).to_string();
        assert_eq!(named.len(), switchboard_domain::tls::MAX_CERT_NAME);
        assert!(named.ends_with("v-12"), "{named}");
    }
}
