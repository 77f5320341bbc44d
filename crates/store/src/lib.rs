//! The embedded store: one SQLite file holding the candidate and the
//! numbered revisions.
//!
//! **Durability.** WAL journal, `synchronous=FULL`: when a write function
//! returns `Ok`, the change is on disk and survives power loss or
//! `kill -9`. Each write is one SQLite transaction, so a crash leaves the
//! old state or the new one, never a mix. The daemon acknowledges a change
//! only after the store returned.
//!
//! **Migrations.** `PRAGMA user_version` counts the migrations applied; each
//! runs in its own transaction. A store written by a newer switchboard is
//! refused rather than guessed at.
//!
//! **The audit log** is bounded by an [`AuditRetention`] (count and age,
//! 100,000 entries and 365 days by default): [`Store::prune_audit`] applies
//! it (the daemon calls it at start) and [`Store::record_audit`] every
//! `prune_every` entries; each prune is recorded as an entry of its own.
//! Ages are compared as stored text, to the second.
//!
//! **Boundary.** The store knows rows, not the system: it never runs a
//! command. [`Store::open_in_memory`] is its twin for unit tests. It keeps
//! no clock either: callers pass timestamps.
//!
//! **Limitations.** One connection, owned by the daemon's single writer.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use switchboard_domain::{Candidate, CertName, Diagnostic};
use switchboard_pki::{CertInfo, KeyPem};
use switchboard_plan::Plan;

/// Each entry is one migration; `user_version` is the number applied.
/// Never edit an entry once released: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: candidate, revisions, the applied pointer.
    "CREATE TABLE candidate (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        body       TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE revisions (
        number      INTEGER PRIMARY KEY,
        created_at  TEXT NOT NULL,
        actor       TEXT NOT NULL,
        origin      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        rollback_of INTEGER REFERENCES revisions(number),
        comment     TEXT NOT NULL,
        candidate   TEXT NOT NULL,
        plan        TEXT NOT NULL,
        warnings    TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE TABLE state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 2: certificates (the key, when there is one, is only readable by root:
    // the database file is mode 0600 in a 0700 directory) and the CAs the
    // administrator trusts.
    "CREATE TABLE certificates (
        name       TEXT PRIMARY KEY,
        chain_pem  TEXT NOT NULL,
        key_pem    TEXT,
        info       TEXT NOT NULL,
        bootstrap  INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE trust_anchors (
        fingerprint TEXT PRIMARY KEY,
        der         BLOB NOT NULL,
        subject     TEXT NOT NULL,
        added_at    TEXT NOT NULL
    );",
    // 3: accounts (HA1 only), activation tokens (hashed), the SMS queue.
    "CREATE TABLE accounts (
        username     TEXT PRIMARY KEY,
        display_name TEXT,
        phone        TEXT NOT NULL UNIQUE,
        grp          TEXT,
        profile      TEXT NOT NULL,
        realm        TEXT NOT NULL,
        ha1          TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE TABLE activations (
        token_hash TEXT PRIMARY KEY,
        username   TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at    TEXT
    );
    CREATE TABLE sms (
        id          INTEGER PRIMARY KEY,
        username    TEXT,
        to_number   TEXT NOT NULL,
        text        TEXT NOT NULL,
        gateway     TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        next_try_at TEXT NOT NULL,
        last_error  TEXT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );",
    // 4: the console's administrators (argon2id PHC strings, never a
    // password) and the audit log of every change requested through the API.
    "CREATE TABLE admins (
        username      TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        changed_at    TEXT NOT NULL
    );
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      TEXT NOT NULL,
        actor   TEXT NOT NULL,
        address TEXT NOT NULL,
        action  TEXT NOT NULL,
        outcome TEXT NOT NULL
    );",
    // 5: the addresses the SIP edge banned, one row per address (its last
    // ban and how many it had: repeat offenders are banned longer).
    "CREATE TABLE bans (
        address    TEXT PRIMARY KEY,
        reason     TEXT NOT NULL,
        offences   INTEGER NOT NULL,
        banned_at  TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        lifted_at  TEXT
    );",
    // 6: keys made on the appliance waiting for their certificate (`cert
    // request`), with the request given to the CA and the key's pin (its
    // public half: published ahead of a rotation). The key, like a
    // certificate's, is only readable by root. An activation records the
    // revision whose document it was answered with (so, its pins).
    "CREATE TABLE key_requests (
        name       TEXT PRIMARY KEY,
        key_pem    TEXT NOT NULL,
        key_type   TEXT NOT NULL,
        names      TEXT NOT NULL,
        csr_pem    TEXT NOT NULL,
        pin        TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    ALTER TABLE activations ADD COLUMN revision INTEGER;",
    // 7: the accounts page at scale: activations and messages found by
    // account (not by a scan per row), and a revoked link told apart from
    // a used one (`used_at` is set by both; a link revoked before this
    // migration reads as used).
    "CREATE INDEX activations_by_account ON activations(username);
    CREATE INDEX sms_by_account ON sms(username);
    ALTER TABLE activations ADD COLUMN revoked_at TEXT;",
    // 8: the audit log of changes (a kind and the change's data, as JSON,
    // beside its words); administrators' roles, disabling, TOTP second
    // factor (the secret, an enrolment waiting for its confirmation code,
    // the last time step used) and their recovery codes (SHA-256 only);
    // which roles must use a second factor.
    "ALTER TABLE audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'request';
    ALTER TABLE audit ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX audit_by_actor ON audit (actor, id);
    CREATE INDEX audit_by_kind ON audit (kind, id);
    ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'administrator';
    ALTER TABLE admins ADD COLUMN disabled_at TEXT;
    ALTER TABLE admins ADD COLUMN totp_secret TEXT;
    ALTER TABLE admins ADD COLUMN totp_pending TEXT;
    ALTER TABLE admins ADD COLUMN totp_last_step INTEGER;
    CREATE TABLE recovery_codes (
        username  TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        used_at   TEXT,
        PRIMARY KEY (username, code_hash)
    );
    CREATE TABLE totp_policy (
        role     TEXT PRIMARY KEY,
        required INTEGER NOT NULL
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the store was written by a newer switchboard (schema {found}, this one knows up to {known}); run that version or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
    #[error(
        "another switchboard daemon (pid {holder}) holds the data directory {dir}; stop it first, or give this one another --data-dir"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "a certificate or key request named {0} already exists; delete it first or choose another name"
    )]
    CertExists(CertName),
    #[error("no key request is named {0}")]
    NoSuchRequest(CertName),
    #[error("corrupt record in the store ({what}): {source}")]
    Corrupt {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Why a revision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RevisionKind {
    /// An Update of the candidate.
    Update,
    /// A rollback: the candidate of an earlier revision, applied again.
    Rollback,
}

/// What became of a revision's apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Outcome {
    /// Applied and verified; the system runs it (unless a later one was applied).
    Applied,
    /// Validation passed but applying or verifying failed; the system was
    /// left on the previous revision.
    Failed,
    /// Applied, waiting for a confirmation before its deadline.
    Pending,
    /// Applied as pending, not confirmed in time: the system went back to
    /// the previous revision.
    RolledBack,
}

/// A commit-confirmed revision waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub revision: u64,
    /// The revision to go back to (`None`: nothing was applied before).
    pub previous: Option<u64>,
    pub deadline: Timestamp,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
            Outcome::RolledBack => "rolled-back",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Applied,
            Outcome::Failed,
            Outcome::Pending,
            Outcome::RolledBack,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A certificate as stored. The key's `Debug` is redacted.
#[derive(Debug)]
pub struct StoredCert {
    pub name: CertName,
    /// The chain, leaf first, as PEM.
    pub chain_pem: String,
    pub key: Option<KeyPem>,
    pub info: CertInfo,
    /// Made by switchboard at first start (self-signed).
    pub bootstrap: bool,
    pub created_at: Timestamp,
}

/// A key made on the appliance, waiting for its certificate. The key's
/// `Debug` is redacted.
#[derive(Debug)]
pub struct StoredRequest {
    /// The certificate's name once it is attached.
    pub name: CertName,
    pub key: KeyPem,
    pub key_type: switchboard_pki::RequestKeyType,
    /// The names requested, in order.
    pub names: Vec<String>,
    /// The PKCS#10 request, PEM (public).
    pub csr_pem: String,
    /// The key's pin, `sha256/BASE64` of its SubjectPublicKeyInfo.
    pub pin: String,
    pub created_at: Timestamp,
}

/// A CA certificate the administrator trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnchor {
    pub fingerprint: String,
    pub der: Vec<u8>,
    pub subject: String,
    pub added_at: Timestamp,
}

/// An account as stored: the HA1 digest, never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub username: String,
    pub display_name: Option<String>,
    pub phone: String,
    pub group: Option<String>,
    pub profile: String,
    pub realm: String,
    pub ha1: String,
}

/// Where an account is in its activation, as the store knows it (being
/// registered is Kamailio's to say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationState {
    /// No link was ever made for it.
    NoLink,
    /// Links were made (sent or shown), none was used.
    LinkSent,
    /// A link was used: a phone fetched its configuration.
    Activated,
}

/// The order of a listing of accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountSort {
    #[default]
    Username,
    Name,
    Phone,
    Group,
}

/// Which accounts, in which order, which page: [`Store::list_accounts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountQuery<'a> {
    /// Matched, ignoring ASCII case, anywhere in the user name, the name,
    /// the group or the phone number (spaces, dots and dashes of the search
    /// ignored for the number).
    pub search: Option<&'a str>,
    pub state: Option<ActivationState>,
    /// Only these user names (the registered ones, for that filter).
    pub among: Option<&'a [String]>,
    /// Not these user names.
    pub except: Option<&'a [String]>,
    pub sort: AccountSort,
    pub descending: bool,
    pub offset: u64,
    pub limit: u64,
}

/// An account of a listing, with when its latest link was made and when
/// a link was last used.
#[derive(Debug, Clone)]
pub struct ListedAccount {
    pub account: AccountRow,
    pub linked_at: Option<Timestamp>,
    pub activated_at: Option<Timestamp>,
}

/// A page of accounts and how many match in all.
#[derive(Debug, Clone)]
pub struct AccountListing {
    pub rows: Vec<ListedAccount>,
    pub total: u64,
}

/// An activation to record: the token's hash and its SMS.
#[derive(Debug, Clone, Copy)]
pub struct NewActivation<'a> {
    pub username: &'a str,
    pub token_hash: &'a str,
    pub expires_at: Timestamp,
    pub sms_to: &'a str,
    /// Holds the link: a secret.
    pub sms_text: &'a str,
    pub gateway: &'a str,
    pub at: Timestamp,
}

/// One SMS of the queue (or the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsRow {
    pub id: u64,
    pub username: Option<String>,
    pub to: String,
    /// Holds a single-use link: shown only for the outbox, erased once sent.
    pub text: String,
    pub gateway: String,
    /// `queued`, `sent`, `failed` or `outbox`.
    pub state: String,
    pub attempts: u32,
    pub next_try_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An entry of the audit log to record: what changed, in words and data,
/// who asked for it, from where, and how it ended. Never a request body,
/// never a secret.
#[derive(Debug, Clone, Copy)]
pub struct NewAudit<'a> {
    pub at: Timestamp,
    pub actor: &'a str,
    pub address: &'a str,
    /// What kind of change, e.g. `cert.bind`, `account.delete`,
    /// `revision.expire` (`request` for a request no change was recorded for).
    pub kind: &'a str,
    /// The change in words, e.g. `bound certificate voip2 to sip-tls on wan0`.
    pub action: &'a str,
    /// The change's data (a JSON object, as text).
    pub data: &'a str,
    /// `done`, or what refused or failed it.
    pub outcome: &'a str,
}

/// An entry of the audit log (also the API's document of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    pub id: u64,
    pub at: Timestamp,
    pub actor: String,
    pub address: String,
    /// What kind of change (`cert.bind`, `account.delete`, ...).
    pub kind: String,
    /// The change in words.
    pub action: String,
    /// The change's data.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    /// `done`, or what refused or failed it.
    pub outcome: String,
}

