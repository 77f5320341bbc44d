//! Small text helpers shared by the parsers.

/// Cut user input that is echoed in an error message to a sane length, so
/// that a megabyte-long field gives a short message. Messages print it with
/// `{:?}`, which escapes control characters.
pub(crate) use switchboard_domain::catalog::truncate_for_message as echo;

/// The conversions every validated string newtype of this crate has:
/// `TryFrom<String>` through its `FromStr` (what `#[serde(try_from)]`
/// calls), back `into` a `String`, and `Display` of the text.
macro_rules! string_newtype {
    ($ty:ident, $err:ty) => {
        impl TryFrom<String> for $ty {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use string_newtype;

/// `s` is 1 to `max_len` of `A-Z a-z 0-9 . _ -`, starting with a letter
/// or digit: a word that is safe unescaped in a SIP URI, XML, JSON and a
/// file name.
pub(crate) fn is_word(s: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(is_word_byte)
}

/// `A-Z a-z 0-9 . _ -`.
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Characters that are not control characters (`Cc`) but still change how
/// text is displayed without being seen: bidirectional embeddings,
/// overrides and isolates ("Trojan source"), zero-width characters, the
/// byte order mark, the line and paragraph separators, and the two
/// non-characters XML 1.0 forbids.
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFFE}'
            | '\u{FFFF}'
    )
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` lowercase hex digits.
pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator for the "random input never panics"
    /// loops (xorshift64*), so the tests need no `rand`.
    pub(crate) struct Noise(u64);

    impl Noise {
        pub(crate) fn new(seed: u64) -> Self {
            Noise(seed | 1)
        }

        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Up to `max_len` bytes, biased towards the bytes parsers care about.
        pub(crate) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            const INTERESTING: &[u8] = b"+-=@()[]:/.,;\"'\r\n\t 0123456789aAzZ%#?_\\<>&";
            let len = (self.next() % (max_len as u64 + 1)) as usize;
            (0..len)
                .map(|_| {
                    let r = self.next();
                    if r.is_multiple_of(3) {
                        (r >> 8) as u8
                    } else {
                        INTERESTING[(r >> 8) as usize % INTERESTING.len()]
                    }
                })
                .collect()
        }

        /// A string made of random bytes (lossily decoded) and some
        /// multi-byte characters.
        pub(crate) fn string(&mut self, max_len: usize) -> String {
            let mut s = String::from_utf8_lossy(&self.bytes(max_len)).into_owned();
            if self.next().is_multiple_of(4) {
                s.insert(
                    s.len() / 2 * usize::from(s.is_char_boundary(s.len() / 2)),
                    'é',
                );
            }
            s
        }
    }

    #[test]
    fn echoed_input_is_cut_at_64_characters() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(1000);
        assert_eq!(echo(&long).chars().count(), 65);
    }

    #[test]
    fn hex_round_trips_and_refuses_anything_else() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(unhex::<3>("00abff"), Some([0x00, 0xab, 0xff]));
        for bad in ["00ABFF", "00abf", "00abfff", "00abfg", "+0abff", "é0abf"] {
            assert_eq!(unhex::<3>(bad), None, "{bad}");
        }
    }
}
