//! Backup and restore of the whole configuration.
//!
//! **The archive** is one [age](https://age-encryption.org/v1) file
//! encrypted to a passphrase (the scrypt recipient; `age -d` opens it),
//! whose plaintext is one JSON document ([`Archive`], `format`
//! `switchboard-backup`, `version` 1): the candidate, every revision, the
//! certificates with their keys, the trusted CAs, the accounts (HA1, never
//! a password), the administrators (argon2id hashes, roles, TOTP secrets)
//! and which roles require a second factor. Keys and secrets leave the
//! appliance only inside it, encrypted; nothing of it is logged.
//!
//! **Restore** ([`Engine::restore`]) decrypts and parses everything, checks
//! it against this appliance, and only then writes: the certificates,
//! CAs, accounts and administrators it lacks, and the archive's candidate
//! in place of this one's. Nothing is applied: the administrator reviews
//! the diff and Updates, as after any edit. A damaged, truncated,
//! oversize or wrong-passphrase archive, or one that conflicts with this
//! appliance (a certificate or account of the same name but other
//! content), is refused before anything is written.
//!
//! **Limitations.** Revisions are carried for the record but not replayed
//! (this appliance's history starts again with the restore's Update); key
//! requests waiting for their certificate, ACME accounts and renewal
//! records, bans, activation links and the audit log are not in the
//! archive. The archive is at most [`MAX_ARCHIVE`] bytes.

use std::io::{Read, Write};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_domain::{Candidate, CertName};
use switchboard_pki::{CertInfo, KeyPem};
use switchboard_store::{AccountRow, Revision, StoredAnchor, StoredCert};
use tracing::info;
use zeroize::Zeroizing;

use crate::audit::Entry;
use crate::views::DiffView;
use crate::{Engine, EngineError, Result};

/// The largest archive accepted (and made), in bytes.
/// (Base64 in a JSON request, it stays under the listeners' 2 MiB body limit.)
pub const MAX_ARCHIVE: usize = 1536 * 1024;
/// The largest plaintext read out of an archive.
const MAX_PLAINTEXT: u64 = 16 * 1024 * 1024;
/// The shortest passphrase accepted, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// The longest passphrase accepted, in characters.
pub const MAX_PASSPHRASE_CHARS: usize = 256;
const FORMAT: &str = "switchboard-backup";
const VERSION: u32 = 1;

/// The plaintext of an archive.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub format: String,
    pub version: u32,
    pub created_at: Timestamp,
    pub candidate: Candidate,
    pub revisions: Vec<Revision>,
    pub certificates: Vec<ArchivedCert>,
    pub cas: Vec<ArchivedCa>,
    pub accounts: Vec<ArchivedAccount>,
    pub admins: Vec<ArchivedAdmin>,
    pub totp_required: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedCert {
    pub name: CertName,
    pub chain_pem: String,
    pub key_pem: Option<String>,
    pub info: CertInfo,
    pub bootstrap: bool,
    pub created_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedCa {
    pub fingerprint: String,
    /// DER, hex.
    pub der: String,
    pub subject: String,
    pub added_at: Timestamp,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArchivedAccount {
    pub username: String,
    pub display_name: Option<String>,
    pub phone: String,
    pub group: Option<String>,
    pub profile: String,
    pub realm: String,
    pub ha1: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedAdmin {
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub totp_secret: Option<String>,
}

/// Archives hold secrets (keys, hashes, TOTP secrets): their `Debug`
/// shows names and counts only.
macro_rules! redacted_debug {
    ($($t:ident => |$v:ident| $what:expr),* $(,)?) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $v = self;
                write!(f, "{}({}, redacted)", stringify!($t), $what)
            }
        }
    )*};
}

redacted_debug!(
    Archive => |a| format!("{} certificates, {} accounts", a.certificates.len(), a.accounts.len()),
    ArchivedCert => |c| c.name.to_string(),
    ArchivedCa => |c| c.subject.clone(),
    ArchivedAccount => |a| a.username.clone(),
    ArchivedAdmin => |a| a.username.clone(),
);

