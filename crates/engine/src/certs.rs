//! Certificates: the store of many, the bindings in the candidate, the
//! first-start self-signed certificate, and the padlock check.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use switchboard_domain::{
    CertFacts, CertName, Facts, Host, Hostname, NicName, NicSettings, ServiceId, Validity,
    tls::NicSettingsChange,
};
use switchboard_pki::{CertBundle, ImportError, TrustAnchors};
use switchboard_pki::{PrivateKey, RequestError, RequestKeyType, RequestName};
use switchboard_store::{Store, StoredAnchor, StoredCert, StoredRequest};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::views::{
    CaView, CertRequestView, CertView, EditView, ExpiryView, PadlockFinding, PadlockView,
};
use crate::{Engine, EngineError, Result};

/// The name of the first start's self-signed certificate.
pub const BOOTSTRAP: &str = "bootstrap";

/// The most keys made with `cert request` that may wait for their
/// certificate at once: each is a stored key, and an RSA one costs a
/// second of the CPU pool to make.
pub const MAX_PENDING_REQUESTS: usize = 20;

fn validity(info: &switchboard_pki::CertInfo, now: Timestamp) -> Validity {
    if now < info.not_before {
        Validity::NotYetValid
    } else if now > info.not_after {
        Validity::Expired
    } else {
        Validity::Valid
    }
}

/// The kernel's facts plus the store's certificates, as of now.
pub(crate) fn with_certificates(mut facts: Facts, store: &Store) -> Result<Facts> {
    let now = Timestamp::now();
    facts.certificates = store
        .certs()?
        .into_iter()
        .map(|c| {
            let f = CertFacts {
                has_key: c.key.is_some(),
                validity: validity(&c.info, now),
                self_signed: c.info.is_self_signed,
                fingerprint: c.info.fingerprint.to_string(),
                subject: c.info.subject.clone(),
                not_after: c.info.not_after.to_string(),
                names: c
                    .info
                    .dns_names
                    .iter()
                    .cloned()
                    .chain(c.info.ip_addresses.iter().map(IpAddr::to_string))
                    .collect(),
                pin: leaf_pin(&c.chain_pem),
            };
            (c.name, f)
        })
        .collect();
    facts.next_keys = store
        .requests()?
        .into_iter()
        .map(|r| switchboard_domain::tls::NextKey {
            name: r.name,
            names: r.names,
            pin: r.pin,
        })
        .collect();
    facts.pinned_phones = pinned_phones(store)?;
    Ok(facts)
}

/// The native phones activated so far, grouped by the pins of the revision
/// their last activation was answered from.
fn pinned_phones(store: &Store) -> Result<Vec<switchboard_domain::tls::PinnedPhones>> {
    let native = switchboard_provision::ClientProfile::Native.as_str();
    let mut by_revision: BTreeMap<Option<u64>, Vec<String>> = BTreeMap::new();
    for (user, revision) in store.activated_accounts(native)? {
        by_revision.entry(revision).or_default().push(user);
    }
    let mut out = Vec::with_capacity(by_revision.len());
    for (revision, usernames) in by_revision {
        let pins = match revision {
            Some(n) => store.revision_pins(n)?.unwrap_or_default(),
            None => Vec::new(),
        };
        out.push(switchboard_domain::tls::PinnedPhones { pins, usernames });
    }
    Ok(out)
}

/// The pin (`sha256/BASE64` of the SubjectPublicKeyInfo) of the leaf of a
/// stored chain; empty when the stored chain no longer parses, which the
/// padlock check reports on its own.
fn leaf_pin(chain_pem: &str) -> String {
    switchboard_pki::read_certificates(chain_pem.as_bytes())
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .and_then(|leaf| switchboard_pki::subject_public_key_info(&leaf).ok())
        .map(|spki| switchboard_provision::CertPin::of_spki_der(&spki).to_string())
        .unwrap_or_default()
}