/// Which entries of the audit log to read (all given conditions hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// A kind (`cert.bind`) or a family of kinds (`cert`, which matches `cert.*`).
    pub kind: Option<String>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Before.
    pub until: Option<Timestamp>,
    pub limit: usize,
}

/// An administrator as stored. Its password hash and TOTP secret never
/// leave the engine.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled_at: Option<Timestamp>,
    /// The TOTP secret in use (raw bytes, hex).
    pub totp_secret: Option<String>,
    /// A TOTP secret being enrolled, waiting for its confirmation code.
    pub totp_pending: Option<String>,
    /// The last time step a code was accepted for (a code is used once).
    pub totp_last_step: Option<u64>,
    pub changed_at: Timestamp,
}

impl std::fmt::Debug for AdminRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("disabled_at", &self.disabled_at)
            .field("totp", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// An address the SIP edge banned: its last ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanRecord {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: std::net::IpAddr,
    /// `auth-failures` or `flood`.
    pub reason: String,
    /// How many times the address was banned (this ban included).
    pub offences: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub banned_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub expires_at: Timestamp,
    /// When an administrator lifted it before it expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub lifted_at: Option<Timestamp>,
}

impl BanRecord {
    /// Whether the ban holds at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.lifted_at.is_none() && self.expires_at > now
    }
}

/// A revision to record.
#[derive(Debug, Clone)]
pub struct NewRevision<'a> {
    pub created_at: Timestamp,
    pub actor: &'a str,
    pub origin: &'a str,
    pub kind: RevisionKind,
    pub rollback_of: Option<u64>,
    pub comment: &'a str,
    pub candidate: &'a Candidate,
    /// The candidate kept once the revision is applied: its own for an
    /// Update or a rollback; for a change the daemon makes by itself (an
    /// ACME renewal), the administrator's edits with that change.
    pub next_candidate: &'a Candidate,
    pub plan: &'a Plan,
    pub warnings: &'a [Diagnostic],
    pub outcome: Outcome,
    pub detail: &'a str,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionSummary {
    pub number: u64,
    pub created_at: Timestamp,
    pub actor: String,
    pub origin: String,
    pub kind: RevisionKind,
    pub rollback_of: Option<u64>,
    pub comment: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// A revision in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revision {
    #[serde(flatten)]
    pub summary: RevisionSummary,
    /// The configuration applied.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub candidate: Candidate,
    /// What was applied: the firewall ruleset and more.
    pub plan: Plan,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// The data directory's lock, held for the store's lifetime (absent for
    /// a store opened by path or in memory).
    _lock: Option<File>,
    /// How much of the audit log is kept.
    retention: AuditRetention,
    /// Audit entries written since the last prune.
    audit_since_prune: u64,
}

/// How much of the audit log is kept: at most `max_entries` entries (the
/// newest) and none older than `max_days` days, pruned by
/// [`Store::prune_audit`] (at start) and every `prune_every` entries
/// written by [`Store::record_audit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRetention {
    pub max_entries: u64,
    pub max_days: u32,
    pub prune_every: u64,
}

impl Default for AuditRetention {
    /// 100,000 entries, 365 days, pruned every 1,000 entries written.
    fn default() -> Self {
        AuditRetention {
            max_entries: 100_000,
            max_days: 365,
            prune_every: 1_000,
        }
    }
}

/// What a prune of the audit log removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPruned {
    pub entries: u64,
    /// The time of the oldest entry kept: every entry removed was older
    /// (or, for the count rule, as old).
    pub older_than: Timestamp,
}

/// The actor of the audit entries the store writes itself.
pub const RETENTION_ACTOR: &str = "switchboard";

/// File names inside a data directory.
pub const DB_FILE: &str = "switchboard.db";
pub const LOCK_FILE: &str = "lock";

/// How long [`Store::open_dir`] waits for the lock of a holder that is going
/// away before it reports the directory taken.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

const APPLIED_KEY: &str = "applied";
const PENDING_KEY: &str = "pending";
/// Followed by the directory URL: an ACME account's credentials.
const ACME_ACCOUNT_KEY: &str = "acme-account ";
/// Followed by a certificate's first name: how that ACME certificate is
/// renewed, and how its renewals went (JSON, the engine's).
const ACME_RENEWAL_KEY: &str = "acme-renewal ";
/// The appliance's fleet membership (JSON, the engine's).
const FLEET_MEMBERSHIP_KEY: &str = "fleet-membership";
/// The last policy revision the fleet agent handled and how (JSON, the
/// engine's).
const FLEET_LAST_KEY: &str = "fleet-last";

