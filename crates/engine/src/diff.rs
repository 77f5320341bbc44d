//! Differences between two configurations (revisions or the candidate):
//! the diff of their whole plans ([`switchboard_plan::diff()`]).

use switchboard_domain::{Candidate, Facts};
use switchboard_plan::{Context, Plan};
use switchboard_store::Revision;

use crate::views::DiffView;

/// One side of a diff: a label and the plan it runs.
pub(crate) struct Side {
    label: String,
    plan: Plan,
}

impl Side {
    /// A recorded revision (its plan completed when an older version
    /// recorded it).
    pub(crate) fn revision(r: Revision) -> Side {
        Side {
            label: format!("revision {}", r.summary.number),
            plan: r.plan,
        }
    }

    /// The candidate as an Update would apply it now (rendered even when it
    /// has errors, so that the diff shows what the edits are).
    pub(crate) fn candidate(c: &Candidate, facts: &Facts, context: &Context) -> Side {
        let mut settled = c.clone();
        settled.matrix.settle(facts);
        Side {
            label: "candidate".into(),
            plan: switchboard_plan::render(&settled, facts, context),
        }
    }

    /// A new appliance: see [`switchboard_plan::factory`].
    pub(crate) fn nothing_applied(c: &Candidate, facts: &Facts, context: &Context) -> Side {
        Side {
            label: "nothing applied".into(),
            plan: switchboard_plan::factory(c, facts, context),
        }
    }
}

pub(crate) fn diff(from: &Side, to: &Side) -> DiffView {
    let diff = switchboard_plan::diff(&from.plan, &to.plan, (&from.label, &to.label));
    DiffView {
        from: from.label.clone(),
        to: to.label.clone(),
        changed: diff.changed(),
        summary: diff.summary(),
        diff,
    }
}
