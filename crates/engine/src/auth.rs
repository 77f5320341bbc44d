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
//! - The audit log records who asked for which change, from where, and
//!   how it ended; never a request body. Its texts are capped at
//!   [`MAX_AUDIT_TEXT`] characters.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use jiff::Timestamp;
use switchboard_store::NewAudit;
use tracing::info;
use zeroize::Zeroizing;

use crate::accounts::random;
use crate::cpu::CpuPool;
use crate::views::AuditView;
use crate::{Engine, EngineError, InputError, Origin, Result};

/// The administrator created at first start.
pub const DEFAULT_ADMIN: &str = "admin";
/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// The longest administrator name.
pub const MAX_ADMIN_NAME: usize = 32;
/// Audit texts (actor, address, action, outcome) are cut to this many characters.
pub const MAX_AUDIT_TEXT: usize = 300;

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

/// `text`, cut to [`MAX_AUDIT_TEXT`] characters.
fn capped(text: &str) -> &str {
    match text.char_indices().nth(MAX_AUDIT_TEXT) {
        Some((end, _)) => &text[..end],
        None => text,
    }
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
    pub async fn verify_password(&self, username: &str, password: &str) -> Result<bool> {
        let stored = self.store.lock().await.admin_hash(username)?;
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
        self.store
            .lock()
            .await
            .set_admin_hash(username, &phc, Timestamp::now())?;
        *self
            .admin_generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(username.to_owned())
            .or_default() += 1;
        info!(admin = username, actor = %origin.actor, from = %origin.address, "administrator password changed");
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

    /// Record an entry of the audit log: `action` (`METHOD /path`) asked
    /// for by `origin`, and its `outcome`. Texts are capped at
    /// [`MAX_AUDIT_TEXT`] characters.
    pub async fn audit(&self, origin: &Origin, action: &str, outcome: &str) -> Result<()> {
        let entry = NewAudit {
            at: Timestamp::now(),
            actor: capped(&origin.actor),
            address: capped(&origin.address),
            action: capped(action),
            outcome: capped(outcome),
        };
        self.store.lock().await.record_audit(&entry)?;
        Ok(())
    }

    /// The last `limit` entries of the audit log, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditView>> {
        Ok(self.store.lock().await.audit(limit)?)
    }
}

#[cfg(test)]
mod tests {
    use switchboard_domain::ServiceId;

    use super::*;
    use crate::Arrival;

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

    #[tokio::test]
    async fn the_audit_log_is_newest_first_limited_and_capped() {
        let e = engine();
        let console = Origin {
            actor: "admin".into(),
            address: "console from 192.0.2.2".into(),
            arrival: Some(Arrival {
                service: ServiceId::Console,
                local: "192.0.2.1".parse().expect("ip"),
                port: 8443,
            }),
        };
        e.audit(&root(), "POST /v1/matrix/allow", "200")
            .await
            .expect("1");
        e.audit(&console, "POST /v1/update", "409 pending-confirmation")
            .await
            .expect("2");
        let long = "é".repeat(1000);
        e.audit(&root(), &format!("POST /v1/{long}"), &long)
            .await
            .expect("3");
        let log = e.audit_log(10).await.expect("log");
        assert_eq!(log.iter().map(|a| a.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(log[0].action.chars().count(), MAX_AUDIT_TEXT);
        assert_eq!(log[0].outcome.chars().count(), MAX_AUDIT_TEXT);
        assert_eq!(
            (
                log[1].actor.as_str(),
                log[1].address.as_str(),
                log[1].action.as_str(),
                log[1].outcome.as_str()
            ),
            (
                "admin",
                "console from 192.0.2.2",
                "POST /v1/update",
                "409 pending-confirmation"
            )
        );
        assert_eq!(log[2].actor, "root");
        let last_two = e.audit_log(2).await.expect("log");
        assert_eq!(last_two.iter().map(|a| a.id).collect::<Vec<_>>(), [3, 2]);
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
}
