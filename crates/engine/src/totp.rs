//! Time-based one-time passwords (RFC 6238) for the administrators' second
//! factor: HMAC-SHA-1 (the `hmac` and `sha1` crates), 6 digits, 30 s steps,
//! one step either side accepted; the engine accepts a step's code once
//! (the store keeps the last step used). Secrets are 160 bits from the
//! system's random number generator, shown once as an `otpauth://` URI
//! (Base32) for the authenticator app's QR code.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (clock drift).
pub const SKEW: u64 = 1;
/// Bytes of a secret (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

/// The time step of `unix_seconds`.
pub fn step_of(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The code of `step` (RFC 4226's HOTP with the step as counter).
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    bin % 10u32.pow(DIGITS)
}

/// The step whose code `code` is, among the steps around `unix_seconds`
/// (the oldest first); `None` if it is none of them or not 6 digits.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let now = step_of(unix_seconds);
    let mut found = None;
    // Every candidate is computed, so the time taken says nothing of which matched.
    for step in now.saturating_sub(SKEW)..=now + SKEW {
        if code_at(secret, step) == given && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The secret in Base32 without padding, as authenticator apps take it.
pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI of `secret` for administrator `user` of `issuer`.
pub fn otpauth_uri(issuer: &str, user: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String { form_encode(s) };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(user),
        base32(secret),
        enc(issuer)
    )
}

/// Percent-encoding of everything but unreserved characters.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 secret and its 8-digit codes; the
    /// 6-digit code is the last six digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn the_codes_of_rfc_6238_appendix_b() {
        for (t, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let six = &eight[2..];
            assert_eq!(
                format!("{:06}", code_at(RFC_SECRET, step_of(t))),
                six,
                "T = {t}"
            );
            assert_eq!(matching_step(RFC_SECRET, six, t), Some(step_of(t)));
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_not_two() {
        let t = 1_234_567_890;
        let now = step_of(t);
        for (step, accepted) in [
            (now - 2, false),
            (now - 1, true),
            (now, true),
            (now + 1, true),
            (now + 2, false),
        ] {
            let code = format!("{:06}", code_at(RFC_SECRET, step));
            assert_eq!(
                matching_step(RFC_SECRET, &code, t) == Some(step),
                accepted,
                "step {step} vs now {now}"
            );
        }
    }

    #[test]
    fn malformed_codes_are_refused() {
        let t = 59;
        let right = format!("{:06}", code_at(RFC_SECRET, step_of(t)));
        assert!(matching_step(RFC_SECRET, &right, t).is_some());
        assert!(matching_step(RFC_SECRET, &format!(" {right} "), t).is_some());
        for bad in ["", "12345", "1234567", "28708a", "+87082", "２８７０８２"] {
            assert_eq!(matching_step(RFC_SECRET, bad, t), None, "{bad:?}");
        }
        // Another secret's code.
        assert_eq!(matching_step(b"another secret", &right, t), None);
    }

    #[test]
    fn the_uri_carries_the_base32_secret() {
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        let uri = otpauth_uri("switchboard", "ops.team", RFC_SECRET);
        assert_eq!(
            uri,
            "otpauth://totp/switchboard:ops.team?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=switchboard&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(form_encode("a b:c"), "a%20b%3Ac");
    }
}
