//! The error document of the API, and the one mapping from engine errors
//! to HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_domain::Diagnostic;
use switchboard_engine::EngineError;
use tracing::error;

/// What a client gets when a request fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, kebab-case: what went wrong.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// The candidate's diagnostics, when they are why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// For a refused CSV file: every bad row (`line`, `column`, `code`,
    /// `message`, `hint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<switchboard_provision::CsvProblem>)]
    pub problems: Vec<serde_json::Value>,
}

/// The error document: `{"error": {...}}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDocument {
    pub error: ErrorBody,
}

/// A failed request's code, message and hint, as a response extension
/// beside its JSON document: what the console shows as an HTML page
/// (`console::html_errors`) without reading the document back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorWords {
    pub code: String,
    pub message: String,
    pub hint: String,
}

/// The error code of a failed request, as a response extension: what the
/// audit middleware ([`crate::api::audit_changes`]) records next to the
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode(pub String);

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: code.into(),
                message: message.into(),
                hint: hint.into(),
                diagnostics: vec![],
                problems: vec![],
            }),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client gets (the console shows it on its pages).
    pub fn into_body(self) -> ErrorBody {
        *self.body
    }

    /// A failure of the appliance itself: the details go to the log, the
    /// client gets a generic message.
    pub fn internal(detail: &str) -> Self {
        error!(detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the appliance failed to complete the request",
            "see the daemon's log for details",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        // One exhaustive match, no wildcard: a new variant must be decided here.
        let status = match &e {
            EngineError::Input(_) => StatusCode::BAD_REQUEST,
            EngineError::Matrix(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Rejected { .. }
            | EngineError::WouldLockOut { .. }
            | EngineError::PendingConfirmation { .. }
            | EngineError::NothingPending => StatusCode::CONFLICT,
            EngineError::NoSuchRevision(_)
            | EngineError::NoSuchCert(_)
            | EngineError::NotBanned(_)
            | EngineError::NoSuchAdmin(_) => StatusCode::NOT_FOUND,
            EngineError::Refused { .. } => StatusCode::CONFLICT,
            EngineError::CertInUse { .. }
            | EngineError::CertUnbindable { .. }
            | EngineError::CertExists(_) => StatusCode::CONFLICT,
            EngineError::Import {
                code: "oversize", ..
            } => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::Import { .. }
            | EngineError::Provision { .. }
            | EngineError::CsvRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::NoSuchAccount(_) | EngineError::NoSuchSms(_) | EngineError::LinkGone => {
                StatusCode::NOT_FOUND
            }
            EngineError::SmsNotResendable { .. } => StatusCode::CONFLICT,
            EngineError::ActivationUnavailable => StatusCode::CONFLICT,
            EngineError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            EngineError::WrongPassword => StatusCode::FORBIDDEN,
            // The message says what the system answered: the administrator
            // needs it, and it holds no secret.
            EngineError::ApplyFailed { .. } | EngineError::System(_) => StatusCode::BAD_GATEWAY,
            EngineError::Acme {
                code: "invalid-acme-request",
                ..
            } => StatusCode::BAD_REQUEST,
            EngineError::Acme {
                code: "not-renewable",
                ..
            } => StatusCode::CONFLICT,
            EngineError::Acme { .. } => StatusCode::BAD_GATEWAY,
            EngineError::Fleet(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::FleetManaged { .. } => StatusCode::CONFLICT,
            EngineError::Discovery(_) | EngineError::Store(_) => {
                error!(error = %e, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "the appliance failed to complete the request".to_owned()
        } else {
            e.to_string()
        };
        let mut err = ApiError::new(status, e.code(), message, e.hint());
        match e {
            EngineError::Rejected { diagnostics } => err.body.diagnostics = diagnostics,
            EngineError::CsvRejected(problems) => err.body.problems = problems,
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode(self.body.code.clone());
        let words = ErrorWords {
            code: self.body.code.clone(),
            message: self.body.message.clone(),
            hint: self.body.hint.clone(),
        };
        let mut response = (self.status, Json(ErrorDocument { error: *self.body })).into_response();
        response.extensions_mut().insert(code);
        response.extensions_mut().insert(words);
        response
    }
}
