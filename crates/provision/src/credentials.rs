//! SIP credentials: the generated password, the realm, and the HA1 digest
//! that is all switchboard keeps.
//!
//! **Where the clear password lives.** A [`SipPassword`] is made from
//! random bytes the caller passes in, turned into an [`Ha1`] by
//! [`AccountDraft::into_account`](crate::AccountDraft::into_account) (or
//! [`Account::set_password`](crate::Account::set_password)), and dropped
//! there, its memory wiped. It is never stored, shown, logged, nor put in a
//! configuration document: both documents carry the HA1 digest and the
//! realm, which is what SIP digest authentication needs (Linphone's
//! `auth_info` takes `ha1` in place of `passwd`; our native client computes
//! the digest response from HA1 as well). Kamailio's `auth_db` reads the
//! same digest from the `ha1` column (`calculate_ha1 = 0`).
//!
//! HA1 is a password-equivalent *for its realm*: whoever has it can
//! register as the account. What not keeping the password buys is that
//! nothing else can be derived from what is stored, and that there is no
//! clear password to leak from the store, a backup, a document or a log.
//! The realm is a fixed name of the appliance, not the SIP/TLS host name,
//! so changing the host name does not invalidate every digest.
//!
//! HA1B (`MD5(user@domain:realm:password)`, Kamailio's `ha1b` column) is
//! not computed: Kamailio uses it only when a client puts the domain into
//! its authentication user name, which the documents never tell a client to
//! do; configure `auth_db` with `use_domain = 0` and leave `ha1b` empty.

use std::fmt;
use std::str::FromStr;

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::account::Username;
use crate::text::{echo, hex, is_word_byte, string_newtype, unhex};

/// The digest authentication realm: 1 to 64 of `a-z 0-9 . _ -`, stored
/// lowercase; safe inside a quoted `realm="..."`, and never containing the
/// `:` that separates the fields of the HA1 input.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Realm(String);

/// Why a string is not a realm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid realm {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
pub struct InvalidRealm(String);

impl InvalidRealm {
    pub fn code(&self) -> &'static str {
        "invalid-realm"
    }

    pub fn hint(&self) -> &'static str {
        "keep the realm switchboard chose at its first start: every account's digest depends on it"
    }
}

impl Realm {
    /// The realm a new appliance uses.
    pub const DEFAULT: &'static str = "switchboard";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Realm {
    fn default() -> Self {
        Realm(Self::DEFAULT.to_owned())
    }
}

impl FromStr for Realm {
    type Err = InvalidRealm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (1..=64).contains(&s.len()) && s.bytes().all(is_word_byte) {
            Ok(Realm(s.to_ascii_lowercase()))
        } else {
            Err(InvalidRealm(echo(s)))
        }
    }
}

string_newtype!(Realm, InvalidRealm);

/// Crockford's base32 alphabet in lowercase: no `i`, `l`, `o`, `u`, so
/// nothing to confuse with `1` or `0` if it is ever read out.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A generated SIP password: [`SipPassword::ENTROPY_BYTES`] random bytes
/// (160 bits) written as 32 characters of lowercase Crockford base32. Its
/// `Debug` and `Display` print `<redacted>`; its memory is wiped on drop.
pub struct SipPassword(Zeroizing<String>);

impl SipPassword {
    /// How many random bytes a password is made of (160 bits).
    pub const ENTROPY_BYTES: usize = 20;
    /// Its length in characters.
    pub const LEN: usize = 32;

    /// The password made of `entropy`, which must come from a
    /// cryptographically secure generator (the daemon's `getrandom`).
    pub fn from_entropy(mut entropy: [u8; Self::ENTROPY_BYTES]) -> Self {
        let mut out = Zeroizing::new(String::with_capacity(Self::LEN));
        // 20 bytes are 32 groups of 5 bits: four groups of 5 bytes.
        for chunk in entropy.chunks_exact(5) {
            let mut bits = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            for shift in (0..8).rev() {
                let index = ((bits >> (shift * 5)) & 0x1f) as usize;
                out.push(char::from(ALPHABET[index]));
            }
            bits.zeroize();
        }
        entropy.zeroize();
        SipPassword(out)
    }

    /// The password in clear. Nothing in switchboard calls this: it exists
    /// for a future "show once to the administrator" (a desk phone that
    /// cannot take a digest) and for tests.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SipPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SipPassword(<redacted>)")
    }
}

impl fmt::Display for SipPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The SIP digest HA1 of an account: `MD5(username:realm:password)` (RFC
/// 2617 §3.2.2.2, RFC 3261 §22.4), with the realm it was computed for.
/// `Debug` shows the realm and redacts the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    realm: Realm,
    digest: [u8; 16],
}

