//! The installation link: which app store a phone is sent to, by the
//! platform its browser names in `User-Agent`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::truncate_for_message as echo;

/// A phone platform, as far as app stores go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    Android,
    Ios,
    /// Anything else: desktops, and iPads that present themselves as Macs.
    Other,
}

/// Only the start of a `User-Agent` is looked at.
const UA_PREFIX: usize = 512;

/// The platform a `User-Agent` header names. Windows Phone claims to be
/// Android and iPhone too, so it is recognized first; an iPad with
/// iPadOS 13 or later sends a desktop Safari `User-Agent` and counts as
/// [`Platform::Other`] (the page can offer every store then).
pub fn platform(user_agent: &str) -> Platform {
    let ua = &user_agent.as_bytes()[..user_agent.len().min(UA_PREFIX)];
    let has = |needle: &str| {
        ua.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if has("windows phone") {
        Platform::Other
    } else if has("android") {
        Platform::Android
    } else if has("iphone") || has("ipad") || has("ipod") {
        Platform::Ios
    } else {
        Platform::Other
    }
}

/// Where an app is installed from: an `https://` URL (the store page) of at
/// most 2048 printable ASCII characters, none of which needs escaping in
/// an HTML attribute or a `Location` header (no space, quote, `<`, `>`,
/// `\`, `` ` ``, `{`, `|`, `}`, `^`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreUrl(String);

/// Why a string is not a store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store URL {input:?}: {reason}")]
pub struct InvalidStoreUrl {
    input: String,
    reason: &'static str,
}

impl InvalidStoreUrl {
    pub fn code(&self) -> &'static str {
        "invalid-store-url"
    }

    pub fn hint(&self) -> &'static str {
        "copy the https:// address of the app's page in the store, e.g. \
         https://play.google.com/store/apps/details?id=org.linphone"
    }
}

impl StoreUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StoreUrl {
    type Err = InvalidStoreUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidStoreUrl {
            input: echo(s),
            reason,
        };
        if s.len() > Self::MAX_LEN {
            return Err(err("it is longer than 2048 characters"));
        }
        let Some(rest) = s
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .map(|_| &s[8..])
        else {
            return Err(err("it does not start with https://"));
        };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err(err("it has no host"));
        }
        if !rest.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`' | b'{' | b'|' | b'}' | b'^'
                )
        }) {
            return Err(err(
                "it contains a space, quote, angle bracket or other character that must be percent-encoded",
            ));
        }
        Ok(StoreUrl(format!("https://{rest}")))
    }
}

impl TryFrom<String> for StoreUrl {
    type Error = InvalidStoreUrl;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<StoreUrl> for String {
    fn from(u: StoreUrl) -> String {
        u.0
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The store a phone with `user_agent` is sent to: the one set for its
/// platform, else the one set for [`Platform::Other`] (a page that lists
/// them all, say), else none.
pub fn install_link<'a>(
    user_agent: &str,
    stores: &'a BTreeMap<Platform, StoreUrl>,
) -> Option<&'a StoreUrl> {
    stores
        .get(&platform(user_agent))
        .or_else(|| stores.get(&Platform::Other))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
    const IPAD_OLD: &str = "Mozilla/5.0 (iPad; CPU OS 12_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    const IPADOS: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15";
    const WINDOWS_PHONE: &str = "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0 Mobile Safari/537.36 Edge/15.15063";
    const LINPHONE: &str = "LinphoneAndroid/5.2.1 (Pixel 8) LinphoneSDK/5.3.0";

    #[test]
    fn the_platform_comes_from_the_user_agent() {
        assert_eq!(platform(ANDROID), Platform::Android);
        assert_eq!(platform(LINPHONE), Platform::Android);
        assert_eq!(platform(IPHONE), Platform::Ios);
        assert_eq!(platform(IPAD_OLD), Platform::Ios);
        assert_eq!(platform(IPADOS), Platform::Other);
        assert_eq!(platform(WINDOWS_PHONE), Platform::Other);
        assert_eq!(platform(""), Platform::Other);
        assert_eq!(platform("curl/8.5.0"), Platform::Other);
        let padded = format!("{}Android", " ".repeat(600));
        assert_eq!(platform(&padded), Platform::Other, "only the start is read");
    }

    #[test]
    fn each_platform_gets_its_store_and_falls_back_to_other() {
        let url = |s: &str| s.parse::<StoreUrl>().expect("store url");
        let mut stores = BTreeMap::new();
        stores.insert(
            Platform::Android,
            url("https://play.google.com/store/apps/details?id=org.linphone"),
        );
        stores.insert(
            Platform::Ios,
            url("https://apps.apple.com/app/linphone/id360065638"),
        );
        assert_eq!(
            install_link(ANDROID, &stores),
            stores.get(&Platform::Android)
        );
        assert_eq!(install_link(IPHONE, &stores), stores.get(&Platform::Ios));
        assert_eq!(install_link(IPADOS, &stores), None);
        stores.insert(Platform::Other, url("https://voip.example.test/apps"));
        assert_eq!(install_link(IPADOS, &stores), stores.get(&Platform::Other));
        stores.remove(&Platform::Ios);
        assert_eq!(install_link(IPHONE, &stores), stores.get(&Platform::Other));
        let json = serde_json::to_string(&stores).expect("json");
        assert_eq!(
            json,
            r#"{"android":"https://play.google.com/store/apps/details?id=org.linphone","other":"https://voip.example.test/apps"}"#
        );
    }

    #[test]
    fn store_urls_are_https_and_need_no_escaping() {
        assert_eq!(
            "HTTPS://apps.apple.com/x"
                .parse::<StoreUrl>()
                .map(String::from),
            Ok("https://apps.apple.com/x".into())
        );
        for bad in [
            "",
            "http://play.google.com/x",
            "javascript:alert(1)",
            "market://details?id=org.linphone",
            "https://",
            "https:///x",
            "https://a b",
            "https://a\"onmouseover=\"x",
            "https://a/<script>",
            "https://a/\r\nSet-Cookie: x",
            "https://é.test",
            &format!("https://a/{}", "x".repeat(2048)),
        ] {
            let err = bad.parse::<StoreUrl>().expect_err(bad);
            assert_eq!(err.code(), "invalid-store-url");
        }
    }
}
