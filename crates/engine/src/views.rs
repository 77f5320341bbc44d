//! What the engine answers: plain data with stable field names. These are
//! the JSON documents of the API and of the CLI's `--json` output (the
//! README lists their fields); a field may be added, never renamed.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchboard_domain::{
    CertName, Diagnostic, PortRange, ResolvedMatrix, ServiceId, Severity, Transport, Validity,
};
use switchboard_pki::CertInfo;
use switchboard_store::Outcome;

use crate::FirewallMode;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusView {
    pub version: String,
    pub data_dir: String,
    pub firewall_mode: FirewallMode,
    /// The revision the system runs; `None` on a new appliance.
    pub applied_revision: Option<u64>,
    pub applied_at: Option<Timestamp>,
    /// A commit-confirmed revision waiting for `switchboard confirm`.
    pub pending: Option<PendingView>,
    /// Whether an Update would change something.
    pub candidate_changed: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
    /// NICs on the system (loopback excluded).
    pub nics: usize,
    pub unconfigured_nics: Vec<String>,
    pub new_nics: Vec<String>,
    /// TLS bindings checked by the padlock check (`switchboard padlock`).
    pub padlocks: usize,
    /// Those without a closed padlock: `SERVICE on NIC`.
    pub open_padlocks: Vec<String>,
    /// The SIP server's state; `None` when the daemon does not drive one.
    pub sip: Option<String>,
    /// The media relay's state; `None` when the daemon does not drive one.
    #[serde(default)]
    pub media: Option<String>,
    /// The SIP edge's bans.
    #[serde(default)]
    pub bans: crate::bans::BanCounts,
    /// Bound certificates that expire in less than 30 days (a warning),
    /// less than 7 or have expired (an error), soonest first.
    pub expiring: Vec<ExpiryView>,
}

