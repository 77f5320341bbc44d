//! Provisioning settings in the candidate: the SIP/TLS host name that goes
//! into every configuration document and the web services base URI that
//! every activation link starts with.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU16;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::truncate_for_message as echo;
use crate::host::{Host, Hostname};

/// The base URI of the smartphone web services: `https://HOST` or
/// `https://HOST:PORT`, HOST a DNS name, an IPv4 address or a bracketed
/// IPv6 address. Nothing else: no other scheme (phones fetch credentials
/// over it), no user info, path, query or fragment (the activation link
/// appends `/p/TOKEN`). Canonical form: lowercase, no trailing `/`, no
/// `:443`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebUri {
    host: Host,
    port: Option<NonZeroU16>,
}

/// Why a string is not a web services base URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid web services URI {input:?}: {reason}")]
pub struct InvalidWebUri {
    input: String,
    reason: String,
}

impl InvalidWebUri {
    pub fn code(&self) -> &'static str {
        "invalid-web-uri"
    }

    pub fn hint(&self) -> &'static str {
        "write it as https://HOST or https://HOST:PORT, with the name phones reach the web service by, \
         e.g. https://voip.example.com"
    }
}

impl WebUri {
    pub const MAX_LEN: usize = 300;

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, 443 when none is written.
    pub fn port(&self) -> u16 {
        self.port.map_or(443, NonZeroU16::get)
    }
}

impl FromStr for WebUri {
    type Err = InvalidWebUri;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| InvalidWebUri {
            input: echo(input),
            reason: reason.to_owned(),
        };
        if input.len() > Self::MAX_LEN {
            return Err(err("it is longer than 300 characters"));
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(err(
                "it is empty or only white space (to clear the setting, give an empty value)",
            ));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(err("it does not start with https://"));
        };
        if scheme.eq_ignore_ascii_case("http") {
            return Err(err(
                "it must be https: phones fetch their credentials from it",
            ));
        }
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(err("only https:// URIs are supported"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(err(
                "it has a path, query or fragment; give only https://HOST[:PORT] (the link adds /p/TOKEN)",
            ));
        }
        if authority.contains('@') {
            return Err(err("it has a user name (user@host); give only the host"));
        }
        if authority.is_empty() {
            return Err(err("it has no host"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return Err(err("its IPv6 address has no closing ']'"));
            };
            let ip: Ipv6Addr = v6
                .parse()
                .map_err(|_| err("the address in brackets is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| err("only :PORT may follow the bracketed address"))?,
                ),
            };
            (Host::Ip(IpAddr::V6(ip).to_canonical()), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                Some(_) => {
                    return Err(err(
                        "write an IPv6 address in brackets: https://[2001:db8::1]",
                    ));
                }
                None => (authority, None),
            };
            let host: Host = host.parse().map_err(|e: crate::host::InvalidHostname| {
                err(&format!("its host is not valid ({e})"))
            })?;
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) => {
                let n = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
                    .and_then(NonZeroU16::new)
                    .ok_or_else(|| err("its port is not a number from 1 to 65535"))?;
                (n.get() != 443).then_some(n)
            }
        };
        Ok(WebUri { host, port })
    }
}

impl TryFrom<String> for WebUri {
    type Error = InvalidWebUri;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<WebUri> for String {
    fn from(u: WebUri) -> String {
        u.to_string()
    }
}

impl fmt::Display for WebUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "https://[{ip}]")?,
            host => write!(f, "https://{host}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// The provisioning part of the candidate. Both are optional: an appliance
/// without them works, it just cannot activate phones yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningSettings {
    /// The name phones connect to for SIP/TLS; it goes into every document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_tls_hostname: Option<Hostname>,
    /// Where activation links point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_uri: Option<WebUri>,
    /// The app store page of each platform: where `/install` sends a phone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub app_stores: std::collections::BTreeMap<crate::install::Platform, crate::install::StoreUrl>,
}

/// A change of the provisioning settings: a field left `None` keeps its
/// value, `Some(None)` clears it. Applied by the engine under its lock, so
/// that two administrators changing different fields at once both keep
/// their change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisioningChange {
    pub sip_tls_hostname: Option<Option<Hostname>>,
    pub web_uri: Option<Option<WebUri>>,
    /// The platforms named: a URL sets their page, `None` removes it.
    pub app_stores:
        std::collections::BTreeMap<crate::install::Platform, Option<crate::install::StoreUrl>>,
}

impl ProvisioningChange {
    /// `settings` with this change applied.
    pub fn applied_to(&self, settings: &ProvisioningSettings) -> ProvisioningSettings {
        let mut next = settings.clone();
        if let Some(h) = &self.sip_tls_hostname {
            next.sip_tls_hostname = h.clone();
        }
        if let Some(u) = &self.web_uri {
            next.web_uri = u.clone();
        }
        for (platform, url) in &self.app_stores {
            match url {
                Some(url) => next.app_stores.insert(*platform, url.clone()),
                None => next.app_stores.remove(platform),
            };
        }
        next
    }
}
