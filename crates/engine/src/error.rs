//! Engine errors. Each has a stable code and a hint; the web crate maps
//! every variant to an HTTP status in one exhaustive `match`.

use jiff::Timestamp;
use switchboard_domain::catalog::{InvalidPortRange, UnknownService};
use switchboard_domain::matrix::MatrixError;
use switchboard_domain::nic::InvalidNicName;
use switchboard_domain::tls::{InvalidCertName, NotTls};
use switchboard_domain::{
    CertName, Diagnostic, InvalidComment, InvalidHostname, NicName, ServiceId,
};
use switchboard_store::StoreError;

/// Input that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Service(#[from] UnknownService),
    #[error(transparent)]
    Nic(#[from] InvalidNicName),
    #[error(transparent)]
    Ports(#[from] InvalidPortRange),
    #[error("a confirmation window of {0} s is not accepted: give 1 to 3600 seconds")]
    ConfirmWindow(u64),
    #[error(transparent)]
    CertName(#[from] InvalidCertName),
    #[error(transparent)]
    Hostname(#[from] InvalidHostname),
    #[error(transparent)]
    NotTls(#[from] NotTls),
    #[error("invalid address {0:?}: give an IPv4 or IPv6 address")]
    Address(String),
    #[error("invalid DNS servers: {0}")]
    Resolvers(#[from] switchboard_domain::tls::InvalidResolvers),
    #[error("invalid administrator name {0:?}: 1 to 32 characters of a-z, 0-9, '.', '_' and '-'")]
    AdminName(String),
    #[error(
        "the password has {0} character(s); at least {min} are needed",
        min = crate::auth::MIN_PASSWORD_CHARS
    )]
    PasswordTooShort(usize),
    #[error(
        "the password has {0} characters; at most {max} are accepted",
        max = crate::auth::MAX_PASSWORD_CHARS
    )]
    PasswordTooLong(usize),
    #[error("the password is only white space")]
    PasswordBlank,
    #[error(transparent)]
    Comment(#[from] InvalidComment),
    #[error("invalid ban policy: {0}")]
    BanPolicy(#[from] switchboard_domain::InvalidBanPolicy),
    #[error("invalid account search: {0}")]
    AccountSearch(String),
    #[error("invalid bulk action: {0}")]
    Bulk(String),
    #[error("unknown role {0:?}: give administrator, operator or auditor")]
    Role(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error("the candidate has {} error(s); nothing was applied", .diagnostics.iter().filter(|d| d.is_error()).count())]
    Rejected { diagnostics: Vec<Diagnostic> },
    #[error("there is no revision {0}")]
    NoSuchRevision(u64),
    #[error(
        "this Update would stop {service} answering on {nic}, the NIC your session came in through"
    )]
    WouldLockOut { service: ServiceId, nic: NicName },
    #[error("revision {revision} is waiting for confirmation until {deadline}")]
    PendingConfirmation { revision: u64, deadline: Timestamp },
    #[error("no revision is waiting for confirmation")]
    NothingPending,
    #[error("{0} is not banned")]
    NotBanned(std::net::IpAddr),
    #[error("revision {revision} failed to apply: {detail}")]
    ApplyFailed { revision: u64, detail: String },
    #[error("the system refused: {0}")]
    System(String),
    #[error("{message}")]
    Import {
        code: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("there is no certificate named {0}")]
    NoSuchCert(CertName),
    #[error("there is no administrator named {0}")]
    NoSuchAdmin(String),
    /// A change refused as it stands (conflicts with the state): the last
    /// administrator, a name taken, a second factor not begun, a backup
    /// that cannot be read.
    #[error("{message}")]
    Refused {
        code: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("a certificate named {0} already exists")]
    CertExists(CertName),
    #[error("certificate {name} is in use ({}); unbind it first", used_by.join(", "))]
    CertInUse {
        name: CertName,
        used_by: Vec<String>,
    },
    #[error("certificate {name} cannot be bound: {why}")]
    CertUnbindable { name: CertName, why: String },
    /// An account or provisioning input the provisioning rules refuse.
    #[error("{message}")]
    Provision {
        code: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("the CSV file has {} problem(s); no account was created", .0.len())]
    CsvRejected(Vec<serde_json::Value>),
    #[error("there is no account {0}")]
    NoSuchAccount(String),
    #[error("there is no SMS {0}")]
    NoSuchSms(u64),
    #[error("SMS {id} cannot be sent again: {why}")]
    SmsNotResendable { id: u64, why: String },
    #[error("phones cannot be activated yet: the applied revision has no web services URI")]
    ActivationUnavailable,
    /// Unknown, used, expired or malformed: one and the same answer.
    #[error("this link is not valid (any more)")]
    LinkGone,
    #[error("too many requests from this address")]
    RateLimited,
    /// The current password given with a change of password is not the
    /// administrator's (or the administrator does not exist).
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("cannot list the NICs: {0}")]
    Discovery(String),
    /// An ACME issuance that did not end in a certificate: the CA's own
    /// words (RFC 7807 problem type and detail) when it answered.
    #[error("{message}")]
    Acme { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A fleet policy or membership that does not fit.
    #[error(transparent)]
    Fleet(switchboard_domain::fleet::FleetError),
    /// A local change on an appliance the fleet manages (`drift: refuse`).
    #[error("this appliance is managed by the fleet group {group}; local Updates are refused")]
    FleetManaged { group: String },
}

impl EngineError {
    /// A stable, kebab-case code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Input(InputError::Service(_)) => "unknown-service",
            EngineError::Input(InputError::Nic(_)) => "invalid-nic-name",
            EngineError::Input(InputError::Ports(_)) => "invalid-ports",
            EngineError::Input(InputError::ConfirmWindow(_)) => "invalid-confirm-window",
            EngineError::Input(InputError::CertName(_)) => "invalid-cert-name",
            EngineError::Input(InputError::Hostname(_)) => "invalid-hostname",
            EngineError::Input(InputError::NotTls(_)) => "not-a-tls-service",
            EngineError::Input(InputError::Address(_)) => "invalid-address",
            EngineError::Input(InputError::Resolvers(_)) => "invalid-resolvers",
            EngineError::Input(InputError::AdminName(_)) => "invalid-admin-name",
            EngineError::Input(InputError::PasswordTooShort(_)) => "password-too-short",
            EngineError::Input(InputError::PasswordTooLong(_)) => "password-too-long",
            EngineError::Input(InputError::PasswordBlank) => "password-blank",
            EngineError::Input(InputError::Comment(e)) => e.code(),
            EngineError::Input(InputError::BanPolicy(_)) => "invalid-ban-policy",
            EngineError::Input(InputError::AccountSearch(_)) => "invalid-account-search",
            EngineError::Input(InputError::Bulk(_)) => "invalid-bulk",
            EngineError::Input(InputError::Role(_)) => "invalid-role",
            EngineError::NoSuchAdmin(_) => "no-such-admin",
            EngineError::Refused { code, .. } => code,
            EngineError::NotBanned(_) => "not-banned",
            EngineError::WrongPassword => "wrong-password",
            EngineError::Import { code, .. } => code,
            EngineError::NoSuchCert(_) => "no-such-cert",
            EngineError::CertExists(_) => "cert-exists",
            EngineError::CertInUse { .. } => "cert-in-use",
            EngineError::CertUnbindable { .. } => "cert-unbindable",
            EngineError::Provision { code, .. } => code,
            EngineError::CsvRejected(_) => "csv-rejected",
            EngineError::NoSuchAccount(_) => "no-such-account",
            EngineError::NoSuchSms(_) => "no-such-sms",
            EngineError::SmsNotResendable { .. } => "sms-not-resendable",
            EngineError::ActivationUnavailable => "activation-unavailable",
            EngineError::LinkGone => "link-gone",
            EngineError::RateLimited => "rate-limited",
            EngineError::Matrix(MatrixError::UnknownNic(_)) => "unknown-nic",
            EngineError::Matrix(MatrixError::SameNic(_)) => "same-nic",
            EngineError::Rejected { .. } => "candidate-rejected",
            EngineError::NoSuchRevision(_) => "no-such-revision",
            EngineError::WouldLockOut { .. } => "would-lock-you-out",
            EngineError::PendingConfirmation { .. } => "pending-confirmation",
            EngineError::NothingPending => "nothing-pending",
            EngineError::ApplyFailed { .. } => "apply-failed",
            EngineError::System(_) => "system-failed",
            EngineError::Discovery(_) => "discovery-failed",
            EngineError::Store(_) => "store-failed",
            EngineError::Acme { code, .. } => code,
            EngineError::Fleet(e) => e.code(),
            EngineError::FleetManaged { .. } => "fleet-managed",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            EngineError::Input(InputError::Service(_)) => "list the services with `switchboard services`".into(),
            EngineError::Input(InputError::Nic(_)) | EngineError::Matrix(MatrixError::UnknownNic(_)) => {
                "list the NICs with `switchboard nics`".into()
            }
            EngineError::Input(InputError::Ports(_)) => "ports are 1-65535; a range is written FIRST-LAST".into(),
            EngineError::Input(InputError::ConfirmWindow(_)) => {
                "e.g. `switchboard update --confirm-within 120`".into()
            }
            EngineError::Input(InputError::CertName(_)) => "e.g. voip-example-2026".into(),
            EngineError::Input(InputError::Hostname(_)) => {
                "a DNS name such as voip.example.test, or an IP address".into()
            }
            EngineError::Input(InputError::NotTls(_)) => {
                "bind certificates to console, web or sip-tls".into()
            }
            EngineError::Input(InputError::Address(_)) => "e.g. 198.51.100.7".into(),
            EngineError::Input(InputError::Resolvers(_)) => format!(
                "give the DNS servers this NIC's clients use: 1 to {} distinct unicast addresses, e.g. 198.51.100.53, 192.0.2.53; an empty value clears them",
                switchboard_domain::tls::MAX_RESOLVERS
            ),
            EngineError::Input(InputError::AdminName(_)) => "e.g. admin".into(),
            EngineError::Input(InputError::AccountSearch(_)) => format!(
                "search with at most {} printable characters; state is no-link, link-sent, activated or registered; sort is username, name, phone or group; per_page is 1 to {}",
                crate::accounts::MAX_SEARCH_CHARS,
                crate::accounts::MAX_PER_PAGE
            ),
            EngineError::Input(InputError::Bulk(_)) => format!(
                "the action is activate, revoke, delete or set-group, on 1 to {} accounts",
                crate::accounts::MAX_BULK
            ),
            EngineError::Input(InputError::Role(_)) => "roles: administrator (everything), operator (accounts and activations), auditor (reads)".into(),
            EngineError::NoSuchAdmin(_) => "list the administrators with `switchboard admin list`".into(),
            EngineError::Refused { hint, .. } => (*hint).into(),
            EngineError::Input(InputError::Comment(e)) => e.hint().into(),
            EngineError::Input(InputError::BanPolicy(_)) => {
                "e.g. `switchboard bans policy --failures 5 --window 600 --ban 300 --trusted 192.0.2.0/24`".into()
            }
            EngineError::NotBanned(_) => "list the banned addresses with `switchboard bans`".into(),
            EngineError::Input(
                InputError::PasswordTooShort(_)
                | InputError::PasswordTooLong(_)
                | InputError::PasswordBlank,
            ) => format!(
                "choose {} to {} characters, e.g. five random words; `switchboard admin set-password` reads it from standard input or --password-file",
                crate::auth::MIN_PASSWORD_CHARS,
                crate::auth::MAX_PASSWORD_CHARS
            ),
            EngineError::WrongPassword => {
                "give the administrator's current password; if it is lost, set a new one as root on the appliance with `switchboard admin set-password`".into()
            }
            EngineError::Import { hint, .. } => (*hint).into(),
            EngineError::NoSuchCert(_) => "list the certificates with `switchboard cert list`".into(),
            EngineError::CertExists(_) => "choose another name, or delete the old certificate first".into(),
            EngineError::CertInUse { .. } => {
                "bind another certificate where this one is used (`switchboard cert bind`), Update, then delete it".into()
            }
            EngineError::CertUnbindable { .. } => {
                "import a valid certificate with its key (`switchboard cert import`)".into()
            }
            EngineError::Provision { hint, .. } => (*hint).into(),
            EngineError::CsvRejected(_) => "fix the rows listed (line, column, reason) and import the file again".into(),
            EngineError::NoSuchAccount(_) => "list the accounts with `switchboard account list`".into(),
            EngineError::NoSuchSms(_) => "list the messages with `switchboard sms list`".into(),
            EngineError::SmsNotResendable { .. } => {
                "only a failed message can be sent again; for a new link, `switchboard activate ACCOUNT`".into()
            }
            EngineError::ActivationUnavailable => {
                "set the web services URI (`switchboard provisioning set --web-uri https://HOST`) and Update".into()
            }
            EngineError::LinkGone => "ask the administrator for a new activation link".into(),
            EngineError::RateLimited => "wait a minute and try again".into(),
            EngineError::Matrix(MatrixError::SameNic(_)) => {
                "name the NIC facing your internal network and the one facing the outside".into()
            }
            EngineError::Rejected { .. } => {
                "fix the errors listed in the diagnostics (each has its own hint), then Update again".into()
            }
            EngineError::NoSuchRevision(_) => "list the revisions with `switchboard revisions`".into(),
            EngineError::WouldLockOut { .. } => {
                "if that is what you want, Update with `--confirm-within SECONDS` and confirm from a session that still works (`switchboard confirm`); otherwise the appliance rolls back by itself".into()
            }
            EngineError::PendingConfirmation { .. } => {
                "confirm it with `switchboard confirm`, or wait for it to roll back".into()
            }
            EngineError::NothingPending => "only an Update made with --confirm-within needs confirming".into(),
            EngineError::ApplyFailed { .. } => {
                "the system was left on the previous revision; see the revision's detail and the daemon's log".into()
            }
            EngineError::System(_) => "see the daemon's log".into(),
            EngineError::Discovery(_) | EngineError::Store(_) => {
                "this is a problem of the appliance, not of the request: see the daemon's log".into()
            }
            EngineError::Acme { code: "acme-unreachable", .. } => {
                "check the directory URL, that the appliance reaches it, and that its CA is trusted (`switchboard cert ca add`)".into()
            }
            EngineError::Acme { code: "acme-challenge-failed", .. } => {
                "the CA must reach the web services (tls-alpn-01) at each name: check that the names resolve to the appliance and the matrix opens web there".into()
            }
            EngineError::Acme { .. } => "see the CA's answer above; nothing was changed".into(),
            EngineError::Fleet(e) => e.hint().into(),
            EngineError::FleetManaged { .. } => {
                "change the group's policy and roll it out (`switchboard fleet policy set`, `fleet rollout start`), or join with --drift report to allow local Updates".into()
            }
        }
    }
}
