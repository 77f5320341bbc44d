//! The activation link and the SMS that carries it.
//!
//! An SMS holds 160 characters of the GSM 7-bit default alphabet (3GPP TS
//! 23.038), where the characters of the extension table (`^ { } \ [ ~ ] |
//! €` and form feed) take two. A text with any other character goes as
//! UCS-2 (UTF-16 code units): 70. Longer texts are sent as a concatenated
//! SMS whose parts lose room to the concatenation header: 153 septets or
//! 67 code units each, and a part never ends in the middle of an escaped
//! character or a surrogate pair.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::account::DisplayName;
use crate::settings::WebUri;
use crate::token::ActivationToken;

/// The link an activation SMS carries: `{web_uri}/p/{token}`. A secret
/// while the token lives: `Debug` and `Display` show the base and redact
/// the token; [`ActivationLink::expose`] gives the whole link.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationLink {
    base: String,
    token: String,
}

impl ActivationLink {
    /// The path prefix of activation links on the web service.
    pub const PATH: &'static str = "/p/";

    /// The whole link, token included: for the SMS and the QR code only.
    pub fn expose(&self) -> String {
        format!("{}{}", self.base, self.token)
    }
}

impl fmt::Debug for ActivationLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActivationLink({self})")
    }
}

impl fmt::Display for ActivationLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}<redacted>", self.base)
    }
}

/// The link to activate with `token` on the web service at `web_uri`.
pub fn activation_link(web_uri: &WebUri, token: &ActivationToken) -> ActivationLink {
    ActivationLink {
        base: format!("{web_uri}{}", ActivationLink::PATH),
        token: token.expose(),
    }
}

/// How an SMS text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmsEncoding {
    /// GSM 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2 (UTF-16 code units).
    Ucs2,
}

/// How long a text is as an SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsLength {
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Messages it is sent as: 1, or the parts of a concatenated SMS.
    pub parts: usize,
}

impl SmsLength {
    /// Room in a single message.
    pub fn single_limit(encoding: SmsEncoding) -> usize {
        match encoding {
            SmsEncoding::Gsm7 => 160,
            SmsEncoding::Ucs2 => 70,
        }
    }

    /// Room in each part of a concatenated message.
    pub fn part_limit(encoding: SmsEncoding) -> usize {
        match encoding {
            SmsEncoding::Gsm7 => 153,
            SmsEncoding::Ucs2 => 67,
        }
    }
}

/// The GSM 03.38 default alphabet, in table order (without the escape
/// code 0x1B).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The default extension table: each is the escape code and one more septet.
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, `None` if it has no GSM-7 encoding.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// How `text` goes out as an SMS: GSM-7 when every character has a GSM-7
/// encoding, UCS-2 otherwise; and in how many parts.
pub fn sms_length(text: &str) -> SmsLength {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    let (encoding, costs) = match gsm {
        Some(costs) => (SmsEncoding::Gsm7, costs),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
        ),
    };
    let units = costs.iter().sum();
    let parts = if units <= SmsLength::single_limit(encoding) {
        1
    } else {
        let limit = SmsLength::part_limit(encoding);
        let mut parts = 1;
        let mut used = 0;
        for cost in costs {
            if used + cost > limit {
                parts += 1;
                used = 0;
            }
            used += cost;
        }
        parts
    };
    SmsLength {
        encoding,
        units,
        parts,
    }
}

/// The text of an activation SMS. It holds the link, so `Debug` shows only
/// its length; [`SmsText::expose`] gives the text for the gateway and the
/// outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsText {
    text: String,
    length: SmsLength,
}

impl SmsText {
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn length(&self) -> SmsLength {
        self.length
    }
}

impl fmt::Debug for SmsText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsText")
            .field("text", &"<redacted>")
            .field("length", &self.length)
            .finish()
    }
}

