//! Diagnostics: what validation finds in a candidate. Errors block an
//! Update; warnings are shown and do not. Every diagnostic has a stable
//! code (scripts and the console key on it), the service and NIC it is
//! about, a message saying what is wrong and a hint saying what to do.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::ServiceId;
use crate::nic::NicName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    Error,
    Warning,
}

/// The stable codes. Their kebab-case names are part of the API: never
/// rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DiagnosticCode {
    /// A cell names a NIC that is neither on the system nor known to the matrix.
    UnknownNic,
    /// A service is enabled on a NIC that has no (non-link-local) address.
    NicWithoutAddress,
    /// The console is enabled on no NIC that is present and has an address.
    ConsoleUnreachable,
    /// A NIC of the matrix is no longer on the system.
    NicGone,
    /// A NIC appeared after the last Update; it gets no service until assigned one.
    NicNew,
    /// A kernel interface has a name switchboard cannot manage.
    NicNameUnsupported,
    /// Two services with overlapping ports of the same transport share a
    /// NIC; or the console and the web services (switchboard listens for
    /// each on every address) have the same port.
    PortConflict,
    /// A TLS service is enabled on a NIC and no certificate is bound for it.
    TlsUnbound,
    /// A binding names a certificate that is not in the store.
    CertUnknown,
    /// A bound certificate cannot be presented: no key, expired, not yet valid.
    CertUnusable,
    /// A bound certificate is expired or not yet valid, bound with --force.
    CertInvalidAccepted,
    /// A bound certificate is self-signed: clients warn unless given it.
    CertSelfSigned,
    /// The SIP/TLS host name or web services URI points at a NIC where its
    /// service is not enabled: phones already activated stop working.
    ProvisioningOrphaned,
    /// No SIP/TLS host name: no configuration document can be made.
    SipTlsHostnameUnset,
    /// No web services URI: no activation link can be made.
    WebUriUnset,
    /// The certificate `sip-tls` presents does not cover the SIP/TLS host name.
    SipTlsHostnameNotCovered,
    /// The certificate `web` presents does not cover the host of the web URI.
    WebUriNotCovered,
    /// The certificate `sip-tls` would present has a key that native
    /// phones already activated do not pin: those that enforce their pins
    /// will refuse it.
    PinsBreakPhones,
    /// A SIP service is enabled and nobody is banned: the ban policy is
    /// off, or a trusted network covers every address.
    BansOff,
}

impl DiagnosticCode {
    pub fn severity(self) -> Severity {
        match self {
            DiagnosticCode::UnknownNic
            | DiagnosticCode::ConsoleUnreachable
            | DiagnosticCode::PortConflict
            | DiagnosticCode::TlsUnbound
            | DiagnosticCode::CertUnknown
            | DiagnosticCode::CertUnusable
            | DiagnosticCode::SipTlsHostnameNotCovered
            | DiagnosticCode::WebUriNotCovered => Severity::Error,
            DiagnosticCode::NicWithoutAddress
            | DiagnosticCode::NicGone
            | DiagnosticCode::NicNew
            | DiagnosticCode::NicNameUnsupported
            | DiagnosticCode::CertInvalidAccepted
            | DiagnosticCode::CertSelfSigned
            | DiagnosticCode::ProvisioningOrphaned
            | DiagnosticCode::SipTlsHostnameUnset
            | DiagnosticCode::WebUriUnset
            | DiagnosticCode::PinsBreakPhones
            | DiagnosticCode::BansOff => Severity::Warning,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticCode::UnknownNic => "unknown-nic",
            DiagnosticCode::NicWithoutAddress => "nic-without-address",
            DiagnosticCode::ConsoleUnreachable => "console-unreachable",
            DiagnosticCode::NicGone => "nic-gone",
            DiagnosticCode::NicNew => "nic-new",
            DiagnosticCode::NicNameUnsupported => "nic-name-unsupported",
            DiagnosticCode::PortConflict => "port-conflict",
            DiagnosticCode::TlsUnbound => "tls-unbound",
            DiagnosticCode::CertUnknown => "cert-unknown",
            DiagnosticCode::CertUnusable => "cert-unusable",
            DiagnosticCode::CertInvalidAccepted => "cert-invalid-accepted",
            DiagnosticCode::CertSelfSigned => "cert-self-signed",
            DiagnosticCode::ProvisioningOrphaned => "provisioning-orphaned",
            DiagnosticCode::SipTlsHostnameUnset => "sip-tls-hostname-unset",
            DiagnosticCode::WebUriUnset => "web-uri-unset",
            DiagnosticCode::SipTlsHostnameNotCovered => "sip-tls-hostname-not-covered",
            DiagnosticCode::WebUriNotCovered => "web-uri-not-covered",
            DiagnosticCode::PinsBreakPhones => "pins-break-phones",
            DiagnosticCode::BansOff => "bans-off",
        }
    }
}

impl fmt::Display for DiagnosticCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnostic {
    pub code: DiagnosticCode,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn new(
        code: DiagnosticCode,
        service: Option<ServiceId>,
        nic: Option<&NicName>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            service,
            nic: nic.map(|n| n.to_string()),
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Compiler-style: `error[console-unreachable]: message` then `  = hint: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}[{}]: {}\n  = hint: {}",
            self.code, self.message, self.hint
        )
    }
}
