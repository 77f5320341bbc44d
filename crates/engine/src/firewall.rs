//! Putting a plan on the system: the firewall, checked, loaded in one
//! transaction and verified. The live elements of the ban sets are carried
//! into the new table in the same transaction (`bans`).

use switchboard_plan::Plan;
use switchboard_plan::nft::{self as render, TABLE};
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
    // The live bans are read and put back in the transaction that replaces
    // the table, with nothing changing them in between (see `bans`).
    let _sets = crate::bans::SETS.lock().await;
    let kept = crate::bans::restore_lines(&plan.ruleset).await?;
    let script = format!("{}{kept}", plan.ruleset);
    nft::check(&script).await.map_err(|e| e.to_string())?;
    nft::load(&script).await.map_err(|e| e.to_string())?;
    verify(plan).await?;
    let bans = kept.lines().count();
    Ok(format!(
        "firewall enforced: table inet {TABLE} loaded in one transaction and verified ({} allowed cells{})",
        plan.matrix.cells().count(),
        if bans > 0 {
            format!(", {bans} ban(s) kept")
        } else {
            String::new()
        }
    ))
}

/// The kernel runs this plan's table: its marker (a digest of the whole
/// script) is on the loaded table, and the input chain drops by default.
pub async fn verify(plan: &Plan) -> Result<(), String> {
    let want = render::marker(&plan.ruleset).ok_or("the plan has no marker")?;
    let loaded = nft::list_table_terse(TABLE)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("verification failed: table inet {TABLE} is not loaded"))?;
    if !loaded.lines().any(|l| l.trim() == want) {
        return Err(format!(
            "verification failed: the loaded table is not this plan's ({want} missing)"
        ));
    }
    if !loaded.contains("policy drop;") {
        return Err("verification failed: the input chain does not drop by default".into());
    }
    Ok(())
}

/// What the kernel has loaded, when enforcing.
pub(crate) async fn loaded(mode: FirewallMode) -> Result<Option<String>, String> {
    match mode {
        FirewallMode::Plan => Ok(None),
        FirewallMode::Enforce => nft::list_table(TABLE).await.map_err(|e| e.to_string()),
    }
}