/// What a restore did (the diff is the candidate's, to review and Update).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreView {
    /// When the archive was made.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
    pub certificates_added: Vec<String>,
    pub cas_added: usize,
    pub accounts_added: usize,
    pub admins_restored: Vec<String>,
    /// The archive's revisions (carried for the record, not replayed).
    pub revisions_in_archive: usize,
    /// From the applied revision to the restored candidate.
    pub diff: DiffView,
}

fn refused(code: &'static str, message: String, hint: &'static str) -> EngineError {
    EngineError::Refused {
        code,
        message,
        hint,
    }
}

/// The passphrase policy: 12 to 256 characters, not only white space.
pub fn check_passphrase(passphrase: &str) -> Result<()> {
    let n = passphrase.chars().count();
    if !(MIN_PASSPHRASE_CHARS..=MAX_PASSPHRASE_CHARS).contains(&n)
        || passphrase.chars().all(char::is_whitespace)
    {
        return Err(refused(
            "weak-passphrase",
            format!(
                "the passphrase has {n} character(s); a backup's passphrase has {MIN_PASSPHRASE_CHARS} to {MAX_PASSPHRASE_CHARS}, not only white space"
            ),
            "choose a long passphrase, e.g. five random words, and keep it apart from the archive",
        ));
    }
    Ok(())
}

/// Encrypt `plaintext` to `passphrase` (age, scrypt recipient).
fn encrypt(plaintext: &[u8], passphrase: &str) -> Result<Vec<u8>> {
    let secret = age::secrecy::SecretString::from(passphrase.to_owned());
    let encryptor = age::Encryptor::with_user_passphrase(secret);
    let mut out = Vec::new();
    let sys = |e: std::io::Error| EngineError::System(format!("encrypting the backup: {e}"));
    let mut writer = encryptor.wrap_output(&mut out).map_err(sys)?;
    writer.write_all(plaintext).map_err(sys)?;
    writer.finish().map_err(sys)?;
    Ok(out)
}

/// An archive no larger than [`MAX_ARCHIVE`].
fn within_limit(archive: &[u8]) -> Result<()> {
    if archive.len() > MAX_ARCHIVE {
        return Err(refused(
            "backup-too-large",
            format!(
                "the archive has {} bytes; at most {MAX_ARCHIVE} are accepted",
                archive.len()
            ),
            "give the archive `switchboard backup` made",
        ));
    }
    Ok(())
}

/// Decrypt an archive; every failure is one clear refusal.
fn decrypt(archive: &[u8], passphrase: &str) -> Result<Zeroizing<Vec<u8>>> {
    within_limit(archive)?;
    let damaged = |why: String| {
        refused(
            "backup-damaged",
            format!("the archive cannot be read: {why}"),
            "give the whole archive `switchboard backup` made, as it was downloaded",
        )
    };
    let decryptor = age::Decryptor::new(archive).map_err(|e| damaged(e.to_string()))?;
    if !decryptor.is_scrypt() {
        return Err(damaged("it is not encrypted to a passphrase".into()));
    }
    let identity =
        age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => refused(
                "wrong-passphrase",
                "the passphrase does not open this archive".into(),
                "give the passphrase the backup was made with",
            ),
            other => damaged(other.to_string()),
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    (&mut reader)
        .take(MAX_PLAINTEXT + 1)
        .read_to_end(&mut plain)
        .map_err(|e| damaged(e.to_string()))?;
    if plain.len() as u64 > MAX_PLAINTEXT {
        return Err(damaged("its content is too large".into()));
    }
    Ok(plain)
}

