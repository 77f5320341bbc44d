//! The API's contract: the request documents the server deserializes and
//! the CLI sends (the same structs), the query strings, and the answers
//! that are not an engine view. The other answers are the engine's
//! [`views`](switchboard_engine::views) (and the store's revisions and
//! audit rows), decoded by the CLI as they are.
//!
//! Values arrive as text and are parsed into domain values by the
//! handlers (`input.rs`), so that a bad value gets its own error code
//! (`unknown-nic`, `invalid-comment`...) rather than `malformed-json`.
//! Every request document refuses unknown fields. Each type describes
//! itself for the OpenAPI document ([`openapi`](crate::openapi)).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/matrix/allow` and `/v1/matrix/deny`: one cell of the matrix.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CellRequest {
    #[schema(value_type = switchboard_domain::ServiceId)]
    pub service: String,
    #[schema(value_type = switchboard_domain::NicName)]
    pub nic: String,
}

/// `POST /v1/preset/production`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetRequest {
    /// The NIC of the internal network.
    #[schema(value_type = switchboard_domain::NicName)]
    pub internal: String,
    /// The NIC facing the Internet.
    #[schema(value_type = switchboard_domain::NicName)]
    pub external: String,
}

/// `POST /v1/ports`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    #[schema(value_type = switchboard_domain::ServiceId)]
    pub service: String,
    #[schema(value_type = switchboard_domain::PortRange)]
    pub ports: String,
}

/// `GET /v1/diff?from=&to=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// A revision; absent: the applied one.
    #[param(minimum = 1)]
    pub from: Option<u64>,
    /// A revision; absent: the candidate.
    #[param(minimum = 1)]
    pub to: Option<u64>,
}

/// `POST /v1/update`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// One line, recorded with the revision (no control character).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub comment: String,
    /// Seconds within which `POST /v1/confirm` must be called, or the
    /// appliance reverts (1 to 3600).
    #[schema(minimum = 1, maximum = 3600)]
    pub confirm_within: Option<u64>,
}

/// `POST /v1/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision whose configuration is applied again.
    #[schema(minimum = 1)]
    pub revision: u64,
    /// One line, recorded with the revision; blank: `rollback to revision N`.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub comment: String,
    /// As for an Update.
    #[schema(minimum = 1, maximum = 3600)]
    pub confirm_within: Option<u64>,
}

/// `POST /v1/certs`: a certificate to import, files base64-encoded. Its
/// `Debug` never shows the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportCertRequest {
    /// The name to store it under.
    #[schema(value_type = String, max_length = 64)]
    pub name: String,
    /// The certificate file (PEM, DER or PKCS#12), base64.
    #[schema(format = Byte)]
    pub bundle: String,
    /// The key file, base64, when separate.
    #[schema(format = Byte)]
    pub key: Option<String>,
    /// The PKCS#12 password or the key's passphrase. Never logged.
    #[schema(format = Password)]
    pub password: Option<String>,
}

impl fmt::Debug for ImportCertRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportCertRequest")
            .field("name", &self.name)
            .field("bundle", &format_args!("{} bytes", self.bundle.len()))
            .field("key", &self.key.as_ref().map(|_| "..."))
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// Obtain a certificate from an ACME CA (RFC 8555): the key is made on the
/// appliance, control of each name proven by tls-alpn-01 on the web
/// services' listener.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeRequest {
    /// The name the certificate will have (a certificate name).
    #[schema(value_type = String, max_length = 64)]
    pub name: String,
    /// The DNS names to certify, 1 to 10; each must resolve (for the CA)
    /// to an address where the web services listen.
    pub domains: Vec<String>,
    /// The CA's directory URL.
    #[schema(example = "https://acme-v02.api.letsencrypt.org/directory")]
    pub directory: String,
    /// Contact URIs (`mailto:`) for the account, when it is made.
    #[serde(default)]
    pub contact: Vec<String>,
    /// `tls-alpn-01` (default: on the web services' port) or `http-01`
    /// (on the `http` service, which must be open on port 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "tls-alpn-01")]
    pub challenge: Option<String>,
}