/// A stored HA1 that is not 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored HA1 digest is not 32 lowercase hex digits")]
pub struct InvalidHa1;

impl InvalidHa1 {
    pub fn code(&self) -> &'static str {
        "invalid-ha1"
    }

    pub fn hint(&self) -> &'static str {
        "the account's credentials are damaged: set a new password for it and activate it again"
    }
}

impl Ha1 {
    pub fn compute(username: &Username, realm: &Realm, password: &SipPassword) -> Ha1 {
        Ha1 {
            realm: realm.clone(),
            digest: digest(username.as_str(), realm.as_str(), password.expose_secret()),
        }
    }

    /// A digest as the store kept it.
    pub fn from_stored(realm: Realm, hex: &str) -> Result<Ha1, InvalidHa1> {
        let digest = unhex::<16>(hex).ok_or(InvalidHa1)?;
        Ok(Ha1 { realm, digest })
    }

    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    /// The digest as 32 lowercase hex digits: what Kamailio's `ha1` column,
    /// the store and the documents hold. A password-equivalent: never log it.
    pub fn expose_hex(&self) -> String {
        hex(&self.digest)
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ha1")
            .field("realm", &self.realm.as_str())
            .field("digest", &"<redacted>")
            .finish()
    }
}

fn digest(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_is_the_md5_of_user_realm_and_password_as_in_rfc_2617() {
        let d = digest("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(hex(&d), "939e7578ed9e3c518a452acee763bce9");
    }

    #[test]
    fn a_password_is_32_unambiguous_characters_carrying_160_bits() {
        let zeros = SipPassword::from_entropy([0; 20]);
        assert_eq!(zeros.expose_secret(), "0".repeat(32));
        let ones = SipPassword::from_entropy([0xff; 20]);
        assert_eq!(ones.expose_secret(), "z".repeat(32));
        let mut entropy = [0u8; 20];
        entropy[19] = 1;
        assert!(
            SipPassword::from_entropy(entropy)
                .expose_secret()
                .ends_with("01")
        );
        let counting: [u8; 20] = std::array::from_fn(|i| i as u8 * 13);
        let p = SipPassword::from_entropy(counting);
        assert_eq!(p.expose_secret().len(), SipPassword::LEN);
        assert!(p.expose_secret().bytes().all(|b| ALPHABET.contains(&b)));
        assert!(!p.expose_secret().contains(['i', 'l', 'o', 'u']));
        // Every bit matters: flipping any one changes the password.
        for bit in 0..160 {
            let mut e = counting;
            e[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(
                SipPassword::from_entropy(e).expose_secret(),
                p.expose_secret()
            );
        }
    }

    #[test]
    fn passwords_and_digests_are_redacted_in_debug_and_display() {
        let p = SipPassword::from_entropy([7; 20]);
        let secret = p.expose_secret().to_owned();
        assert_eq!(format!("{p:?}"), "SipPassword(<redacted>)");
        assert_eq!(format!("{p}"), "<redacted>");
        let user: Username = "alice".parse().expect("username");
        let ha1 = Ha1::compute(&user, &Realm::default(), &p);
        let debug = format!("{ha1:?}");
        assert_eq!(
            debug,
            r#"Ha1 { realm: "switchboard", digest: "<redacted>" }"#
        );
        assert!(!debug.contains(&secret) && !debug.contains(&ha1.expose_hex()));
        assert_eq!(
            ha1.expose_hex(),
            hex(&digest("alice", "switchboard", &secret))
        );
    }

    #[test]
    fn stored_digests_round_trip_and_damaged_ones_are_refused() {
        let ha1 = Ha1::compute(
            &"1000".parse().expect("username"),
            &Realm::default(),
            &SipPassword::from_entropy([1; 20]),
        );
        let back = Ha1::from_stored(Realm::default(), &ha1.expose_hex()).expect("round trip");
        assert_eq!(back, ha1);
        for bad in ["", "00", &"g".repeat(32), &ha1.expose_hex().to_uppercase()] {
            let err = Ha1::from_stored(Realm::default(), bad).expect_err(bad);
            assert_eq!(err.code(), "invalid-ha1");
        }
    }

    #[test]
    fn realms_are_plain_names() {
        assert_eq!(
            "VoIP.Example".parse::<Realm>().map(String::from),
            Ok("voip.example".into())
        );
        for bad in ["", "a b", "a:b", "a\"b", "a@b", &"r".repeat(65)] {
            assert_eq!(bad.parse::<Realm>().expect_err(bad).code(), "invalid-realm");
        }
    }
}