/// Parse a decrypted archive.
pub fn parse(plain: &[u8]) -> Result<Archive> {
    let archive: Archive = serde_json::from_slice(plain).map_err(|e| {
        refused(
            "backup-damaged",
            format!(
                "the archive's content is not a switchboard backup (line {}, column {})",
                e.line(),
                e.column()
            ),
            "give the archive `switchboard backup` made",
        )
    })?;
    if archive.format != FORMAT || archive.version != VERSION {
        return Err(refused(
            "backup-version",
            format!(
                "the archive is {} version {}; this switchboard reads {FORMAT} version {VERSION}",
                archive.format, archive.version
            ),
            "restore it with the switchboard version that made it, or a newer one",
        ));
    }
    Ok(archive)
}

impl Engine {
    /// The whole configuration as an archive encrypted to `passphrase`.
    pub async fn backup(&self, passphrase: &str) -> Result<Vec<u8>> {
        check_passphrase(passphrase)?;
        let plain = {
            let store = self.store.lock().await;
            let revisions = store
                .revisions()?
                .iter()
                .filter_map(|s| store.revision(s.number).transpose())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let archive = Archive {
                format: FORMAT.into(),
                version: VERSION,
                created_at: Timestamp::now(),
                candidate: Self::candidate_of(&store)?,
                revisions,
                certificates: store
                    .certs()?
                    .into_iter()
                    .map(|c| ArchivedCert {
                        name: c.name,
                        chain_pem: c.chain_pem,
                        key_pem: c.key.map(|k| k.expose_secret().to_owned()),
                        info: c.info,
                        bootstrap: c.bootstrap,
                        created_at: c.created_at,
                    })
                    .collect(),
                cas: store
                    .anchors()?
                    .into_iter()
                    .map(|a| ArchivedCa {
                        fingerprint: a.fingerprint,
                        der: crate::auth::hex_encode(&a.der),
                        subject: a.subject,
                        added_at: a.added_at,
                    })
                    .collect(),
                accounts: store
                    .accounts()?
                    .into_iter()
                    .map(|a| ArchivedAccount {
                        username: a.username,
                        display_name: a.display_name,
                        phone: a.phone,
                        group: a.group,
                        profile: a.profile,
                        realm: a.realm,
                        ha1: a.ha1,
                    })
                    .collect(),
                admins: store
                    .admins()?
                    .into_iter()
                    .map(|a| ArchivedAdmin {
                        username: a.username,
                        password_hash: a.password_hash,
                        role: a.role,
                        disabled: a.disabled_at.is_some(),
                        totp_secret: a.totp_secret,
                    })
                    .collect(),
                totp_required: store.totp_required_roles()?,
            };
            Zeroizing::new(
                serde_json::to_vec(&archive)
                    .map_err(|e| EngineError::System(format!("the backup: {e}")))?,
            )
        };
        let passphrase = Zeroizing::new(passphrase.to_owned());
        let archive = self
            .cpu
            .run("backup encryption", move || encrypt(&plain, &passphrase))
            .await??;
        if archive.len() > MAX_ARCHIVE {
            return Err(refused(
                "backup-too-large",
                format!(
                    "the configuration makes an archive of {} bytes, over the {MAX_ARCHIVE} a restore accepts",
                    archive.len()
                ),
                "export the accounts apart (`switchboard account list --json`) and remove those not needed",
            ));
        }
        let mut store = self.store.lock().await;
        crate::audit::record_in(
            &mut store,
            &Entry::new(
                "config.backup",
                "configuration backup downloaded (encrypted)",
                json!({ "bytes": archive.len() }),
            ),
            "done",
        );
        info!(bytes = archive.len(), "configuration backup made");
        Ok(archive)
    }

