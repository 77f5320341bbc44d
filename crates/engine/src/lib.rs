//! The daemon's core: the one writer.
//!
//! [`Engine`] owns the [store](switchboard_store) and the system adapters,
//! and executes every action the API offers. Every change flows one way:
//! edits change the candidate only; [`Engine::update`] validates it, plans
//! it (pure), applies the plan (system adapters), verifies it and records a
//! numbered revision. The web crate turns HTTP requests into calls of this
//! crate's methods and its errors into statuses; the CLI is a client of
//! that API. Nothing else changes the store or the system.
//!
//! **Invariants.**
//! - Actions are serialized by one lock: two Updates never interleave.
//! - A change is acknowledged (the method returns `Ok`) only after the
//!   store has it on disk.
//! - A rejected action changes nothing: not the candidate, not the system.
//! - Request origins ([`Origin`]) are recorded with every revision.
//! - Every change is written to the audit log where it is made, in words
//!   and data ([`audit`]), under the request's origin (a task-local scope
//!   the web crate opens), `system` outside any request.
//! - The ban sets of the firewall change only under [`bans`]' lock, which
//!   the firewall step shares: an Update keeps the live bans.
//! - CPU-heavy work (certificate imports, argon2id, QR codes) runs in the
//!   bounded [`cpu`] pool, never on an async worker and never under the
//!   lock; a caller dropped meanwhile writes nothing.
//! - Monitoring ([`monitor`], [`metrics`]) is derived from what the store
//!   and the supervisor hold, and from counters kept in memory: nothing is
//!   recorded for it, and nothing in it is a secret.
//!
//! - The media relay (rtpengine, [`calls`] lists what it relays) runs the
//!   interfaces of the plan's `rtp` row only, and Kamailio routes calls
//!   only when the daemon drives the relay.
//! - A [`fleet`]'s policy is applied like any Update, as a commit-confirmed
//!   revision of the actor `fleet`; on a fleet-managed appliance the
//!   administrator's Updates and rollbacks are refused (`drift: refuse`) or
//!   reported as drift.
//!
//! **Limitations.** One lock for every action: a slow system step (a
//! Kamailio or rtpengine restart, a firewall load) delays reads too. A
//! change of the `rtp` row restarts rtpengine, which ends the media of the
//! calls in progress; a change of Kamailio's script restarts Kamailio, whose
//! phones connect again. The firewall is
//! only rendered and recorded in [`FirewallMode::Plan`], loaded into the
//! kernel in [`FirewallMode::Enforce`].

pub mod accounts;
pub mod acme;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bans;
pub mod calls;
mod certs;
pub mod cpu;
pub mod datadir;
mod diff;
mod error;
mod facts;
mod failpoint;
pub mod firewall;
pub mod fleet;
pub mod listeners;
mod media;
pub mod metrics;
pub mod monitor;
mod origin;
mod pipeline;
pub mod renewal;
mod sip;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tls;
pub mod totp;
pub mod views;

use std::path::PathBuf;
use std::sync::RwLock;

use jiff::Timestamp;
use switchboard_domain::{
    Candidate, Facts, NicName, PortRange, RevisionComment, ServiceId, validate,
};
use switchboard_plan::{Context, PLAN_VERSION, Plan, Rejected};
use switchboard_store::{
    NewRevision, Outcome, Pending, Revision, RevisionKind, RevisionSummary, Store,
};
use tokio::sync::Mutex;
use tracing::{info, info_span, warn};

pub use auth::{
    AdminView, Area, DEFAULT_ADMIN, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, RecoveryCodes, Role,
    SignIn, TotpEnrolment,
};
pub use error::{EngineError, InputError};
pub use facts::facts_from_kernel;
use failpoint::failpoint;
use listeners::Binding;
pub use listeners::{ListenSocket, ListenerControl};
pub use origin::{Arrival, Origin};
use pipeline::Step;
pub use tls::TlsTables;
use views::*;

/// What the firewall does with a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FirewallMode {
    /// Render and record the ruleset; never touch the host firewall.
    Plan,
    /// Load each revision's ruleset into the kernel (one transaction),
    /// verify it, and reconcile at boot.
    Enforce,
}

/// The longest commit-confirm window accepted, in seconds.
pub const MAX_CONFIRM_WINDOW: u64 = 3600;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub firewall: FirewallMode,
    /// Ask the kernel for the NICs before every Update (the daemon does;
    /// unit tests feed facts with [`Engine::set_facts`] instead).
    pub discover: bool,
    /// Where activation SMS go.
    pub sms_gateway: switchboard_system::sms::Gateway,
    /// Drive Kamailio for the SIP services (`serve --sip kamailio`).
    pub sip: bool,
    /// Drive rtpengine as the media relay of calls (`serve --media
    /// rtpengine`); Kamailio routes calls only then.
    pub media: bool,
}

impl EngineConfig {
    /// A configuration that touches nothing of the system (see
    /// [`Engine::in_memory`]).
    pub fn detached() -> EngineConfig {
        EngineConfig {
            data_dir: "/nonexistent".into(),
            firewall: FirewallMode::Plan,
            discover: false,
            sms_gateway: switchboard_system::sms::Gateway::Outbox,
            sip: false,
            media: false,
        }
    }
}

