//! The console's administrators and the audit log.
//!
//! - Passwords are kept as argon2id PHC strings (OWASP parameters: 19 MiB,
//!   2 passes, 1 lane), never in clear and never logged. Hashing runs in
//!   the engine's bounded CPU pool ([`crate::cpu`]), never on an async
//!   worker and never while the store's lock is held.
//! - An unknown administrator is checked against a dummy hash with the same
//!   parameters, so a wrong name costs what a wrong password costs.
//! - At first start [`Engine::ensure_admin`] creates `admin` with a
//!   generated password (120 bits from the system's random number
//!   generator, in an alphabet without look-alikes) for the daemon to show
//!   once.
//! - Roles ([`Role`]): `administrator` (everything), `operator` (accounts
//!   and activations), `auditor` (reads). What each may do is one table,
//!   [`Role::allows`]; the web crate classifies each route into an
//!   [`Area`] in one place and asks it.
//! - The last enabled administrator of role `administrator` cannot be
//!   disabled, removed or given another role: nobody is locked out.
//! - Disabling, removing or changing the role of an administrator moves
//!   its generation on ([`Engine::password_generation`]): every session of
//!   it ends at its next request.
//! - Second factor: TOTP ([`crate::totp`]), enrolled with a confirmation
//!   code, a step's code used once; ten recovery codes, shown once, stored
//!   as SHA-256, each used once. A role may require it
//!   ([`Engine::set_totp_required`]): its administrators without one sign in
//!   only to enrol.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_store::AdminRecord;
use tracing::info;
use zeroize::Zeroizing;

use crate::accounts::random;
use crate::audit::Entry;
use crate::cpu::CpuPool;
use crate::{Engine, EngineError, InputError, Origin, Result, totp};

/// The administrator created at first start.
pub const DEFAULT_ADMIN: &str = "admin";
/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// The longest administrator name.
pub const MAX_ADMIN_NAME: usize = 32;

/// argon2id, OWASP's parameters: m = 19456 KiB, t = 2, p = 1.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// A hash no password has, with the parameters of real ones: what an
/// unknown administrator's password is checked against.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3dpdGNoYm9hcmQtZHVtbXk$2G8wHtBBqh0p4VQyl0yfPOKAfh6m7TJvCfJ3FArHGkM";

/// Generated passwords: no 0/O, 1/l, so they can be read out and typed.
/// 32 symbols: each is 5 bits, taken without bias.
const ALPHABET: &[u8; 32] = b"23456789abcdefghijkmnpqrstuvwxyz";
/// 24 symbols: 120 bits, written in groups of 4 (`xxxx-xxxx-...`).
const GENERATED_SYMBOLS: usize = 24;

fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| EngineError::System(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of `password`, with a fresh 16-byte salt.
async fn hash(cpu: &CpuPool, password: &str) -> Result<String> {
    let salt: [u8; 16] = random()?;
    let password = Zeroizing::new(password.to_owned());
    cpu.run("password hashing", move || {
        hasher()?
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| EngineError::System(format!("password hashing failed: {e}")))
    })
    .await?
}

/// Whether `password` matches the PHC string `phc`.
async fn matches(cpu: &CpuPool, phc: String, password: &str) -> Result<bool> {
    let password = Zeroizing::new(password.to_owned());
    cpu.run("password check", move || {
        match hasher()?.verify_password(password.as_bytes(), phc.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(EngineError::System(format!(
                "a stored administrator password hash is unreadable: {e}"
            ))),
        }
    })
    .await?
}

/// A valid administrator name: 1 to 32 characters of `[a-z0-9._-]`.
pub fn admin_name(username: &str) -> Result<&str> {
    let ok = (1..=MAX_ADMIN_NAME).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(username)
    } else {
        Err(InputError::AdminName(username.chars().take(64).collect()).into())
    }
}

/// The password policy: 12 to 128 characters, not only white space.
pub fn check_password_policy(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(InputError::PasswordTooShort(chars).into());
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(InputError::PasswordTooLong(chars).into());
    }
    if password.chars().all(char::is_whitespace) {
        return Err(InputError::PasswordBlank.into());
    }
    Ok(())
}

/// A new password: 24 symbols of [`ALPHABET`] (120 bits from the system's
/// random number generator), in groups of 4 joined by `-`.
fn generate_password() -> Result<String> {
    let bytes: [u8; GENERATED_SYMBOLS] = random()?;
    let mut out = String::with_capacity(GENERATED_SYMBOLS + GENERATED_SYMBOLS / 4);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(out)
}