impl Store {
    /// Open (creating if needed) the store at `path` and bring its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn, None)
    }

    /// Open the store of a data directory (creating the directory, mode
    /// 0700, if needed) and hold the directory's lock until the store is
    /// dropped: a second daemon on the same directory is refused with
    /// [`StoreError::Locked`] before it reads or writes anything.
    pub fn open_dir(dir: &Path) -> Result<Store> {
        let io = |source| StoreError::Io {
            path: dir.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        // The lock goes with the open file: a process forked by the previous
        // holder (or by anyone who opened it) keeps it until it execs, which
        // on a loaded machine can take a moment after the holder is gone.
        // Wait that long before calling the directory taken.
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = lock.read_to_string(&mut holder);
                    return Err(StoreError::Locked {
                        dir: dir.to_owned(),
                        holder: holder.trim().to_owned(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        lock.set_len(0).map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        let db = dir.join(DB_FILE);
        // Private keys live here: a new database is owner-only from its
        // first byte, like the directory (SQLite gives its -wal and -shm
        // files the database file's mode). The daemon narrows an existing
        // one at start and says so (`switchboard_engine::datadir`).
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&db)
            .map_err(io)?;
        let conn = Connection::open(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn, Some(lock))
    }

    /// A second connection to this store's database, for work that must not
    /// wait for this one (the engine consumes activation tokens through it
    /// while an Update holds the first). SQLite serializes the two
    /// connections' writes (WAL: readers never wait); neither holds the
    /// directory's lock twice. `None` for an in-memory store, which has no
    /// file to share.
    pub fn second_connection(&self) -> Result<Option<Store>> {
        let Some(path) = self.conn.path().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn, None).map(Some)
    }

    /// The credentials (JSON, with the account's private key) of the ACME
    /// account at `directory`, if one was made.
    pub fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM state WHERE key = ?1",
                [format!("{ACME_ACCOUNT_KEY}{directory}")],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps the credentials of the ACME account at `directory`.
    pub fn set_acme_account(&mut self, directory: &str, credentials: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        set_state(&tx, &format!("{ACME_ACCOUNT_KEY}{directory}"), credentials)?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the ACME account at `directory` (the CA no longer knows
    /// it): the next order makes a new one.
    pub fn forget_acme_account(&mut self, directory: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM state WHERE key = ?1",
            [format!("{ACME_ACCOUNT_KEY}{directory}")],
        )?;
        Ok(())
    }

    /// Every ACME certificate's renewal record, by the certificate's first
    /// name.
    pub fn acme_renewals(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT substr(key, ?2), value FROM state
             WHERE substr(key, 1, ?3) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(
            params![
                ACME_RENEWAL_KEY,
                ACME_RENEWAL_KEY.len() + 1,
                ACME_RENEWAL_KEY.len()
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Keeps (`Some`) or forgets (`None`) the renewal record of the ACME
    /// certificate first named `name`.
    pub fn set_acme_renewal(&mut self, name: &str, record: Option<&str>) -> Result<()> {
        let key = format!("{ACME_RENEWAL_KEY}{name}");
        match record {
            Some(value) => {
                let tx = self.conn.transaction()?;
                set_state(&tx, &key, value)?;
                tx.commit()?;
            }
            None => {
                self.conn
                    .execute("DELETE FROM state WHERE key = ?1", [key])?;
            }
        }
        Ok(())
    }

    /// The fleet membership this appliance joined, if any.
    pub fn fleet_membership(&self) -> Result<Option<String>> {
        self.state_value(FLEET_MEMBERSHIP_KEY)
    }

    /// Keeps (`Some`) or forgets (`None`, the appliance left) the fleet
    /// membership.
    pub fn set_fleet_membership(&mut self, record: Option<&str>) -> Result<()> {
        self.put_state(FLEET_MEMBERSHIP_KEY, record)
    }

    /// What the fleet agent last did with a policy revision.
    pub fn fleet_last(&self) -> Result<Option<String>> {
        self.state_value(FLEET_LAST_KEY)
    }

    /// Keeps what the fleet agent last did with a policy revision.
    pub fn set_fleet_last(&mut self, record: Option<&str>) -> Result<()> {
        self.put_state(FLEET_LAST_KEY, record)
    }

    fn state_value(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_state(&mut self, key: &str, record: Option<&str>) -> Result<()> {
        match record {
            Some(value) => {
                let tx = self.conn.transaction()?;
                set_state(&tx, key, value)?;
                tx.commit()?;
            }
            None => {
                self.conn
                    .execute("DELETE FROM state WHERE key = ?1", [key])?;
            }
        }
        Ok(())
    }

    /// A private in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, lock: Option<File>) -> Result<Store> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Store {
            conn,
            _lock: lock,
            retention: AuditRetention::default(),
            audit_since_prune: 0,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let found: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The stored candidate, or `None` on a new appliance.
    pub fn candidate(&self) -> Result<Option<Candidate>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM candidate WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        body.map(|b| from_json("candidate", &b)).transpose()
    }

    pub fn save_candidate(&mut self, candidate: &Candidate, at: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO candidate (id, body, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            params![to_json(candidate), at.to_string()],
        )?;
        Ok(())
    }

    /// Record a revision and, when it was applied (or applied as pending),
    /// make it the applied one and store its `next_candidate` as the
    /// candidate — all in one transaction. A pending revision needs `deadline`.
    /// Returns its number (1, 2, 3, ... never reused).
    pub fn record_revision(&mut self, rev: &NewRevision<'_>) -> Result<u64> {
        self.record(rev, None)
    }

    /// Record a revision applied as pending, with the deadline by which it
    /// must be confirmed, in one transaction with its pending state.
    pub fn record_pending_revision(
        &mut self,
        rev: &NewRevision<'_>,
        deadline: Timestamp,
    ) -> Result<u64> {
        self.record(rev, Some(deadline))
    }

    fn record(&mut self, rev: &NewRevision<'_>, deadline: Option<Timestamp>) -> Result<u64> {
        let previous = self.applied_number()?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO revisions (created_at, actor, origin, kind, rollback_of, comment,
                                    candidate, plan, warnings, outcome, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                rev.created_at.to_string(),
                rev.actor,
                rev.origin,
                to_json(&rev.kind).trim_matches('"'),
                rev.rollback_of.map(|n| n as i64),
                rev.comment,
                to_json(rev.candidate),
                to_json(rev.plan),
                to_json(&rev.warnings),
                rev.outcome.as_str(),
                rev.detail,
            ],
        )?;
        let number = tx.last_insert_rowid() as u64;
        if let Some(deadline) = deadline {
            let pending = Pending {
                revision: number,
                previous,
                deadline,
            };
            set_state(&tx, PENDING_KEY, &to_json(&pending))?;
        }
        if matches!(rev.outcome, Outcome::Applied | Outcome::Pending) {
            set_state(&tx, APPLIED_KEY, &number.to_string())?;
            tx.execute(
                "INSERT INTO candidate (id, body, updated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                params![to_json(rev.next_candidate), rev.created_at.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(number)
    }

    /// The commit-confirmed revision waiting for confirmation, if any.
    pub fn pending(&self) -> Result<Option<Pending>> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM state WHERE key = ?1",
                [PENDING_KEY],
                |r| r.get(0),
            )
            .optional()?;
        v.map(|v| from_json("pending state", &v)).transpose()
    }

    /// Keep the pending revision: it becomes an ordinary applied one.
    pub fn confirm_pending(&mut self, detail: &str) -> Result<Option<u64>> {
        let Some(pending) = self.pending()? else {
            return Ok(None);
        };
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE revisions SET outcome = ?1, detail = ?2 WHERE number = ?3",
            params![Outcome::Applied.as_str(), detail, pending.revision as i64],
        )?;
        tx.execute("DELETE FROM state WHERE key = ?1", [PENDING_KEY])?;
        tx.commit()?;
        Ok(Some(pending.revision))
    }

    /// Give the pending revision up: the previous one is applied again
    /// (the caller has already put it back on the system); the candidate
    /// keeps the pending revision's configuration, so nothing typed is lost.
    pub fn roll_back_pending(&mut self, detail: &str) -> Result<Option<Pending>> {
        let Some(pending) = self.pending()? else {
            return Ok(None);
        };
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE revisions SET outcome = ?1, detail = ?2 WHERE number = ?3",
            params![
                Outcome::RolledBack.as_str(),
                detail,
                pending.revision as i64
            ],
        )?;
        match pending.previous {
            Some(n) => set_state(&tx, APPLIED_KEY, &n.to_string())?,
            None => {
                tx.execute("DELETE FROM state WHERE key = ?1", [APPLIED_KEY])?;
            }
        }
        tx.execute("DELETE FROM state WHERE key = ?1", [PENDING_KEY])?;
        tx.commit()?;
        Ok(Some(pending))
    }

    /// Store a certificate under a name that is not taken yet.
    pub fn insert_cert(&mut self, cert: &StoredCert) -> Result<()> {
        insert_cert_row(&self.conn, cert)
    }

    /// Every certificate, by name.
    pub fn certs(&self) -> Result<Vec<StoredCert>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, chain_pem, key_pem, info, bootstrap, created_at FROM certificates ORDER BY name",
        )?;
        let rows = stmt.query_map([], Self::cert_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    pub fn cert(&self, name: &CertName) -> Result<Option<StoredCert>> {
        self.conn
            .query_row(
                "SELECT name, chain_pem, key_pem, info, bootstrap, created_at FROM certificates WHERE name = ?1",
                [name.as_str()],
                Self::cert_row,
            )
            .optional()?
            .transpose()
    }

    /// Delete a certificate; returns whether it existed.
    pub fn delete_cert(&mut self, name: &CertName) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM certificates WHERE name = ?1", [name.as_str()])?
            > 0)
    }

    #[allow(clippy::type_complexity)]
    fn cert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredCert>> {
        let name: String = r.get(0)?;
        let key: Option<String> = r.get(2)?;
        let info: String = r.get(3)?;
        let created_at: String = r.get(5)?;
        let chain_pem: String = r.get(1)?;
        let bootstrap: bool = r.get(4)?;
        Ok((|| {
            Ok(StoredCert {
                name: name.parse().map_err(|_| corrupt("certificate name"))?,
                chain_pem,
                key: key.map(KeyPem::from_stored),
                info: from_json("certificate info", &info)?,
                bootstrap,
                created_at: created_at
                    .parse()
                    .map_err(|_| corrupt("certificate time"))?,
            })
        })())
    }

    /// Keep a key made on the appliance under a name that no certificate
    /// or other request has.
    pub fn insert_request(&mut self, request: &StoredRequest) -> Result<()> {
        let tx = self.conn.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM certificates WHERE name = ?1)
                 OR EXISTS (SELECT 1 FROM key_requests WHERE name = ?1)",
            [request.name.as_str()],
            |r| r.get(0),
        )?;
        if taken {
            return Err(StoreError::CertExists(request.name.clone()));
        }
        tx.execute(
            "INSERT INTO key_requests (name, key_pem, key_type, names, csr_pem, pin, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                request.name.as_str(),
                request.key.expose_secret(),
                request.key_type.as_str(),
                to_json(&request.names),
                request.csr_pem,
                request.pin,
                request.created_at.to_string(),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every key waiting for its certificate, by name.
    pub fn requests(&self) -> Result<Vec<StoredRequest>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, key_pem, key_type, names, csr_pem, created_at, pin FROM key_requests ORDER BY name",
        )?;
        let rows = stmt.query_map([], Self::request_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    pub fn request(&self, name: &CertName) -> Result<Option<StoredRequest>> {
        self.conn
            .query_row(
                "SELECT name, key_pem, key_type, names, csr_pem, created_at, pin FROM key_requests WHERE name = ?1",
                [name.as_str()],
                Self::request_row,
            )
            .optional()?
            .transpose()
    }

    /// Forget a key waiting for its certificate; returns whether it existed.
    pub fn delete_request(&mut self, name: &CertName) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM key_requests WHERE name = ?1", [name.as_str()])?
            > 0)
    }

    /// Store the certificate of a request (with the request's key) and
    /// forget the request, in one transaction. Refused when the request is
    /// gone or the name taken meanwhile.
    pub fn attach_request(&mut self, cert: &StoredCert) -> Result<()> {
        let tx = self.conn.transaction()?;
        if tx.execute(
            "DELETE FROM key_requests WHERE name = ?1",
            [cert.name.as_str()],
        )? == 0
        {
            return Err(StoreError::NoSuchRequest(cert.name.clone()));
        }
        insert_cert_row(&tx, cert)?;
        tx.commit()?;
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredRequest>> {
        let name: String = r.get(0)?;
        let key: String = r.get(1)?;
        let key_type: String = r.get(2)?;
        let names: String = r.get(3)?;
        let csr_pem: String = r.get(4)?;
        let created_at: String = r.get(5)?;
        let pin: String = r.get(6)?;
        Ok((|| {
            Ok(StoredRequest {
                name: name.parse().map_err(|_| corrupt("request name"))?,
                key: KeyPem::from_stored(key),
                key_type: key_type.parse().map_err(|_| corrupt("request key type"))?,
                names: from_json("request names", &names)?,
                csr_pem,
                pin,
                created_at: created_at.parse().map_err(|_| corrupt("request time"))?,
            })
        })())
    }

    /// Trust a CA certificate (again: adding one twice changes nothing).
    pub fn add_anchor(&mut self, anchor: &StoredAnchor) -> Result<bool> {
        Ok(self.conn.execute(
            "INSERT INTO trust_anchors (fingerprint, der, subject, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (fingerprint) DO NOTHING",
            params![anchor.fingerprint, anchor.der, anchor.subject, anchor.added_at.to_string()],
        )? > 0)
    }

    pub fn anchors(&self) -> Result<Vec<StoredAnchor>> {
        let mut stmt = self.conn.prepare(
            "SELECT fingerprint, der, subject, added_at FROM trust_anchors ORDER BY subject",
        )?;
        let rows = stmt.query_map([], |r| {
            let added_at: String = r.get(3)?;
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, added_at))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (fingerprint, der, subject, added_at) = row?;
            out.push(StoredAnchor {
                fingerprint,
                der,
                subject,
                added_at: added_at.parse().map_err(|_| corrupt("anchor time"))?,
            });
        }
        Ok(out)
    }

    /// Insert accounts, all or none (one transaction).
    pub fn insert_accounts(&mut self, rows: &[AccountRow], at: Timestamp) -> Result<()> {
        let tx = self.conn.transaction()?;
        for a in rows {
            tx.execute(
                "INSERT INTO accounts (username, display_name, phone, grp, profile, realm, ha1, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![a.username, a.display_name, a.phone, a.group, a.profile, a.realm, a.ha1, at.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One account, by user name.
    pub fn account(&self, username: &str) -> Result<Option<AccountRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT username, display_name, phone, grp, profile, realm, ha1 FROM accounts WHERE username = ?1",
                [username],
                account_row,
            )
            .optional()?)
    }

    pub fn accounts(&self) -> Result<Vec<AccountRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT username, display_name, phone, grp, profile, realm, ha1 FROM accounts ORDER BY username",
        )?;
        let rows = stmt.query_map([], account_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A page of accounts matching `q`, and how many match. Searching
    /// and filtering run in SQL over the indexes of migration 7, so a page
    /// costs about the same at 100,000 accounts as at 1,000.
    pub fn list_accounts(&self, q: &AccountQuery<'_>) -> Result<AccountListing> {
        const USED: &str = "v.used_at IS NOT NULL AND v.revoked_at IS NULL";
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(text) = q.search.map(str::trim).filter(|t| !t.is_empty()) {
            let like = |t: &str| {
                let escaped: String = t
                    .chars()
                    .flat_map(|c| match c {
                        '%' | '_' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                format!("%{escaped}%")
            };
            let digits: String = text
                .chars()
                .filter(|c| !matches!(c, ' ' | '.' | '-'))
                .collect();
            args.push(like(text).into());
            let n = args.len();
            args.push(like(&digits).into());
            clauses.push(format!(
                "(a.username LIKE ?{n} ESCAPE '\\' OR a.display_name LIKE ?{n} ESCAPE '\\' \
                  OR a.grp LIKE ?{n} ESCAPE '\\' OR a.phone LIKE ?{} ESCAPE '\\')",
                n + 1
            ));
        }
        if let Some(state) = q.state {
            clauses.push(match state {
                ActivationState::NoLink => {
                    "NOT EXISTS (SELECT 1 FROM activations v WHERE v.username = a.username)".into()
                }
                ActivationState::LinkSent => format!(
                    "EXISTS (SELECT 1 FROM activations v WHERE v.username = a.username) \
                     AND NOT EXISTS (SELECT 1 FROM activations v WHERE v.username = a.username AND {USED})"
                ),
                ActivationState::Activated => format!(
                    "EXISTS (SELECT 1 FROM activations v WHERE v.username = a.username AND {USED})"
                ),
            });
        }
        for (names, op) in [(q.among, "IN"), (q.except, "NOT IN")] {
            if let Some(names) = names {
                let list = serde_json::to_string(names).map_err(|_| corrupt("user names"))?;
                args.push(list.into());
                clauses.push(format!(
                    "a.username {op} (SELECT value FROM json_each(?{}))",
                    args.len()
                ));
            }
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let total: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM accounts a {filter}"),
            rusqlite::params_from_iter(&args),
            |r| r.get(0),
        )?;
        let column = match q.sort {
            AccountSort::Username => "a.username",
            AccountSort::Name => "a.display_name",
            AccountSort::Phone => "a.phone",
            AccountSort::Group => "a.grp",
        };
        let direction = if q.descending { "DESC" } else { "ASC" };
        // The page's user names first (only the sort key travels through
        // the sort), then the activation times of those alone: a
        // correlated subquery per account of the whole table would make a
        // deep page of 100,000 accounts cost seconds.
        let order = format!("{column} {direction} NULLS LAST, a.username {direction}");
        let sql = format!(
            "SELECT a.username, a.display_name, a.phone, a.grp, a.profile, a.realm, a.ha1,
                    (SELECT v.created_at FROM activations v WHERE v.username = a.username
                      ORDER BY unixepoch(v.created_at, 'subsec') DESC LIMIT 1),
                    (SELECT v.used_at FROM activations v WHERE v.username = a.username AND {USED}
                      ORDER BY unixepoch(v.used_at, 'subsec') DESC LIMIT 1)
             FROM (SELECT a.username FROM accounts a {filter} ORDER BY {order} LIMIT {} OFFSET {}) page
             JOIN accounts a ON a.username = page.username
             ORDER BY {order}",
            q.limit.min(i64::MAX as u64),
            q.offset.min(i64::MAX as u64)
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(&args), |r| {
            Ok((
                account_row(r)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let time = |t: Option<String>| -> Result<Option<Timestamp>> {
            t.map(|t| t.parse().map_err(|_| corrupt("activation time")))
                .transpose()
        };
        let mut out = Vec::new();
        for row in rows {
            let (account, linked, activated) = row?;
            out.push(ListedAccount {
                account,
                linked_at: time(linked)?,
                activated_at: time(activated)?,
            });
        }
        Ok(AccountListing {
            rows: out,
            total: total as u64,
        })
    }

    /// Replace an account's fields (found by user name); whether it existed.
    pub fn update_account(&mut self, a: &AccountRow) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE accounts SET display_name = ?2, phone = ?3, grp = ?4, profile = ?5, realm = ?6, ha1 = ?7
             WHERE username = ?1",
            params![a.username, a.display_name, a.phone, a.group, a.profile, a.realm, a.ha1],
        )? > 0)
    }

    /// Delete an account (its activations go with it); whether it existed.
    pub fn delete_account(&mut self, username: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM accounts WHERE username = ?1", [username])?
            > 0)
    }

    /// Record an activation token (its hash) and queue its SMS, in one
    /// transaction. Returns the SMS id.
    pub fn activate(&mut self, a: &NewActivation<'_>) -> Result<u64> {
        let NewActivation {
            username,
            token_hash,
            expires_at,
            sms_to,
            sms_text,
            gateway,
            at,
        } = *a;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO activations (token_hash, username, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, username, at.to_string(), expires_at.to_string()],
        )?;
        let state = if gateway == "outbox" {
            "outbox"
        } else {
            "queued"
        };
        tx.execute(
            "INSERT INTO sms (username, to_number, text, gateway, state, attempts, next_try_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6)",
            params![username, sms_to, sms_text, gateway, state, at.to_string()],
        )?;
        let id = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok(id)
    }

    /// An activation without an SMS: the link is handed over in person
    /// (the console's QR code).
    pub fn add_activation(
        &mut self,
        username: &str,
        token_hash: &str,
        expires_at: Timestamp,
        at: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO activations (token_hash, username, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, username, at.to_string(), expires_at.to_string()],
        )?;
        Ok(())
    }

    /// Use a token: atomically marks it used if it is known, unused and
    /// not expired at `now`, and returns its account. A second call, or
    /// any other token, gets `None`.
    pub fn consume_token(&mut self, token_hash: &str, now: Timestamp) -> Result<Option<String>> {
        let (_, mut rows) = self.consume_tokens(&[token_hash], now)?;
        Ok(rows.pop().flatten().map(|a| a.username))
    }

    /// [`Store::consume_token`] for many tokens in one transaction (one
    /// fsync for all: a group commit): the applied revision's number at
    /// that moment, and for each token the account it opens, in order.
    pub fn consume_tokens(
        &mut self,
        token_hashes: &[&str],
        now: Timestamp,
    ) -> Result<(Option<u64>, Vec<Option<AccountRow>>)> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(token_hashes.len());
        let applied: Option<String> = tx
            .query_row(
                "SELECT value FROM state WHERE key = ?1",
                [APPLIED_KEY],
                |r| r.get(0),
            )
            .optional()?;
        let applied_number: Option<i64> = applied.as_deref().and_then(|v| v.parse().ok());
        {
            let mut consume = tx.prepare_cached(
                "UPDATE activations SET used_at = ?2, revision = ?3
                 WHERE token_hash = ?1 AND used_at IS NULL
                   AND unixepoch(expires_at, 'subsec') > unixepoch(?2, 'subsec')
                 RETURNING username",
            )?;
            let mut account = tx.prepare_cached(
                "SELECT username, display_name, phone, grp, profile, realm, ha1 FROM accounts WHERE username = ?1",
            )?;
            let now = now.to_string();
            for hash in token_hashes {
                let user: Option<String> = consume
                    .query_row(params![hash, now, applied_number], |r| r.get(0))
                    .optional()?;
                out.push(match user {
                    Some(u) => account.query_row([u], account_row).optional()?,
                    None => None,
                });
            }
        }
        tx.commit()?;
        Ok((applied.and_then(|v| v.parse().ok()), out))
    }

    /// The accounts of `profile` activated at least once, each with the
    /// revision its last activation was answered from (`None` for an
    /// activation recorded before revisions were: its pins are unknown).
    pub fn activated_accounts(&self, profile: &str) -> Result<Vec<(String, Option<u64>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.username,
                    (SELECT v.revision FROM activations v
                      WHERE v.username = a.username AND v.used_at IS NOT NULL AND v.revoked_at IS NULL
                      ORDER BY unixepoch(v.used_at, 'subsec') DESC LIMIT 1)
             FROM accounts a
             WHERE a.profile = ?1
               AND EXISTS (SELECT 1 FROM activations v
                            WHERE v.username = a.username AND v.used_at IS NOT NULL AND v.revoked_at IS NULL)
             ORDER BY a.username",
        )?;
        let rows = stmt.query_map([profile], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, revision) = row?;
            out.push((user, revision.and_then(|n| u64::try_from(n).ok())));
        }
        Ok(out)
    }

    /// The key pins native documents carried at revision `number` (its
    /// plan's `provisioning.pins`), read without building the whole plan.
    pub fn revision_pins(&self, number: u64) -> Result<Option<Vec<String>>> {
        #[derive(Deserialize)]
        struct PlanPins {
            #[serde(default)]
            provisioning: Pins,
        }
        #[derive(Deserialize, Default)]
        struct Pins {
            #[serde(default)]
            pins: Vec<String>,
        }
        let plan: Option<String> = self
            .conn
            .query_row(
                "SELECT plan FROM revisions WHERE number = ?1",
                [number as i64],
                |r| r.get(0),
            )
            .optional()?;
        plan.map(|text| from_json::<PlanPins>("revision plan", &text).map(|p| p.provisioning.pins))
            .transpose()
    }

    /// The SMS queue and outbox, newest first.
    pub fn sms(&self) -> Result<Vec<SmsRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, username, to_number, text, gateway, state, attempts, next_try_at, last_error, created_at, updated_at
             FROM sms ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], Self::sms_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Queued messages due at `now`, oldest first.
    pub fn sms_due(&self, now: Timestamp) -> Result<Vec<SmsRow>> {
        Ok(self
            .sms()?
            .into_iter()
            .rev()
            .filter(|m| m.state == "queued" && m.next_try_at <= now)
            .collect())
    }

    /// Record an attempt: `sent` (the text is erased), `failed`, or
    /// `queued` again for `next_try_at`. Only a message still queued is
    /// changed: one revoked while it was being sent stays revoked.
    pub fn sms_attempted(
        &mut self,
        id: u64,
        state: &str,
        next_try_at: Timestamp,
        error: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE sms SET state = ?2, attempts = attempts + 1, next_try_at = ?3, last_error = ?4, updated_at = ?5,
                            text = CASE WHEN ?2 = 'sent' THEN '' ELSE text END
             WHERE id = ?1 AND state = 'queued'",
            params![id as i64, state, next_try_at.to_string(), error, at.to_string()],
        )?;
        Ok(())
    }

    /// Kill every unused activation link of `username` (they answer like
    /// used ones from now on) and withdraw its messages not yet delivered
    /// (queued, failed, or waiting in the outbox: their text, which holds
    /// a link, is erased). One transaction. Returns (links, messages).
    pub fn revoke_activations(&mut self, username: &str, at: Timestamp) -> Result<(usize, usize)> {
        let tx = self.conn.transaction()?;
        let links = tx.execute(
            "UPDATE activations SET used_at = ?2, revoked_at = ?2 WHERE username = ?1 AND used_at IS NULL",
            params![username, at.to_string()],
        )?;
        let messages = tx.execute(
            "UPDATE sms SET state = 'revoked', text = '', updated_at = ?2
             WHERE username = ?1 AND state IN ('queued', 'failed', 'outbox')",
            params![username, at.to_string()],
        )?;
        tx.commit()?;
        Ok((links, messages))
    }

    /// Queue a failed message again, now, with a fresh count of attempts.
    /// `None` when there is no message `id` or it is not `failed`.
    pub fn sms_requeue(&mut self, id: u64, at: Timestamp) -> Result<Option<SmsRow>> {
        let changed = self.conn.execute(
            "UPDATE sms SET state = 'queued', attempts = 0, next_try_at = ?2, last_error = NULL, updated_at = ?2
             WHERE id = ?1 AND state = 'failed'",
            params![id as i64, at.to_string()],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        Ok(self.sms()?.into_iter().find(|m| m.id == id))
    }

    #[allow(clippy::type_complexity)]
    fn sms_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SmsRow>> {
        let time = |i: usize| -> rusqlite::Result<Result<Timestamp>> {
            let s: String = r.get(i)?;
            Ok(s.parse().map_err(|_| corrupt("sms time")))
        };
        let (next, created, updated) = (time(7)?, time(9)?, time(10)?);
        let id: i64 = r.get(0)?;
        let attempts: i64 = r.get(6)?;
        let row = SmsRow {
            id: id as u64,
            username: r.get(1)?,
            to: r.get(2)?,
            text: r.get(3)?,
            gateway: r.get(4)?,
            state: r.get(5)?,
            attempts: attempts as u32,
            next_try_at: Timestamp::UNIX_EPOCH,
            last_error: r.get(8)?,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
        };
        Ok((|| {
            Ok(SmsRow {
                next_try_at: next?,
                created_at: created?,
                updated_at: updated?,
                ..row
            })
        })())
    }

    /// The stored password hash (a PHC string) of an administrator.
    pub fn admin_hash(&self, username: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT password_hash FROM admins WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether any administrator exists.
    pub fn any_admin(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM admins)", [], |r| r.get(0))?)
    }

    /// Every administrator, by name.
    pub fn admins(&self) -> Result<Vec<AdminRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT username, password_hash, role, disabled_at, totp_secret, totp_pending,
                    totp_last_step, changed_at FROM admins ORDER BY username",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (username, password_hash, role, disabled, secret, pending, step, changed) = row?;
            out.push(AdminRecord {
                username,
                password_hash,
                role,
                disabled_at: disabled
                    .map(|d| d.parse().map_err(|_| corrupt("administrator time")))
                    .transpose()?,
                totp_secret: secret,
                totp_pending: pending,
                totp_last_step: step.map(|s| s as u64),
                changed_at: changed.parse().map_err(|_| corrupt("administrator time"))?,
            });
        }
        Ok(out)
    }

    /// One administrator.
    pub fn admin(&self, username: &str) -> Result<Option<AdminRecord>> {
        Ok(self.admins()?.into_iter().find(|a| a.username == username))
    }

    /// Add an administrator (refused with `false` if the name is taken).
    pub fn add_admin(
        &mut self,
        username: &str,
        phc: &str,
        role: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO admins (username, password_hash, changed_at, role) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username) DO NOTHING",
            params![username, phc, at.to_string(), role],
        )?;
        Ok(n == 1)
    }

    /// Change an administrator's role; `false` if there is none of that name.
    pub fn set_admin_role(&mut self, username: &str, role: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE admins SET role = ?2 WHERE username = ?1",
            params![username, role],
        )? == 1)
    }

    /// Disable (`Some(time)`) or enable (`None`) an administrator.
    pub fn set_admin_disabled(&mut self, username: &str, at: Option<Timestamp>) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE admins SET disabled_at = ?2 WHERE username = ?1",
            params![username, at.map(|t| t.to_string())],
        )? == 1)
    }

    /// Remove an administrator and its recovery codes.
    pub fn delete_admin(&mut self, username: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM recovery_codes WHERE username = ?1", [username])?;
        let n = tx.execute("DELETE FROM admins WHERE username = ?1", [username])?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Set an administrator's TOTP secret in use and the one being enrolled
    /// (the last step used is forgotten when the secret changes).
    pub fn set_admin_totp(
        &mut self,
        username: &str,
        secret: Option<&str>,
        pending: Option<&str>,
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE admins SET totp_last_step = CASE WHEN totp_secret IS ?2 THEN totp_last_step END,
                               totp_secret = ?2, totp_pending = ?3
             WHERE username = ?1",
            params![username, secret, pending],
        )? == 1)
    }

    /// Record that the code of time step `step` was used; `false` (nothing
    /// written) if a code of this step or a later one was used already.
    pub fn use_totp_step(&mut self, username: &str, step: u64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE admins SET totp_last_step = ?2
             WHERE username = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
            params![username, step as i64],
        )? == 1)
    }

    /// Replace an administrator's recovery codes (their SHA-256, hex).
    pub fn set_recovery_codes(&mut self, username: &str, hashes: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM recovery_codes WHERE username = ?1", [username])?;
        for h in hashes {
            tx.execute(
                "INSERT INTO recovery_codes (username, code_hash) VALUES (?1, ?2)",
                params![username, h],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Use a recovery code (by its hash): `true` once, `false` after.
    pub fn use_recovery_code(&mut self, username: &str, hash: &str, at: Timestamp) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE recovery_codes SET used_at = ?3
             WHERE username = ?1 AND code_hash = ?2 AND used_at IS NULL",
            params![username, hash, at.to_string()],
        )? == 1)
    }

    /// How many unused recovery codes an administrator has.
    pub fn recovery_codes_left(&self, username: &str) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM recovery_codes WHERE username = ?1 AND used_at IS NULL",
            [username],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The roles that must sign in with a second factor.
    pub fn totp_required_roles(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT role FROM totp_policy WHERE required = 1 ORDER BY role")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Whether `role` must sign in with a second factor.
    pub fn set_totp_required(&mut self, role: &str, required: bool) -> Result<()> {
        self.conn.execute(
            "INSERT INTO totp_policy (role, required) VALUES (?1, ?2)
             ON CONFLICT (role) DO UPDATE SET required = excluded.required",
            params![role, required],
        )?;
        Ok(())
    }

    /// Set an administrator's password hash (a PHC string), creating the
    /// administrator if needed.
    pub fn set_admin_hash(&mut self, username: &str, phc: &str, at: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO admins (username, password_hash, changed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
                                                  changed_at = excluded.changed_at",
            params![username, phc, at.to_string()],
        )?;
        Ok(())
    }

    /// The audit log's retention rule from now on (the default:
    /// [`AuditRetention::default`]).
    pub fn set_audit_retention(&mut self, retention: AuditRetention) {
        self.retention = retention;
    }

    /// Apply the retention rule at `now`: remove the entries older than
    /// `max_days` and all but the newest `max_entries` (counting the entry
    /// that records the prune), in one transaction that also records the
    /// prune as an audit entry, `pruned N entries older than TIME`. Nothing
    /// to remove: nothing written, `None`.
    pub fn prune_audit(&mut self, now: Timestamp) -> Result<Option<AuditPruned>> {
        self.audit_since_prune = 0;
        let r = self.retention;
        let max_age = jiff::SignedDuration::from_hours(24 * i64::from(r.max_days));
        let cutoff = now.checked_sub(max_age).unwrap_or(Timestamp::MIN);
        // Whole seconds: stored times sort as text within a second's precision.
        let cutoff = cutoff.round(jiff::Unit::Second).unwrap_or(cutoff);
        let tx = self.conn.transaction()?;
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?;
        let max = i64::try_from(r.max_entries).unwrap_or(i64::MAX);
        // Over the count: keep room for the entry that records the prune.
        // Within it (an offset past the end): the count removes nothing.
        let keep = if count > max {
            max.saturating_sub(1)
        } else {
            i64::MAX
        };
        let removed = tx.execute(
            "DELETE FROM audit WHERE at < ?1
                OR id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![cutoff.to_string(), keep],
        )?;
        if removed == 0 {
            return Ok(None);
        }
        let oldest: Option<String> = tx
            .query_row("SELECT at FROM audit ORDER BY id LIMIT 1", [], |r| r.get(0))
            .optional()?;
        let older_than = match oldest {
            Some(at) => at.parse().map_err(|_| corrupt("audit time"))?,
            None => now,
        };
        let outcome = format!(
            "pruned {removed} entries older than {older_than} (keeping at most {} entries and {} days)",
            r.max_entries, r.max_days
        );
        let data = serde_json::json!({ "entries": removed, "older_than": older_than.to_string() });
        tx.execute(
            "INSERT INTO audit (at, actor, address, kind, action, data, outcome)
             VALUES (?1, ?2, ?3, 'audit.prune', ?4, ?5, ?6)",
            params![
                now.to_string(),
                RETENTION_ACTOR,
                "the daemon",
                "prune audit log",
                data.to_string(),
                outcome
            ],
        )?;
        tx.commit()?;
        Ok(Some(AuditPruned {
            entries: removed as u64,
            older_than,
        }))
    }

    /// Append an entry to the audit log; returns its id. Every
    /// `prune_every` entries the retention rule is applied after the
    /// insert ([`Store::prune_audit`], at the entry's time).
    pub fn record_audit(&mut self, entry: &NewAudit<'_>) -> Result<u64> {
        self.conn.execute(
            "INSERT INTO audit (at, actor, address, kind, action, data, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                entry.at.to_string(),
                entry.actor,
                entry.address,
                entry.kind,
                entry.action,
                entry.data,
                entry.outcome
            ],
        )?;
        let id = self.conn.last_insert_rowid() as u64;
        self.audit_since_prune += 1;
        if self.audit_since_prune >= self.retention.prune_every {
            self.prune_audit(entry.at)?;
        }
        Ok(id)
    }

    /// Record the ban of an address (replacing its earlier one).
    pub fn put_ban(&mut self, ban: &BanRecord) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO bans (address, reason, offences, banned_at, expires_at, lifted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ban.address.to_string(),
                ban.reason,
                ban.offences,
                ban.banned_at.to_string(),
                ban.expires_at.to_string(),
                ban.lifted_at.map(|t| t.to_string()),
            ],
        )?;
        Ok(())
    }

    /// Every address banned (the last ban of each, active or not), the
    /// latest first.
    pub fn bans(&self) -> Result<Vec<BanRecord>> {
        self.query_bans("", [])
    }

    fn query_bans<P: rusqlite::Params>(&self, filter: &str, params: P) -> Result<Vec<BanRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT address, reason, offences, banned_at, expires_at, lifted_at FROM bans {filter} ORDER BY banned_at DESC"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (address, reason, offences, banned_at, expires_at, lifted_at) = row?;
            let time = |t: String| t.parse().map_err(|_| corrupt("ban time"));
            out.push(BanRecord {
                address: address.parse().map_err(|_| corrupt("ban address"))?,
                reason,
                offences,
                banned_at: time(banned_at)?,
                expires_at: time(expires_at)?,
                lifted_at: lifted_at.map(time).transpose()?,
            });
        }
        Ok(out)
    }

    /// The last ban of `address`, if it ever was.
    pub fn ban(&self, address: std::net::IpAddr) -> Result<Option<BanRecord>> {
        Ok(self
            .query_bans("WHERE address = ?1", [address.to_string()])?
            .into_iter()
            .next())
    }

    /// Forget the bans that ended before `before` (their offences no
    /// longer count); returns how many.
    pub fn prune_bans(&mut self, before: Timestamp) -> Result<usize> {
        let mut n = 0;
        for b in self.bans()? {
            let ended = b.lifted_at.unwrap_or(b.expires_at);
            if ended < before {
                n += self.conn.execute(
                    "DELETE FROM bans WHERE address = ?1",
                    [b.address.to_string()],
                )?;
            }
        }
        Ok(n)
    }

    /// The last `limit` entries of the audit log, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRow>> {
        self.audit_query(&AuditFilter {
            limit,
            ..AuditFilter::default()
        })
    }

    /// The newest `filter.limit` entries of the audit log that match
    /// `filter`, newest first.
    pub fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, at, actor, address, kind, action, data, outcome FROM audit
             WHERE (?1 IS NULL OR actor = ?1)
               AND (?2 IS NULL OR kind = ?2 OR kind LIKE ?3 ESCAPE '\\')
               AND (?4 IS NULL OR at >= ?4)
               AND (?5 IS NULL OR at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let family = filter.kind.as_ref().map(|k| {
            let escaped: String = k
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("{escaped}.%")
        });
        let rows = stmt.query_map(
            params![
                filter.actor,
                filter.kind,
                family,
                filter.since.map(|t| t.to_string()),
                filter.until.map(|t| t.to_string()),
                limit
            ],
            |r| {
                let id: i64 = r.get(0)?;
                let at: String = r.get(1)?;
                let data: String = r.get(6)?;
                Ok((
                    id,
                    at,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    data,
                    r.get(7)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, actor, address, kind, action, data, outcome) = row?;
            out.push(AuditRow {
                id: id as u64,
                at: at.parse().map_err(|_| corrupt("audit time"))?,
                actor,
                address,
                kind,
                action,
                data: serde_json::from_str(&data).map_err(|source| StoreError::Corrupt {
                    what: "audit data",
                    source,
                })?,
                outcome,
            });
        }
        Ok(out)
    }

    /// The number of the revision the system runs, if any was ever applied.
    pub fn applied_number(&self) -> Result<Option<u64>> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM state WHERE key = ?1",
                [APPLIED_KEY],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()))
    }

    pub fn applied(&self) -> Result<Option<Revision>> {
        match self.applied_number()? {
            Some(n) => self.revision(n),
            None => Ok(None),
        }
    }

    /// Every revision, newest first.
    pub fn revisions(&self) -> Result<Vec<RevisionSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT number, created_at, actor, origin, kind, rollback_of, comment, outcome, detail
             FROM revisions ORDER BY number DESC",
        )?;
        let rows = stmt.query_map([], Self::summary_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    pub fn revision(&self, number: u64) -> Result<Option<Revision>> {
        let row = self
            .conn
            .query_row(
                "SELECT number, created_at, actor, origin, kind, rollback_of, comment, outcome, detail,
                        candidate, plan, warnings
                 FROM revisions WHERE number = ?1",
                [number as i64],
                |r| {
                    let summary = Self::summary_row(r)?;
                    let candidate: String = r.get(9)?;
                    let plan: String = r.get(10)?;
                    let warnings: String = r.get(11)?;
                    Ok((summary, candidate, plan, warnings))
                },
            )
            .optional()?;
        let Some((summary, candidate, plan, warnings)) = row else {
            return Ok(None);
        };
        Ok(Some(Revision {
            summary: summary?,
            candidate: from_json("revision candidate", &candidate)?,
            plan: from_json("revision plan", &plan)?,
            warnings: from_json("revision warnings", &warnings)?,
        }))
    }

    #[allow(clippy::type_complexity)]
    fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RevisionSummary>> {
        let created_at: String = r.get(1)?;
        let kind: String = r.get(4)?;
        let outcome: String = r.get(7)?;
        let rollback_of: Option<i64> = r.get(5)?;
        let parse = || -> Result<RevisionSummary> {
            Ok(RevisionSummary {
                number: r.get::<_, i64>(0)? as u64,
                created_at: created_at.parse().map_err(|_| corrupt("revision time"))?,
                actor: r.get(2)?,
                origin: r.get(3)?,
                kind: from_json("revision kind", &format!("\"{kind}\""))?,
                rollback_of: rollback_of.map(|n| n as u64),
                comment: r.get(6)?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| corrupt("revision outcome"))?,
                detail: r.get(8)?,
            })
        };
        Ok(parse())
    }
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        username: r.get(0)?,
        display_name: r.get(1)?,
        phone: r.get(2)?,
        group: r.get(3)?,
        profile: r.get(4)?,
        realm: r.get(5)?,
        ha1: r.get(6)?,
    })
}