/// `POST /v1/cert-requests`: make a key on the appliance and a signing
/// request for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertRequestRequest {
    /// The name the certificate will have (a certificate name).
    #[schema(value_type = String, max_length = 64)]
    pub name: String,
    /// DNS names (`*.` allowed as the first label), in order; the first
    /// name overall is also the subject's common name.
    #[serde(default)]
    pub dns: Vec<String>,
    /// IP addresses.
    #[serde(default)]
    pub ips: Vec<String>,
    /// `ecdsa-p256` (default) or `rsa-3072`.
    #[schema(example = "ecdsa-p256")]
    pub key_type: Option<String>,
}

/// `POST /v1/certs/bind`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindRequest {
    /// A TLS service: `console`, `web` or `sip-tls`.
    #[schema(value_type = switchboard_domain::ServiceId)]
    pub service: String,
    /// A stored certificate's name.
    pub cert: String,
    /// One NIC; absent: the service's default binding.
    #[schema(value_type = Option<switchboard_domain::NicName>)]
    pub nic: Option<String>,
    /// Bind even though the certificate has expired or is not valid yet.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/certs/unbind`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnbindRequest {
    #[schema(value_type = switchboard_domain::ServiceId)]
    pub service: String,
    /// One NIC; absent: the service's default binding.
    #[schema(value_type = Option<switchboard_domain::NicName>)]
    pub nic: Option<String>,
}

/// `POST /v1/cas`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// CA certificates, PEM or DER, base64.
    #[schema(format = Byte)]
    pub certificates: String,
}

/// `POST /v1/nics/settings`: an absent field keeps its value, an empty one
/// clears it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSettingsRequest {
    #[schema(value_type = switchboard_domain::NicName)]
    pub nic: String,
    /// The host name clients use for this NIC. Absent: kept; empty: cleared.
    pub hostname: Option<String>,
    /// The address clients reach it at (behind NAT). Absent: kept; empty: cleared.
    pub public_address: Option<String>,
    /// The DNS servers its clients use, when they differ from the
    /// appliance's (split horizon): 1 to 3 addresses separated by commas.
    /// The padlock check asks them. Absent: kept; empty: cleared.
    #[schema(example = "198.51.100.53, 192.0.2.53")]
    pub resolvers: Option<String>,
}

/// `POST /v1/accounts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    /// E.164 (`+33612345678`).
    pub phone: String,
    /// Absent: made from the next free number.
    pub username: Option<String>,
    /// Display name.
    pub name: Option<String>,
    pub group: Option<String>,
    /// `native` (absent) or `linphone`.
    #[schema(value_type = Option<switchboard_provision::ClientProfile>)]
    pub profile: Option<String>,
}

/// `PATCH /v1/accounts/{username}`: absent fields are kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// E.164.
    pub phone: Option<String>,
    /// An empty string removes the name.
    pub name: Option<String>,
    /// An empty string removes the group.
    pub group: Option<String>,
    #[schema(value_type = Option<switchboard_provision::ClientProfile>)]
    pub profile: Option<String>,
    /// Draw a new SIP password (the phone needs a new activation).
    #[serde(default)]
    pub new_password: bool,
}

/// `POST /v1/accounts/import`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvImportRequest {
    /// The CSV file (`phone,name,group,profile,username`), base64.
    #[schema(format = Byte)]
    pub csv: String,
}

/// `POST /v1/provisioning`: an absent field keeps its value, an empty one
/// clears it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningRequest {
    /// The name phones reach SIP/TLS by. Absent: kept; empty: cleared.
    pub sip_tls_hostname: Option<String>,
    /// `https://HOST[:PORT]`. Absent: kept; empty: cleared.
    #[schema(max_length = 300)]
    pub web_uri: Option<String>,
    /// Platform (`android`, `ios`, `other`) -> app store URL; an empty URL
    /// removes it, a platform not named is kept.
    #[serde(default)]
    pub app_stores: BTreeMap<String, String>,
}

/// `POST /v1/activate` and `POST /v1/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The account's user name.
    pub username: String,
}

