//! The agent in each appliance's daemon: watch the appliance's assignment,
//! apply it through the spine, report, confirm.
//!
//! One session per contact with etcd: a lease (its status key lives only
//! as long as the appliance keeps it alive), the assignment read, a watch
//! on it. Anything failing ends the session; the appliance keeps running
//! its last applied revision (fail-static) and a new session starts after
//! a pause, reporting as soon as it is back.
//!
//! An assignment is applied pending ([`CONFIRM_WITHIN`]): the agent confirms
//! only once it has written its status through the new firewall. A policy
//! that cuts the appliance off etcd is therefore never confirmed and rolls
//! back by itself, like an administrator's Update that locks them out.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use jiff::Timestamp;
use switchboard_domain::fleet::Membership;
use switchboard_domain::fleet::rollout::Outcome;
use switchboard_engine::fleet::{FleetLast, MemberStatus, origin};
use switchboard_engine::views::UpdateView;
use switchboard_engine::{Engine, EngineError};
use tracing::{info, warn};

use crate::{Assignment, FleetError, Keys, Result, connect, decode, encode, statuses};

/// How long a fleet revision waits for the agent's confirmation.
pub const CONFIRM_WITHIN: u64 = 30;
/// The lease of a status key, in seconds: an appliance silent for longer
/// leaves the live set.
pub const LEASE_TTL: i64 = 6;
/// How often the lease is kept alive.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// How often the group's members are read again (for `GET /v1/fleet`).
const MEMBERS_EVERY: u32 = 5;
/// The pause before a new session after a failed one.
const RETRY: Duration = Duration::from_secs(1);

/// Runs for as long as the daemon: a session whenever the appliance is in a
/// fleet.
pub async fn run(engine: Arc<Engine>) {
    let mut was_down = false;
    loop {
        let membership = match engine.fleet_membership().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "fleet: cannot read the membership");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        match session(&engine, &membership, &mut was_down).await {
            Ok(()) => info!("fleet: the membership changed; a new session starts"),
            Err(e) => {
                if !was_down {
                    warn!(error = %e, "fleet: etcd is out of reach; the applied revision keeps running");
                }
                was_down = true;
                engine.fleet_saw(|v| {
                    v.connected = false;
                    v.error = Some(e.to_string());
                });
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn session(engine: &Engine, m: &Membership, was_down: &mut bool) -> Result<()> {
    let keys = Keys::new(&m.group);
    let mut client = connect(&m.etcd, &keys.policy()).await?;
    let lease = client.lease_grant(LEASE_TTL, None).await?.id();
    let (mut keeper, mut alive) = client.lease_keep_alive(lease).await?;
    let me = keys.assign(&m.appliance);
    let resp = client.get(me.as_str(), None).await?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    if let Some(kv) = resp.kvs().first() {
        let a: Assignment = decode(&me, kv.value())?;
        handle(engine, &mut client, &keys, m, lease, &a).await?;
    }
    report(engine, &mut client, &keys, m, lease).await?;
    if *was_down {
        info!("fleet: etcd is back; status reported");
        *was_down = false;
    }
    seen(engine, &mut client, &keys).await?;
    let mut events = client
        .watch(
            me.as_str(),
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await?;
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    let mut ticks = 0u32;
    let mut drift = engine.fleet_drift().await?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                keeper.keep_alive().await?;
                match alive.message().await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(FleetError::Invalid("the status lease expired".into())),
                }
                if engine.fleet_membership().await?.as_ref() != Some(m) {
                    let _ = client.lease_revoke(lease).await;
                    return Ok(());
                }
                // A local Update (drift: report) is reported when it happens.
                let now = engine.fleet_drift().await?;
                if now != drift {
                    drift = now;
                    report(engine, &mut client, &keys, m, lease).await?;
                }
                ticks += 1;
                if ticks.is_multiple_of(MEMBERS_EVERY) {
                    seen(engine, &mut client, &keys).await?;
                }
            }
            message = events.message() => {
                let Some(resp) = message? else {
                    return Err(FleetError::Invalid("etcd closed the watch".into()));
                };
                if resp.canceled() {
                    return Err(FleetError::Invalid("etcd cancelled the watch".into()));
                }
                for event in resp.events() {
                    if event.event_type() != EventType::Put {
                        continue;
                    }
                    if let Some(kv) = event.kv() {
                        let a: Assignment = decode(&me, kv.value())?;
                        handle(engine, &mut client, &keys, m, lease, &a).await?;
                        report(engine, &mut client, &keys, m, lease).await?;
                    }
                }
            }
        }
    }
}

