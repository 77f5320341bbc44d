//! Configuration documents: what `GET /p/{token}` hands a phone, chosen by
//! the account's [`ClientProfile`].
//!
//! Both carry the HA1 digest and the realm, never a clear password (see
//! [`crate::credentials`]).
//!
//! - **native**: JSON of media type [`NATIVE_MEDIA_TYPE`], version 1. Field
//!   names are stable (a new version adds fields, it never renames):
//!
//!   | field | value |
//!   |---|---|
//!   | `version` | `1` |
//!   | `issued_at` | RFC 3339 UTC time the document was made |
//!   | `hostname`, `port`, `transport` | the SIP/TLS host name, its port, `"tls"` |
//!   | `username`, `display_name`, `phone` | the account (`display_name` may be `null`) |
//!   | `realm`, `ha1`, `digest_algorithm` | digest credentials: realm, 32 hex digits, `"MD5"` |
//!   | `srtp` | `"mandatory"` or `"optional"` |
//!   | `tls_pins` | `["sha256/<base64>", ...]`, see [`CertPin`] |
//!
//!   The client connects with TLS to `hostname:port`, checks that the
//!   certificate covers `hostname`, and, when `tls_pins` is not empty,
//!   accepts the connection only if the SHA-256 of the leaf certificate's
//!   SubjectPublicKeyInfo is one of the pins, in which case it needs no
//!   system root for the chain (so a private CA or a self-signed
//!   certificate works, and a mis-issued certificate does not). An SPKI pin
//!   and not a certificate fingerprint, because a renewal with the same key
//!   keeps it; a new key needs its pin in the list before phones are
//!   activated, or their re-activation.
//!
//! - **linphone**: Linphone's remote provisioning XML (`application/xml`):
//!   section `sip` (media encryption, server certificate checks, default
//!   account), `proxy_0` (registrar over TLS, identity, expiry, realm) and
//!   `auth_info_0` (user name, `ha1`, realm, domain, algorithm), every
//!   entry `overwrite="true"`. Linphone cannot take a pin: it checks the
//!   certificate against its own trust store, which must then know the CA.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::account::{Account, ClientProfile};
use crate::settings::ProvisioningSettings;

/// The media type of the native document.
pub const NATIVE_MEDIA_TYPE: &str = "application/vnd.switchboard.sip-account+json";
/// The media type of the Linphone document.
pub const LINPHONE_MEDIA_TYPE: &str = "application/xml";
/// The REGISTER expiry the Linphone document asks for, in seconds
/// (Linphone's own default, within Kamailio's default maximum).
pub const REG_EXPIRES: u32 = 3600;

/// The pin of a TLS key: SHA-256 of the DER SubjectPublicKeyInfo of the
/// leaf certificate, written `sha256/<base64>` (standard alphabet with
/// padding, as HPKP and OkHttp write it; curl's `--pinnedpubkey` takes the
/// same value as `sha256//<base64>`). The engine computes it from the
/// certificate `sip-tls` presents with [`CertPin::of_spki_der`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertPin([u8; 32]);

/// Why a string is not a `sha256/<base64>` pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid certificate pin: expected sha256/ and 44 characters of base64")]
pub struct InvalidCertPin;

impl InvalidCertPin {
    pub fn code(&self) -> &'static str {
        "invalid-cert-pin"
    }

    pub fn hint(&self) -> &'static str {
        "compute it with `openssl x509 -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`"
    }
}

impl CertPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        CertPin(Sha256::digest(spki_der).into())
    }

    /// A pin from an SPKI digest computed elsewhere.
    pub fn from_sha256(digest: [u8; 32]) -> Self {
        CertPin(digest)
    }
}

impl FromStr for CertPin {
    type Err = InvalidCertPin;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b64 = s.strip_prefix("sha256/").ok_or(InvalidCertPin)?;
        if b64.len() != 44 {
            return Err(InvalidCertPin);
        }
        let mut out = [0u8; 32];
        match STANDARD.decode_slice(b64, &mut out) {
            Ok(32) => Ok(CertPin(out)),
            _ => Err(InvalidCertPin),
        }
    }
}