/// `GET /v1/search/accounts?q=&state=&sort=&page=&per_page=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountSearchQuery {
    /// Found anywhere in the user name, name, group or phone number,
    /// ignoring case.
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// `no-link`, `link-sent`, `activated` or `registered`; absent: all.
    #[param(value_type = Option<switchboard_engine::views::AccountState>)]
    pub state: Option<String>,
    /// `username` (absent), `name`, `phone` or `group`; `-` before it for
    /// descending.
    pub sort: Option<String>,
    /// From 1.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<u64>,
}

/// `POST /v1/bulk/accounts`: one action on many accounts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// `activate` (send an activation SMS), `revoke`, `delete` or
    /// `set-group`.
    pub action: String,
    /// 1 to 1,000 user names.
    pub usernames: Vec<String>,
    /// For `set-group`: the group; absent or empty takes the accounts out
    /// of any group.
    pub group: Option<String>,
}

/// `GET /v1/audit?limit=&actor=&kind=&since=&until=&format=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries, at most (default 200; up to 100,000 for an export).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<usize>,
    /// Only this actor's entries (`alice`, `root`, `system`, `acme`).
    pub actor: Option<String>,
    /// Only this kind (`cert.bind`) or family of kinds (`cert`).
    pub kind: Option<String>,
    /// Only entries at or after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
    /// `json` (default), `csv` or `jsonl` (JSON Lines), for an export.
    pub format: Option<String>,
}

/// `POST /v1/admins`: a new administrator. Its `Debug` never shows the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdminRequest {
    #[schema(pattern = "^[a-z0-9._-]{1,32}$")]
    pub username: String,
    /// The initial password: 12 to 128 characters. Never logged.
    #[schema(format = Password, min_length = 12, max_length = 128)]
    pub password: String,
    pub role: switchboard_engine::Role,
}

impl fmt::Debug for NewAdminRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAdminRequest")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/admins/{username}`: a change of an administrator (absent keeps).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminChangeRequest {
    pub role: Option<switchboard_engine::Role>,
    pub disabled: Option<bool>,
}

/// `POST /v1/admin/totp-policy`: whether a role must use a second factor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpPolicyRequest {
    pub role: switchboard_engine::Role,
    pub required: bool,
}

/// `POST /v1/me/totp/confirm`: the authenticator's current code.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCodeRequest {
    /// 6 digits.
    pub code: String,
}

impl fmt::Debug for TotpCodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCodeRequest(redacted)")
    }
}

/// `POST /v1/backup`: the passphrase the archive is encrypted to.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// 12 to 256 characters. Never logged.
    #[schema(format = Password, min_length = 12, max_length = 256)]
    pub passphrase: String,
}

impl fmt::Debug for BackupRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupRequest(redacted)")
    }
}

/// `POST /v1/restore`: an archive (base64) and its passphrase.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The age file `switchboard backup` made, base64-encoded.
    pub archive: String,
    #[schema(format = Password)]
    pub passphrase: String,
}

impl fmt::Debug for RestoreRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestoreRequest({} bytes, redacted)", self.archive.len())
    }
}

/// `POST /v1/admin/password`: a change of an administrator's password. Its
/// `Debug` never shows a password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The administrator's user name (created if it does not exist).
    /// Default: over the console, the signed-in administrator; else `admin`.
    #[schema(pattern = "^[a-z0-9._-]{1,32}$")]
    pub username: Option<String>,
    /// The new password: 12 to 128 characters, not only white space. Never logged.
    #[schema(format = Password, min_length = 12, max_length = 128)]
    pub password: String,
    /// The current password: required when the request comes from the
    /// console (HTTPS).
    #[schema(format = Password)]
    pub current_password: Option<String>,
}

impl fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The answer to an edit of the candidate: whether it changed, and its
/// diagnostics after the edit.
pub type Edit = switchboard_engine::views::EditView<()>;

/// The answer of `GET /v1/certs/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertDetail {
    pub cert: switchboard_engine::views::CertView,
    /// The certificate and its chain, PEM (never a key).
    pub chain_pem: String,
}

/// The answer of a deletion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// The name of what was deleted.
    pub deleted: String,
}

/// The answer of `POST /v1/admin/password`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordChanged {
    pub username: String,
    pub changed: bool,
}