impl From<ImportError> for EngineError {
    fn from(e: ImportError) -> Self {
        EngineError::Import {
            code: e.code(),
            message: e.to_string(),
            hint: e.hint(),
        }
    }
}

impl From<RequestError> for EngineError {
    fn from(e: RequestError) -> Self {
        EngineError::Import {
            code: e.code(),
            message: e.to_string(),
            hint: e.hint(),
        }
    }
}

fn load(stored: &StoredCert) -> Result<CertBundle> {
    let key = stored.key.as_ref().map(|k| k.expose_secret().as_bytes());
    Ok(switchboard_pki::import(
        stored.chain_pem.as_bytes(),
        key,
        None,
    )?)
}

fn stored(name: CertName, bundle: &CertBundle, bootstrap: bool) -> StoredCert {
    StoredCert {
        name,
        chain_pem: bundle.chain_pem(),
        key: bundle.key().map(|k| k.to_key_pem()),
        info: bundle.info().clone(),
        bootstrap,
        created_at: Timestamp::now(),
    }
}

/// Where each certificate is used, in the candidate and the applied
/// revision: `console (default)`, `sip-tls on wan0`.
pub(crate) fn uses(engine_store: &Store) -> Result<BTreeMap<CertName, Vec<String>>> {
    let mut out: BTreeMap<CertName, Vec<String>> = BTreeMap::new();
    let mut bindings = vec![Engine::candidate_of(engine_store)?.bindings];
    if let Some(r) = engine_store.applied()? {
        bindings.push(r.candidate.bindings);
    }
    for b in bindings {
        for (service, cert) in &b.defaults {
            out.entry(cert.clone())
                .or_default()
                .push(format!("{service} (default)"));
        }
        for (service, per_nic) in &b.overrides {
            for (nic, cert) in per_nic {
                out.entry(cert.clone())
                    .or_default()
                    .push(format!("{service} on {nic}"));
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    Ok(out)
}

fn view(
    store: &Store,
    c: &StoredCert,
    now: Timestamp,
    used: &BTreeMap<CertName, Vec<String>>,
) -> Result<CertView> {
    Ok(CertView {
        name: c.name.to_string(),
        info: c.info.clone(),
        has_key: c.key.is_some(),
        bootstrap: c.bootstrap,
        validity: validity(&c.info, now),
        expires_in_days: days_left(c.info.not_after, now),
        used_by: used.get(&c.name).cloned().unwrap_or_default(),
        acme: crate::renewal::view_of(store, &c.name)?,
    })
}

/// Whole days from `now` to `not_after`, rounded down: negative once
/// expired (`-1` on the day after). One count for the certificate list,
/// the expiry warnings and monitoring.
fn days_left(not_after: Timestamp, now: Timestamp) -> i64 {
    not_after.duration_since(now).as_hours().div_euclid(24)
}

/// Every bound certificate's end (in the candidate or the applied
/// revision), soonest first: what monitoring exports.
pub(crate) fn bound_expiries(
    store: &Store,
    now: Timestamp,
) -> Result<Vec<crate::monitor::CertExpiry>> {
    let used = uses(store)?;
    let mut out: Vec<crate::monitor::CertExpiry> = store
        .certs()?
        .into_iter()
        .filter(|c| used.contains_key(&c.name))
        .map(|c| crate::monitor::CertExpiry {
            cert: c.name.to_string(),
            not_after: c.info.not_after,
            days_left: days_left(c.info.not_after, now),
        })
        .collect();
    out.sort_by_key(|e| (e.not_after, e.cert.clone()));
    Ok(out)
}

/// The bound certificates of `store` close to their end at `now`: a
/// warning under [`EXPIRY_WARNING`](switchboard_pki::EXPIRY_WARNING), an
/// error under [`EXPIRY_ERROR`](switchboard_pki::EXPIRY_ERROR) or once
/// expired; soonest first. Unbound certificates are nobody's concern.
pub(crate) fn expiring(store: &Store, now: Timestamp) -> Result<Vec<ExpiryView>> {
    use switchboard_domain::Severity;
    let used = uses(store)?;
    let mut out: Vec<ExpiryView> = store
        .certs()?
        .into_iter()
        .filter_map(|c| {
            let used_by = used.get(&c.name)?.clone();
            let left = c.info.not_after.duration_since(now);
            let days = days_left(c.info.not_after, now);
            let (code, severity, message) = if left.is_negative() {
                (
                    "cert-expired",
                    Severity::Error,
                    format!("certificate {} expired at {}", c.name, c.info.not_after),
                )
            } else if left < switchboard_pki::EXPIRY_ERROR {
                (
                    "cert-expiring",
                    Severity::Error,
                    format!(
                        "certificate {} expires at {}, in {days} day(s)",
                        c.name, c.info.not_after
                    ),
                )
            } else if left < switchboard_pki::EXPIRY_WARNING {
                (
                    "cert-expires-soon",
                    Severity::Warning,
                    format!(
                        "certificate {} expires at {}, in {days} days",
                        c.name, c.info.not_after
                    ),
                )
            } else {
                return None;
            };
            Some(ExpiryView {
                code: code.to_owned(),
                severity,
                hint: format!(
                    "get a new certificate (`switchboard cert request {}-next --dns ...` makes the key here), import it, bind it where {} is used and Update",
                    c.name, c.name
                ),
                message: format!("{message}; presented by {}", used_by.join(", ")),
                cert: c.name.to_string(),
                not_after: c.info.not_after,
                days_left: days,
                used_by,
            })
        })
        .collect();
    out.sort_by_key(|e| (e.not_after, e.cert.clone()));
    Ok(out)
}

impl Engine {
    /// Bound certificates close to their end, as of now (see
    /// [`StatusView::expiring`](crate::views::StatusView)).
    pub async fn expiring(&self) -> Result<Vec<ExpiryView>> {
        expiring(&*self.store.lock().await, Timestamp::now())
    }

    /// First start: a self-signed certificate for the host name and every
    /// NIC address, bound as the default of every TLS service, so the
    /// console works out of the box (flagged self-signed everywhere).
    pub(crate) async fn ensure_bootstrap_cert(&self) -> Result<()> {
        let mut store = self.store.lock().await;
        if !store.certs()?.is_empty() {
            return Ok(());
        }
        let host = switchboard_system::dns::hostname()
            .parse::<Hostname>()
            .unwrap_or_else(|_| "switchboard.invalid".parse().expect("a valid host name"));
        let ips: Vec<IpAddr> = self
            .facts()
            .nics
            .iter()
            .flat_map(|n| n.addrs.iter())
            .filter(|a| !a.is_link_local())
            .map(|a| a.addr)
            .collect();
        let bundle = switchboard_pki::self_signed(&host, &ips, Timestamp::now());
        let name: CertName = BOOTSTRAP.parse().expect("a valid certificate name");
        store.insert_cert(&stored(name.clone(), &bundle, true))?;
        let mut candidate = Self::candidate_of(&store)?;
        if candidate.bindings.defaults.is_empty() {
            for s in ServiceId::all().filter(|s| s.info().tls) {
                candidate
                    .bindings
                    .bind(s, None, name.clone())
                    .expect("a TLS service");
            }
            store.save_candidate(&candidate, Timestamp::now())?;
        }
        warn!(
            host = %host,
            addresses = ips.len(),
            "first start: made a self-signed certificate and bound it to console, web and sip-tls; import a trusted one (switchboard cert import)"
        );
        Ok(())
    }

    /// Import an upload as certificate `name`. The upload is read (parsed,
    /// its chain ordered, its key decrypted) in the CPU pool, without the
    /// store's lock; the lock is taken only to store the result. A caller
    /// dropped meanwhile (its client went away) stores nothing.
    ///
    /// When a key was made on the appliance under `name` (`cert request`),
    /// the upload is the CA's answer: it must hold no key, its leaf must
    /// certify that key, and the request becomes the certificate.
    pub async fn import_cert(
        &self,
        name: &CertName,
        bundle: &[u8],
        key: Option<&[u8]>,
        password: Option<&str>,
    ) -> Result<CertView> {
        let pending = self.store.lock().await.request(name)?;
        let bundle = bundle.to_vec();
        let key = key.map(|k| Zeroizing::new(k.to_vec()));
        let password = password.map(|p| Zeroizing::new(p.to_owned()));
        let has_key_file = key.is_some();
        let request_key = pending
            .as_ref()
            .map(|r| r.key.expose_secret().to_owned())
            .map(Zeroizing::new);
        let parsed = self
            .cpu
            .run("certificate import", move || {
                crate::failpoint::slow_import();
                let parsed = switchboard_pki::import(
                    &bundle,
                    key.as_deref().map(|k| &k[..]),
                    password.as_deref().map(|p| p.as_str()),
                )?;
                let Some(request_key) = request_key else {
                    return Ok(parsed);
                };
                if has_key_file || parsed.key().is_some() {
                    return Err(EngineError::Import {
                        code: "key-not-expected",
                        message: format!(
                            "the key of {} was made on the appliance: the upload must not hold a key",
                            parsed.info().subject
                        ),
                        hint: "import only the certificate the CA signed (and its chain), without --key;                                to import a key made elsewhere, choose another name",
                    });
                }
                let own = PrivateKey::from_key_pem(&switchboard_pki::KeyPem::from_stored(
                    request_key.as_str().to_owned(),
                ))?;
                parsed.with_key(own).map_err(|e| match e {
                    ImportError::KeyMismatch { leaf } => EngineError::Import {
                        code: "request-key-mismatch",
                        message: format!(
                            "the certificate {leaf} does not certify the key made on the appliance for this name"
                        ),
                        hint: "have the CA sign the request printed by `switchboard cert request` for this name                                (`switchboard cert requests` shows it again), and import what it returns",
                    },
                    other => other.into(),
                })
            })
            .await??;
        let mut store = self.store.lock().await;
        let row = stored(name.clone(), &parsed, false);
        let outcome = match pending {
            Some(_) => store.attach_request(&row),
            None => store.insert_cert(&row),
        };
        outcome.map_err(|e| match e {
            switchboard_store::StoreError::CertExists(n) => EngineError::CertExists(n),
            // Withdrawn (`cert delete`) while the upload was being read.
            switchboard_store::StoreError::NoSuchRequest(n) => EngineError::Import {
                code: "request-gone",
                message: format!(
                    "the key request {n} was deleted while its certificate was being imported"
                ),
                hint: "make a new request with `switchboard cert request` and have the CA sign it",
            },
            other => other.into(),
        })?;
        info!(cert = %name, subject = %parsed.info().subject, fingerprint = %parsed.info().fingerprint, made_here = row.key.is_some() && !has_key_file, "certificate imported");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "cert.import",
                format!("certificate {name} imported ({})", parsed.info().subject),
                serde_json::json!({ "cert": name, "subject": parsed.info().subject.to_string(), "fingerprint": parsed.info().fingerprint.to_string() }),
            ),
            "done",
        );
        view(&store, &row, Timestamp::now(), &uses(&store)?)
    }

    /// Make a key on the appliance under `name` and a signing request for
    /// `names`: the key is stored (never shown), the request returned. Key
    /// generation runs in the CPU pool.
    pub async fn request_cert(
        &self,
        name: &CertName,
        key_type: RequestKeyType,
        names: Vec<RequestName>,
    ) -> Result<CertRequestView> {
        {
            let store = self.store.lock().await;
            if store.cert(name)?.is_some() || store.request(name)?.is_some() {
                return Err(EngineError::CertExists(name.clone()));
            }
            let pending = store.requests()?.len();
            if pending >= MAX_PENDING_REQUESTS {
                return Err(EngineError::Import {
                    code: "too-many-requests",
                    message: format!(
                        "{pending} keys already wait for their certificate; switchboard keeps at most {MAX_PENDING_REQUESTS}"
                    ),
                    hint: "import the certificates of the pending requests, or withdraw those you no longer need (`switchboard cert requests`, `switchboard cert delete NAME`)",
                });
            }
        }
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        let made = self
            .cpu
            .run("key and signing request", move || {
                switchboard_pki::make_request(key_type, &names)
            })
            .await??;
        let row = StoredRequest {
            name: name.clone(),
            pin: switchboard_provision::CertPin::of_spki_der(made.key.subject_public_key_info())
                .to_string(),
            key: made.key.to_key_pem(),
            key_type,
            names: shown,
            csr_pem: made.csr_pem,
            created_at: Timestamp::now(),
        };
        let mut store = self.store.lock().await;
        store.insert_request(&row).map_err(|e| match e {
            switchboard_store::StoreError::CertExists(n) => EngineError::CertExists(n),
            other => other.into(),
        })?;
        info!(cert = %name, key_type = %key_type, names = ?row.names, "key made on the appliance; signing request issued");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "cert.request",
                format!(
                    "key {name} made on the appliance, signing request for {}",
                    row.names.join(", ")
                ),
                serde_json::json!({ "cert": name, "names": row.names, "key_type": key_type.to_string() }),
            ),
            "done",
        );
        Ok(CertRequestView::from(&row))
    }

    /// The keys made on the appliance that wait for their certificate.
    pub async fn cert_requests(&self) -> Result<Vec<CertRequestView>> {
        let store = self.store.lock().await;
        Ok(store
            .requests()?
            .iter()
            .map(CertRequestView::from)
            .collect())
    }

    pub async fn certs(&self) -> Result<Vec<CertView>> {
        let store = self.store.lock().await;
        let used = uses(&store)?;
        let now = Timestamp::now();
        store
            .certs()?
            .iter()
            .map(|c| view(&store, c, now, &used))
            .collect()
    }

    pub async fn cert(&self, name: &CertName) -> Result<(CertView, String)> {
        let store = self.store.lock().await;
        let c = store
            .cert(name)?
            .ok_or_else(|| EngineError::NoSuchCert(name.clone()))?;
        Ok((
            view(&store, &c, Timestamp::now(), &uses(&store)?)?,
            c.chain_pem,
        ))
    }

    /// Delete a certificate that no binding uses (in the candidate or the
    /// applied revision).
    pub async fn delete_cert(&self, name: &CertName) -> Result<()> {
        let mut store = self.store.lock().await;
        if let Some(used_by) = uses(&store)?.remove(name) {
            return Err(EngineError::CertInUse {
                name: name.clone(),
                used_by,
            });
        }
        if !store.delete_cert(name)? && !store.delete_request(name)? {
            return Err(EngineError::NoSuchCert(name.clone()));
        }
        crate::renewal::forget(&mut store, name)?;
        info!(cert = %name, "certificate deleted");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "cert.delete",
                format!("certificate {name} deleted"),
                serde_json::json!({ "cert": name }),
            ),
            "done",
        );
        Ok(())
    }

    /// Trust the CA certificates of `upload` (PEM or DER).
    pub async fn add_cas(&self, upload: &[u8]) -> Result<Vec<CaView>> {
        let upload = upload.to_vec();
        let certs = self
            .cpu
            .run("CA certificate upload", move || {
                let certs = switchboard_pki::read_certificates(&upload)?;
                TrustAnchors::from_ca_certs(&certs)?;
                Ok::<_, ImportError>(certs)
            })
            .await??;
        let mut store = self.store.lock().await;
        let mut added = Vec::new();
        for der in &certs {
            let info = switchboard_pki::CertInfo::from_der(der)?;
            let anchor = StoredAnchor {
                fingerprint: info.fingerprint.to_string(),
                der: der.to_vec(),
                subject: info.subject.clone(),
                added_at: Timestamp::now(),
            };
            let new = store.add_anchor(&anchor)?;
            info!(ca = %info.subject, new, "trusted CA added");
            crate::audit::record_in(
                &mut store,
                &crate::audit::Entry::new(
                    "ca.add",
                    format!("trusted CA {} added", info.subject),
                    serde_json::json!({ "subject": info.subject.to_string(), "new": new }),
                ),
                if new { "done" } else { "no change" },
            );
            added.push(CaView::from(anchor));
        }
        Ok(added)
    }

    pub async fn cas(&self) -> Result<Vec<CaView>> {
        Ok(self
            .store
            .lock()
            .await
            .anchors()?
            .into_iter()
            .map(CaView::from)
            .collect())
    }

    /// Bind `cert` to `service` (its default, or on `nic` only). An expired
    /// or not yet valid certificate needs `force`.
    pub async fn bind(
        &self,
        service: ServiceId,
        nic: Option<&NicName>,
        cert: &CertName,
        force: bool,
    ) -> Result<EditView<()>> {
        let place = match nic {
            Some(nic) => format!("{service} on {nic}"),
            None => format!("{service} (every NIC without its own)"),
        };
        let what = crate::audit::Entry::new(
            "cert.bind",
            format!("bound certificate {cert} to {place}"),
            serde_json::json!({ "cert": cert, "service": service, "nic": nic, "force": force }),
        );
        self.edit(what, |c, facts| {
            let f = facts
                .certificates
                .get(cert)
                .ok_or_else(|| EngineError::NoSuchCert(cert.clone()))?;
            if !f.has_key {
                return Err(EngineError::CertUnbindable {
                    name: cert.clone(),
                    why: "it has no private key".into(),
                });
            }
            if let Some(nic) = nic
                && facts.nic(nic).is_none()
                && !matches!(&c.matrix, switchboard_domain::Matrix::Explicit { known_nics, .. } if known_nics.contains(nic))
            {
                return Err(EngineError::Matrix(
                    switchboard_domain::matrix::MatrixError::UnknownNic(nic.clone()),
                ));
            }
            match (f.validity, force) {
                (Validity::Valid, _) => {
                    c.bindings.accept_invalid.remove(cert);
                }
                (_, true) => {
                    c.bindings.accept_invalid.insert(cert.clone());
                }
                (v, false) => {
                    let why = match v {
                        Validity::Expired => "it has expired",
                        _ => "it is not valid yet",
                    };
                    return Err(EngineError::CertUnbindable {
                        name: cert.clone(),
                        why: format!("{why} (bind it with --force if you really mean to)"),
                    });
                }
            }
            c.bindings
                .bind(service, nic, cert.clone())
                .map_err(|e| EngineError::Input(e.into()))
        })
        .await
    }

    pub async fn unbind(&self, service: ServiceId, nic: Option<&NicName>) -> Result<EditView<()>> {
        let place = match nic {
            Some(nic) => format!("{service} on {nic}"),
            None => format!("{service} (every NIC without its own)"),
        };
        let what = crate::audit::Entry::new(
            "cert.unbind",
            format!("unbound the certificate of {place}"),
            serde_json::json!({ "service": service, "nic": nic }),
        );
        self.edit(what, |c, _| {
            c.bindings.unbind(service, nic);
            Ok(())
        })
        .await
    }

    /// Declare a NIC's host name, public address (NAT) and its clients'
    /// DNS servers, replacing all three.
    pub async fn set_nic(&self, nic: &NicName, settings: NicSettings) -> Result<EditView<()>> {
        let change = NicSettingsChange {
            hostname: Some(settings.hostname),
            public_address: Some(settings.public_address),
            resolvers: Some(settings.resolvers),
        };
        self.change_nic(nic, change).await
    }

    /// Change some of a NIC's settings and keep the others, in one edit
    /// under the engine's lock.
    pub async fn change_nic(
        &self,
        nic: &NicName,
        change: NicSettingsChange,
    ) -> Result<EditView<()>> {
        let what = crate::audit::Entry::new(
            "nic.settings",
            format!("settings of {nic} changed"),
            serde_json::json!({ "nic": nic }),
        );
        self.edit(what, |c, facts| {
            if facts.nic(nic).is_none() {
                return Err(EngineError::Matrix(
                    switchboard_domain::matrix::MatrixError::UnknownNic(nic.clone()),
                ));
            }
            let settings = change.applied_to(&c.nics.get(nic).cloned().unwrap_or_default());
            if settings == NicSettings::default() {
                c.nics.remove(nic);
            } else {
                c.nics.insert(nic.clone(), settings);
            }
            Ok(())
        })
        .await
    }

    pub(crate) fn anchors(&self, store: &Store) -> Result<TrustAnchors> {
        let mut anchors = self
            .system_roots
            .get_or_init(|| {
                switchboard_pki::system_roots().unwrap_or_else(|e| {
                    warn!(error = %e, "the system's trusted CAs cannot be read; only added CAs are trusted");
                    TrustAnchors::default()
                })
            })
            .clone();
        let ders: Vec<_> = store
            .anchors()?
            .into_iter()
            .map(|a| rustls_pki_types::CertificateDer::from(a.der))
            .collect();
        anchors.extend(TrustAnchors::from_ca_certs(&ders)?);
        Ok(anchors)
    }

    /// The padlock check of every TLS service on every NIC it is enabled
    /// on, as the candidate has it: trust, name, key, validity, and that
    /// the name resolves to the NIC's address (or its public address).
    pub async fn padlock(&self) -> Result<Vec<PadlockView>> {
        let now = Timestamp::now();
        let (candidate, facts, anchors, stored) = {
            let store = self.store.lock().await;
            let facts = self.facts_with(&store)?;
            let anchors = self.anchors(&store)?;
            (Self::candidate_of(&store)?, facts, anchors, store.certs()?)
        };
        let bundles = self
            .cpu
            .run("loading the stored certificates", move || {
                stored
                    .iter()
                    .map(|c| Ok((c.name.clone(), load(c)?)))
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .await??;
        let matrix = candidate.matrix.resolve(&facts);
        let mut out = Vec::new();
        for service in ServiceId::all().filter(|s| s.info().tls) {
            for nic in matrix.nics_of(service) {
                let Some(n) = facts.nic(nic) else { continue };
                let settings = candidate.nics.get(nic).cloned().unwrap_or_default();
                let addresses: Vec<IpAddr> = n
                    .addrs
                    .iter()
                    .filter(|a| !a.is_link_local())
                    .map(|a| a.addr)
                    .chain(settings.public_address)
                    .collect();
                let mut findings = Vec::new();
                let host = match (&settings.hostname, addresses.first()) {
                    (Some(h), _) => Some(Host::Name(h.clone())),
                    (None, Some(ip)) => {
                        findings.push(PadlockFinding::warning(
                            "no-hostname",
                            format!("no host name is declared for {nic}: checked against its address {ip}"),
                            format!("declare the name clients use with `switchboard nic set {nic} --hostname NAME`"),
                        ));
                        Some(Host::Ip(*ip))
                    }
                    (None, None) => None,
                };
                let cert = candidate.bindings.resolve(service, nic).cloned();
                match (&cert, &host) {
                    (None, _) => findings.push(PadlockFinding::error(
                        "tls-unbound",
                        format!("no certificate is bound to {service} on {nic}"),
                        format!("bind one with `switchboard cert bind {service} CERT --nic {nic}`"),
                    )),
                    (Some(_), None) => findings.push(PadlockFinding::error(
                        "nic-without-address",
                        format!("{nic} has no address: no client can reach {service} there"),
                        format!("configure an address on {nic}, or deny {service} on it"),
                    )),
                    (Some(c), Some(host)) => match bundles.get(c) {
                        None => findings.push(PadlockFinding::error(
                            "cert-unknown",
                            format!("certificate {c} is not in the store"),
                            "bind a certificate from `switchboard cert list`",
                        )),
                        Some(bundle) => {
                            let report = switchboard_pki::check(bundle, None, &anchors, host, now);
                            findings.extend(report.findings.into_iter().map(|f| PadlockFinding {
                                code: f.code.as_str().to_owned(),
                                severity: match f.code.severity() {
                                    switchboard_pki::Severity::Error => {
                                        switchboard_domain::Severity::Error
                                    }
                                    switchboard_pki::Severity::Warning => {
                                        switchboard_domain::Severity::Warning
                                    }
                                },
                                message: f.message,
                                hint: f.hint,
                            }));
                        }
                    },
                }
                if let Some(h) = &settings.hostname {
                    findings.extend(dns_finding(h, nic, &addresses, &settings.resolvers).await);
                }
                out.push(PadlockView {
                    service,
                    nic: nic.to_string(),
                    cert: cert.map(|c| c.to_string()),
                    host: host.map(|h| h.to_string()),
                    addresses: addresses.iter().map(|a| a.to_string()).collect(),
                    ok: findings
                        .iter()
                        .all(|f| f.severity != switchboard_domain::Severity::Error),
                    findings,
                });
            }
        }
        Ok(out)
    }
}

/// "The certificates are strictly bound to the name they are released
/// for, so make sure you assigned via DNS the proper name to the IP where
/// the service is published." Asked of the DNS servers `nic`'s clients
/// use when they are declared (split horizon), of the appliance's own
/// resolver otherwise; the finding names which.
async fn dns_finding(
    host: &Hostname,
    nic: &NicName,
    addresses: &[IpAddr],
    resolvers: &switchboard_domain::tls::Resolvers,
) -> Option<PadlockFinding> {
    let shown: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    let (answer, asked) = if resolvers.is_empty() {
        (
            switchboard_system::dns::resolve(host.as_str()).await,
            "the appliance's resolver".to_owned(),
        )
    } else {
        (
            switchboard_system::dns::resolve_with(host.as_str(), resolvers.addrs()).await,
            format!("{resolvers} (the DNS servers of {nic}'s clients)"),
        )
    };
    let split_horizon = if resolvers.is_empty() {
        format!(
            "; if {nic}'s clients use other DNS servers (split horizon), declare them with `switchboard nic set {nic} --resolvers ADDRESSES`"
        )
    } else {
        String::new()
    };
    match answer {
        Err(e) => Some(PadlockFinding::error(
            "dns-unresolved",
            format!("{host} does not resolve for {asked} ({e})"),
            format!(
                "publish {host} in DNS with the address of {nic} ({}){split_horizon}",
                shown.join(", ")
            ),
        )),
        Ok(found) if !found.iter().any(|a| addresses.contains(a)) => {
            let found: Vec<String> = found.iter().map(|a| a.to_string()).collect();
            Some(PadlockFinding::error(
                "dns-mismatch",
                format!(
                    "{host} resolves to {} for {asked}, not to an address of {nic} ({})",
                    found.join(", "),
                    shown.join(", ")
                ),
                format!(
                    "point {host} at {nic}'s address in DNS, or declare the public address in front of it with `switchboard nic set {nic} --public-address IP`{split_horizon}"
                ),
            ))
        }
        Ok(_) => None,
    }
}
