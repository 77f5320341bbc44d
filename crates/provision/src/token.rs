//! Activation tokens: the secret part of an activation link.
//!
//! A token is [`ActivationToken::BYTES`] random bytes (128 bits) from the
//! caller's secure generator, written as 22 characters of URL-safe base64
//! without padding. Only its [`TokenHash`] (SHA-256 of the 16 bytes) is
//! stored: a copy of the store gives no working link.
//!
//! **Lookup, not comparison.** A fetch parses the token, hashes it and
//! looks the hash up (an index on the hash column). No secret is compared
//! byte by byte, so there is no constant-time comparison to get right: the
//! timing of the lookup can at most tell an attacker something about the
//! hash of a token they already chose, which does not help find another
//! (SHA-256 preimage resistance), and 2^128 tokens cannot be walked
//! through anyway. Single use, expiry and the per-address rate limit are
//! the web service's job; it must answer a malformed token exactly as it
//! answers an unknown, used or expired one.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::text::{hex, unhex};

/// How long an activation link works unless configured otherwise.
pub const DEFAULT_TOKEN_TTL: SignedDuration = SignedDuration::from_hours(72);

/// The secret of one activation link. `Debug` redacts it, and there is no
/// `Display`: the only way to the text is [`ActivationToken::expose`],
/// which building the link calls.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationToken([u8; ActivationToken::BYTES]);

/// Why a path segment is not a token. Deliberately vague and not
/// echoing the input: the web service answers it as it answers an unknown
/// token, and it may end up in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this is not an activation token")]
pub struct InvalidToken;

impl InvalidToken {
    pub fn code(&self) -> &'static str {
        "invalid-activation-token"
    }

    pub fn hint(&self) -> &'static str {
        "open the link exactly as the SMS gave it, or ask the administrator for a new one"
    }
}

impl ActivationToken {
    /// Random bytes in a token (128 bits).
    pub const BYTES: usize = 16;
    /// Characters in its text form.
    pub const LEN: usize = 22;

    /// The token made of `entropy`, which must come from a
    /// cryptographically secure generator.
    pub fn from_entropy(entropy: [u8; Self::BYTES]) -> Self {
        ActivationToken(entropy)
    }

    /// A token from the last segment of a request path, strictly: exactly
    /// 22 characters of `A-Z a-z 0-9 - _`, in the one canonical encoding
    /// of 16 bytes. No percent-decoding, padding, white space or other
    /// base64 alphabet: none of them is a token this crate ever wrote.
    pub fn parse_path_segment(segment: &str) -> Result<Self, InvalidToken> {
        let bytes = segment.as_bytes();
        if bytes.len() != Self::LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(InvalidToken);
        }
        let mut out = [0u8; Self::BYTES];
        // The default engine refuses non-zero trailing bits, so each token
        // has one spelling.
        match URL_SAFE_NO_PAD.decode_slice(bytes, &mut out) {
            Ok(Self::BYTES) => Ok(ActivationToken(out)),
            _ => Err(InvalidToken),
        }
    }

    /// What is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// The token as it goes into the link. A secret: never log it.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl FromStr for ActivationToken {
    type Err = InvalidToken;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_path_segment(s)
    }
}

impl fmt::Debug for ActivationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActivationToken(<redacted>)")
    }
}

/// SHA-256 of a token's bytes: the store's key for an activation. Not a
/// secret (it cannot be turned back into a link), written as 64 lowercase
/// hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash([u8; 32]);

/// A stored token hash that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token hash is 64 lowercase hex digits")]
pub struct InvalidTokenHash;

impl InvalidTokenHash {
    pub fn code(&self) -> &'static str {
        "invalid-token-hash"
    }

    pub fn hint(&self) -> &'static str {
        "the stored activation is damaged: revoke it and activate the account again"
    }
}