/// Stores `cert` under its name, refused (`CertExists`) when the name is a
/// certificate's or a waiting request's: one name space for both.
fn insert_cert_row(conn: &Connection, cert: &StoredCert) -> Result<()> {
    let done = conn.execute(
        "INSERT INTO certificates (name, chain_pem, key_pem, info, bootstrap, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6
         WHERE NOT EXISTS (SELECT 1 FROM key_requests WHERE name = ?1)
         ON CONFLICT (name) DO NOTHING",
        params![
            cert.name.as_str(),
            cert.chain_pem,
            cert.key.as_ref().map(KeyPem::expose_secret),
            to_json(&cert.info),
            cert.bootstrap,
            cert.created_at.to_string(),
        ],
    )?;
    if done == 0 {
        return Err(StoreError::CertExists(cert.name.clone()));
    }
    Ok(())
}

fn set_state(tx: &rusqlite::Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO state (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt {
        what,
        source: <serde_json::Error as serde::de::Error>::custom("unreadable value"),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| unreachable!("plain data serializes: {e}"))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| StoreError::Corrupt { what, source })
}

#[cfg(test)]
mod tests {
    use switchboard_domain::{Facts, ServiceId};

    use super::*;

    #[test]
    fn an_applied_revision_leaves_its_next_candidate_as_the_candidate() {
        let mut s = Store::open_in_memory().expect("store");
        let applied = Candidate::default();
        let mut edits = Candidate::default();
        edits.set_port(ServiceId::Web, "8444".parse().expect("port"));
        let plan = plan_for(&applied);
        let rev = NewRevision {
            next_candidate: &edits,
            ..new_rev(&applied, &plan, Outcome::Applied)
        };
        let n = s.record_revision(&rev).expect("recorded");
        assert_eq!(
            s.revision(n).expect("read").expect("there").candidate,
            applied
        );
        assert_eq!(s.candidate().expect("read"), Some(edits), "the edits kept");
    }