#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    store: std::sync::Arc<Mutex<Store>>,
    /// The phones' own connection to the store (the same one as `store`
    /// for an in-memory store): activation links are consumed and their
    /// documents read through it, so a fetch never waits for an Update,
    /// which holds `store` from its plan to its record.
    phones: std::sync::Arc<Mutex<Store>>,
    facts: RwLock<Facts>,
    /// The system's trusted CAs, read once.
    system_roots: std::sync::OnceLock<switchboard_pki::TrustAnchors>,
    /// What the built-in HTTPS listeners present.
    tls: TlsTables,
    /// Activation link fetches per source address.
    fetch_limit: accounts::RateLimit,
    /// Kamailio, when the daemon drives it.
    sip: Option<Mutex<sip::Sip>>,
    /// rtpengine, when the daemon drives it.
    media: Option<Mutex<media::Media>>,
    /// Token consumptions waiting for the next group commit.
    consumer: std::sync::OnceLock<tokio::sync::mpsc::Sender<accounts::Consume>>,
    /// What the documents of the running revision share.
    documents: std::sync::Mutex<Option<std::sync::Arc<accounts::DocumentContext>>>,
    /// Per administrator, how many times the password changed since the
    /// daemon started: console sessions from before the last change end.
    admin_generations: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The revision on trial and when its firewall was in place (a
    /// monotonic instant), for the console's confirmation rule. Lost at a
    /// restart, when every connection is newer than the daemon anyway.
    trial_applied: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    /// The built-in HTTPS listeners, when the daemon runs them: each
    /// revision installed listens on its ports.
    listeners: std::sync::OnceLock<std::sync::Arc<dyn ListenerControl>>,
    /// Where CPU-heavy work runs, off the async workers (see [`cpu`]).
    cpu: cpu::CpuPool,
    /// Held by an ACME renewal: one at a time (the timer's or `cert renew`).
    renewing: Mutex<()>,
    /// The answers to ACME http-01 challenges, served on the `http` port.
    http01: acme::Http01Answers,
    /// What the daemon counts for Prometheus (see [`metrics`]).
    counters: metrics::Counters,
    /// What the fleet agent last saw of etcd (memory only).
    fleet_seen: std::sync::Mutex<fleet::FleetView>,
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl Engine {
    /// Open the engine on an open store. The store's candidate is created
    /// (factory default) on first start.
    pub fn new(config: EngineConfig, mut store: Store) -> Result<Engine> {
        if store.candidate()?.is_none() {
            store.save_candidate(&Candidate::default(), Timestamp::now())?;
            info!("new appliance: factory-default candidate (every service on every NIC)");
        }
        let sip = config
            .sip
            .then(|| Mutex::new(sip::Sip::new(&config.data_dir)));
        let media = config
            .media
            .then(|| Mutex::new(media::Media::new(&config.data_dir)));
        let phones = store.second_connection()?;
        let store = std::sync::Arc::new(Mutex::new(store));
        let phones = match phones {
            Some(second) => std::sync::Arc::new(Mutex::new(second)),
            None => store.clone(),
        };
        Ok(Engine {
            sip,
            media,
            config,
            store,
            phones,
            facts: RwLock::new(Facts::default()),
            system_roots: std::sync::OnceLock::new(),
            tls: TlsTables::new(),
            fetch_limit: accounts::RateLimit::default(),
            documents: std::sync::Mutex::new(None),
            consumer: std::sync::OnceLock::new(),
            admin_generations: Default::default(),
            trial_applied: std::sync::Mutex::new(None),
            listeners: std::sync::OnceLock::new(),
            cpu: cpu::CpuPool::default(),
            renewing: Mutex::new(()),
            http01: acme::Http01Answers::default(),
            counters: metrics::Counters::default(),
            fleet_seen: Default::default(),
        })
    }

    /// The bounded pool where CPU-heavy work runs: the web layer renders
    /// QR codes there.
    pub fn cpu(&self) -> &cpu::CpuPool {
        &self.cpu
    }

    /// An engine on a new in-memory store that touches nothing of the
    /// system: firewall planned, no NIC discovery (facts come from
    /// [`Engine::set_facts`]), SMS to the outbox, no SIP server. For tests
    /// and tools.
    pub fn in_memory() -> Result<Engine> {
        Engine::new(EngineConfig::detached(), Store::open_in_memory()?)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The facts as last observed.
    pub fn facts(&self) -> Facts {
        self.facts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The commit-confirmed revision waiting for confirmation, if any.
    pub async fn pending(&self) -> Result<Option<Pending>> {
        Ok(self.store.lock().await.pending()?)
    }

    /// Replace the observed facts; returns whether they changed.
    pub fn set_facts(&self, facts: Facts) -> bool {
        let mut current = self.facts.write().unwrap_or_else(|p| p.into_inner());
        let changed = *current != facts;
        *current = facts;
        changed
    }

    /// Ask the kernel for the NICs and remember them.
    pub async fn refresh_facts(&self) -> Result<Facts> {
        let kernel = switchboard_system::nics::discover()
            .await
            .map_err(|e| EngineError::Discovery(e.to_string()))?;
        let facts = facts_from_kernel(kernel);
        if self.set_facts(facts.clone()) {
            info!(nics = facts.nics.len(), "NICs or addresses changed");
            // Certificates are presented and Kamailio listens per address:
            // follow the addresses (the firewall names NICs, not addresses).
            let mut store = self.store.lock().await;
            let facts_now = self.facts_with(&store)?;
            let replanned = self.applied(&store)?.map(|r| {
                let mut c = r.candidate;
                c.matrix.settle(&facts_now);
                switchboard_plan::render(&c, &facts_now, &self.context())
            });
            self.put(
                &mut store,
                &facts_now,
                replanned.as_ref(),
                replanned.as_ref(),
                &[Step::Tls, Step::Media, Step::Kamailio],
                Binding::BestEffort,
            )
            .await
            .map_err(EngineError::System)?;
        }
        Ok(facts)
    }

    /// Hand the engine the built-in HTTPS listeners: from then on, every
    /// revision installed (at boot first) listens on its ports. Set once,
    /// before [`Engine::boot`]; a second control is ignored (and logged).
    pub fn set_listener_control(&self, control: std::sync::Arc<dyn ListenerControl>) {
        if self.listeners.set(control).is_err() {
            warn!("the HTTPS listeners were already handed over; the second control is ignored");
        }
    }

    /// What the built-in HTTPS listeners present.
    pub fn tls_tables(&self) -> &TlsTables {
        &self.tls
    }

    /// What the plan needs of this daemon: Kamailio's files, when it
    /// drives Kamailio.
    pub(crate) fn context(&self) -> Context {
        Context {
            kamailio: self.config.sip.then(|| sip::env(&self.config.data_dir)),
            media: self.config.media.then(media::env),
        }
    }

    /// The built-in listeners (when the daemon runs them) listen on
    /// `plan`'s sockets; see [`listeners::Binding`] for `binding`.
    async fn listen(
        &self,
        plan: &Plan,
        binding: listeners::Binding,
    ) -> std::result::Result<String, String> {
        let Some(control) = self.listeners.get() else {
            return Ok(String::new());
        };
        let wanted: Vec<ListenSocket> = plan
            .builtin_sockets()
            .map(|s| ListenSocket {
                service: s.service,
                port: s.port,
            })
            .collect();
        listeners::listen(&**control, &wanted, binding).await
    }

    /// `r` with its plan completed when an older version recorded it.
    fn upgraded(&self, store: &Store, r: Revision) -> Result<Revision> {
        Self::upgraded_with(store, self.facts(), &self.context(), r)
    }

    /// [`Engine::upgraded`] with the kernel's `facts` and the planner's
    /// `context` given, for work off the engine (a blocking thread).
    fn upgraded_with(
        store: &Store,
        facts: Facts,
        context: &Context,
        mut r: Revision,
    ) -> Result<Revision> {
        if r.plan.version < PLAN_VERSION {
            let facts = certs::with_certificates(facts, store)?;
            r.plan = r.plan.upgrade(&r.candidate, &facts, context);
        }
        Ok(r)
    }

    /// The applied revision (see [`Engine::upgraded`]).
    fn applied(&self, store: &Store) -> Result<Option<Revision>> {
        store
            .applied()?
            .map(|r| self.upgraded(store, r))
            .transpose()
    }

    /// Revision `number` (see [`Engine::upgraded`]).
    fn revision_of(&self, store: &Store, number: u64) -> Result<Revision> {
        let r = store
            .revision(number)?
            .ok_or(EngineError::NoSuchRevision(number))?;
        self.upgraded(store, r)
    }

    /// Keep Kamailio's subscriber table in step with the accounts.
    pub(crate) async fn sync_subscribers(&self, store: &mut Store) -> Result<()> {
        match &self.sip {
            Some(sip) => sip.lock().await.sync_subscribers(store),
            None => Ok(()),
        }
    }

    /// Kamailio's state, when the daemon drives it.
    pub async fn sip_state(&self) -> Option<switchboard_system::kamailio::KamailioState> {
        match &self.sip {
            Some(sip) => Some(sip.lock().await.state().unwrap_or_default()),
            None => None,
        }
    }

    /// The media relay's state, when the daemon drives it.
    pub async fn media_state(&self) -> Option<switchboard_system::kamailio::KamailioState> {
        match &self.media {
            Some(m) => Some(m.lock().await.state().unwrap_or_default()),
            None => None,
        }
    }

    /// Stop what the daemon runs (Kamailio, then the media relay).
    pub async fn shutdown(&self) {
        if let Some(sip) = &self.sip {
            sip.lock().await.stop().await;
        }
        if let Some(media) = &self.media {
            media.lock().await.stop().await;
        }
    }

    async fn current_facts(&self) -> Result<Facts> {
        if self.config.discover {
            self.refresh_facts().await
        } else {
            Ok(self.facts())
        }
    }

    /// The kernel's facts and the store's certificates, as of now.
    fn facts_with(&self, store: &Store) -> Result<Facts> {
        certs::with_certificates(self.facts(), store)
    }

    fn candidate_of(store: &Store) -> Result<Candidate> {
        Ok(store.candidate()?.unwrap_or_default())
    }

    // ---- reads ------------------------------------------------------------

    /// The candidate as it is now (edits not yet applied included).
    pub async fn candidate(&self) -> Result<Candidate> {
        Self::candidate_of(&*self.store.lock().await)
    }

    pub async fn status(&self) -> Result<StatusView> {
        let sip = self.sip_state().await.map(|k| match (k.running, k.pid) {
            (true, Some(pid)) => format!(
                "kamailio running (pid {pid}, restarted {} time(s))",
                k.restarts
            ),
            _ => format!(
                "kamailio not running{}",
                k.last_exit
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
        });
        let media = self.media_state().await.map(|m| match (m.running, m.pid) {
            (true, Some(pid)) => format!(
                "media relay running (rtpengine, pid {pid}, restarted {} time(s))",
                m.restarts
            ),
            _ => format!(
                "media relay not running{}",
                m.last_exit
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
        });
        let checks = self.padlock().await?;
        let open_padlocks = checks
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{} on {}", p.service, p.nic))
            .collect();
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let candidate = Self::candidate_of(&store)?;
        let applied = store.applied()?;
        let pending = store.pending()?;
        let diagnostics = validate(&candidate, &facts);
        let mut settled = candidate.clone();
        settled.matrix.settle(&facts);
        Ok(StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            data_dir: self.config.data_dir.display().to_string(),
            firewall_mode: self.config.firewall,
            applied_revision: applied.as_ref().map(|r| r.summary.number),
            applied_at: applied.as_ref().map(|r| r.summary.created_at),
            pending: pending.map(|p| PendingView::of(p, Timestamp::now())),
            candidate_changed: applied.as_ref().is_none_or(|r| r.candidate != settled),
            errors: diagnostics.iter().filter(|d| d.is_error()).count(),
            warnings: diagnostics.iter().filter(|d| !d.is_error()).count(),
            diagnostics,
            nics: facts.nics.len(),
            unconfigured_nics: facts
                .nics
                .iter()
                .filter(|n| !n.configured())
                .map(|n| n.name.to_string())
                .collect(),
            new_nics: candidate
                .matrix
                .new_nics(&facts)
                .iter()
                .map(|n| n.to_string())
                .collect(),
            padlocks: checks.len(),
            open_padlocks,
            sip,
            media,
            bans: Self::ban_counts(&store)?,
            expiring: certs::expiring(&store, Timestamp::now())?,
        })
    }

    pub async fn nics(&self) -> Result<Vec<NicView>> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let candidate = Self::candidate_of(&store)?;
        let resolved = candidate.matrix.resolve(&facts);
        let new = candidate.matrix.new_nics(&facts);
        let services_on = |nic: &NicName| -> Vec<ServiceId> {
            ServiceId::all()
                .filter(|s| resolved.allows(*s, nic))
                .collect()
        };
        let mut out: Vec<NicView> = facts
            .nics
            .iter()
            .map(|n| NicView {
                name: n.name.to_string(),
                index: Some(n.index),
                mac: n.mac.clone(),
                up: n.up,
                running: n.running,
                configured: n.configured(),
                addresses: n.addrs.iter().map(|a| a.to_string()).collect(),
                state: if new.contains(&&n.name) {
                    NicState::New
                } else {
                    NicState::Present
                },
                services: services_on(&n.name),
            })
            .collect();
        for gone in resolved
            .nics()
            .into_iter()
            .filter(|n| facts.nic(n).is_none())
        {
            out.push(NicView {
                name: gone.to_string(),
                index: None,
                mac: None,
                up: false,
                running: false,
                configured: false,
                addresses: vec![],
                state: NicState::Gone,
                services: services_on(gone),
            });
        }
        Ok(out)
    }

    /// Where the console answers now: its port, and for each NIC the
    /// running revision (or, before the first Update, the candidate) opens
    /// it on, the NIC's host name when it has one and each of its addresses
    /// (link-local ones left out), with the NIC's name. What `serve`
    /// prints at start.
    pub async fn console_places(&self) -> Result<(u16, Vec<(NicName, String)>)> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let candidate = match store.applied()? {
            Some(r) => r.candidate,
            None => Self::candidate_of(&store)?,
        };
        let port = candidate.port(ServiceId::Console).first();
        let resolved = candidate.matrix.resolve(&facts);
        let mut out = Vec::new();
        for nic in resolved.nics_of(ServiceId::Console) {
            let host = candidate
                .nics
                .get(nic)
                .and_then(|s| s.hostname.as_ref())
                .map(ToString::to_string);
            let addresses = facts
                .nic(nic)
                .map(|n| {
                    n.addrs
                        .iter()
                        .filter(|a| !a.is_link_local())
                        .map(|a| match a.addr {
                            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                            v4 => v4.to_string(),
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            for name in host.into_iter().chain(addresses) {
                out.push((nic.clone(), name));
            }
        }
        Ok((port, out))
    }

    pub async fn services(&self) -> Result<Vec<ServiceView>> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let candidate = Self::candidate_of(&store)?;
        let resolved = candidate.matrix.resolve(&facts);
        let applied = store.applied()?;
        Ok(ServiceId::all()
            .map(|id| {
                let info = id.info();
                ServiceView {
                    id,
                    label: info.label.into(),
                    transport: info.transport,
                    ports: candidate.port(id),
                    default_ports: info.default_ports,
                    tls: info.tls,
                    served_by: info.served_by.into(),
                    nics: resolved.nics_of(id).iter().map(|n| n.to_string()).collect(),
                    applied_nics: applied.as_ref().map(|r| {
                        r.plan
                            .matrix
                            .nics_of(id)
                            .iter()
                            .map(|n| n.to_string())
                            .collect()
                    }),
                }
            })
            .collect())
    }

    pub async fn matrix(&self) -> Result<MatrixView> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let candidate = Self::candidate_of(&store)?;
        let applied = store.applied()?;
        let resolved = candidate.matrix.resolve(&facts);
        let mut nics: Vec<String> = facts.names().map(|n| n.to_string()).collect();
        for n in resolved.nics() {
            if facts.nic(n).is_none() {
                nics.push(n.to_string());
            }
        }
        Ok(MatrixView {
            mode: if candidate.matrix.is_factory() {
                "factory"
            } else {
                "explicit"
            }
            .into(),
            nics,
            new_nics: candidate
                .matrix
                .new_nics(&facts)
                .iter()
                .map(|n| n.to_string())
                .collect(),
            candidate: resolved,
            applied_revision: applied.as_ref().map(|r| r.summary.number),
            applied: applied.map(|r| r.plan.matrix),
        })
    }

    pub async fn revisions(&self) -> Result<Vec<RevisionSummary>> {
        Ok(self.store.lock().await.revisions()?)
    }

    pub async fn revision(&self, number: u64) -> Result<Revision> {
        self.revision_of(&*self.store.lock().await, number)
    }

    pub async fn firewall(&self) -> Result<FirewallView> {
        let applied = self.store.lock().await.applied()?;
        let loaded = firewall::loaded(self.config.firewall)
            .await
            .map_err(EngineError::System)?;
        Ok(FirewallView {
            mode: self.config.firewall,
            revision: applied.as_ref().map(|r| r.summary.number),
            ruleset: applied.map(|r| r.plan.ruleset),
            loaded,
        })
    }

    /// What changes from `from` to `to`. `None` means: `from` the applied
    /// revision, `to` the candidate.
    pub async fn diff(&self, from: Option<u64>, to: Option<u64>) -> Result<DiffView> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let context = self.context();
        let candidate = Self::candidate_of(&store)?;
        let side = |number: Option<u64>, default_is_candidate: bool| -> Result<diff::Side> {
            match number {
                Some(n) => Ok(diff::Side::revision(self.revision_of(&store, n)?)),
                None if default_is_candidate => {
                    Ok(diff::Side::candidate(&candidate, &facts, &context))
                }
                None => match self.applied(&store)? {
                    Some(r) => Ok(diff::Side::revision(r)),
                    None => Ok(diff::Side::nothing_applied(&candidate, &facts, &context)),
                },
            }
        };
        let from = side(from, false)?;
        let to = side(to, true)?;
        Ok(diff::diff(&from, &to))
    }

    // ---- edits of the candidate -------------------------------------------

    async fn edit<T>(
        &self,
        what: audit::Entry,
        f: impl FnOnce(&mut Candidate, &Facts) -> Result<T>,
    ) -> Result<EditView<T>> {
        self.edit_with(what, |_, candidate, facts| f(candidate, facts))
            .await
    }

    /// One whole edit under the engine's lock: read the candidate, let `f`
    /// change it (reading the store if it needs to), save it. Nothing can
    /// come in between, so two edits at once never lose each other's
    /// change; when `f` fails, nothing is saved.
    /// The edit is recorded in the audit log as `what` (`done`, or `no
    /// change` when the candidate already was so).
    async fn edit_with<T>(
        &self,
        what: audit::Entry,
        f: impl FnOnce(&Store, &mut Candidate, &Facts) -> Result<T>,
    ) -> Result<EditView<T>> {
        let mut store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let mut candidate = Self::candidate_of(&store)?;
        let before = candidate.clone();
        let result = f(&store, &mut candidate, &facts)?;
        let changed = candidate != before;
        if changed {
            store.save_candidate(&candidate, Timestamp::now())?;
            info!(edit = %what.words, "candidate changed");
        }
        audit::record_in(
            &mut store,
            &what,
            if changed { "done" } else { "no change" },
        );
        Ok(EditView {
            changed,
            result,
            diagnostics: validate(&candidate, &facts),
        })
    }

    pub async fn set_cell(
        &self,
        service: ServiceId,
        nic: &NicName,
        allowed: bool,
    ) -> Result<EditView<()>> {
        let what = audit::Entry::new(
            if allowed {
                "matrix.allow"
            } else {
                "matrix.deny"
            },
            format!(
                "{} {service} on {nic}",
                if allowed { "allowed" } else { "denied" }
            ),
            serde_json::json!({ "service": service, "nic": nic, "allowed": allowed }),
        );
        self.edit(what, |c, facts| {
            c.matrix.set(service, nic, allowed, facts)?;
            Ok(())
        })
        .await
    }

    pub async fn preset_production(
        &self,
        internal: &NicName,
        external: &NicName,
    ) -> Result<EditView<()>> {
        let what = audit::Entry::new(
            "matrix.preset",
            format!("production preset applied (internal {internal}, external {external})"),
            serde_json::json!({ "internal": internal, "external": external }),
        );
        self.edit(what, |c, facts| {
            c.matrix = c.matrix.production(internal, external, facts)?;
            Ok(())
        })
        .await
    }

    pub async fn set_port(&self, service: ServiceId, ports: PortRange) -> Result<EditView<()>> {
        let what = audit::Entry::new(
            "port.set",
            format!("port of {service} set to {ports}"),
            serde_json::json!({ "service": service, "ports": ports.to_string() }),
        );
        self.edit(what, |c, _| {
            c.set_port(service, ports);
            Ok(())
        })
        .await
    }

    /// Throw the candidate's edits away: back to the applied revision's
    /// candidate (or the factory default when nothing was applied).
    pub async fn discard(&self) -> Result<EditView<()>> {
        let applied = self.store.lock().await.applied()?;
        let what = audit::Entry::new(
            "candidate.discard",
            "edits of the candidate discarded",
            serde_json::json!({}),
        );
        self.edit(what, |c, _| {
            *c = applied.map(|r| r.candidate).unwrap_or_default();
            Ok(())
        })
        .await
    }

    // ---- Update, rollback, commit-confirm, boot -----------------------------

    /// Validate, plan, apply, verify and record the candidate. With
    /// `confirm_within`, the revision is applied as pending: [`Engine::confirm`]
    /// keeps it, otherwise [`Engine::expire_pending`] rolls it back.
    pub async fn update(
        &self,
        origin: &Origin,
        comment: &str,
        confirm_within: Option<u64>,
    ) -> Result<UpdateView> {
        let comment: RevisionComment = comment.parse().map_err(InputError::from)?;
        let window = confirm_window(confirm_within)?;
        let kernel = self.current_facts().await?;
        let mut store = self.store.lock().await;
        Self::refuse_if_fleet_managed(&store, origin)?;
        let facts = certs::with_certificates(kernel, &store)?;
        let candidate = Self::candidate_of(&store)?;
        let change = Change {
            origin,
            comment: &comment,
            candidate,
            kind: RevisionKind::Update,
            rollback_of: None,
            window,
            next_candidate: None,
        };
        let started = std::time::Instant::now();
        let done = self.apply(&mut store, &facts, change).await;
        self.counters.update_took(started.elapsed());
        done
    }

    /// Whether an Update of the candidate now would stop the console or
    /// SSH answering on the NIC `origin`'s session arrived through: that
    /// service and NIC. `None` also when the candidate cannot be planned
    /// (the Update would be rejected anyway, with its diagnostics).
    pub async fn lockout_preview(&self, origin: &Origin) -> Result<Option<(ServiceId, NicName)>> {
        let store = self.store.lock().await;
        let facts = self.facts_with(&store)?;
        let mut candidate = Self::candidate_of(&store)?;
        candidate.matrix.settle(&facts);
        let Ok((plan, _)) = switchboard_plan::plan(&candidate, &facts, &self.context()) else {
            return Ok(None);
        };
        let applied = store.applied()?;
        let current = applied.as_ref().map(|r| (&r.plan.matrix, &r.candidate));
        Ok(
            origin::cut_off(origin, &facts, current, (&plan.matrix, &candidate))
                .map(|(s, n)| (s, n.clone())),
        )
    }

    /// Apply the candidate of revision `number` again, as a new revision,
    /// recorded with `comment` (blank: `rollback to revision N`).
    pub async fn rollback(
        &self,
        origin: &Origin,
        number: u64,
        comment: &str,
        confirm_within: Option<u64>,
    ) -> Result<UpdateView> {
        let comment: RevisionComment = comment.parse().map_err(InputError::from)?;
        let window = confirm_window(confirm_within)?;
        let kernel = self.current_facts().await?;
        let mut store = self.store.lock().await;
        Self::refuse_if_fleet_managed(&store, origin)?;
        let facts = certs::with_certificates(kernel, &store)?;
        let target = store
            .revision(number)?
            .ok_or(EngineError::NoSuchRevision(number))?;
        let comment = match comment.as_str() {
            "" => format!("rollback to revision {number}")
                .parse()
                .map_err(InputError::from)?,
            _ => comment,
        };
        let change = Change {
            origin,
            comment: &comment,
            candidate: target.candidate,
            kind: RevisionKind::Rollback,
            rollback_of: Some(number),
            window,
            next_candidate: None,
        };
        let started = std::time::Instant::now();
        let done = self.apply(&mut store, &facts, change).await;
        self.counters.update_took(started.elapsed());
        done
    }

    async fn apply(
        &self,
        store: &mut Store,
        facts: &Facts,
        change: Change<'_>,
    ) -> Result<UpdateView> {
        let Change {
            origin,
            comment,
            mut candidate,
            kind,
            rollback_of,
            window,
            next_candidate,
        } = change;
        let span = info_span!("update", actor = %origin.actor, from = %origin.address, revision = tracing::field::Empty);
        let _guard = span.enter();
        if let Some(p) = store.pending()? {
            return Err(EngineError::PendingConfirmation {
                revision: p.revision,
                deadline: p.deadline,
            });
        }
        candidate.matrix.settle(facts);
        let (plan, warnings) = switchboard_plan::plan(&candidate, facts, &self.context())
            .map_err(|Rejected { diagnostics }| EngineError::Rejected { diagnostics })?;
        let applied = self.applied(store)?;
        if kind == RevisionKind::Update
            && window.is_none()
            && applied
                .as_ref()
                .is_some_and(|r| r.candidate == candidate && r.plan == plan)
        {
            info!("nothing to update: the candidate is the applied revision");
            return Ok(UpdateView {
                revision: applied.map(|r| r.summary.number),
                no_change: true,
                outcome: Outcome::Applied,
                detail: "nothing changed: the candidate is the applied revision".into(),
                pending_until: None,
                warnings,
            });
        }
        let current = applied.as_ref().map(|r| (&r.plan.matrix, &r.candidate));
        if let Some((service, nic)) =
            origin::cut_off(origin, facts, current, (&plan.matrix, &candidate))
            && window.is_none()
        {
            return Err(EngineError::WouldLockOut {
                service,
                nic: nic.clone(),
            });
        }

        let applied_at = Timestamp::now();
        failpoint("before-firewall");
        let running = applied.as_ref().map(|r| &r.plan);
        let result = self
            .put(
                store,
                facts,
                running,
                Some(&plan),
                &Step::ALL,
                Binding::Required,
            )
            .await;
        failpoint("after-firewall");
        let in_place = std::time::Instant::now();
        let (outcome, detail) = match &result {
            Ok(done) if window.is_some() => (Outcome::Pending, done.clone()),
            Ok(done) => (Outcome::Applied, done.clone()),
            // The pipeline has put the running revision back.
            Err(e) => (Outcome::Failed, e.clone()),
        };
        let deadline = window.map(|w| applied_at + w);
        let rev = NewRevision {
            created_at: applied_at,
            actor: &origin.actor,
            origin: &origin.address,
            kind,
            rollback_of,
            comment: comment.as_str(),
            candidate: &candidate,
            next_candidate: next_candidate.as_ref().unwrap_or(&candidate),
            plan: &plan,
            warnings: &warnings,
            outcome,
            detail: &detail,
        };
        let number = match deadline {
            Some(d) if outcome == Outcome::Pending => store.record_pending_revision(&rev, d)?,
            _ => store.record_revision(&rev)?,
        };
        failpoint("after-record");
        span.record("revision", number);
        {
            let (kind, mut words) = match kind {
                RevisionKind::Update => ("revision.update", format!("revision {number} applied")),
                RevisionKind::Rollback => (
                    "revision.rollback",
                    format!(
                        "revision {number} applied: rollback to revision {}",
                        rollback_of.unwrap_or_default()
                    ),
                ),
            };
            if let Some(d) = deadline.filter(|_| outcome == Outcome::Pending) {
                words.push_str(&format!(
                    ", on trial until {}",
                    d.strftime("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            if outcome == Outcome::Failed {
                words = words.replace(" applied", " failed to apply");
            }
            let entry = audit::Entry::new(
                kind,
                words,
                serde_json::json!({
                    "revision": number,
                    "rollback_of": rollback_of,
                    "comment": comment.as_str(),
                    "outcome": outcome,
                }),
            );
            let result = match outcome {
                Outcome::Failed => "failed",
                Outcome::Pending => "pending",
                _ => "done",
            };
            if let Err(e) = audit::write(store, origin, &entry, result) {
                tracing::error!(error = %e, "could not write the audit log");
            }
        }
        match outcome {
            Outcome::Failed => {
                warn!(revision = number, %detail, "revision failed");
                return Err(EngineError::ApplyFailed {
                    revision: number,
                    detail,
                });
            }
            Outcome::Pending => {
                *self.trial_applied.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((number, in_place));
                info!(revision = number, deadline = ?deadline, "revision applied, pending confirmation")
            }
            _ => info!(revision = number, "revision applied"),
        }
        Ok(UpdateView {
            revision: Some(number),
            no_change: false,
            outcome,
            detail,
            pending_until: deadline.filter(|_| outcome == Outcome::Pending),
            warnings,
        })
    }

    /// When the firewall of revision `number`, applied on trial by this
    /// daemon, was in place: a connection accepted before then went
    /// through the old rules. `None` for a revision applied before the
    /// daemon started (every connection is newer).
    pub fn trial_applied_at(&self, number: u64) -> Option<std::time::Instant> {
        self.trial_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(n, _)| *n == number)
            .map(|(_, at)| at)
    }

    /// Keep the pending revision.
    pub async fn confirm(&self, origin: &Origin) -> Result<ConfirmView> {
        let mut store = self.store.lock().await;
        let detail = format!("confirmed by {} from {}", origin.actor, origin.address);
        let revision = store
            .confirm_pending(&detail)?
            .ok_or(EngineError::NothingPending)?;
        info!(revision, %detail, "pending revision confirmed");
        let entry = audit::Entry::new(
            "revision.confirm",
            format!("revision {revision} confirmed"),
            serde_json::json!({ "revision": revision }),
        );
        if let Err(e) = audit::write(&mut store, origin, &entry, "done") {
            tracing::error!(error = %e, "could not write the audit log");
        }
        Ok(ConfirmView { revision, detail })
    }

    /// Roll the pending revision back if its deadline has passed (`now` is
    /// passed in so that boot and the timer say the same thing). Returns
    /// the revision rolled back.
    pub async fn expire_pending(&self, now: Timestamp) -> Result<Option<u64>> {
        let mut store = self.store.lock().await;
        let Some(pending) = store.pending()? else {
            return Ok(None);
        };
        if now < pending.deadline {
            return Ok(None);
        }
        let previous = match pending.previous {
            Some(n) => Some(self.revision_of(&store, n)?),
            None => None,
        };
        let on_trial = self.revision_of(&store, pending.revision)?;
        let facts_now = self.facts_with(&store)?;
        self.put(
            &mut store,
            &facts_now,
            Some(&on_trial.plan),
            previous.as_ref().map(|r| &r.plan),
            &Step::ALL,
            Binding::BestEffort,
        )
        .await
        .map_err(EngineError::System)?;
        failpoint("expiry-after-firewall");
        let back_to = match pending.previous {
            Some(n) => format!("revision {n}"),
            None => "no revision (factory state)".into(),
        };
        let detail = format!(
            "not confirmed before {}: rolled back to {back_to}",
            pending.deadline
        );
        store.roll_back_pending(&detail)?;
        warn!(revision = pending.revision, %detail, "pending revision rolled back");
        let entry = audit::Entry::new(
            "revision.expire",
            format!(
                "revision {} rolled back at its deadline ({back_to} runs again)",
                pending.revision
            ),
            serde_json::json!({
                "revision": pending.revision,
                "previous": pending.previous,
                "deadline": pending.deadline.to_string(),
            }),
        );
        // Nobody asked: the deadline passed (at boot or on the timer).
        if let Err(e) = audit::write(&mut store, &audit::system_origin(), &entry, "done") {
            tracing::error!(error = %e, "could not write the audit log");
        }
        Ok(Some(pending.revision))
    }

    /// Put the system in the state the store says, before serving anything:
    /// an expired pending revision is rolled back; otherwise the applied
    /// revision (pending or not) is loaded again. Loading the same revision
    /// twice changes nothing. Returns a line for the log.
    pub async fn boot(&self) -> Result<String> {
        self.ensure_bootstrap_cert().await?;
        if let Some(n) = self.expire_pending(Timestamp::now()).await? {
            return Ok(format!(
                "revision {n} was pending past its deadline: rolled back"
            ));
        }
        let mut store = self.store.lock().await;
        let applied = self.applied(&store)?;
        let facts_now = self.facts_with(&store)?;
        let plan = applied.as_ref().map(|r| &r.plan);
        let done = self
            .put(
                &mut store,
                &facts_now,
                plan,
                plan,
                &Step::ALL,
                Binding::BestEffort,
            )
            .await
            .map_err(EngineError::System)?;
        Ok(match (applied, store.pending()?) {
            (Some(r), Some(p)) => format!(
                "revision {} reloaded, pending confirmation until {}: {done}",
                r.summary.number, p.deadline
            ),
            (Some(r), None) => format!("revision {} reloaded: {done}", r.summary.number),
            (None, _) => format!("no revision applied yet: {done}"),
        })
    }
}

/// One Update or rollback, as `apply` receives it.
struct Change<'a> {
    origin: &'a Origin,
    comment: &'a RevisionComment,
    candidate: Candidate,
    kind: RevisionKind,
    rollback_of: Option<u64>,
    window: Option<jiff::SignedDuration>,
    /// The candidate to keep once applied, when not the one applied (see
    /// [`NewRevision::next_candidate`]).
    next_candidate: Option<Candidate>,
}

fn confirm_window(seconds: Option<u64>) -> Result<Option<jiff::SignedDuration>> {
    match seconds {
        None => Ok(None),
        Some(s) if (1..=MAX_CONFIRM_WINDOW).contains(&s) => {
            Ok(Some(jiff::SignedDuration::from_secs(s as i64)))
        }
        Some(s) => Err(EngineError::Input(InputError::ConfirmWindow(s))),
    }
}

#[cfg(test)]
mod tests;
