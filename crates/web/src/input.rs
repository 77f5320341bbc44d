//! Request text into domain values, for the API and the console alike:
//! every refusal is the API's error document (the console shows the same
//! code, message and hint on its pages).

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use switchboard_engine::{EngineError, InputError};

use crate::error::ApiError;

/// A newtype of the domain (a NIC name, a service, ports, a host name...).
pub(crate) fn parse<T: std::str::FromStr>(s: &str) -> Result<T, ApiError>
where
    T::Err: Into<InputError>,
{
    s.parse::<T>()
        .map_err(|e| ApiError::from(EngineError::Input(e.into())))
}

/// An IPv4 or IPv6 address (echoed back at most 64 characters long).
pub(crate) fn address(s: &str) -> Result<IpAddr, ApiError> {
    s.parse().map_err(|_| {
        ApiError::from(EngineError::Input(InputError::Address(
            s.chars().take(64).collect(),
        )))
    })
}

pub(crate) fn provision_error(code: &'static str, message: String, hint: &'static str) -> ApiError {
    ApiError::from(EngineError::Provision {
        code,
        message,
        hint,
    })
}

/// A value of the provisioning crate (a user name, a phone number...),
/// whose error says its own code and hint.
macro_rules! parse_provision {
    ($ty:ty, $text:expr) => {
        $text
            .parse::<$ty>()
            .map_err(|e| $crate::input::provision_error(e.code(), e.to_string(), e.hint()))
    };
}
pub(crate) use parse_provision;

/// `Path`, with the error document on rejection: a segment that is not
/// percent-encoded UTF-8 (`/v1/certs/%FF`) or not of the expected type is
/// `400 malformed-path`, never axum's plain-text answer.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct PathParam<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        match r {
            PathRejection::FailedToDeserializePathParams(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-path",
                e.body_text(),
                "names and numbers in a path are percent-encoded UTF-8: check the URL",
            ),
            other => ApiError::internal(&other.body_text()),
        }
    }
}

/// A number in a path (a revision, an SMS id), or `malformed-path`.
pub(crate) fn path_number(text: &str, what: &str, hint: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-path",
            format!("{what} are whole numbers"),
            hint,
        )
    })
}

/// A text that keeps (`None`), clears (blank) or sets (anything else,
/// parsed by `parse`) a value.
pub(crate) fn change<T>(
    text: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, ApiError>,
) -> Result<Option<Option<T>>, ApiError> {
    // Only an empty text clears: one of only white space is a mistake (a
    // stray space in a form), refused by the value's parser.
    match text {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(t) => parse(t.trim()).map(|v| Some(Some(v))),
    }
}

/// A change of the provisioning settings as text: `None` keeps a value, an
/// empty text clears it, a text of only white space is refused like any
/// other value that does not parse. The API's `POST /v1/provisioning` and the
/// console's provisioning form both make one; the engine applies it.
#[derive(Debug, Default)]
pub(crate) struct ProvisioningChange<'a> {
    pub sip_tls_hostname: Option<&'a str>,
    pub web_uri: Option<&'a str>,
    pub app_stores: Vec<(switchboard_domain::install::Platform, &'a str)>,
}

impl ProvisioningChange<'_> {
    /// Parse every field: the change, or the first field that does not parse.
    pub(crate) fn parse(
        self,
    ) -> Result<switchboard_domain::provisioning::ProvisioningChange, ApiError> {
        use switchboard_domain::install::StoreUrl;
        use switchboard_domain::provisioning::WebUri;
        let mut app_stores = std::collections::BTreeMap::new();
        for (platform, url) in self.app_stores {
            let url = change(Some(url), |u| parse_provision!(StoreUrl, u))?.flatten();
            app_stores.insert(platform, url);
        }
        Ok(switchboard_domain::provisioning::ProvisioningChange {
            sip_tls_hostname: change(self.sip_tls_hostname, parse)?,
            web_uri: change(self.web_uri, |u| parse_provision!(WebUri, u))?,
            app_stores,
        })
    }
}

/// A change of a NIC's settings as text: `None` keeps a value, an empty
/// text clears it. DNS servers are addresses separated by commas or
/// spaces.
pub(crate) fn nic_settings_change(
    hostname: Option<&str>,
    public_address: Option<&str>,
    resolvers: Option<&str>,
) -> Result<switchboard_domain::tls::NicSettingsChange, ApiError> {
    Ok(switchboard_domain::tls::NicSettingsChange {
        hostname: change(hostname, parse)?,
        public_address: change(public_address, address)?,
        resolvers: resolvers.map(dns_servers).transpose()?,
    })
}

