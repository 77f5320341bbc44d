//! The planner: a pure function from (candidate, facts) to a [`Plan`].
//!
//! The plan is everything an Update will put on the system, rendered to
//! text before anything is touched: today the nftables ruleset; listener,
//! certificate and Kamailio tables arrive with their issues.
//!
//! **Boundary.** No I/O, no clock: the same candidate and facts always give
//! the same plan, byte for byte. That is what lets the renderers be
//! golden-tested (`test_data/`, refreshed with `UPDATE_EXPECT=1`) and lets
//! the daemon compare the plan of a revision with what is loaded.
//!
//! **Invariant.** Only names that went through the domain's newtypes reach a
//! renderer, so no interface name or port can inject ruleset syntax.

pub mod nft;

use serde::{Deserialize, Serialize};
use switchboard_domain::{Candidate, Diagnostic, Facts, ResolvedMatrix, validate};

/// What an Update applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The matrix made concrete: for each service, the NICs it is reachable on.
    pub matrix: ResolvedMatrix,
    /// The complete nftables script: one transaction that replaces
    /// switchboard's own table and touches no other.
    pub ruleset: String,
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
    Ok((Plan { matrix, ruleset }, diagnostics))
}