/// What an administrator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Everything.
    Administrator,
    /// Accounts and their activation only.
    Operator,
    /// Reads only (not the backup, which holds every secret).
    Auditor,
}

/// What a route touches, for the role table ([`Role::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    /// Sign-in and out, the signed-in administrator's own password and
    /// second factor: every role.
    Own,
    /// Accounts, activation links, SMS: administrators and operators.
    Accounts,
    /// The configuration, certificates, revisions, bans, status, the audit
    /// log: read by auditors, changed by administrators.
    Config,
    /// Administrators and their roles: read by auditors, changed by
    /// administrators.
    Admins,
    /// The backup (every secret) and its restore: administrators only.
    Backup,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Administrator, Role::Operator, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// The role table: whether this role may read (`write == false`) or
    /// change `area`.
    pub fn allows(self, area: Area, write: bool) -> bool {
        match (self, area) {
            (_, Area::Own) | (Role::Administrator, _) => true,
            (Role::Operator, Area::Accounts) => true,
            (Role::Operator, _) => false,
            (Role::Auditor, Area::Backup) => false,
            (Role::Auditor, _) => !write,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| InputError::Role(s.chars().take(64).collect()).into())
    }
}

/// An administrator, as the API and the console show it (never its hash,
/// secret or codes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminView {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    /// Signs in with a TOTP code.
    pub totp: bool,
    /// Unused recovery codes.
    pub recovery_codes: u64,
    /// Its role requires a second factor.
    pub totp_required: bool,
}

/// A TOTP enrolment begun: the secret to give the authenticator app, once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// Base32, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/...`, for its QR code.
    pub uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(redacted)")
    }
}

/// Recovery codes, shown once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes({} redacted)", self.codes.len())
    }
}

/// What a sign-in found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// Wrong name, password or code (or a disabled administrator): one answer.
    Refused,
    /// Right; `must_enrol`: the role requires a second factor this
    /// administrator has not enrolled, so the session may only enrol.
    Granted { role: Role, must_enrol: bool },
}

/// How many recovery codes an enrolment gives.
pub const RECOVERY_CODES: usize = 10;
/// Symbols of a recovery code (50 bits), written `xxxxx-xxxxx`.
const RECOVERY_SYMBOLS: usize = 10;