impl TryFrom<String> for CertPin {
    type Error = InvalidCertPin;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CertPin> for String {
    fn from(p: CertPin) -> String {
        p.to_string()
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256/{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin({self})")
    }
}

/// Whether calls must be encrypted (SRTP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SrtpPolicy {
    /// No SRTP, no call: what a secure-VoIP appliance ships with.
    #[default]
    Mandatory,
    /// SRTP offered, plain RTP accepted (for gateways that cannot do SRTP).
    Optional,
}

/// A configuration document, ready to be served.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    pub media_type: &'static str,
    /// The document; it holds the account's HA1 digest: never log it.
    pub body: String,
    /// For `Content-Disposition: attachment; filename=...`: only
    /// `a-z 0-9 . _ -`, so it needs no quoting.
    pub filename: String,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("media_type", &self.media_type)
            .field(
                "body",
                &format_args!("<{} bytes, redacted>", self.body.len()),
            )
            .field("filename", &self.filename)
            .finish()
    }
}

/// Why no document can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("no SIP/TLS host name is set, so a phone would not know where to connect")]
    SipTlsHostnameUnset,
}

impl DocumentError {
    pub fn code(&self) -> &'static str {
        match self {
            DocumentError::SipTlsHostnameUnset => "sip-tls-hostname-unset",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            DocumentError::SipTlsHostnameUnset => {
                "set it with `switchboard provisioning set --sip-tls-hostname HOST`"
            }
        }
    }
}

/// The configuration document of `account`, for its client profile.
/// `sip_tls_port` is the port `sip-tls` listens on in the running
/// revision, `pins` the pins of the keys `sip-tls` presents (see
/// [`CertPin`]; an empty list leaves trust to the phone's system roots),
/// `now` the time it is issued at. The same arguments give the same bytes.
pub fn document(
    account: &Account,
    settings: &ProvisioningSettings,
    sip_tls_port: NonZeroU16,
    pins: &[CertPin],
    srtp: SrtpPolicy,
    now: Timestamp,
) -> Result<Document, DocumentError> {
    let hostname = settings
        .sip_tls_hostname
        .as_ref()
        .ok_or(DocumentError::SipTlsHostnameUnset)?;
    let input = Input {
        account,
        hostname: hostname.as_str(),
        port: sip_tls_port.get(),
        pins,
        srtp,
        now,
    };
    Ok(match account.profile() {
        ClientProfile::Native => native(&input),
        ClientProfile::Linphone => linphone(&input),
    })
}

struct Input<'a> {
    account: &'a Account,
    hostname: &'a str,
    port: u16,
    pins: &'a [CertPin],
    srtp: SrtpPolicy,
    now: Timestamp,
}

/// The native document, field by field in its stable order.
#[derive(Serialize)]
struct Native<'a> {
    version: u32,
    issued_at: String,
    hostname: &'a str,
    port: u16,
    transport: &'static str,
    username: &'a str,
    display_name: Option<&'a str>,
    phone: &'a str,
    realm: &'a str,
    ha1: String,
    digest_algorithm: &'static str,
    srtp: SrtpPolicy,
    tls_pins: &'a [CertPin],
}

fn native(input: &Input<'_>) -> Document {
    let a = input.account;
    let doc = Native {
        version: 1,
        issued_at: input.now.to_string(),
        hostname: input.hostname,
        port: input.port,
        transport: "tls",
        username: a.username().as_str(),
        display_name: a.display_name().map(|d| d.as_str()),
        phone: a.phone().as_str(),
        realm: a.ha1().realm().as_str(),
        ha1: a.ha1().expose_hex(),
        digest_algorithm: "MD5",
        srtp: input.srtp,
        tls_pins: input.pins,
    };
    let mut body = serde_json::to_string_pretty(&doc).expect("the native document serializes");
    body.push('\n');
    Document {
        media_type: NATIVE_MEDIA_TYPE,
        body,
        filename: format!("switchboard-{}.json", a.username()),
    }
}

