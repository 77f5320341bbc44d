//! The planner: a pure function from (candidate, facts) to a [`Plan`].
//!
//! The plan is everything an Update will put on the system, rendered
//! before anything is touched: the nftables ruleset and the certificate
//! each TLS service presents on each NIC. [`kamailio`] renders the SIP
//! server's configuration from the same inputs (not yet part of [`Plan`]:
//! the adapter that applies it arrives with its issue).
//!
//! **Boundary.** No I/O, no clock: the same candidate and facts always give
//! the same plan, byte for byte. That is what lets the renderers be
//! golden-tested (`test_data/`, refreshed with `UPDATE_EXPECT=1`) and lets
//! the daemon compare the plan of a revision with what is loaded.
//!
//! **Invariant.** Only names that went through the domain's newtypes reach a
//! renderer, so no interface name or port can inject ruleset syntax.

pub mod kamailio;
pub mod nft;

use serde::{Deserialize, Serialize};
use switchboard_domain::{
    Candidate, CertName, Diagnostic, Facts, NicName, ResolvedMatrix, ServiceId, validate,
};

/// What an Update applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The matrix made concrete: for each service, the NICs it is reachable on.
    pub matrix: ResolvedMatrix,
    /// The complete nftables script: one transaction that replaces
    /// switchboard's own table and touches no other.
    pub ruleset: String,
    /// The certificate each TLS service presents on each NIC it is enabled
    /// on (NICs on the system only).
    #[serde(default)]
    pub tls: Vec<TlsAssignment>,
}

/// "Service S on NIC N presents certificate C (fingerprint F)".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsAssignment {
    pub service: ServiceId,
    pub nic: NicName,
    pub cert: CertName,
    pub fingerprint: String,
}

/// Why a candidate cannot be planned: its error diagnostics (warnings are
/// included, so the caller can show everything at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub diagnostics: Vec<Diagnostic>,
}

/// Validate `candidate` against `facts` and, when no diagnostic is an
/// error, render the plan. Returns the warnings alongside the plan.
pub fn plan(candidate: &Candidate, facts: &Facts) -> Result<(Plan, Vec<Diagnostic>), Rejected> {
    let diagnostics = validate(candidate, facts);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(Rejected { diagnostics });
    }
    let matrix = candidate.matrix.resolve(facts);
    let ruleset = nft::render(candidate, &matrix);
    let tls = tls_assignments(candidate, facts, &matrix);
    Ok((
        Plan {
            matrix,
            ruleset,
            tls,
        },
        diagnostics,
    ))
}

/// Validation guarantees every enabled TLS cell of a present NIC has a
/// known certificate; cells without one are left out rather than guessed.
fn tls_assignments(
    candidate: &Candidate,
    facts: &Facts,
    matrix: &ResolvedMatrix,
) -> Vec<TlsAssignment> {
    let mut out = Vec::new();
    for service in ServiceId::all().filter(|s| s.info().tls) {
        for nic in matrix
            .nics_of(service)
            .iter()
            .filter(|n| facts.nic(n).is_some())
        {
            let Some(cert) = candidate.bindings.resolve(service, nic) else {
                continue;
            };
            let Some(c) = facts.certificates.get(cert) else {
                continue;
            };
            out.push(TlsAssignment {
                service,
                nic: nic.clone(),
                cert: cert.clone(),
                fingerprint: c.fingerprint.clone(),
            });
        }
    }
    out
}