    #[test]
    fn the_fleet_records_are_kept_and_forgotten() {
        let mut s = Store::open_in_memory().expect("store");
        assert_eq!(s.fleet_membership().expect("read"), None);
        s.set_fleet_membership(Some("{\"group\":\"g\"}"))
            .expect("kept");
        s.set_fleet_last(Some("{\"policy_revision\":7}"))
            .expect("kept");
        assert_eq!(
            s.fleet_membership().expect("read").as_deref(),
            Some("{\"group\":\"g\"}")
        );
        s.set_fleet_membership(None).expect("forgotten");
        assert_eq!(s.fleet_membership().expect("read"), None);
        assert!(s.fleet_last().expect("read").is_some());
    }

    #[test]
    fn acme_renewal_records_are_kept_apart_from_accounts_and_forgotten() {
        let mut s = Store::open_in_memory().expect("store");
        s.set_acme_account("https://ca.example.test/dir", "{\"secret\":1}")
            .expect("account");
        s.set_acme_renewal("voip", Some("{\"n\":1}")).expect("kept");
        s.set_acme_renewal("web_1", Some("{\"n\":2}"))
            .expect("kept");
        s.set_acme_renewal("voip", Some("{\"n\":3}"))
            .expect("replaced");
        assert_eq!(
            s.acme_renewals().expect("read"),
            vec![
                ("voip".to_owned(), "{\"n\":3}".to_owned()),
                ("web_1".to_owned(), "{\"n\":2}".to_owned()),
            ]
        );
        s.set_acme_renewal("voip", None).expect("forgotten");
        assert_eq!(s.acme_renewals().expect("read").len(), 1);
        s.forget_acme_account("https://ca.example.test/dir")
            .expect("forgotten");
        assert_eq!(
            s.acme_account("https://ca.example.test/dir").expect("read"),
            None
        );
        assert_eq!(s.acme_renewals().expect("read").len(), 1);
    }