fn linphone(input: &Input<'_>) -> Document {
    let a = input.account;
    let host = input.hostname;
    let user = a.username().as_str();
    let realm = a.ha1().realm().as_str();
    let identity = match a.display_name() {
        Some(name) => format!("{} <sip:{user}@{host}>", sip_quoted(name.as_str())),
        None => format!("<sip:{user}@{host}>"),
    };
    let mandatory = match input.srtp {
        SrtpPolicy::Mandatory => "1",
        SrtpPolicy::Optional => "0",
    };
    let port = input.port.to_string();
    let proxy = format!("<sip:{host}:{port};transport=tls>");
    let ha1 = a.ha1().expose_hex();
    let expires = REG_EXPIRES.to_string();
    let sections: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "sip",
            vec![
                ("media_encryption", "srtp"),
                ("media_encryption_mandatory", mandatory),
                ("verify_server_certs", "1"),
                ("verify_server_cn", "1"),
                ("default_proxy", "0"),
            ],
        ),
        (
            "proxy_0",
            vec![
                ("reg_identity", &identity),
                ("reg_proxy", &proxy),
                ("reg_expires", &expires),
                ("reg_sendregister", "1"),
                ("realm", realm),
            ],
        ),
        (
            "auth_info_0",
            vec![
                ("username", user),
                ("ha1", &ha1),
                ("realm", realm),
                ("domain", host),
                ("algorithm", "MD5"),
            ],
        ),
    ];
    let mut body = String::with_capacity(1536);
    body.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    body.push_str(&format!(
        "<!-- switchboard account configuration, issued {} -->\n",
        input.now
    ));
    body.push_str(
        "<config xmlns=\"http://www.linphone.org/xsds/lpconfig.xsd\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.linphone.org/xsds/lpconfig.xsd lpconfig.xsd\">\n",
    );
    for (section, entries) in &sections {
        body.push_str(&format!("  <section name=\"{}\">\n", xml_escape(section)));
        for (name, value) in entries {
            body.push_str(&format!(
                "    <entry name=\"{}\" overwrite=\"true\">{}</entry>\n",
                xml_escape(name),
                xml_escape(value)
            ));
        }
        body.push_str("  </section>\n");
    }
    body.push_str("</config>\n");
    Document {
        media_type: LINPHONE_MEDIA_TYPE,
        body,
        filename: format!("linphone-{user}.xml"),
    }
}

