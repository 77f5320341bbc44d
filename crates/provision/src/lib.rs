//! Provisioning, the pure core: how a phone gets its configuration.
//!
//! - [`account`] — the account model ([`Username`], [`PhoneNumber`] in
//!   E.164, [`DisplayName`], [`Group`], [`ClientProfile`], [`Account`]) and
//!   the uniqueness rules ([`Taken`], which also generates numeric user
//!   names).
//! - [`credentials`] — the generated [`SipPassword`], the [`Realm`] and the
//!   [`Ha1`] digest, the only credential kept.
//! - [`settings`] — [`ProvisioningSettings`] (SIP/TLS host name, [`WebUri`])
//!   and [`check_settings`], which finds names the bound certificates do
//!   not cover.
//! - [`import`] — [`import_csv`], the bulk import that takes all of a file
//!   or none of it and reports every bad row.
//! - [`token`] — [`ActivationToken`] and the [`TokenHash`] that is stored.
//! - [`document`](mod@document) — the configuration [`document`](document()) a phone
//!   fetches, native JSON or Linphone XML.
//! - [`sms`] — the [`ActivationLink`], the [`activation_sms`] text and GSM-7
//!   / UCS-2 length counting ([`sms_length`]).
//! - [`install`] — the app store for a `User-Agent` ([`install_link`]).
//!
//! **Boundary.** Pure data and pure functions, like `switchboard-domain`:
//! no I/O, no clock (times are arguments), no randomness (passwords and
//! tokens are made from bytes the caller draws from a secure generator),
//! no async, no HTTP. Secrets ([`SipPassword`], [`Ha1`], [`ActivationToken`],
//! [`ActivationLink`], [`SmsText`], [`Document`]) redact themselves in
//! `Debug` (and `Display` where they have one); reaching the secret takes a
//! call named `expose*`. [`Account`] is not `Serialize`, so it cannot be
//! sent out with its digest by accident: the API shows [`AccountView`].
//!
//! **Limitations.** Digest authentication is MD5 only (what Kamailio's
//! `auth_db` and every SIP client support; SHA-256 digests, RFC 8760, would
//! need a second stored digest). Display names are not Unicode-normalized.
//! The Linphone document cannot carry a certificate pin, so Linphone must
//! trust the CA of the SIP/TLS certificate by itself. Whether the SIP/TLS
//! host name and web URI still lead to a NIC where `sip-tls` and `web` are
//! enabled needs DNS and the matrix: the engine's check, not this crate's.

pub mod account;
pub mod credentials;
pub mod document;
pub mod import;
pub mod install;
pub mod settings;
pub mod sms;
mod text;
pub mod token;

pub use account::{
    Account, AccountDraft, AccountView, ClientProfile, Conflict, DisplayName,
    FIRST_NUMERIC_USERNAME, FORMULA_PREFIXES, Group, InvalidDisplayName, InvalidGroup,
    InvalidPhoneNumber, InvalidUsername, NewAccount, PhoneNumber, Taken, UnknownProfile, Username,
};
pub use credentials::{Ha1, InvalidHa1, InvalidRealm, Realm, SipPassword};
pub use document::{
    CertPin, Document, DocumentError, InvalidCertPin, LINPHONE_MEDIA_TYPE, NATIVE_MEDIA_TYPE,
    REG_EXPIRES, SrtpPolicy, document,
};
pub use import::{CSV_COLUMNS, CsvProblem, CsvRejected, MAX_CSV_BYTES, MAX_CSV_ROWS, import_csv};
pub use install::{InvalidStoreUrl, Platform, StoreUrl, install_link, platform};
pub use settings::{InvalidWebUri, ProvisioningSettings, WebUri, check_settings};
pub use sms::{
    ActivationLink, SmsEncoding, SmsLength, SmsText, activation_link, activation_sms, sms_length,
};
pub use token::{ActivationToken, DEFAULT_TOKEN_TTL, InvalidToken, InvalidTokenHash, TokenHash};
