//! Putting a whole plan on the system, step by step.
//!
//! The steps run in order — the firewall, the built-in listeners' sockets,
//! their TLS tables, the media relay, Kamailio — and each one checks what it is given before
//! it touches anything, applies it, and verifies it. When a step fails, it
//! and every step before it are put back to the plan that was running, in
//! reverse order, so the appliance never runs half a revision.

use switchboard_domain::Facts;
use switchboard_plan::Plan;
use switchboard_store::Store;

use crate::listeners::Binding;
use crate::{Engine, failpoint, firewall};

/// A step of the apply pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `inet switchboard`: checked by the kernel's dry run, loaded in one
    /// transaction, verified by its marker.
    Firewall,
    /// The sockets of the built-in HTTPS listeners.
    Listeners,
    /// The certificates the built-in listeners present, per address.
    Tls,
    /// rtpengine's configuration and process, verified over its control
    /// sockets (before Kamailio, whose calls use it).
    Media,
    /// Kamailio's files, process and TLS sockets.
    Kamailio,
}

impl Step {
    pub(crate) const ALL: [Step; 5] = [
        Step::Firewall,
        Step::Listeners,
        Step::Tls,
        Step::Media,
        Step::Kamailio,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Firewall => "firewall",
            Step::Listeners => "listeners",
            Step::Tls => "tls",
            Step::Media => "media",
            Step::Kamailio => "kamailio",
        }
    }
}

/// One side of a [`Engine::put`]: the plan its steps put, and for the
/// firewall, whether there is one at all (`None`: no revision, no table).
struct Side<'a> {
    firewall: Option<&'a Plan>,
    plan: &'a Plan,
}

impl<'a> Side<'a> {
    fn of(plan: Option<&'a Plan>, factory: &'a Option<Plan>) -> Result<Side<'a>, String> {
        let resolved = plan
            .or(factory.as_ref())
            .ok_or("the factory plan of a side without revision is missing")?;
        Ok(Side {
            firewall: plan,
            plan: resolved,
        })
    }
}

impl Engine {
    /// Make the system run `to` (`None`: nothing applied, the factory state)
    /// where it ran `from`, through `steps`; `binding` says whether a
    /// listener socket that cannot be bound fails the listeners step (an
    /// Update) or is reported (putting a recorded revision back). Returns
    /// what was done, one clause per step; or what failed, after the failed
    /// step and those before it were put back to `from`.
    pub(crate) async fn put(
        &self,
        store: &mut Store,
        facts: &Facts,
        from: Option<&Plan>,
        to: Option<&Plan>,
        steps: &[Step],
        binding: Binding,
    ) -> Result<String, String> {
        // The factory state, for the side that is `None`: the firewall step
        // removes its table, the others put the factory plan.
        let factory = if from.is_none() || to.is_none() {
            let candidate = Self::candidate_of(store).map_err(|e| e.to_string())?;
            Some(switchboard_plan::factory(
                &candidate,
                facts,
                &self.context(),
            ))
        } else {
            None
        };
        let (from, to) = (Side::of(from, &factory)?, Side::of(to, &factory)?);
        // An Update fails for a listener socket it cannot bind only when it
        // moves the sockets: a port that was already busy before (reported
        // at boot) is no reason to refuse other changes.
        let same_listeners = from.plan.builtin_sockets().eq(to.plan.builtin_sockets());
        let mut done: Vec<Step> = Vec::new();
        let mut lines = Vec::new();
        for &step in steps {
            done.push(step);
            let binding = if step == Step::Listeners && same_listeners {
                Binding::BestEffort
            } else {
                binding
            };
            let result = match self.step(step, store, facts, &to, binding).await {
                Ok(_) if failpoint::step_fails(step.name()) && from.plan != to.plan => {
                    Err("verification failed (injected by SWITCHBOARD_FAIL_STEP)".to_owned())
                }
                other => other,
            };
            match result {
                Ok(line) => lines.push(line),
                Err(e) => {
                    let mut undo_errors = Vec::new();
                    for &s in done.iter().rev() {
                        if let Err(e) = self.step(s, store, facts, &from, Binding::BestEffort).await
                        {
                            undo_errors.push(format!("{}: {e}", s.name()));
                        }
                    }
                    let undone = done.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ");
                    let restored = if undo_errors.is_empty() {
                        format!("undone ({undone}): the previous revision is running")
                    } else {
                        format!(
                            "undoing it failed too ({}): the system may run parts of both revisions",
                            undo_errors.join("; ")
                        )
                    };
                    return Err(format!("{} step: {e}; {restored}", step.name()));
                }
            }
        }
        lines.retain(|l| !l.is_empty());
        Ok(lines.join("; "))
    }

    /// One step towards `side`.
    async fn step(
        &self,
        step: Step,
        store: &mut Store,
        facts: &Facts,
        side: &Side<'_>,
        binding: Binding,
    ) -> Result<String, String> {
        let resolved = side.plan;
        match step {
            Step::Firewall => firewall::put(self.config.firewall, side.firewall).await,
            Step::Listeners => self.listen(resolved, binding).await,
            Step::Tls => self
                .tls
                .install(resolved, facts, store)
                .map_err(|e| e.to_string()),
            Step::Media => match &self.media {
                Some(media) => media
                    .lock()
                    .await
                    .apply(resolved)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(String::new()),
            },
            Step::Kamailio => match &self.sip {
                Some(sip) => sip
                    .lock()
                    .await
                    .apply(store, facts, resolved)
                    .await
                    .map_err(|e| e.to_string()),
                None => Ok(String::new()),
            },
        }
    }
}
