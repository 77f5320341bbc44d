//! Differences between two configurations (revisions or the candidate).

use similar::TextDiff;
use switchboard_domain::{Candidate, Facts, Matrix, ResolvedMatrix, ServiceId};
use switchboard_store::Revision;

use crate::views::{CellChange, Change, DiffView, PortChange};

/// One side of a diff.
pub(crate) struct Side {
    label: String,
    candidate: Candidate,
    matrix: ResolvedMatrix,
    ruleset: String,
}

impl Side {
    pub(crate) fn revision(r: &Revision) -> Side {
        Side {
            label: format!("revision {}", r.summary.number),
            candidate: r.candidate.clone(),
            matrix: r.plan.matrix.clone(),
            ruleset: r.plan.ruleset.clone(),
        }
    }

    /// The candidate as an Update would apply it now.
    pub(crate) fn candidate(c: &Candidate, facts: &Facts) -> Side {
        let mut settled = c.clone();
        settled.matrix.settle(facts);
        let matrix = settled.matrix.resolve(facts);
        let ruleset = switchboard_plan::nft::render(&settled, &matrix);
        Side {
            label: "candidate".into(),
            candidate: settled,
            matrix,
            ruleset,
        }
    }

    /// A new appliance: no firewall, so every service answers on every NIC.
    pub(crate) fn nothing_applied(facts: &Facts) -> Side {
        Side {
            label: "nothing applied".into(),
            candidate: Candidate::default(),
            matrix: Matrix::Factory.resolve(facts),
            ruleset: String::new(),
        }
    }
}

pub(crate) fn diff(from: &Side, to: &Side) -> DiffView {
    let mut matrix = Vec::new();
    for service in ServiceId::all() {
        let (a, b) = (from.matrix.nics_of(service), to.matrix.nics_of(service));
        for nic in b.difference(a) {
            matrix.push(CellChange {
                service,
                nic: nic.to_string(),
                change: Change::Added,
            });
        }
        for nic in a.difference(b) {
            matrix.push(CellChange {
                service,
                nic: nic.to_string(),
                change: Change::Removed,
            });
        }
    }
    let ports: Vec<PortChange> = ServiceId::all()
        .filter_map(|service| {
            let (a, b) = (from.candidate.port(service), to.candidate.port(service));
            (a != b).then_some(PortChange {
                service,
                from: a,
                to: b,
            })
        })
        .collect();
    let ruleset = TextDiff::from_lines(&from.ruleset, &to.ruleset)
        .unified_diff()
        .header(&from.label, &to.label)
        .to_string();
    DiffView {
        from: from.label.clone(),
        to: to.label.clone(),
        changed: !matrix.is_empty() || !ports.is_empty() || !ruleset.is_empty(),
        matrix,
        ports,
        ruleset,
    }
}
