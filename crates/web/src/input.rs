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

/// A change of the provisioning settings as text: `None` keeps a value, an
/// empty text clears it, a text of only white space is refused like any
/// other value that does not parse. The API's `POST /v1/provisioning` and the
/// console's provisioning form both make one.
#[derive(Debug, Default)]
pub(crate) struct ProvisioningChange<'a> {
    pub sip_tls_hostname: Option<&'a str>,
    pub web_uri: Option<&'a str>,
    pub app_stores: Vec<(switchboard_domain::install::Platform, &'a str)>,
}

impl ProvisioningChange<'_> {
    /// Parse every field and apply it to `settings`; nothing is changed
    /// when a field does not parse.
    pub(crate) fn apply(
        self,
        settings: &mut switchboard_domain::provisioning::ProvisioningSettings,
    ) -> Result<(), ApiError> {
        use switchboard_domain::install::StoreUrl;
        use switchboard_domain::provisioning::WebUri;
        let mut next = settings.clone();
        // Only an empty value clears: one of only white space is a
        // mistake (a stray space in a form), refused by the value's parser.
        match self.sip_tls_hostname {
            None => {}
            Some("") => next.sip_tls_hostname = None,
            Some(h) => next.sip_tls_hostname = Some(parse(h.trim())?),
        }
        match self.web_uri {
            None => {}
            Some("") => next.web_uri = None,
            Some(u) => next.web_uri = Some(parse_provision!(WebUri, u.trim())?),
        }
        for (platform, url) in self.app_stores {
            match url {
                "" => next.app_stores.remove(&platform),
                url => next
                    .app_stores
                    .insert(platform, parse_provision!(StoreUrl, url.trim())?),
            };
        }
        *settings = next;
        Ok(())
    }
}