    /// The store keeps whatever plan it is given; a rendered one will do.
    fn plan_for(c: &Candidate) -> Plan {
        switchboard_plan::render(c, &Facts::default(), &Default::default())
    }

    fn new_rev<'a>(c: &'a Candidate, plan: &'a Plan, outcome: Outcome) -> NewRevision<'a> {
        NewRevision {
            created_at: "2026-11-26T08:00:00Z".parse().expect("time"),
            actor: "root",
            origin: "local (uid 0)",
            kind: RevisionKind::Update,
            rollback_of: None,
            comment: "",
            candidate: c,
            next_candidate: c,
            plan,
            warnings: &[],
            outcome,
            detail: "planned only",
        }
    }

    #[test]
    fn expiry_is_compared_as_time_not_as_text() {
        // jiff writes as few fraction digits as needed: "…00.125Z" sorts
        // before "…00.12Z" as text, although it is later.
        let t = |s: &str| -> Timestamp { s.parse().expect("time") };
        let mut store = Store::open_in_memory().expect("open");
        let ann = AccountRow {
            username: "ann".into(),
            display_name: None,
            phone: "+33612345678".into(),
            group: None,
            profile: "native".into(),
            realm: "switchboard".into(),
            ha1: "00".repeat(16),
        };
        let at = t("2026-11-26T08:00:00Z");
        store
            .insert_accounts(std::slice::from_ref(&ann), at)
            .expect("insert");
        let expires = t("2026-11-26T09:00:00.125Z");
        store.add_activation("ann", "t", expires, at).expect("add");
        let now = t("2026-11-26T09:00:00.12Z");
        assert!(expires.to_string() < now.to_string(), "the trap is set");
        assert_eq!(
            store.consume_token("t", now).expect("consume"),
            Some("ann".into()),
            "5 ms before its expiry the token is valid"
        );
    }