/// `s` as a SIP quoted-string (RFC 3261 §25.1): `"` and `\` escaped with
/// `\`. Display names hold no control characters, so nothing else needs it.
fn sip_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `s` as XML character data or attribute value: the five special
/// characters escaped, and any character XML 1.0 does not allow replaced
/// by U+FFFD (the types keep them out; this is the second line).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountDraft;
    use crate::credentials::{Realm, SipPassword};
    use expect_test::expect_file;

    fn account(name: Option<&str>, profile: ClientProfile) -> Account {
        AccountDraft {
            username: "1000".parse().expect("username"),
            display_name: name.map(|n| n.parse().expect("display name")),
            phone: "+41 44 668 18 00".parse().expect("phone"),
            group: Some("sales".parse().expect("group")),
            profile,
        }
        .into_account(SipPassword::from_entropy([7; 20]), &Realm::default())
    }

    fn settings() -> ProvisioningSettings {
        ProvisioningSettings {
            sip_tls_hostname: Some("voip.example.test".parse().expect("host")),
            web_uri: Some("https://voip.example.test".parse().expect("uri")),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        "2026-11-26T09:30:00Z".parse().expect("timestamp")
    }

    fn pins() -> Vec<CertPin> {
        vec![
            CertPin::of_spki_der(b"test spki"),
            CertPin::from_sha256([0xab; 32]),
        ]
    }

    fn port() -> NonZeroU16 {
        NonZeroU16::new(5061).expect("non-zero")
    }

    /// The document of `a` with the usual settings, port, pins and mandatory SRTP.
    fn usual(a: &Account) -> Document {
        document(
            a,
            &settings(),
            port(),
            &pins(),
            SrtpPolicy::Mandatory,
            now(),
        )
        .expect("document")
    }

    #[test]
    fn the_native_document_is_stable_json_of_our_media_type() {
        let a = account(Some("Alice Müller"), ClientProfile::Native);
        let doc = usual(&a);
        assert_eq!(
            doc.media_type,
            "application/vnd.switchboard.sip-account+json"
        );
        assert_eq!(doc.filename, "switchboard-1000.json");
        expect_file!["../test_data/native.json"].assert_eq(&doc.body);
        let json: serde_json::Value = serde_json::from_str(&doc.body).expect("valid JSON");
        assert_eq!(json["ha1"], a.ha1().expose_hex());
    }

    #[test]
    fn the_linphone_document_is_remote_provisioning_xml_with_ha1() {
        let a = account(Some("Alice Müller"), ClientProfile::Linphone);
        let doc = usual(&a);
        assert_eq!(doc.media_type, "application/xml");
        assert_eq!(doc.filename, "linphone-1000.xml");
        expect_file!["../test_data/linphone.xml"].assert_eq(&doc.body);
    }

    #[test]
    fn hostile_display_names_are_escaped_in_xml_and_in_the_sip_quoted_string() {
        let a = account(Some(r#"<a&"'>\ </entry><x>"#), ClientProfile::Linphone);
        let doc =
            document(&a, &settings(), port(), &[], SrtpPolicy::Optional, now()).expect("document");
        expect_file!["../test_data/linphone-hostile.xml"].assert_eq(&doc.body);
        let identity = doc
            .body
            .lines()
            .find(|l| l.contains("reg_identity"))
            .expect("identity line");
        assert_eq!(
            identity,
            r#"    <entry name="reg_identity" overwrite="true">&quot;&lt;a&amp;\&quot;&apos;&gt;\\ &lt;/entry&gt;&lt;x&gt;&quot; &lt;sip:1000@voip.example.test&gt;</entry>"#
        );
        // Nothing but the markup itself opens a tag.
        let tags = doc.body.matches('<').count();
        assert_eq!(
            tags,
            2 + 1 + 3 * 2 + 15 * 2 + 1,
            "xml decl, comment, config, sections, entries"
        );
        let native = document(
            &account(Some(r#"<a&"'>"#), ClientProfile::Native),
            &settings(),
            port(),
            &[],
            SrtpPolicy::Optional,
            now(),
        )
        .expect("document");
        let json: serde_json::Value = serde_json::from_str(&native.body).expect("valid JSON");
        assert_eq!(json["display_name"], r#"<a&"'>"#);
        assert_eq!(json["srtp"], "optional");
        assert_eq!(json["tls_pins"], serde_json::json!([]));
    }

    #[test]
    fn an_account_without_display_name_gets_a_bare_identity_and_a_null_name() {
        let a = account(None, ClientProfile::Linphone);
        let doc = usual(&a);
        assert!(doc.body.contains(
            r#"<entry name="reg_identity" overwrite="true">&lt;sip:1000@voip.example.test&gt;</entry>"#
        ));
        let a = account(None, ClientProfile::Native);
        let doc = usual(&a);
        assert!(doc.body.contains("\"display_name\": null,"));
    }

    #[test]
    fn no_document_without_a_sip_tls_hostname_and_never_a_clear_password() {
        let unset = ProvisioningSettings::default();
        let a = account(None, ClientProfile::Native);
        let err = document(&a, &unset, port(), &[], SrtpPolicy::Mandatory, now())
            .expect_err("no hostname");
        assert_eq!(err.code(), "sip-tls-hostname-unset");
        let password = SipPassword::from_entropy([7; 20]);
        for profile in [ClientProfile::Native, ClientProfile::Linphone] {
            let doc = usual(&account(None, profile));
            assert!(!doc.body.contains(password.expose_secret()), "{profile}");
            assert!(
                !doc.body.contains("passwd") && !doc.body.contains("password"),
                "{profile}"
            );
            assert!(
                !format!("{doc:?}").contains(&a.ha1().expose_hex()),
                "Debug redacts the body"
            );
        }
    }

    #[test]
    fn pins_are_sha256_of_the_spki_in_base64_and_parse_strictly() {
        let pin = CertPin::of_spki_der(b"");
        assert_eq!(
            pin.to_string(),
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(pin.to_string().parse(), Ok(pin));
        for bad in [
            "",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "SHA256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
            "sha1/2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        ] {
            assert_eq!(bad.parse::<CertPin>(), Err(InvalidCertPin), "{bad}");
        }
    }
}