/// Reads the group's live members for the appliance's own view.
async fn seen(engine: &Engine, client: &mut Client, keys: &Keys) -> Result<()> {
    let members = statuses(client, keys).await?;
    engine.fleet_saw(|v| {
        v.connected = true;
        v.error = None;
        v.last_contact = Some(Timestamp::now().to_string());
        v.members = members.into_values().collect();
    });
    Ok(())
}

/// Applies an assignment unless this revision and attempt were handled
/// already; records what happened.
async fn handle(
    engine: &Engine,
    client: &mut Client,
    keys: &Keys,
    m: &Membership,
    lease: i64,
    a: &Assignment,
) -> Result<()> {
    if let Some(mut last) = engine.fleet_last().await?
        && last.policy_revision == a.policy_revision
        && last.attempt == a.attempt
    {
        if last.outcome != Outcome::Pending {
            return Ok(());
        }
        // Our own trial of it, from before a lost contact or a restart:
        // still pending, it is kept once reported; gone (rolled back),
        // it is applied again below.
        if let Some(p) = engine.pending().await?
            && Some(p.revision) == last.revision
        {
            report(engine, client, keys, m, lease).await?;
            engine
                .confirm(&origin(m.group.as_str(), a.policy_revision))
                .await?;
            last.outcome = Outcome::Applied;
            engine.fleet_record(&last).await?;
            info!(policy_revision = a.policy_revision, revision = ?last.revision, "fleet: the group's policy is applied (trial kept after a lost contact)");
            return Ok(());
        }
    }
    info!(
        policy_revision = a.policy_revision,
        attempt = a.attempt,
        "fleet: applying the group's policy"
    );
    let mut last = FleetLast {
        policy_revision: a.policy_revision,
        attempt: a.attempt,
        outcome: Outcome::Pending,
        revision: None,
        detail: String::new(),
        took_ms: None,
    };
    let started = std::time::Instant::now();
    match engine
        .fleet_apply(&a.policy, a.policy_revision, CONFIRM_WITHIN)
        .await
    {
        Ok(view) if view.pending_until.is_some() => {
            last.revision = view.revision;
            last.detail = view.detail.clone();
            // Verify: etcd answers through the new rules before it is kept.
            engine.fleet_record(&last).await?;
            report(engine, client, keys, m, lease).await?;
            engine
                .confirm(&origin(m.group.as_str(), a.policy_revision))
                .await?;
            last.outcome = Outcome::Applied;
        }
        Ok(UpdateView {
            revision, detail, ..
        }) => {
            last.revision = revision;
            last.detail = detail;
            last.outcome = Outcome::Applied;
        }
        Err(EngineError::Rejected { diagnostics }) => {
            last.outcome = Outcome::Refused;
            last.detail = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| format!("{}: {}", d.code, d.message))
                .collect::<Vec<_>>()
                .join("; ");
        }
        Err(e @ EngineError::Fleet(_)) => {
            last.outcome = Outcome::Refused;
            last.detail = format!("{}: {e}", e.code());
        }
        Err(e @ EngineError::PendingConfirmation { .. }) => {
            // A revision on trial (the administrator's, or the fleet's
            // before a restart): try again once it is confirmed or gone.
            return Err(e.into());
        }
        Err(e) => {
            last.outcome = Outcome::Failed;
            last.detail = format!("{}: {e}", e.code());
        }
    }
    last.took_ms = Some(started.elapsed().as_millis() as u64);
    if last.outcome != Outcome::Applied {
        warn!(policy_revision = a.policy_revision, outcome = ?last.outcome, detail = %last.detail, "fleet: the group's policy is not applied");
    } else {
        info!(policy_revision = a.policy_revision, revision = ?last.revision, "fleet: the group's policy is applied");
    }
    engine.fleet_record(&last).await?;
    Ok(())
}

/// Writes the appliance's status under its lease.
async fn report(
    engine: &Engine,
    client: &mut Client,
    keys: &Keys,
    m: &Membership,
    lease: i64,
) -> Result<()> {
    let last = engine.fleet_last().await?;
    let status = engine.status().await?;
    let s = MemberStatus {
        appliance: m.appliance.to_string(),
        site: m.site.to_string(),
        policy_revision: last.as_ref().map_or(0, |l| l.policy_revision),
        attempt: last.as_ref().map_or(0, |l| l.attempt),
        outcome: last.as_ref().map_or(Outcome::Applied, |l| l.outcome),
        local_revision: status.applied_revision,
        detail: last.as_ref().map(|l| l.detail.clone()).unwrap_or_default(),
        drift: engine.fleet_drift().await?,
        open_padlocks: status.open_padlocks,
        reported_at: Timestamp::now().to_string(),
        took_ms: last.as_ref().and_then(|l| l.took_ms),
    };
    client
        .put(
            keys.status(&m.appliance),
            encode(&s),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
    Ok(())
}