/// A bound certificate close to its end (see [`StatusView::expiring`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExpiryView {
    /// `cert-expires-soon` (warning, under 30 days), `cert-expiring`
    /// (error, under 7 days) or `cert-expired` (error).
    pub code: String,
    pub severity: switchboard_domain::Severity,
    /// The certificate's name.
    pub cert: String,
    pub not_after: Timestamp,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// The bindings that present it, in the candidate or the applied revision.
    pub used_by: Vec<String>,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NicState {
    /// On the system and known to the matrix.
    Present,
    /// On the system, appeared after the last Update: no service yet.
    New,
    /// In the matrix, no longer on the system.
    Gone,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicView {
    pub name: String,
    pub index: Option<u32>,
    pub mac: Option<String>,
    pub up: bool,
    pub running: bool,
    /// Has an address that is not link-local.
    pub configured: bool,
    /// `ADDRESS/PREFIX`, IPv4 and IPv6.
    pub addresses: Vec<String>,
    pub state: NicState,
    /// Services the candidate enables on this NIC.
    pub services: Vec<ServiceId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceView {
    pub id: ServiceId,
    pub label: String,
    pub transport: Transport,
    /// The candidate's ports.
    pub ports: PortRange,
    pub default_ports: PortRange,
    pub tls: bool,
    pub served_by: String,
    /// NICs the candidate enables it on.
    pub nics: Vec<String>,
    /// NICs the applied revision enables it on (`None`: nothing applied).
    pub applied_nics: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatrixView {
    /// `factory` (every service on every NIC, including later ones) or `explicit`.
    pub mode: String,
    /// The columns: NICs on the system, then NICs of the matrix that are gone.
    pub nics: Vec<String>,
    pub new_nics: Vec<String>,
    /// Service id -> NIC names, for the candidate.
    pub candidate: ResolvedMatrix,
    pub applied_revision: Option<u64>,
    /// Service id -> NIC names, for the applied revision.
    pub applied: Option<ResolvedMatrix>,
}

/// The answer to an edit of the candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(bound = ""))]
pub struct EditView<T> {
    pub changed: bool,
    /// What the edit made, for edits that make something (not in the
    /// API's answers, which are all `EditView<()>`).
    #[serde(skip_serializing_if = "is_unit", default)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub result: T,
    /// The candidate's diagnostics after the edit.
    pub diagnostics: Vec<Diagnostic>,
}

fn is_unit<T: Serialize>(v: &T) -> bool {
    serde_json::to_value(v).is_ok_and(|v| v.is_null())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateView {
    /// The new revision (or the applied one when nothing changed).
    pub revision: Option<u64>,
    pub no_change: bool,
    pub outcome: Outcome,
    pub detail: String,
    /// When applied with a confirmation window: the deadline to confirm by.
    pub pending_until: Option<Timestamp>,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingView {
    pub revision: u64,
    /// What the appliance goes back to without a confirmation.
    pub previous: Option<u64>,
    pub deadline: Timestamp,
    pub seconds_left: i64,
}

impl PendingView {
    /// The pending state as seen at `now`.
    pub fn of(p: switchboard_store::Pending, now: Timestamp) -> PendingView {
        PendingView {
            revision: p.revision,
            previous: p.previous,
            deadline: p.deadline,
            seconds_left: p.deadline.duration_since(now).as_secs().max(0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfirmView {
    pub revision: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirewallView {
    pub mode: FirewallMode,
    pub revision: Option<u64>,
    /// The ruleset of the applied revision.
    pub ruleset: Option<String>,
    /// What the kernel has loaded (only when enforcing).
    pub loaded: Option<String>,
}

pub use switchboard_plan::diff::{
    CellChange, Change, KamailioDiff, Note, PinChange, PortChange, SettingChange, SocketChange,
    TlsChange,
};

/// What changes from one configuration to another: every section of the
/// plan (see [`switchboard_plan::diff`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiffView {
    /// `revision N`, `candidate`, or `nothing applied`.
    pub from: String,
    pub to: String,
    pub changed: bool,
    /// The changes in words, one line each.
    pub summary: Vec<String>,
    #[serde(flatten)]
    pub diff: switchboard_plan::PlanDiff,
}

/// A stored certificate (never its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertView {
    pub name: String,
    #[serde(flatten)]
    pub info: CertInfo,
    pub has_key: bool,
    /// Made by switchboard at first start.
    pub bootstrap: bool,
    pub validity: Validity,
    pub expires_in_days: i64,
    /// Bindings that name it, in the candidate or the applied revision.
    pub used_by: Vec<String>,
    /// For a certificate from an ACME CA: its renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeView>,
}

/// How a certificate from an ACME CA renews itself (see `cert show`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcmeView {
    /// The name of the first certificate of the order; renewals are named
    /// after it (`NAME-2`, ...).
    pub first_name: String,
    pub directory: String,
    pub domains: Vec<String>,
    /// `tls-alpn-01` or `http-01`.
    pub challenge: String,
    /// Which certificate of the order this is (1 for the first).
    pub generation: u32,
    /// When the next attempt is made: a third of the lifetime before the
    /// end, or later after failed attempts.
    pub next_renewal: Timestamp,
    pub renewed_at: Option<Timestamp>,
    pub last_attempt: Option<Timestamp>,
    /// Why the last attempt failed (the CA's problem type and detail when
    /// it answered).
    pub last_error: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Why a due renewal waits, if it does.
    pub waiting: Option<String>,
}

/// What `cert renew` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenewalView {
    /// Whether a new certificate took the old one's place.
    pub renewed: bool,
    /// The certificate in use now.
    pub cert: String,
    /// The certificate it replaced.
    pub replaced: Option<String>,
    /// The revision that put it in place, when the running revision
    /// presented the one replaced.
    pub revision: Option<u64>,
}

impl RenewalView {
    pub(crate) fn not_due(current: &CertName) -> RenewalView {
        RenewalView {
            renewed: false,
            cert: current.to_string(),
            replaced: None,
            revision: None,
        }
    }
}

/// A key made on the appliance waiting for its certificate (`cert
/// request`): its request, never its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertRequestView {
    /// The name the certificate will have once imported.
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ecdsa-p256"))]
    pub key_type: switchboard_pki::RequestKeyType,
    /// The DNS names and addresses requested, in order.
    pub names: Vec<String>,
    /// The key's pin (`sha256/BASE64`): published to native phones next to
    /// the current one when the key is requested for the SIP/TLS host name.
    pub pin: String,
    /// The PKCS#10 request, PEM: give it to the CA, then import its answer
    /// with `cert import NAME --bundle signed.pem` (no key).
    pub csr_pem: String,
    pub created_at: Timestamp,
}

impl From<&switchboard_store::StoredRequest> for CertRequestView {
    fn from(r: &switchboard_store::StoredRequest) -> Self {
        CertRequestView {
            name: r.name.to_string(),
            key_type: r.key_type,
            names: r.names.clone(),
            pin: r.pin.clone(),
            csr_pem: r.csr_pem.clone(),
            created_at: r.created_at,
        }
    }
}

/// A CA certificate the administrator trusts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaView {
    pub fingerprint: String,
    pub subject: String,
    pub added_at: Timestamp,
}

impl From<switchboard_store::StoredAnchor> for CaView {
    fn from(a: switchboard_store::StoredAnchor) -> CaView {
        CaView {
            fingerprint: a.fingerprint,
            subject: a.subject,
            added_at: a.added_at,
        }
    }
}

/// The padlock check of one TLS service on one NIC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PadlockView {
    pub service: ServiceId,
    pub nic: String,
    pub cert: Option<String>,
    /// The name (or address) checked: the NIC's declared host name, else its address.
    pub host: Option<String>,
    /// The NIC's addresses and its declared public address.
    pub addresses: Vec<String>,
    /// A closed padlock: no finding is an error.
    pub ok: bool,
    pub findings: Vec<PadlockFinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PadlockFinding {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub hint: String,
}

impl PadlockFinding {
    pub fn error(code: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        PadlockFinding {
            code: code.into(),
            severity: Severity::Error,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn warning(code: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        PadlockFinding {
            severity: Severity::Warning,
            ..PadlockFinding::error(code, message, hint)
        }
    }
}

/// An activation that was created and queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivationView {
    pub username: String,
    pub sms_id: u64,
    /// The phone number, all but its last digits masked.
    pub to: String,
    pub gateway: String,
    pub expires_at: Timestamp,
}

/// Where an account is in its life: from no link to registered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    /// No activation link was ever made.
    NoLink,
    /// A link was sent or shown, no phone used one.
    LinkSent,
    /// A phone fetched its configuration with a link.
    Activated,
    /// A phone is registered with Kamailio now.
    Registered,
}

/// An account of a listing, with its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListedAccountView {
    #[serde(flatten)]
    pub account: switchboard_provision::AccountView,
    pub state: AccountState,
    /// When its latest link was made (sent or shown).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub link_made_at: Option<Timestamp>,
    /// When a phone last fetched its configuration with a link.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub activated_at: Option<Timestamp>,
    /// "registered now from 198.51.100.2 over TLS"; absent when Kamailio
    /// cannot be asked.
    pub registration: Option<String>,
}

/// A page of accounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountListView {
    pub accounts: Vec<ListedAccountView>,
    /// How many accounts match, on all pages.
    pub total: u64,
    /// This page's number, from 1.
    pub page: u64,
    pub per_page: u64,
    /// Whether Kamailio said who is registered (else no account is
    /// `registered` and that filter finds none).
    pub registrations_known: bool,
}

/// What a bulk action did to one account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkResultView {
    pub username: String,
    pub ok: bool,
    /// What was done, or why not.
    pub message: String,
    /// The error's code when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// What a revocation did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeView {
    pub username: String,
    /// Unused links killed.
    pub links: usize,
    /// Messages withdrawn before delivery.
    pub messages: usize,
}

/// One SMS of the queue or the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SmsView {
    pub id: u64,
    pub username: Option<String>,
    pub to: String,
    /// Shown for the outbox only (the link is how the administrator
    /// delivers it by hand); erased once a gateway took it.
    pub text: Option<String>,
    pub gateway: String,
    /// `queued`, `sent`, `failed`, `outbox` or `revoked`.
    pub state: String,
    pub attempts: u32,
    pub next_try_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// An entry of the audit log: who asked for which change, from where, and
/// how it ended (`200`, `409 pending-confirmation`). Never a request body:
/// the store's row as it is.
pub use switchboard_store::AuditRow as AuditView;
