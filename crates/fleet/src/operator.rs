//! The operator's side: write a group's policy, start, drive, halt and
//! resume its rollouts, read the fleet's status.
//!
//! The coordinator is whoever drives the rollout ([`drive`]: the CLI that
//! started or resumed it): each move is one etcd transaction conditioned on
//! the rollout key's `mod_revision`, so two coordinators never both move it,
//! and a coordinator that loses etcd (a leader change, a member down) reads
//! again and carries on where the rollout is.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use jiff::Timestamp;
use switchboard_domain::fleet::rollout::{Action, Rollout, State, WaveSpec};
use switchboard_domain::fleet::{EtcdAccess, GroupPolicy, Label};
use tracing::{info, warn};

use crate::{
    Assignment, FleetError, Keys, Result, Status, connect, decode, encode, rollout, statuses,
};

/// Writes a group's policy (checked first: a policy that does not read is
/// refused and nothing is written). Returns its policy revision.
pub async fn set_policy(client: &mut Client, group: &Label, text: &str) -> Result<i64> {
    let policy = GroupPolicy::parse(text).map_err(|e| FleetError::Invalid(e.to_string()))?;
    let keys = Keys::new(group);
    let resp = client.put(keys.policy(), encode(&policy), None).await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
}

/// The group's policy and its revision.
pub async fn policy(client: &mut Client, keys: &Keys) -> Result<Option<(GroupPolicy, i64)>> {
    let resp = client.get(keys.policy(), None).await?;
    match resp.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some((
            decode(&keys.policy(), kv.value())?,
            kv.mod_revision(),
        ))),
    }
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

/// The condition that the rollout is still what was read.
fn unchanged(keys: &Keys, seen: Option<i64>) -> Compare {
    Compare::mod_revision(keys.rollout(), CompareOp::Equal, seen.unwrap_or(0))
}

fn assign_ops(keys: &Keys, members: &[Label], a: &Assignment) -> Vec<TxnOp> {
    members
        .iter()
        .map(|m| TxnOp::put(keys.assign(m), encode(a), None))
        .collect()
}

/// Starts a rollout of the group's current policy to its live members,
/// cut into `spec`'s waves; gives the first wave the policy.
pub async fn start(
    client: &mut Client,
    group: &Label,
    spec: &WaveSpec,
    wave_timeout: i64,
) -> Result<Rollout> {
    let keys = Keys::new(group);
    let (policy, policy_revision) = policy(client, &keys).await?.ok_or_else(|| {
        FleetError::Invalid(format!(
            "group {group} has no policy: write one first (fleet policy set)"
        ))
    })?;
    let current = rollout(client, &keys).await?;
    if let Some((r, _)) = &current
        && matches!(r.state, State::Running { .. })
    {
        return Err(FleetError::Invalid(format!(
            "a rollout of policy revision {} is running: halt it first",
            r.policy_revision
        )));
    }
    let members: Vec<Label> = statuses(client, &keys).await?.into_keys().collect();
    let (r, first) = Rollout::start(policy_revision, spec, &members, wave_timeout, now())
        .map_err(FleetError::Invalid)?;
    let assignment = Assignment {
        policy_revision,
        attempt: 0,
        policy,
    };
    let mut ops = vec![TxnOp::put(keys.rollout(), encode(&r), None)];
    ops.extend(assign_ops(&keys, &first, &assignment));
    let txn = Txn::new()
        .when([
            unchanged(&keys, current.map(|(_, rev)| rev)),
            Compare::mod_revision(keys.policy(), CompareOp::Equal, policy_revision),
        ])
        .and_then(ops);
    if !client.txn(txn).await?.succeeded() {
        return Err(FleetError::Invalid(
            "the policy or the rollout changed meanwhile: start again".into(),
        ));
    }
    info!(policy_revision, waves = r.waves.len(), "rollout started");
    Ok(r)
}

/// One move of the coordinator: read, step, write. Returns the rollout as
/// it is afterwards.
pub async fn step(client: &mut Client, keys: &Keys) -> Result<Option<Rollout>> {
    let Some((mut r, seen)) = rollout(client, keys).await? else {
        return Ok(None);
    };
    let reports: BTreeMap<Label, _> = statuses(client, keys)
        .await?
        .into_iter()
        .map(|(k, s)| (k, s.report()))
        .collect();
    let action = r.step(&reports, now());
    if action == Action::Wait {
        return Ok(Some(r));
    }
    let mut ops = vec![TxnOp::put(keys.rollout(), encode(&r), None)];
    if let Action::Assign(members) = &action {
        let (policy, _) = policy_at(client, keys, r.policy_revision).await?;
        let a = Assignment {
            policy_revision: r.policy_revision,
            attempt: r.attempt,
            policy,
        };
        ops.extend(assign_ops(keys, members, &a));
    }
    let txn = Txn::new().when([unchanged(keys, Some(seen))]).and_then(ops);
    if client.txn(txn).await?.succeeded() {
        match &action {
            Action::Assign(m) => info!(members = m.len(), "rollout: next wave"),
            Action::Halt => warn!(state = ?r.state, "rollout halted"),
            Action::Finish => info!("rollout done"),
            Action::Wait => {}
        }
    }
    Ok(Some(r))
}