fn recovery_code() -> Result<String> {
    let bytes: [u8; RECOVERY_SYMBOLS] = random()?;
    let mut out = String::with_capacity(RECOVERY_SYMBOLS + 1);
    for (i, b) in bytes.iter().enumerate() {
        if i == RECOVERY_SYMBOLS / 2 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(out)
}

/// The stored form of a recovery code: SHA-256 (hex) of its symbols, lower
/// case, without the dash or blanks (50 random bits: no slow hash needed
/// against a table, and the store is root's).
fn recovery_hash(code: &str) -> String {
    let canonical: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(crate) fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    u64::try_from(Timestamp::now().as_second()).unwrap_or(0)
}

fn role_of(a: &AdminRecord) -> Role {
    // A role this version does not know reads as the least one.
    a.role.parse().unwrap_or(Role::Auditor)
}

impl Engine {
    /// On first start (no administrator yet): create [`DEFAULT_ADMIN`] with a
    /// generated password and return it, for the daemon to show once.
    /// Otherwise `None`.
    pub async fn ensure_admin(&self) -> Result<Option<String>> {
        if self.store.lock().await.any_admin()? {
            return Ok(None);
        }
        let password = generate_password()?;
        let phc = hash(&self.cpu, &password).await?;
        let mut store = self.store.lock().await;
        if store.any_admin()? {
            return Ok(None);
        }
        store.set_admin_hash(DEFAULT_ADMIN, &phc, Timestamp::now())?;
        info!(admin = DEFAULT_ADMIN, "first start: administrator created");
        Ok(Some(password))
    }

    /// Whether `password` is `username`'s. An unknown administrator takes
    /// as long as a wrong password and gives `false`.
    /// A disabled administrator's password is never right.
    pub async fn verify_password(&self, username: &str, password: &str) -> Result<bool> {
        let stored = self
            .store
            .lock()
            .await
            .admin(username)?
            .filter(|a| a.disabled_at.is_none())
            .map(|a| a.password_hash);
        let known = stored.is_some();
        let ok = matches(
            &self.cpu,
            stored.unwrap_or_else(|| DUMMY_HASH.to_owned()),
            password,
        )
        .await?;
        Ok(known && ok)
    }

    /// Set `username`'s password (creating the administrator if needed),
    /// after checking the name and the password policy. The password is
    /// never logged.
    pub async fn set_admin_password(
        &self,
        origin: &Origin,
        username: &str,
        password: &str,
    ) -> Result<()> {
        let username = admin_name(username)?;
        check_password_policy(password)?;
        let phc = hash(&self.cpu, password).await?;
        let mut store = self.store.lock().await;
        store.set_admin_hash(username, &phc, Timestamp::now())?;
        crate::audit::write(
            &mut store,
            origin,
            &Entry::new(
                "admin.password",
                format!("password of administrator {username} changed"),
                json!({ "admin": username }),
            ),
            "done",
        )?;
        drop(store);
        self.end_sessions_of(username);
        info!(admin = username, actor = %origin.actor, from = %origin.address, "administrator password changed");
        Ok(())
    }

    /// Every session of `username` ends at its next request.
    pub(crate) fn end_sessions_of(&self, username: &str) {
        *self
            .admin_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(username.to_owned())
            .or_default() += 1;
    }

    /// Check a sign-in from `from` (its address is recorded when a
    /// recovery code is used): password, then (if enrolled) the TOTP code
    /// or a recovery code. A code is consumed only when the password is right.
    pub async fn sign_in(
        &self,
        from: &Origin,
        username: &str,
        password: &str,
        code: &str,
    ) -> Result<SignIn> {
        if !self.verify_password(username, password).await? {
            return Ok(SignIn::Refused);
        }
        let mut store = self.store.lock().await;
        let Some(admin) = store.admin(username)? else {
            return Ok(SignIn::Refused);
        };
        let role = role_of(&admin);
        let required = store
            .totp_required_roles()?
            .iter()
            .any(|r| r == role.as_str());
        let Some(secret) = admin.totp_secret.as_deref() else {
            return Ok(SignIn::Granted {
                role,
                must_enrol: required,
            });
        };
        let secret = hex_decode(secret)
            .ok_or_else(|| EngineError::System("a stored TOTP secret is unreadable".into()))?;
        let code = code.trim();
        let by_totp = match totp::matching_step(&secret, code, unix_now()) {
            Some(step) => store.use_totp_step(username, step)?,
            None => false,
        };
        let ok = by_totp
            || (code.len() >= RECOVERY_SYMBOLS
                && store.use_recovery_code(username, &recovery_hash(code), Timestamp::now())?);
        if ok && !by_totp {
            let left = store.recovery_codes_left(username)?;
            crate::audit::write(
                &mut store,
                &Origin {
                    actor: username.to_owned(),
                    ..from.clone()
                },
                &Entry::new(
                    "admin.recovery-code",
                    format!(
                        "administrator {username} signed in with a recovery code ({left} left)"
                    ),
                    json!({ "admin": username, "left": left }),
                ),
                "done",
            )?;
        }
        Ok(if ok {
            SignIn::Granted {
                role,
                must_enrol: false,
            }
        } else {
            SignIn::Refused
        })
    }

    /// `username`'s role, if it exists and is enabled.
    pub async fn admin_role(&self, username: &str) -> Result<Option<Role>> {
        Ok(self
            .store
            .lock()
            .await
            .admin(username)?
            .filter(|a| a.disabled_at.is_none())
            .map(|a| role_of(&a)))
    }

    /// `username`'s role and whether it must still enrol a second factor,
    /// if it exists and is enabled: what every console request checks.
    pub async fn admin_state(&self, username: &str) -> Result<Option<(Role, bool)>> {
        let store = self.store.lock().await;
        let Some(a) = store.admin(username)?.filter(|a| a.disabled_at.is_none()) else {
            return Ok(None);
        };
        let role = role_of(&a);
        let must_enrol = a.totp_secret.is_none()
            && store
                .totp_required_roles()?
                .iter()
                .any(|r| r == role.as_str());
        Ok(Some((role, must_enrol)))
    }

    /// Whether `username` must still enrol a second factor (its role
    /// requires one it does not have).
    pub async fn must_enrol(&self, username: &str) -> Result<bool> {
        let store = self.store.lock().await;
        let Some(a) = store.admin(username)? else {
            return Ok(false);
        };
        Ok(a.totp_secret.is_none()
            && store
                .totp_required_roles()?
                .iter()
                .any(|r| r == role_of(&a).as_str()))
    }

    /// Every administrator.
    pub async fn admins(&self) -> Result<Vec<AdminView>> {
        let store = self.store.lock().await;
        let required = store.totp_required_roles()?;
        store
            .admins()?
            .into_iter()
            .map(|a| {
                let role = role_of(&a);
                Ok(AdminView {
                    recovery_codes: store.recovery_codes_left(&a.username)?,
                    totp: a.totp_secret.is_some(),
                    disabled: a.disabled_at.is_some(),
                    totp_required: required.iter().any(|r| r == role.as_str()),
                    role,
                    username: a.username,
                })
            })
            .collect()
    }

    /// Add an administrator with `role` and an initial password.
    pub async fn add_admin(&self, username: &str, password: &str, role: Role) -> Result<AdminView> {
        let username = admin_name(username)?;
        check_password_policy(password)?;
        let phc = hash(&self.cpu, password).await?;
        let mut store = self.store.lock().await;
        if !store.add_admin(username, &phc, role.as_str(), Timestamp::now())? {
            return Err(EngineError::Refused {
                code: "admin-exists",
                message: format!("an administrator named {username} already exists"),
                hint: "choose another name, or change that administrator's role",
            });
        }
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.add",
                format!("administrator {username} added with role {role}"),
                json!({ "admin": username, "role": role }),
            ),
            "done",
        );
        drop(store);
        self.end_sessions_of(username);
        self.admin_view(username).await
    }

    async fn admin_view(&self, username: &str) -> Result<AdminView> {
        self.admins()
            .await?
            .into_iter()
            .find(|a| a.username == username)
            .ok_or_else(|| EngineError::NoSuchAdmin(username.to_owned()))
    }

    /// Refuse a change that would leave no enabled administrator of role
    /// `administrator`: `username` is about to lose it.
    fn keeps_an_administrator(admins: &[AdminRecord], username: &str) -> Result<()> {
        let others = admins.iter().any(|a| {
            a.username != username && a.disabled_at.is_none() && role_of(a) == Role::Administrator
        });
        let target_counts = admins.iter().any(|a| {
            a.username == username && a.disabled_at.is_none() && role_of(a) == Role::Administrator
        });
        if target_counts && !others {
            return Err(EngineError::Refused {
                code: "last-administrator",
                message: format!(
                    "{username} is the last enabled administrator with the administrator role"
                ),
                hint: "add or enable another administrator with the administrator role first",
            });
        }
        Ok(())
    }

    /// Change an administrator's role (not the last administrator's).
    pub async fn set_admin_role(&self, username: &str, role: Role) -> Result<AdminView> {
        let mut store = self.store.lock().await;
        let admins = store.admins()?;
        let Some(before) = admins.iter().find(|a| a.username == username) else {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        };
        if role != Role::Administrator {
            Self::keeps_an_administrator(&admins, username)?;
        }
        let from = role_of(before);
        store.set_admin_role(username, role.as_str())?;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.role",
                format!("administrator {username} given role {role} (was {from})"),
                json!({ "admin": username, "role": role, "was": from }),
            ),
            "done",
        );
        drop(store);
        self.end_sessions_of(username);
        self.admin_view(username).await
    }

    /// Disable (`true`) or enable an administrator; disabling ends its
    /// sessions. The last administrator cannot be disabled.
    pub async fn set_admin_disabled(&self, username: &str, disabled: bool) -> Result<AdminView> {
        let mut store = self.store.lock().await;
        let admins = store.admins()?;
        if !admins.iter().any(|a| a.username == username) {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        }
        if disabled {
            Self::keeps_an_administrator(&admins, username)?;
        }
        store.set_admin_disabled(username, disabled.then(Timestamp::now))?;
        let (kind, words) = if disabled {
            (
                "admin.disable",
                format!("administrator {username} disabled"),
            )
        } else {
            ("admin.enable", format!("administrator {username} enabled"))
        };
        crate::audit::record_in(
            &mut store,
            &Entry::new(kind, words, json!({ "admin": username })),
            "done",
        );
        drop(store);
        self.end_sessions_of(username);
        self.admin_view(username).await
    }

    /// Remove an administrator (not the last administrator); its sessions end.
    pub async fn remove_admin(&self, username: &str) -> Result<()> {
        let mut store = self.store.lock().await;
        let admins = store.admins()?;
        if !admins.iter().any(|a| a.username == username) {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        }
        Self::keeps_an_administrator(&admins, username)?;
        store.delete_admin(username)?;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.remove",
                format!("administrator {username} removed"),
                json!({ "admin": username }),
            ),
            "done",
        );
        drop(store);
        self.end_sessions_of(username);
        Ok(())
    }

    /// Whether the administrators of `role` must sign in with a second factor.
    pub async fn set_totp_required(&self, role: Role, required: bool) -> Result<()> {
        let mut store = self.store.lock().await;
        store.set_totp_required(role.as_str(), required)?;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.totp-policy",
                format!(
                    "a second factor is {} for role {role}",
                    if required { "required" } else { "optional" }
                ),
                json!({ "role": role, "required": required }),
            ),
            "done",
        );
        Ok(())
    }

    /// The roles that must sign in with a second factor.
    pub async fn totp_required_roles(&self) -> Result<Vec<Role>> {
        Ok(self
            .store
            .lock()
            .await
            .totp_required_roles()?
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect())
    }

    /// Begin `username`'s TOTP enrolment: a new secret, kept aside until a
    /// code of it confirms it ([`Engine::confirm_totp`]); the one in use
    /// (if any) stays until then.
    pub async fn begin_totp(&self, username: &str) -> Result<TotpEnrolment> {
        let secret: [u8; totp::SECRET_BYTES] = random()?;
        let mut store = self.store.lock().await;
        let Some(a) = store.admin(username)? else {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        };
        store.set_admin_totp(
            username,
            a.totp_secret.as_deref(),
            Some(&hex_encode(&secret)),
        )?;
        Ok(TotpEnrolment {
            secret: totp::base32(&secret),
            uri: totp::otpauth_uri("switchboard", username, &secret),
        })
    }

    /// Confirm the enrolment begun with a code of the new secret: it
    /// becomes the one in use, and ten new recovery codes replace the old
    /// ones (shown once, stored hashed).
    pub async fn confirm_totp(&self, username: &str, code: &str) -> Result<RecoveryCodes> {
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| recovery_code())
            .collect::<Result<_>>()?;
        let mut store = self.store.lock().await;
        let Some(a) = store.admin(username)? else {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        };
        let pending =
            a.totp_pending
                .as_deref()
                .and_then(hex_decode)
                .ok_or(EngineError::Refused {
                    code: "totp-not-begun",
                    message: "no second factor is being enrolled".into(),
                    hint: "begin the enrolment first (a new secret and its QR code)",
                })?;
        let Some(step) = totp::matching_step(&pending, code, unix_now()) else {
            return Err(EngineError::Refused {
                code: "totp-wrong-code",
                message: "the code is not the authenticator's current one".into(),
                hint: "type the 6 digits the app shows now; check the phone's clock",
            });
        };
        store.set_admin_totp(username, Some(&hex_encode(&pending)), None)?;
        // The confirming code is used.
        store.use_totp_step(username, step)?;
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        store.set_recovery_codes(username, &hashes)?;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.totp",
                format!(
                    "administrator {username} enrolled a second factor (TOTP) and {RECOVERY_CODES} recovery codes"
                ),
                json!({ "admin": username }),
            ),
            "done",
        );
        Ok(RecoveryCodes { codes })
    }

    /// Remove `username`'s second factor and recovery codes.
    pub async fn remove_totp(&self, username: &str) -> Result<()> {
        let mut store = self.store.lock().await;
        if store.admin(username)?.is_none() {
            return Err(EngineError::NoSuchAdmin(username.to_owned()));
        }
        store.set_admin_totp(username, None, None)?;
        store.set_recovery_codes(username, &[])?;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "admin.totp-remove",
                format!("second factor of administrator {username} removed"),
                json!({ "admin": username }),
            ),
            "done",
        );
        Ok(())
    }

    /// How many times `username`'s password changed since the daemon
    /// started: a console session remembers it at sign-in and ends when it
    /// moves on (a leaked password, once changed, opens nothing more).
    pub fn password_generation(&self, username: &str) -> u64 {
        self.admin_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(username)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn engine() -> Engine {
        Engine::in_memory().expect("engine")
    }

    fn root() -> Origin {
        Origin {
            actor: "root".into(),
            address: "unix socket (pid 1)".into(),
            arrival: None,
        }
    }

    fn code(r: Result<()>) -> &'static str {
        r.expect_err("refused").code()
    }

    #[tokio::test]
    async fn a_password_set_verifies_and_a_wrong_one_does_not() {
        let e = engine();
        e.set_admin_password(&root(), "admin", "correct horse battery")
            .await
            .expect("set");
        assert!(
            e.verify_password("admin", "correct horse battery")
                .await
                .expect("verify")
        );
        assert!(
            !e.verify_password("admin", "correct horse batterY")
                .await
                .expect("verify")
        );
        assert!(!e.verify_password("admin", "").await.expect("verify"));
        let phc = e
            .store
            .lock()
            .await
            .admin_hash("admin")
            .expect("read")
            .expect("stored");
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id with OWASP parameters: {phc}"
        );
        assert!(!phc.contains("horse"));
        // A new password replaces the old one.
        e.set_admin_password(&root(), "admin", "another long password")
            .await
            .expect("change");
        assert!(
            !e.verify_password("admin", "correct horse battery")
                .await
                .expect("verify")
        );
        assert!(
            e.verify_password("admin", "another long password")
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn an_unknown_administrator_is_checked_against_the_dummy_hash() {
        let e = engine();
        assert!(
            !e.verify_password("nobody", "correct horse battery")
                .await
                .expect("verify")
        );
        assert!(!e.verify_password("", "").await.expect("verify"));
        // The dummy hash parses, and costs what a real one costs.
        let dummy = argon2::password_hash::phc::PasswordHash::new(DUMMY_HASH).expect("PHC");
        let real = hash(e.cpu(), "correct horse battery").await.expect("hash");
        let real = argon2::password_hash::phc::PasswordHash::new(&real).expect("PHC");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(
            !matches(e.cpu(), DUMMY_HASH.into(), "")
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn the_password_policy_and_names_are_enforced() {
        let e = engine();
        let set = |u: &'static str, p: String| {
            let e = &e;
            async move { e.set_admin_password(&root(), u, &p).await }
        };
        assert_eq!(
            code(set("admin", "short".into()).await),
            "password-too-short"
        );
        assert_eq!(
            code(set("admin", "x".repeat(11)).await),
            "password-too-short"
        );
        // Characters are counted, not bytes: 12 characters of 2 bytes pass.
        set("admin", "é".repeat(12)).await.expect("12 characters");
        assert_eq!(
            code(set("admin", "x".repeat(129)).await),
            "password-too-long"
        );
        set("admin", "x".repeat(128)).await.expect("128 characters");
        assert_eq!(code(set("admin", " \t".repeat(8)).await), "password-blank");
        for bad in ["", "Admin", "ad min", "root;", &"a".repeat(33)] {
            let err = e
                .set_admin_password(&root(), bad, "correct horse battery")
                .await
                .expect_err(bad);
            assert_eq!(err.code(), "invalid-admin-name", "{bad:?}");
        }
        e.set_admin_password(&root(), "ops.team-2_b", "correct horse battery")
            .await
            .expect("a valid name");
        // Messages count characters, never show the password.
        let err = e
            .set_admin_password(&root(), "admin", "hunter2")
            .await
            .expect_err("short");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("7 character"), "{err}");
        assert!(err.hint().contains("12 to 128"), "{}", err.hint());
    }

    #[tokio::test]
    async fn ensure_admin_creates_admin_once() {
        let e = engine();
        let pw = e.ensure_admin().await.expect("first").expect("created");
        assert_eq!(pw.chars().count(), 29, "{pw}");
        let symbols: String = pw.chars().filter(|c| *c != '-').collect();
        assert_eq!(symbols.len(), GENERATED_SYMBOLS);
        assert!(
            symbols.bytes().all(|b| ALPHABET.contains(&b)),
            "unambiguous alphabet: {pw}"
        );
        check_password_policy(&pw).expect("meets the policy");
        assert!(e.verify_password(DEFAULT_ADMIN, &pw).await.expect("verify"));
        assert_eq!(e.ensure_admin().await.expect("second"), None);
        // A second engine on another store gets another password.
        let other = engine().ensure_admin().await.expect("other").expect("new");
        assert_ne!(pw, other);
    }

    #[tokio::test]
    async fn ensure_admin_keeps_an_existing_administrator() {
        let e = engine();
        e.set_admin_password(&root(), "ops", "correct horse battery")
            .await
            .expect("set");
        assert_eq!(e.ensure_admin().await.expect("ensure"), None);
        assert_eq!(
            e.store.lock().await.admin_hash("admin").expect("read"),
            None
        );
    }

    #[test]
    fn generated_passwords_use_every_symbol_of_the_alphabet() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            seen.extend(generate_password().expect("generate").bytes());
        }
        seen.remove(&b'-');
        assert_eq!(seen.len(), ALPHABET.len(), "no symbol is left out");
    }

    #[test]
    fn the_role_table() {
        use Area::*;
        let table = [
            // (role, area, read, write)
            (Role::Administrator, Own, true, true),
            (Role::Administrator, Accounts, true, true),
            (Role::Administrator, Config, true, true),
            (Role::Administrator, Admins, true, true),
            (Role::Administrator, Backup, true, true),
            (Role::Operator, Own, true, true),
            (Role::Operator, Accounts, true, true),
            (Role::Operator, Config, false, false),
            (Role::Operator, Admins, false, false),
            (Role::Operator, Backup, false, false),
            (Role::Auditor, Own, true, true),
            (Role::Auditor, Accounts, true, false),
            (Role::Auditor, Config, true, false),
            (Role::Auditor, Admins, true, false),
            (Role::Auditor, Backup, false, false),
        ];
        for (role, area, read, write) in table {
            assert_eq!(role.allows(area, false), read, "{role} reads {area:?}");
            assert_eq!(role.allows(area, true), write, "{role} changes {area:?}");
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().expect("round trip"), r);
        }
        assert_eq!(
            "root".parse::<Role>().expect_err("unknown").code(),
            "invalid-role"
        );
    }

    async fn with_two(e: &Engine) {
        e.set_admin_password(&root(), "admin", "correct horse battery")
            .await
            .expect("admin");
        e.add_admin("ops", "operator password", Role::Operator)
            .await
            .expect("ops");
    }

    #[tokio::test]
    async fn the_last_administrator_cannot_be_disabled_removed_or_demoted() {
        let e = engine();
        with_two(&e).await;
        let code = |r: Result<AdminView>| r.expect_err("refused").code();
        assert_eq!(
            code(e.set_admin_disabled("admin", true).await),
            "last-administrator"
        );
        assert_eq!(
            code(e.set_admin_role("admin", Role::Auditor).await),
            "last-administrator"
        );
        assert_eq!(
            e.remove_admin("admin").await.expect_err("refused").code(),
            "last-administrator"
        );
        assert_eq!(
            code(e.set_admin_disabled("nobody", true).await),
            "no-such-admin"
        );
        assert_eq!(
            code(e.add_admin("ops", "another password", Role::Auditor).await),
            "admin-exists"
        );
        // Nothing changed.
        let admins = e.admins().await.expect("list");
        assert_eq!(
            admins
                .iter()
                .map(|a| (a.username.as_str(), a.role, a.disabled))
                .collect::<Vec<_>>(),
            [
                ("admin", Role::Administrator, false),
                ("ops", Role::Operator, false)
            ]
        );
        // With a second administrator, the first may go.
        e.set_admin_role("ops", Role::Administrator)
            .await
            .expect("promote");
        e.set_admin_disabled("admin", true).await.expect("disable");
        assert_eq!(
            code(e.set_admin_disabled("ops", true).await),
            "last-administrator"
        );
        e.remove_admin("admin").await.expect("remove");
        assert_eq!(e.admins().await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn a_disabled_administrator_cannot_sign_in_and_its_sessions_end() {
        let e = engine();
        with_two(&e).await;
        let generation = e.password_generation("ops");
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("sign in"),
            SignIn::Granted {
                role: Role::Operator,
                must_enrol: false
            }
        );
        e.set_admin_disabled("ops", true).await.expect("disable");
        assert_ne!(e.password_generation("ops"), generation, "sessions end");
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("sign in"),
            SignIn::Refused
        );
        assert_eq!(e.admin_role("ops").await.expect("role"), None);
        e.set_admin_disabled("ops", false).await.expect("enable");
        assert_eq!(
            e.admin_role("ops").await.expect("role"),
            Some(Role::Operator)
        );
    }

    fn now_code(secret_b32: &str, offset_steps: i64) -> String {
        let secret = data_encoding::BASE32_NOPAD
            .decode(secret_b32.as_bytes())
            .expect("base32");
        let step = (totp::step_of(unix_now()) as i64 + offset_steps) as u64;
        format!("{:06}", totp::code_at(&secret, step))
    }

    #[tokio::test]
    async fn totp_enrolment_sign_in_replay_and_recovery_codes() {
        let e = engine();
        with_two(&e).await;
        let enrol = e.begin_totp("ops").await.expect("begin");
        assert!(
            !format!("{enrol:?}").contains(&enrol.secret),
            "redacted Debug"
        );
        assert!(
            enrol
                .uri
                .starts_with("otpauth://totp/switchboard:ops?secret=")
        );
        // Not yet in use: the password alone signs in.
        assert!(matches!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("s"),
            SignIn::Granted { .. }
        ));
        assert_eq!(
            e.confirm_totp("ops", "000000")
                .await
                .expect_err("wrong")
                .code(),
            "totp-wrong-code"
        );
        let codes = e
            .confirm_totp("ops", &now_code(&enrol.secret, 0))
            .await
            .expect("confirm")
            .codes;
        assert_eq!(codes.len(), RECOVERY_CODES);
        // The stored form is a hash, never the code.
        let stored = e.store.lock().await.admin("ops").expect("r").expect("t");
        assert!(!format!("{stored:?}").contains(&codes[0]));
        // Password alone: refused now.
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("s"),
            SignIn::Refused
        );
        // The confirming code was used; the next step's code works once.
        assert_eq!(
            e.sign_in(
                &root(),
                "ops",
                "operator password",
                &now_code(&enrol.secret, 0)
            )
            .await
            .expect("s"),
            SignIn::Refused,
            "the code that confirmed the enrolment is used"
        );
        let next = now_code(&enrol.secret, 1);
        assert!(matches!(
            e.sign_in(&root(), "ops", "operator password", &next)
                .await
                .expect("s"),
            SignIn::Granted { .. }
        ));
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", &next)
                .await
                .expect("s"),
            SignIn::Refused,
            "a used code is not accepted twice"
        );
        // A wrong password with a right recovery code consumes nothing.
        assert_eq!(
            e.sign_in(&root(), "ops", "wrong password!", &codes[0])
                .await
                .expect("s"),
            SignIn::Refused
        );
        assert!(matches!(
            e.sign_in(
                &root(),
                "ops",
                "operator password",
                &codes[0].to_uppercase()
            )
            .await
            .expect("s"),
            SignIn::Granted { .. }
        ));
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", &codes[0])
                .await
                .expect("s"),
            SignIn::Refused,
            "a recovery code is used once"
        );
        let ops = e
            .admins()
            .await
            .expect("l")
            .into_iter()
            .find(|a| a.username == "ops")
            .expect("ops");
        assert_eq!(
            (ops.totp, ops.recovery_codes),
            (true, RECOVERY_CODES as u64 - 1)
        );
        // Another administrator's code is not this one's.
        assert_eq!(
            e.sign_in(&root(), "admin", "correct horse battery", &codes[1])
                .await
                .expect("s"),
            SignIn::Granted {
                role: Role::Administrator,
                must_enrol: false
            },
            "admin has no second factor: the code is ignored"
        );
        e.remove_totp("ops").await.expect("remove");
        assert!(matches!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("s"),
            SignIn::Granted { .. }
        ));
    }

    #[tokio::test]
    async fn a_role_may_require_a_second_factor() {
        let e = engine();
        with_two(&e).await;
        e.set_totp_required(Role::Operator, true)
            .await
            .expect("policy");
        assert_eq!(
            e.sign_in(&root(), "ops", "operator password", "")
                .await
                .expect("s"),
            SignIn::Granted {
                role: Role::Operator,
                must_enrol: true
            }
        );
        assert!(e.must_enrol("ops").await.expect("must"));
        assert!(!e.must_enrol("admin").await.expect("must"));
        let enrol = e.begin_totp("ops").await.expect("begin");
        e.confirm_totp("ops", &now_code(&enrol.secret, 0))
            .await
            .expect("confirm");
        assert!(!e.must_enrol("ops").await.expect("must"));
    }

    #[test]
    fn recovery_codes_are_random_and_hashed_canonically() {
        let a = recovery_code().expect("code");
        let b = recovery_code().expect("code");
        assert_ne!(a, b);
        assert_eq!(a.len(), RECOVERY_SYMBOLS + 1);
        assert_eq!(
            recovery_hash(&a),
            recovery_hash(&a.to_uppercase().replace('-', " "))
        );
        assert_ne!(recovery_hash(&a), recovery_hash(&b));
        assert_eq!(recovery_hash(&a).len(), 64);
    }
}