    #[test]
    fn accounts_are_listed_by_search_state_and_page_and_a_revoked_link_is_no_activation() {
        let t = |s: &str| -> Timestamp { s.parse().expect("time") };
        let mut store = Store::open_in_memory().expect("open");
        let row = |u: &str, name: Option<&str>, phone: &str, group: Option<&str>| AccountRow {
            username: u.into(),
            display_name: name.map(Into::into),
            phone: phone.into(),
            group: group.map(Into::into),
            profile: "native".into(),
            realm: "switchboard".into(),
            ha1: "00".repeat(16),
        };
        let at = t("2026-11-26T08:00:00Z");
        store
            .insert_accounts(
                &[
                    row("ann", Some("Ann Lee"), "+41791110001", Some("sales")),
                    row("bob", None, "+41791110002", Some("50%_off")),
                    row("cat", Some("Cat"), "+33612345678", None),
                    row("dan", Some("Dan"), "+33612345679", Some("sales")),
                ],
                at,
            )
            .expect("insert");
        let expires = t("2026-11-27T08:00:00Z");
        store.add_activation("ann", "a1", expires, at).expect("add");
        store
            .add_activation("ann", "a2", expires, t("2026-11-26T08:00:00.5Z"))
            .expect("add");
        store.add_activation("bob", "b1", expires, at).expect("add");
        store.add_activation("cat", "c1", expires, at).expect("add");
        store
            .consume_token("a1", t("2026-11-26T09:00:00Z"))
            .expect("use");
        store.revoke_activations("cat", at).expect("revoke");
        let names = |q: AccountQuery<'_>| -> (Vec<String>, u64) {
            let l = store.list_accounts(&q).expect("list");
            (
                l.rows.into_iter().map(|r| r.account.username).collect(),
                l.total,
            )
        };
        let all = AccountQuery {
            limit: 10,
            ..AccountQuery::default()
        };
        assert_eq!(names(all).1, 4);
        let search = |text| AccountQuery {
            search: Some(text),
            ..all
        };
        assert_eq!(names(search("SALES")).0, ["ann", "dan"], "case ignored");
        assert_eq!(names(search("ann lee")).0, ["ann"]);
        assert_eq!(
            names(search("+41 79-111")).0,
            ["ann", "bob"],
            "spaces in a number"
        );
        assert_eq!(
            names(search("%")).0,
            ["bob"],
            "% is a character, not a wildcard"
        );
        assert_eq!(names(search("_")).0, ["bob"]);
        assert_eq!(names(search("'; DROP TABLE accounts; --")).1, 0);
        let state = |s| AccountQuery {
            state: Some(s),
            ..all
        };
        assert_eq!(names(state(ActivationState::Activated)).0, ["ann"]);
        assert_eq!(
            names(state(ActivationState::LinkSent)).0,
            ["bob", "cat"],
            "a revoked link is not an activation"
        );
        assert_eq!(names(state(ActivationState::NoLink)).0, ["dan"]);
        let among = ["dan".to_owned(), "bob".to_owned(), "nobody".to_owned()];
        assert_eq!(
            names(AccountQuery {
                among: Some(&among),
                ..all
            })
            .0,
            ["bob", "dan"]
        );
        assert_eq!(
            names(AccountQuery {
                except: Some(&among),
                ..all
            })
            .0,
            ["ann", "cat"]
        );
        let (page, total) = names(AccountQuery {
            sort: AccountSort::Name,
            descending: true,
            offset: 1,
            limit: 2,
            ..all
        });
        assert_eq!((page, total), (vec!["cat".into(), "ann".into()], 4));
        let (page, _) = names(AccountQuery {
            sort: AccountSort::Name,
            ..all
        });
        assert_eq!(page, ["ann", "cat", "dan", "bob"], "no name sorts last");
        let ann = store
            .list_accounts(&search("ann"))
            .expect("list")
            .rows
            .remove(0);
        assert_eq!(
            ann.linked_at,
            Some(t("2026-11-26T08:00:00.5Z")),
            "the latest link"
        );
        assert_eq!(ann.activated_at, Some(t("2026-11-26T09:00:00Z")));
        assert_eq!(
            store.activated_accounts("native").expect("activated"),
            vec![("ann".to_owned(), None)],
            "cat's revoked link gives it no pins"
        );
    }

    #[test]
    fn an_activation_token_opens_its_account_once_and_not_after_expiry_or_revocation() {
        let t = |s: &str| -> Timestamp { s.parse().expect("time") };
        let mut store = Store::open_in_memory().expect("open");
        let ann = AccountRow {
            username: "ann".into(),
            display_name: None,
            phone: "+33612345678".into(),
            group: None,
            profile: "linphone".into(),
            realm: "switchboard".into(),
            ha1: "00".repeat(16),
        };
        let at = t("2026-11-26T08:00:00Z");
        store
            .insert_accounts(std::slice::from_ref(&ann), at)
            .expect("insert");
        let expires = t("2026-11-26T09:00:00Z");
        for hash in ["once", "late", "revoked"] {
            store.add_activation("ann", hash, expires, at).expect("add");
        }
        let before = t("2026-11-26T08:59:59Z");
        assert_eq!(
            store
                .consume_tokens(&["once", "unknown", "once"], before)
                .expect("consume"),
            (None, vec![Some(ann.clone()), None, None]),
            "a token opens its account once, in order, within one batch"
        );
        assert_eq!(store.consume_token("once", before).expect("again"), None);
        assert_eq!(store.consume_token("late", expires).expect("late"), None);
        let sms = store
            .activate(&NewActivation {
                username: "ann",
                token_hash: "queued",
                expires_at: expires,
                sms_to: &ann.phone,
                sms_text: "https://voip.example.test/p/secret",
                gateway: "kannel",
                at,
            })
            .expect("activate");
        assert_eq!(store.revoke_activations("ann", at).expect("revoke"), (3, 1));
        for hash in ["revoked", "queued"] {
            assert_eq!(store.consume_token(hash, before).expect("revoked"), None);
        }
        let m = store
            .sms()
            .expect("sms")
            .into_iter()
            .find(|m| m.id == sms)
            .expect("sms");
        assert_eq!((m.state.as_str(), m.text.as_str()), ("revoked", ""));
        assert!(store.sms_due(before).expect("due").is_empty());
    }

    #[test]
    fn candidate_and_revisions_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let mut c = Candidate::default();
        c.set_port(ServiceId::Web, "8444".parse().expect("port"));
        let plan = plan_for(&c);
        {
            let mut s = Store::open(&path).expect("open");
            assert_eq!(s.candidate().expect("read"), None);
            assert_eq!(s.applied_number().expect("read"), None);
            s.save_candidate(&c, Timestamp::UNIX_EPOCH).expect("save");
            assert_eq!(
                s.record_revision(&new_rev(&c, &plan, Outcome::Applied))
                    .expect("rec"),
                1
            );
            assert_eq!(
                s.record_revision(&new_rev(&c, &plan, Outcome::Failed))
                    .expect("rec"),
                2
            );
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
        assert_eq!(s.candidate().expect("read"), Some(c.clone()));
        assert_eq!(
            s.applied_number().expect("read"),
            Some(1),
            "a failed revision is not applied"
        );
        let list = s.revisions().expect("list");
        assert_eq!(list.iter().map(|r| r.number).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(list[0].outcome, Outcome::Failed);
        let r1 = s.revision(1).expect("read").expect("exists");
        assert_eq!(r1.candidate, c);
        assert_eq!(r1.plan, plan);
        assert_eq!(s.revision(3).expect("read"), None);
    }

    #[test]
    fn a_second_connection_consumes_tokens_the_first_one_issued() {
        let t = |s: &str| -> Timestamp { s.parse().expect("time") };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = Store::open_dir(dir.path()).expect("open");
        assert!(
            Store::open_in_memory()
                .expect("open")
                .second_connection()
                .expect("in memory")
                .is_none(),
            "an in-memory store has no file to share"
        );
        let mut second = first
            .second_connection()
            .expect("second")
            .expect("a file store has one");
        let row = AccountRow {
            username: "ann".into(),
            display_name: None,
            phone: "+33612345678".into(),
            group: None,
            profile: "linphone".into(),
            realm: "switchboard".into(),
            ha1: "00".repeat(16),
        };
        let at = t("2026-11-26T08:00:00Z");
        first.insert_accounts(&[row], at).expect("insert");
        first
            .add_activation("ann", "h", t("2026-11-26T09:00:00Z"), at)
            .expect("add");
        // The first connection is inside a read transaction (an Update
        // reading): the second still commits.
        let reading = first.conn.transaction().expect("tx");
        let _: i64 = reading
            .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
            .expect("read");
        assert_eq!(
            second.consume_token("h", at).expect("consume").as_deref(),
            Some("ann")
        );
        drop(reading);
        assert_eq!(first.consume_token("h", at).expect("again"), None);
        assert!(
            matches!(Store::open_dir(dir.path()), Err(StoreError::Locked { .. })),
            "the directory's lock is still held once"
        );
    }

    #[test]
    fn the_store_runs_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("s.db")).expect("open");
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("pragma");
        let sync: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("pragma");
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }

    #[test]
    fn a_data_directory_has_one_owner_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = Store::open_dir(&data).expect("first");
        let err = Store::open_dir(&data).expect_err("second is refused");
        let msg = err.to_string();
        assert!(msg.contains("another switchboard daemon"), "{msg}");
        assert!(
            msg.contains(&std::process::id().to_string()),
            "names the holder: {msg}"
        );
        drop(first);
        Store::open_dir(&data).expect("free again once the first is gone");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        drop(Store::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("raw");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = Store::open(&path).expect_err("too new");
        assert!(err.to_string().contains("newer switchboard"), "{err}");
    }

    #[test]
    fn an_applied_revision_becomes_the_candidate() {
        let mut s = Store::open_in_memory().expect("open");
        let mut edited = Candidate::default();
        edited.set_port(ServiceId::Ssh, "2222".parse().expect("port"));
        s.save_candidate(&edited, Timestamp::UNIX_EPOCH)
            .expect("save");
        let old = Candidate::default();
        let plan = plan_for(&old);
        let mut rev = new_rev(&old, &plan, Outcome::Applied);
        rev.kind = RevisionKind::Rollback;
        s.record_revision(&rev).expect("rec");
        assert_eq!(s.candidate().expect("read"), Some(old));
    }

    #[test]
    fn a_pending_revision_is_confirmed_or_rolled_back_atomically() {
        let mut s = Store::open_in_memory().expect("open");
        let c = Candidate::default();
        let plan = plan_for(&c);
        s.record_revision(&new_rev(&c, &plan, Outcome::Applied))
            .expect("1");
        let deadline: Timestamp = "2026-11-26T08:01:00Z".parse().expect("time");
        let n = s
            .record_pending_revision(&new_rev(&c, &plan, Outcome::Pending), deadline)
            .expect("2");
        assert_eq!(
            s.applied_number().expect("applied"),
            Some(2),
            "a pending revision runs"
        );
        assert_eq!(
            s.pending().expect("pending"),
            Some(Pending {
                revision: n,
                previous: Some(1),
                deadline
            })
        );
        let back = s.roll_back_pending("not confirmed").expect("roll back");
        assert_eq!(back.map(|p| p.revision), Some(2));
        assert_eq!(s.applied_number().expect("applied"), Some(1));
        assert_eq!(s.pending().expect("pending"), None);
        assert_eq!(
            s.revision(2).expect("r").expect("2").summary.outcome,
            Outcome::RolledBack
        );
        assert_eq!(s.roll_back_pending("again").expect("noop"), None);

        s.record_pending_revision(&new_rev(&c, &plan, Outcome::Pending), deadline)
            .expect("3");
        assert_eq!(s.confirm_pending("confirmed").expect("confirm"), Some(3));
        assert_eq!(
            s.revision(3).expect("r").expect("3").summary.outcome,
            Outcome::Applied
        );
        assert_eq!(s.applied_number().expect("applied"), Some(3));
        assert_eq!(s.confirm_pending("again").expect("noop"), None);
    }

    #[test]
    fn rolling_back_the_first_revision_leaves_nothing_applied() {
        let mut s = Store::open_in_memory().expect("open");
        let c = Candidate::default();
        let plan = plan_for(&c);
        let deadline = Timestamp::UNIX_EPOCH;
        s.record_pending_revision(&new_rev(&c, &plan, Outcome::Pending), deadline)
            .expect("1");
        let p = s
            .roll_back_pending("expired")
            .expect("roll back")
            .expect("was pending");
        assert_eq!(p.previous, None);
        assert_eq!(s.applied_number().expect("applied"), None);
    }

    #[test]
    fn a_key_request_shares_the_certificates_names_and_becomes_one_when_attached() {
        let mut s = Store::open_in_memory().expect("open");
        let made = switchboard_pki::make_request(
            switchboard_pki::RequestKeyType::EcdsaP256,
            &[switchboard_pki::RequestName::dns("voip.example.test").expect("name")],
        )
        .expect("request");
        let key = made.key.to_key_pem();
        let secret = key.expose_secret().to_owned();
        let request = StoredRequest {
            name: "voip".parse().expect("name"),
            key,
            key_type: switchboard_pki::RequestKeyType::EcdsaP256,
            names: vec!["voip.example.test".into()],
            csr_pem: made.csr_pem.clone(),
            pin: "sha256/AAAA".into(),
            created_at: Timestamp::UNIX_EPOCH,
        };
        assert!(
            !format!("{request:?}").contains(&secret[40..80]),
            "Debug never shows the key"
        );
        s.insert_request(&request).expect("insert");
        assert!(matches!(
            s.insert_request(&request),
            Err(StoreError::CertExists(_))
        ));
        let p = switchboard_pki::testpki::pki();
        let bundle = switchboard_pki::import(p.leaf.pem().as_bytes(), None, None).expect("import");
        let cert = |name: &str| StoredCert {
            name: name.parse().expect("name"),
            chain_pem: bundle.chain_pem(),
            key: None,
            info: bundle.info().clone(),
            bootstrap: false,
            created_at: Timestamp::UNIX_EPOCH,
        };
        assert!(
            matches!(s.insert_cert(&cert("voip")), Err(StoreError::CertExists(_))),
            "a certificate may not take a request's name"
        );
        s.insert_cert(&cert("other")).expect("another name");
        let renamed = StoredRequest {
            name: "other".parse().expect("name"),
            ..request
        };
        assert!(matches!(
            s.insert_request(&renamed),
            Err(StoreError::CertExists(_))
        ));
        let read = s.requests().expect("list");
        assert_eq!(read.len(), 1);
        assert_eq!(
            (read[0].names.clone(), read[0].csr_pem.clone()),
            (vec!["voip.example.test".to_owned()], made.csr_pem)
        );
        assert_eq!(read[0].key.expose_secret(), secret);

        s.attach_request(&cert("voip")).expect("attach");
        assert!(
            s.request(&"voip".parse().expect("name"))
                .expect("read")
                .is_none()
        );
        assert!(
            s.cert(&"voip".parse().expect("name"))
                .expect("read")
                .is_some()
        );
        assert!(matches!(
            s.attach_request(&cert("voip")),
            Err(StoreError::NoSuchRequest(_))
        ));
        assert!(
            !s.delete_request(&"voip".parse().expect("name"))
                .expect("delete")
        );
    }

    #[test]
    fn certificates_keep_their_key_in_a_private_file_and_names_are_unique() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let p = switchboard_pki::testpki::pki();
        let bundle = switchboard_pki::import(
            format!("{}{}", p.leaf.pem(), p.leaf.key_pem()).as_bytes(),
            None,
            None,
        )
        .expect("import");
        let key = bundle.key().expect("key").to_key_pem();
        let secret = key.expose_secret().to_owned();
        let cert = StoredCert {
            name: "voip".parse().expect("name"),
            chain_pem: bundle.chain_pem(),
            key: Some(key),
            info: bundle.info().clone(),
            bootstrap: false,
            created_at: Timestamp::UNIX_EPOCH,
        };
        assert!(
            !format!("{cert:?}").contains(&secret[40..80]),
            "Debug never shows the key"
        );
        {
            let mut s = Store::open_dir(&data).expect("open");
            s.insert_cert(&cert).expect("insert");
            assert!(matches!(
                s.insert_cert(&cert),
                Err(StoreError::CertExists(_))
            ));
            let anchor = StoredAnchor {
                fingerprint: "AB".into(),
                der: p.root.der.to_vec(),
                subject: "CN=Test Root CA".into(),
                added_at: Timestamp::UNIX_EPOCH,
            };
            assert!(s.add_anchor(&anchor).expect("add"));
            assert!(!s.add_anchor(&anchor).expect("again"), "idempotent");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(DB_FILE))
            .expect("db")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut s = Store::open_dir(&data).expect("reopen");
        let back = s.cert(&cert.name).expect("read").expect("present");
        assert_eq!(back.key.expect("key").expose_secret(), secret);
        assert_eq!(back.info, cert.info);
        assert_eq!(s.certs().expect("list").len(), 1);
        assert_eq!(s.anchors().expect("anchors").len(), 1);
        assert!(s.delete_cert(&cert.name).expect("delete"));
        assert!(!s.delete_cert(&cert.name).expect("delete again"));
    }

    #[test]
    fn a_corrupt_row_is_reported_not_guessed() {
        let mut s = Store::open_in_memory().expect("open");
        s.conn
            .execute(
                "INSERT INTO candidate (id, body, updated_at) VALUES (1, '{\"x\":1}', '')",
                [],
            )
            .expect("insert");
        let err = s.candidate().expect_err("corrupt");
        assert!(
            err.to_string()
                .contains("corrupt record in the store (candidate)"),
            "{err}"
        );
        let _ = &mut s;
    }

    #[test]
    fn a_v3_store_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut c = Candidate::default();
        c.set_port(ServiceId::Web, "8444".parse().expect("port"));
        {
            // A store as the previous release left it: three migrations.
            let conn = Connection::open(&path).expect("raw");
            for (i, sql) in MIGRATIONS[..3].iter().enumerate() {
                conn.execute_batch(sql).expect("migration");
                conn.pragma_update(None, "user_version", (i + 1) as i64)
                    .expect("version");
            }
            conn.execute(
                "INSERT INTO candidate (id, body, updated_at) VALUES (1, ?1, ?2)",
                params![to_json(&c), Timestamp::UNIX_EPOCH.to_string()],
            )
            .expect("candidate");
        }
        let mut s = Store::open(&path).expect("open migrates");
        assert_eq!(s.schema_version().expect("v"), MIGRATIONS.len() as i64);
        assert!(
            s.bans().expect("bans").is_empty(),
            "the bans table is there, empty"
        );
        assert!(s.requests().expect("the key requests table").is_empty());
        assert_eq!(s.candidate().expect("read"), Some(c));
        assert!(!s.any_admin().expect("admins"), "no administrator yet");
        assert_eq!(s.admin_hash("admin").expect("read"), None);
        assert!(s.audit(10).expect("audit").is_empty());
        s.set_admin_hash("admin", "$argon2id$v=19$x", Timestamp::UNIX_EPOCH)
            .expect("set");
        drop(s);
        let s = Store::open(&path).expect("reopen");
        assert_eq!(
            s.admin_hash("admin").expect("read").as_deref(),
            Some("$argon2id$v=19$x")
        );
    }

    #[test]
    fn administrators_are_created_then_updated() {
        let mut s = Store::open_in_memory().expect("open");
        let t0 = Timestamp::UNIX_EPOCH;
        s.set_admin_hash("admin", "first", t0).expect("create");
        assert!(s.any_admin().expect("any"));
        s.set_admin_hash("admin", "second", t0).expect("update");
        s.set_admin_hash("ops", "third", t0).expect("another");
        assert_eq!(
            s.admin_hash("admin").expect("read").as_deref(),
            Some("second")
        );
        assert_eq!(s.admin_hash("ops").expect("read").as_deref(), Some("third"));
        assert_eq!(s.admin_hash("nobody").expect("read"), None);
    }

    fn audit_at(s: &mut Store, at: &str, action: &str) {
        s.record_audit(&NewAudit {
            at: at.parse().expect("a time"),
            actor: "admin",
            address: "cli",
            kind: "request",
            action,
            data: "{}",
            outcome: "200",
        })
        .expect("recorded");
    }

    #[test]
    fn a_prune_keeps_the_newest_entries_and_records_itself() {
        let mut s = Store::open_in_memory().expect("store");
        s.set_audit_retention(AuditRetention {
            max_entries: 4,
            max_days: 365,
            prune_every: 1_000,
        });
        for i in 0..10 {
            audit_at(
                &mut s,
                &format!("2026-01-01T00:00:{i:02}Z"),
                &format!("POST /{i}"),
            );
        }
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().expect("a time");
        let pruned = s.prune_audit(now).expect("pruned").expect("something");
        assert_eq!(pruned.entries, 7);
        assert_eq!(pruned.older_than.to_string(), "2026-01-01T00:00:07Z");
        let log = s.audit(100).expect("audit");
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["prune audit log", "POST /9", "POST /8", "POST /7"]
        );
        assert_eq!(log[0].actor, RETENTION_ACTOR);
        assert_eq!(log[0].at, now);
        assert!(
            log[0]
                .outcome
                .starts_with("pruned 7 entries older than 2026-01-01T00:00:07Z"),
            "{}",
            log[0].outcome
        );
        // Nothing to prune: nothing written.
        assert_eq!(s.prune_audit(now).expect("pruned"), None);
        assert_eq!(s.audit(100).expect("audit").len(), 4);
    }

    #[test]
    fn entries_older_than_the_age_limit_are_pruned_and_inserts_prune_every_k() {
        let mut s = Store::open_in_memory().expect("store");
        s.set_audit_retention(AuditRetention {
            max_entries: 100,
            max_days: 30,
            prune_every: 5,
        });
        audit_at(&mut s, "2025-01-01T00:00:00Z", "POST /old");
        audit_at(&mut s, "2025-01-31T12:00:00Z", "POST /kept");
        for _ in 0..2 {
            audit_at(&mut s, "2025-02-01T00:00:00Z", "POST /new");
        }
        assert_eq!(s.audit(100).expect("audit").len(), 4, "not due yet");
        // The fifth insert prunes, at its own time.
        audit_at(&mut s, "2025-02-01T00:00:00Z", "POST /fifth");
        let log = s.audit(100).expect("audit");
        assert_eq!(log.len(), 5, "{log:?}");
        assert_eq!(log[0].action, "prune audit log");
        assert!(
            log[0].outcome.starts_with("pruned 1 entries"),
            "{}",
            log[0].outcome
        );
        assert!(log.iter().all(|e| e.action != "POST /old"));
        assert!(log.iter().any(|e| e.action == "POST /kept"));
    }

    #[test]
    fn the_count_rule_holds_under_a_flood_of_inserts() {
        let mut s = Store::open_in_memory().expect("store");
        s.set_audit_retention(AuditRetention {
            max_entries: 50,
            max_days: 365,
            prune_every: 10,
        });
        for i in 0..1_000 {
            audit_at(&mut s, "2026-01-01T00:00:00Z", &format!("POST /{i}"));
            assert!(s.audit(1_000).expect("audit").len() <= 50 + 10);
        }
        let log = s.audit(1_000).expect("audit");
        assert!(log.iter().any(|e| e.action == "POST /999"));
    }

    #[test]
    fn bans_are_kept_per_address_and_pruned_once_over() {
        let mut s = Store::open_in_memory().expect("open");
        let t = |x: &str| x.parse::<Timestamp>().expect("time");
        let mut ban = BanRecord {
            address: "192.0.2.2".parse().expect("ip"),
            reason: "auth-failures".into(),
            offences: 1,
            banned_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T00:05:00Z"),
            lifted_at: None,
        };
        s.put_ban(&ban).expect("put");
        assert!(ban.active(t("2026-01-01T00:04:59Z")));
        assert!(!ban.active(t("2026-01-01T00:05:00Z")));
        ban.offences = 2;
        s.put_ban(&ban).expect("again");
        assert_eq!(
            s.bans().expect("bans"),
            [ban.clone()],
            "one row per address"
        );
        let v6 = BanRecord {
            address: "2001:db8::2".parse().expect("ip"),
            banned_at: t("2026-01-02T00:00:00Z"),
            expires_at: t("2026-01-02T00:05:00Z"),
            lifted_at: Some(t("2026-01-02T00:01:00Z")),
            ..ban.clone()
        };
        s.put_ban(&v6).expect("put");
        assert_eq!(s.bans().expect("bans")[0], v6, "latest first");
        assert_eq!(s.ban(ban.address).expect("one"), Some(ban.clone()));
        assert_eq!(s.prune_bans(t("2026-01-01T12:00:00Z")).expect("prune"), 1);
        assert_eq!(s.bans().expect("bans"), [v6]);
    }

    #[test]
    fn the_audit_log_is_read_newest_first_and_limited() {
        let mut s = Store::open_in_memory().expect("open");
        for i in 0..5 {
            let action = format!("POST /v1/step/{i}");
            let id = s
                .record_audit(&NewAudit {
                    at: Timestamp::UNIX_EPOCH,
                    actor: "root",
                    address: "unix socket (pid 1)",
                    kind: if i % 2 == 0 {
                        "cert.bind"
                    } else {
                        "account.delete"
                    },
                    action: &action,
                    data: "{\"n\": 1}",
                    outcome: if i == 3 {
                        "409 pending-confirmation"
                    } else {
                        "200"
                    },
                })
                .expect("record");
            assert_eq!(id, i + 1);
        }
        let last = s.audit(3).expect("audit");
        assert_eq!(
            last.iter().map(|r| r.id).collect::<Vec<_>>(),
            [5, 4, 3],
            "newest first"
        );
        assert_eq!(last[1].action, "POST /v1/step/3");
        assert_eq!(last[1].outcome, "409 pending-confirmation");
        assert_eq!(last[2].actor, "root");
        assert_eq!(s.audit(100).expect("all").len(), 5);
        assert!(s.audit(0).expect("none").is_empty());
    }

    #[test]
    fn the_audit_log_is_filtered_by_actor_kind_and_time() {
        let mut s = Store::open_in_memory().expect("store");
        let entries = [
            ("2026-01-01T00:00:00Z", "alice", "cert.bind"),
            ("2026-01-02T00:00:00Z", "bob", "account.delete"),
            ("2026-01-03T00:00:00Z", "system", "revision.expire"),
            ("2026-01-04T00:00:00Z", "alice", "account.delete"),
            ("2026-01-05T00:00:00Z", "alice", "accounts.import"),
        ];
        for (at, actor, kind) in entries {
            s.record_audit(&NewAudit {
                at: at.parse().expect("time"),
                actor,
                address: "console",
                kind,
                action: "something in words",
                data: r#"{"name":"voip2"}"#,
                outcome: "done",
            })
            .expect("record");
        }
        let ids = |f: AuditFilter| -> Vec<u64> {
            s.audit_query(&AuditFilter { limit: 100, ..f })
                .expect("query")
                .iter()
                .map(|a| a.id)
                .collect()
        };
        assert_eq!(
            ids(AuditFilter {
                actor: Some("alice".into()),
                ..Default::default()
            }),
            [5, 4, 1]
        );
        // A family of kinds: `account` is `account.*`, not `accounts.*`.
        assert_eq!(
            ids(AuditFilter {
                kind: Some("account".into()),
                ..Default::default()
            }),
            [4, 2]
        );
        assert_eq!(
            ids(AuditFilter {
                kind: Some("account.delete".into()),
                ..Default::default()
            }),
            [4, 2]
        );
        // `%` and `_` are not wildcards.
        assert!(
            ids(AuditFilter {
                kind: Some("%".into()),
                ..Default::default()
            })
            .is_empty()
        );
        assert!(
            ids(AuditFilter {
                kind: Some("account_delete".into()),
                ..Default::default()
            })
            .is_empty()
        );
        assert_eq!(
            ids(AuditFilter {
                since: Some("2026-01-02T00:00:00Z".parse().expect("t")),
                until: Some("2026-01-04T00:00:00Z".parse().expect("t")),
                ..Default::default()
            }),
            [3, 2]
        );
        assert_eq!(
            ids(AuditFilter {
                actor: Some("alice".into()),
                kind: Some("account".into()),
                ..Default::default()
            }),
            [4]
        );
        let one = s.audit(1).expect("one");
        assert_eq!(one[0].data["name"], "voip2");
        assert_eq!(one[0].kind, "accounts.import");
    }

    #[test]
    fn administrators_have_roles_totp_steps_and_single_use_recovery_codes() {
        let mut s = Store::open_in_memory().expect("store");
        let t = Timestamp::UNIX_EPOCH;
        assert!(s.add_admin("ops", "phc", "operator", t).expect("add"));
        assert!(!s.add_admin("ops", "other", "auditor", t).expect("taken"));
        let ops = s.admin("ops").expect("read").expect("there");
        assert_eq!((ops.role.as_str(), ops.disabled_at), ("operator", None));
        assert!(!format!("{ops:?}").contains("phc"), "no hash in Debug");
        assert!(s.set_admin_disabled("ops", Some(t)).expect("disable"));
        assert_eq!(s.admin("ops").expect("r").expect("t").disabled_at, Some(t));
        assert!(s.set_admin_totp("ops", Some("00ff"), None).expect("totp"));
        assert!(s.use_totp_step("ops", 10).expect("first"));
        assert!(
            !s.use_totp_step("ops", 10).expect("again"),
            "a step is used once"
        );
        assert!(!s.use_totp_step("ops", 9).expect("older"));
        assert!(s.use_totp_step("ops", 11).expect("next"));
        // A new secret forgets the steps of the old one.
        assert!(
            s.set_admin_totp("ops", Some("0011"), None)
                .expect("new secret")
        );
        assert_eq!(s.admin("ops").expect("r").expect("t").totp_last_step, None);
        s.set_recovery_codes("ops", &["h1".into(), "h2".into()])
            .expect("codes");
        assert_eq!(s.recovery_codes_left("ops").expect("left"), 2);
        assert!(s.use_recovery_code("ops", "h1", t).expect("use"));
        assert!(
            !s.use_recovery_code("ops", "h1", t).expect("used"),
            "single use"
        );
        assert!(!s.use_recovery_code("admin", "h2", t).expect("not theirs"));
        assert_eq!(s.recovery_codes_left("ops").expect("left"), 1);
        s.set_totp_required("operator", true).expect("policy");
        assert_eq!(s.totp_required_roles().expect("roles"), ["operator"]);
        assert!(s.delete_admin("ops").expect("delete"));
        assert_eq!(s.recovery_codes_left("ops").expect("left"), 0);
        assert!(!s.delete_admin("ops").expect("gone"));
    }
}