    /// Restore an archive onto this appliance: see the module's documentation.
    pub async fn restore(&self, archive: &[u8], passphrase: &str) -> Result<RestoreView> {
        // Before copying it anywhere.
        within_limit(archive)?;
        let bytes = archive.to_vec();
        let passphrase = Zeroizing::new(passphrase.to_owned());
        let parsed = self
            .cpu
            .run("backup decryption", move || {
                decrypt(&bytes, &passphrase).and_then(|p| parse(&p))
            })
            .await??;
        let created_at = parsed.created_at;
        let revisions_in_archive = parsed.revisions.len();
        let (certificates_added, cas_added, accounts_added, admins_restored) = {
            let mut store = self.store.lock().await;
            if let Some(p) = store.pending()? {
                return Err(EngineError::PendingConfirmation {
                    revision: p.revision,
                    deadline: p.deadline,
                });
            }
            let fresh = store.revisions()?.is_empty();
            // Check everything before writing anything.
            let mut certs = Vec::new();
            let mut replace = Vec::new();
            for c in parsed.certificates {
                match store.cert(&c.name)? {
                    Some(have) if have.info.fingerprint == c.info.fingerprint => {}
                    Some(have) if have.bootstrap && fresh => {
                        replace.push(c.name.clone());
                        certs.push(c);
                    }
                    Some(_) => {
                        return Err(refused(
                            "backup-conflict",
                            format!("this appliance has another certificate named {}", c.name),
                            "restore onto a fresh appliance, or delete that certificate first",
                        ));
                    }
                    None => certs.push(c),
                }
            }
            let mut cas = Vec::new();
            for ca in parsed.cas {
                let der = crate::auth::hex_decode(&ca.der).ok_or_else(|| {
                    refused(
                        "backup-damaged",
                        "a CA of the archive is not hex".into(),
                        "give the archive `switchboard backup` made",
                    )
                })?;
                cas.push(StoredAnchor {
                    fingerprint: ca.fingerprint,
                    der,
                    subject: ca.subject,
                    added_at: ca.added_at,
                });
            }
            let mut accounts = Vec::new();
            for a in parsed.accounts {
                let row = AccountRow {
                    username: a.username,
                    display_name: a.display_name,
                    phone: a.phone,
                    group: a.group,
                    profile: a.profile,
                    realm: a.realm,
                    ha1: a.ha1,
                };
                match store.account(&row.username)? {
                    Some(have) if have == row => {}
                    Some(_) => {
                        return Err(refused(
                            "backup-conflict",
                            format!("this appliance has another account named {}", row.username),
                            "restore onto a fresh appliance, or delete that account first",
                        ));
                    }
                    None => accounts.push(row),
                }
            }
            for a in &parsed.admins {
                crate::auth::admin_name(&a.username)?;
                a.role.parse::<crate::Role>()?;
            }
            let keeps_one = parsed
                .admins
                .iter()
                .any(|a| !a.disabled && a.role == crate::Role::Administrator.as_str())
                || parsed.admins.is_empty();
            if !keeps_one {
                return Err(refused(
                    "last-administrator",
                    "the archive has no enabled administrator with the administrator role".into(),
                    "give an archive made by switchboard backup",
                ));
            }
            // Write.
            for name in &replace {
                store.delete_cert(name)?;
            }
            let mut added = Vec::new();
            for c in certs {
                added.push(c.name.to_string());
                store.insert_cert(&StoredCert {
                    name: c.name,
                    chain_pem: c.chain_pem,
                    key: c.key_pem.map(KeyPem::from_stored),
                    info: c.info,
                    bootstrap: c.bootstrap,
                    created_at: c.created_at,
                })?;
            }
            let mut cas_added = 0;
            for ca in &cas {
                if store.add_anchor(ca)? {
                    cas_added += 1;
                }
            }
            store.insert_accounts(&accounts, Timestamp::now())?;
            let now = Timestamp::now();
            let mut admins = Vec::new();
            for a in &parsed.admins {
                store.set_admin_hash(&a.username, &a.password_hash, now)?;
                store.set_admin_role(&a.username, &a.role)?;
                store.set_admin_disabled(&a.username, a.disabled.then_some(now))?;
                store.set_admin_totp(&a.username, a.totp_secret.as_deref(), None)?;
                store.set_recovery_codes(&a.username, &[])?;
                admins.push(a.username.clone());
            }
            for role in crate::Role::ALL {
                store.set_totp_required(
                    role.as_str(),
                    parsed.totp_required.iter().any(|r| r == role.as_str()),
                )?;
            }
            store.save_candidate(&parsed.candidate, now)?;
            self.sync_subscribers(&mut store).await?;
            crate::audit::record_in(
                &mut store,
                &Entry::new(
                    "config.restore",
                    format!(
                        "configuration restored from a backup of {created_at} ({} certificate(s), {} account(s), {} administrator(s) added or restored); the candidate was replaced, to review and Update",
                        added.len(),
                        accounts.len(),
                        admins.len()
                    ),
                    json!({
                        "created_at": created_at.to_string(),
                        "certificates": added,
                        "accounts": accounts.len(),
                        "admins": admins,
                    }),
                ),
                "done",
            );
            (added, cas_added, accounts.len(), admins)
        };
        for a in &admins_restored {
            self.end_sessions_of(a);
        }
        info!(
            certificates = certificates_added.len(),
            accounts = accounts_added,
            "configuration restored into the candidate"
        );
        Ok(RestoreView {
            created_at,
            certificates_added,
            cas_added,
            accounts_added,
            admins_restored,
            revisions_in_archive,
            diff: self.diff(None, None).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery staple";

    fn code<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
        r.expect_err("refused").code()
    }

    #[test]
    fn the_passphrase_policy() {
        assert_eq!(code(check_passphrase("short")), "weak-passphrase");
        assert_eq!(code(check_passphrase(&" ".repeat(20))), "weak-passphrase");
        assert_eq!(code(check_passphrase(&"x".repeat(257))), "weak-passphrase");
        check_passphrase(&"x".repeat(12)).expect("12");
        let err = check_passphrase("hunter2").expect_err("short");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn hostile_archives_are_clear_errors() {
        let good = encrypt(br#"{"format":"x"}"#, PASS).expect("encrypt");
        // Wrong passphrase.
        assert_eq!(
            code(decrypt(&good, "another passphrase")),
            "wrong-passphrase"
        );
        // Truncated, at every cut.
        for cut in [0, 1, 10, good.len() / 2, good.len() - 1] {
            assert_eq!(
                code(decrypt(&good[..cut], PASS)),
                "backup-damaged",
                "cut {cut}"
            );
        }
        // A flipped byte in the payload (after the header).
        let mut flipped = good.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert_eq!(code(decrypt(&flipped, PASS)), "backup-damaged");
        // Not age at all.
        assert_eq!(
            code(decrypt(b"PK\x03\x04 a zip file", PASS)),
            "backup-damaged"
        );
        assert_eq!(code(decrypt(&[0u8; 4096], PASS)), "backup-damaged");
        // Oversize: refused before reading.
        assert_eq!(
            code(decrypt(&vec![b'a'; MAX_ARCHIVE + 1], PASS)),
            "backup-too-large"
        );
        // Right passphrase, wrong content.
        let plain = decrypt(&good, PASS).expect("decrypts");
        assert_eq!(code(parse(&plain)), "backup-damaged");
        assert_eq!(code(parse(b"\xff\xfe garbage")), "backup-damaged");
        let wrong_version = serde_json::json!({
            "format": "switchboard-backup", "version": 99, "created_at": "2026-01-01T00:00:00Z",
            "candidate": {}, "revisions": [], "certificates": [], "cas": [], "accounts": [],
            "admins": [], "totp_required": []
        });
        let err = parse(wrong_version.to_string().as_bytes());
        assert!(matches!(err, Err(EngineError::Refused { .. })));
        // A message never quotes the passphrase.
        let err = decrypt(&good, "a wrong passphrase here").expect_err("wrong");
        assert!(!err.to_string().contains("wrong passphrase here"));
    }
}