/// The policy of revision `revision` (the assignments of the first wave
/// carry it: the policy key may have moved on since).
async fn policy_at(client: &mut Client, keys: &Keys, revision: i64) -> Result<(GroupPolicy, i64)> {
    let resp = client
        .get(
            keys.assign_prefix(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    for kv in resp.kvs() {
        if let Ok(a) = decode::<Assignment>("assignment", kv.value())
            && a.policy_revision == revision
        {
            return Ok((a.policy, revision));
        }
    }
    match policy(client, keys).await? {
        Some((p, rev)) if rev == revision => Ok((p, rev)),
        _ => Err(FleetError::Invalid(format!(
            "policy revision {revision} is no longer to be found"
        ))),
    }
}

/// Drives the group's rollout until it is done or halted, through etcd
/// failures (a lost leader, a member down): each failure means connect
/// again and read again.
pub async fn drive(access: &EtcdAccess, group: &Label, every: Duration) -> Result<Rollout> {
    let keys = Keys::new(group);
    let mut client = connect(access, &keys.policy()).await?;
    loop {
        match step(&mut client, &keys).await {
            Ok(None) => return Err(FleetError::Invalid(format!("group {group} has no rollout"))),
            Ok(Some(r)) if !matches!(r.state, State::Running { .. }) => return Ok(r),
            Ok(Some(_)) => {}
            Err(e) => {
                warn!(error = %e, "rollout: etcd failed; reading again");
                tokio::time::sleep(every).await;
                if let Ok(c) = connect(access, &keys.policy()).await {
                    client = c;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Halts the group's running rollout.
pub async fn halt(client: &mut Client, group: &Label, reason: &str) -> Result<Rollout> {
    let keys = Keys::new(group);
    let (mut r, seen) = rollout(client, &keys)
        .await?
        .ok_or_else(|| FleetError::Invalid(format!("group {group} has no rollout")))?;
    r.halt(reason).map_err(FleetError::Invalid)?;
    let txn = Txn::new()
        .when([unchanged(&keys, Some(seen))])
        .and_then([TxnOp::put(keys.rollout(), encode(&r), None)]);
    if !client.txn(txn).await?.succeeded() {
        return Err(FleetError::Invalid(
            "the rollout moved meanwhile: try again".into(),
        ));
    }
    Ok(r)
}

/// Resumes the group's halted rollout: its wave runs again, every member
/// given the policy so far is given it again (a new attempt). A running
/// rollout is left as it is (the caller then drives it: the way to take
/// over from a coordinator that stopped).
pub async fn resume(client: &mut Client, group: &Label) -> Result<Rollout> {
    let keys = Keys::new(group);
    let (mut r, seen) = rollout(client, &keys)
        .await?
        .ok_or_else(|| FleetError::Invalid(format!("group {group} has no rollout")))?;
    if matches!(r.state, State::Running { .. }) {
        return Ok(r);
    }
    let members = r.resume(now()).map_err(FleetError::Invalid)?;
    let (policy, _) = policy_at(client, &keys, r.policy_revision).await?;
    let a = Assignment {
        policy_revision: r.policy_revision,
        attempt: r.attempt,
        policy,
    };
    let mut ops = vec![TxnOp::put(keys.rollout(), encode(&r), None)];
    ops.extend(assign_ops(&keys, &members, &a));
    let txn = Txn::new()
        .when([unchanged(&keys, Some(seen))])
        .and_then(ops);
    if !client.txn(txn).await?.succeeded() {
        return Err(FleetError::Invalid(
            "the rollout moved meanwhile: try again".into(),
        ));
    }
    Ok(r)
}

/// The fleet's status: the policy revision, the rollout, every live member.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    pub group: String,
    pub policy_revision: Option<i64>,
    pub rollout: Option<Rollout>,
    pub members: Vec<Status>,
}

pub async fn status(client: &mut Client, group: &Label) -> Result<FleetStatus> {
    let keys = Keys::new(group);
    let policy_revision = policy(client, &keys).await?.map(|(_, r)| r);
    let rollout = rollout(client, &keys).await?.map(|(r, _)| r);
    let members = statuses(client, &keys).await?.into_values().collect();
    Ok(FleetStatus {
        group: group.to_string(),
        policy_revision,
        rollout,
        members,
    })
}
