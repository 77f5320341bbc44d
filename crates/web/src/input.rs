//! Request text into domain values, for the API and the console alike:
//! every refusal is the API's error document (the console shows the same
//! code, message and hint on its pages).

use std::net::IpAddr;

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