/// `198.51.100.53, 192.0.2.53`: at most a few addresses (counted before
/// any is parsed).
fn dns_servers(text: &str) -> Result<switchboard_domain::tls::Resolvers, ApiError> {
    use switchboard_domain::tls::{InvalidResolvers, MAX_RESOLVERS, Resolvers};
    let given: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .take(MAX_RESOLVERS + 1)
        .collect();
    if given.len() > MAX_RESOLVERS {
        return Err(
            EngineError::Input(InputError::Resolvers(InvalidResolvers::TooMany(
                given.len(),
            )))
            .into(),
        );
    }
    let addrs = given
        .into_iter()
        .map(address)
        .collect::<Result<Vec<_>, _>>()?;
    Resolvers::new(addrs).map_err(|e| EngineError::Input(InputError::Resolvers(e)).into())
}

/// The key type and names of a `cert request` (API and console alike):
/// at most [`MAX_REQUEST_NAMES`](switchboard_pki::MAX_REQUEST_NAMES)
/// names, counted before any is parsed; DNS names then addresses.
pub fn cert_request<'a>(
    dns: &[&'a str],
    ips: &[&'a str],
    key_type: Option<&str>,
) -> Result<
    (
        switchboard_pki::RequestKeyType,
        Vec<switchboard_pki::RequestName>,
    ),
    ApiError,
> {
    use switchboard_pki::{RequestError, RequestName};
    let refused = |e: RequestError| ApiError::from(EngineError::from(e));
    let key_type = match key_type.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.parse().map_err(refused)?,
        None => switchboard_pki::RequestKeyType::default(),
    };
    let total = dns.len() + ips.len();
    if total > switchboard_pki::MAX_REQUEST_NAMES {
        return Err(refused(RequestError::TooManyNames { found: total }));
    }
    let mut names = Vec::with_capacity(total);
    for name in dns {
        names.push(RequestName::dns(name).map_err(refused)?);
    }
    for ip in ips {
        let addr = ip.parse().map_err(|_| {
            refused(RequestError::InvalidName {
                given: ip.chars().take(80).collect(),
                reason: "not an IP address".to_owned(),
            })
        })?;
        names.push(RequestName::Ip(addr));
    }
    Ok((key_type, names))
}

/// An ACME order from its parts as typed (API and console alike): the
/// name and each domain parsed; the rest is the engine's to judge.
pub(crate) fn acme_order(
    name: &str,
    domains: &[&str],
    directory: String,
    contact: Vec<String>,
    challenge: Option<&str>,
) -> Result<switchboard_engine::acme::AcmeOrder, ApiError> {
    let challenge = match challenge.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.parse()?,
        None => Default::default(),
    };
    Ok(switchboard_engine::acme::AcmeOrder {
        challenge,
        name: parse(name)?,
        domains: domains
            .iter()
            .map(|d| parse::<switchboard_pki::Hostname>(d))
            .collect::<Result<Vec<_>, _>>()?,
        directory,
        contact,
    })
}

/// A bulk action by name (`activate`, `revoke`, `delete`, `set-group` with
/// its group: blank takes the accounts out of any).
pub(crate) fn bulk_action(
    action: &str,
    group: Option<&str>,
) -> Result<switchboard_engine::accounts::BulkAction, ApiError> {
    use switchboard_engine::accounts::BulkAction;
    Ok(match action.trim() {
        "activate" => BulkAction::Activate,
        "revoke" => BulkAction::Revoke,
        "delete" => BulkAction::Delete,
        "set-group" => BulkAction::SetGroup(
            group
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| parse_provision!(switchboard_provision::Group, g))
                .transpose()?,
        ),
        other => {
            return Err(ApiError::from(EngineError::Input(InputError::Bulk(
                format!(
                    "no action is called {:?}",
                    other.chars().take(40).collect::<String>()
                ),
            ))));
        }
    })
}

/// The user names of a bulk action, each parsed: one that does not parse
/// refuses the whole request (nothing is done).
pub(crate) fn usernames(
    names: &[String],
) -> Result<Vec<switchboard_provision::Username>, ApiError> {
    names
        .iter()
        .map(|u| parse_provision!(switchboard_provision::Username, u.trim()))
        .collect()
}