impl TokenHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for TokenHash {
    type Err = InvalidTokenHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        unhex::<32>(s).map(TokenHash).ok_or(InvalidTokenHash)
    }
}

impl TryFrom<String> for TokenHash {
    type Error = InvalidTokenHash;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TokenHash> for String {
    fn from(h: TokenHash) -> String {
        h.to_string()
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tests::Noise;

    #[test]
    fn a_token_is_22_url_safe_characters_and_parses_back() {
        let t = ActivationToken::from_entropy([0xfb; 16]);
        let text = t.expose();
        assert_eq!(text, "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(text.len(), ActivationToken::LEN);
        assert_eq!(ActivationToken::parse_path_segment(&text), Ok(t.clone()));
        let zero = ActivationToken::from_entropy([0; 16]);
        assert_eq!(zero.expose(), "A".repeat(22));
        assert_ne!(zero.hash(), t.hash());
    }

    #[test]
    fn the_hash_is_sha256_of_the_token_bytes() {
        let t = ActivationToken::from_entropy([0; 16]);
        assert_eq!(
            t.hash().to_string(),
            "374708fff7719dd5979ec875d56cd2286f6d3cf7ec317a3b25632aab28ec37bb"
        );
        let back: TokenHash = t.hash().to_string().parse().expect("round trip");
        assert_eq!(back, t.hash());
        let json = serde_json::to_string(&back).expect("json");
        assert_eq!(
            serde_json::from_str::<TokenHash>(&json).expect("back"),
            back
        );
        assert!("374708FF".parse::<TokenHash>().is_err());
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let t = ActivationToken::from_entropy([0x42; 16]);
        assert_eq!(format!("{t:?}"), "ActivationToken(<redacted>)");
        assert!(!format!("{:?}", t.hash()).contains(&t.expose()));
    }

    #[test]
    fn hostile_path_segments_are_not_tokens() {
        let good = ActivationToken::from_entropy([0xfb; 16]).expose();
        let padded = format!("{good}==");
        let percent = format!("%2D{}", &good[3..]);
        let standard_alphabet = good.replace('-', "+").replace('_', "/");
        let short = &good[..21];
        let long = format!("{good}A");
        let dotted = format!("{}.", &good[..21]);
        let spaced = format!(" {}", &good[1..]);
        // 16 bytes leave 4 bits unused in the last character: only one
        // spelling is the canonical one.
        let zero = "A".repeat(22);
        let non_canonical = format!("{}B", &zero[..21]);
        let unicode = format!("{}é", &good[..20]);
        for bad in [
            "",
            short,
            &long,
            &padded,
            &percent,
            &standard_alphabet,
            &dotted,
            &spaced,
            &non_canonical,
            &unicode,
            "../../../../etc/passwd",
            "AAAAAAAAAAAAAAAAAAAA\r\n",
            "AAAAAAAAAAAAAAAAAAAA\0A",
            &"A".repeat(100_000),
        ] {
            assert_eq!(
                ActivationToken::parse_path_segment(bad),
                Err(InvalidToken),
                "{bad:?}"
            );
        }
        assert_eq!(InvalidToken.to_string(), "this is not an activation token");
        assert!(ActivationToken::parse_path_segment(&zero).is_ok());
    }

    #[test]
    fn random_segments_never_panic_and_accepted_ones_are_canonical() {
        let mut noise = Noise::new(4);
        let mut accepted = 0;
        for i in 0..50_000u64 {
            let s = if i % 2 == 0 {
                noise.string(30)
            } else {
                // 22 characters of the alphabet: most decode.
                const ALPHA: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                (0..22)
                    .map(|_| char::from(ALPHA[noise.next() as usize % 64]))
                    .collect()
            };
            if let Ok(t) = ActivationToken::parse_path_segment(&s) {
                assert_eq!(t.expose(), s);
                accepted += 1;
            }
        }
        assert!(accepted > 1000, "canonical tokens are accepted: {accepted}");
    }
}
