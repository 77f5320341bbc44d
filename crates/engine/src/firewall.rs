//! Putting a plan on the system: the firewall, checked, loaded in one
//! transaction and verified.

use switchboard_plan::{Plan, nft::TABLE};
use switchboard_system::nft;

use crate::FirewallMode;

/// What was done, for the revision's record.
pub(crate) type Done = String;

/// Make the system run `plan` (`None`: no revision at all, so no
/// switchboard table). Returns a one-line account of what was done, or of
/// what failed; a failure leaves the previous ruleset loaded (the load is
/// one transaction; a failed verification is the caller's to undo).
pub(crate) async fn put(mode: FirewallMode, plan: Option<&Plan>) -> Result<Done, String> {
    match mode {
        FirewallMode::Plan => Ok(
            "firewall planned, not enforced (--firewall plan): the ruleset is recorded, the host firewall is untouched"
                .into(),
        ),
        FirewallMode::Enforce => match plan {
            Some(plan) => enforce(plan).await,
            None => nft::remove_table(TABLE)
                .await
                .map(|()| "no revision: switchboard's table removed, no filtering".into())
                .map_err(|e| e.to_string()),
        },
    }
}

async fn enforce(plan: &Plan) -> Result<Done, String> {
    nft::check(&plan.ruleset).await.map_err(|e| e.to_string())?;
    nft::load(&plan.ruleset).await.map_err(|e| e.to_string())?;
    let want = plan.matrix.cells().count();
    let got = nft::set_len(TABLE, "allowed")
        .await
        .map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!(
            "verification failed: the kernel holds {got} allowed cells, the plan has {want}"
        ));
    }
    Ok(format!(
        "firewall enforced: table inet {TABLE} loaded in one transaction, {want} allowed cells verified"
    ))
}

/// What the kernel has loaded, when enforcing.
pub(crate) async fn loaded(mode: FirewallMode) -> Result<Option<String>, String> {
    match mode {
        FirewallMode::Plan => Ok(None),
        FirewallMode::Enforce => nft::list_table(TABLE).await.map_err(|e| e.to_string()),
    }
}