/// The activation SMS: `Hello {name}, your phone account is ready: {link}`
/// when that fits in one message, else `Your phone account is ready:
/// {link}` (a name outside GSM-7 makes the whole text UCS-2, where 70
/// characters do not hold it). If even that does not fit (a long web
/// services host name), the shorter text goes as a concatenated SMS and
/// [`SmsText::length`] says in how many parts.
pub fn activation_sms(display_name: Option<&DisplayName>, link: &ActivationLink) -> SmsText {
    let link = link.expose();
    let plain = format!("Your phone account is ready: {link}");
    let greeting =
        display_name.map(|name| format!("Hello {name}, your phone account is ready: {link}"));
    let make = |text: String| {
        let length = sms_length(&text);
        SmsText { text, length }
    };
    match greeting.map(make) {
        Some(sms) if sms.length.parts == 1 => sms,
        _ => make(plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(web_uri: &str) -> ActivationLink {
        activation_link(
            &web_uri.parse().expect("web uri"),
            &ActivationToken::from_entropy([0xfb; 16]),
        )
    }

    fn len(text: &str) -> (SmsEncoding, usize, usize) {
        let l = sms_length(text);
        (l.encoding, l.units, l.parts)
    }

    #[test]
    fn the_link_is_the_web_uri_then_p_then_the_token_and_is_redacted_in_logs() {
        let l = link("https://voip.example.test:8443/");
        assert_eq!(
            l.expose(),
            "https://voip.example.test:8443/p/-_v7-_v7-_v7-_v7-_v7-w"
        );
        assert_eq!(l.to_string(), "https://voip.example.test:8443/p/<redacted>");
        assert_eq!(
            format!("{l:?}"),
            "ActivationLink(https://voip.example.test:8443/p/<redacted>)"
        );
    }

    #[test]
    fn the_gsm7_tables_have_127_basic_and_10_extension_characters() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
        assert!(
            "-_:/.?=&%ABCXYZabcxyz0189"
                .chars()
                .all(|c| gsm7_septets(c) == Some(1)),
            "links are plain GSM-7"
        );
    }

    #[test]
    fn gsm7_fits_160_septets_in_one_message_and_153_in_each_part() {
        assert_eq!(len(""), (SmsEncoding::Gsm7, 0, 1));
        assert_eq!(len(&"a".repeat(160)), (SmsEncoding::Gsm7, 160, 1));
        assert_eq!(len(&"a".repeat(161)), (SmsEncoding::Gsm7, 161, 2));
        assert_eq!(len(&"a".repeat(306)), (SmsEncoding::Gsm7, 306, 2));
        assert_eq!(len(&"a".repeat(307)), (SmsEncoding::Gsm7, 307, 3));
        assert_eq!(
            len("Ça coûte 5 £"),
            (SmsEncoding::Ucs2, 12, 1),
            "û is not GSM-7"
        );
        assert_eq!(len("Ça coute 5 £ à Zürich"), (SmsEncoding::Gsm7, 21, 1));
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_never_split() {
        assert_eq!(len("€"), (SmsEncoding::Gsm7, 2, 1));
        assert_eq!(len("{[~]}|^\\\u{c}"), (SmsEncoding::Gsm7, 18, 1));
        assert_eq!(
            len(&format!("{}€", "a".repeat(158))),
            (SmsEncoding::Gsm7, 160, 1)
        );
        assert_eq!(
            len(&format!("{}€", "a".repeat(159))),
            (SmsEncoding::Gsm7, 161, 2)
        );
        // 152 septets then €: the escape would be septet 153 of part one,
        // its character the first of part two, so € moves whole to part two.
        let split = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(len(&split), (SmsEncoding::Gsm7, 306, 3));
        let fits = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(len(&fits), (SmsEncoding::Gsm7, 306, 2));
        assert_eq!(
            len("\u{1b}"),
            (SmsEncoding::Ucs2, 1, 1),
            "a bare escape is not text"
        );
    }

    #[test]
    fn ucs2_fits_70_code_units_in_one_message_and_67_in_each_part() {
        assert_eq!(len(&"ж".repeat(70)), (SmsEncoding::Ucs2, 70, 1));
        assert_eq!(len(&"ж".repeat(71)), (SmsEncoding::Ucs2, 71, 2));
        assert_eq!(len(&"ж".repeat(134)), (SmsEncoding::Ucs2, 134, 2));
        assert_eq!(len(&"ж".repeat(135)), (SmsEncoding::Ucs2, 135, 3));
        // An emoji is a surrogate pair: two units, never split.
        assert_eq!(len("📞"), (SmsEncoding::Ucs2, 2, 1));
        let split = format!("{}📞{}", "ж".repeat(66), "ж".repeat(66));
        assert_eq!(len(&split), (SmsEncoding::Ucs2, 134, 3));
        let mixed = format!("{}ж", "a".repeat(69));
        assert_eq!(
            len(&mixed),
            (SmsEncoding::Ucs2, 70, 1),
            "one non-GSM character makes all UCS-2"
        );
    }

    #[test]
    fn the_sms_greets_by_name_when_that_fits_in_one_message() {
        let l = link("https://voip.example.test");
        let name: DisplayName = "Alice Müller".parse().expect("name");
        let sms = activation_sms(Some(&name), &l);
        assert_eq!(
            sms.expose(),
            "Hello Alice Müller, your phone account is ready: https://voip.example.test/p/-_v7-_v7-_v7-_v7-_v7-w"
        );
        assert_eq!(sms.length().encoding, SmsEncoding::Gsm7);
        assert_eq!(sms.length().parts, 1);
        assert!(!format!("{sms:?}").contains("-_v7"), "Debug hides the link");

        let plain = activation_sms(None, &l);
        assert_eq!(
            plain.expose(),
            "Your phone account is ready: https://voip.example.test/p/-_v7-_v7-_v7-_v7-_v7-w"
        );
    }

    #[test]
    fn a_name_that_would_need_ucs2_or_a_second_part_is_left_out() {
        let l = link("https://voip.example.test");
        let cyrillic: DisplayName = "Анна".parse().expect("name");
        let sms = activation_sms(Some(&cyrillic), &l);
        assert!(
            sms.expose().starts_with("Your phone account"),
            "{}",
            sms.expose()
        );
        assert_eq!(sms.length().encoding, SmsEncoding::Gsm7);
        let long: DisplayName = "A".repeat(64).parse().expect("name");
        let fits = activation_sms(Some(&long), &l);
        assert!(fits.expose().starts_with("Hello AAAA"), "151 septets fit");
        assert_eq!(fits.length().units, 151);
        let longer = link("https://provisioning.voip.example.test");
        let sms = activation_sms(Some(&long), &longer);
        assert!(sms.expose().starts_with("Your phone account"));
        assert_eq!(sms.length().parts, 1);
    }

    #[test]
    fn a_link_too_long_for_one_message_goes_in_parts() {
        let host = format!("{}.{}.example.test", "a".repeat(63), "b".repeat(40));
        let l = link(&format!("https://{host}:65535"));
        let sms = activation_sms(None, &l);
        assert_eq!(sms.length().encoding, SmsEncoding::Gsm7);
        assert_eq!(sms.length().units, sms.expose().len());
        assert!(sms.length().units > 160);
        assert_eq!(sms.length().parts, 2);
    }
}
