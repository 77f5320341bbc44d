//! The appliance's side of a fleet: its membership (kept in the store),
//! the group policy applied through the spine as a revision of the actor
//! `fleet` (commit-confirmed: the agent confirms only once it has reported
//! to etcd through the new rules), and the local edits a fleet-managed
//! appliance refuses or reports as drift.
//!
//! Talking to etcd is `switchboard-fleet`'s; this module only decides and
//! records.

use serde::{Deserialize, Serialize};
use switchboard_domain::fleet::rollout::Outcome as FleetOutcome;
use switchboard_domain::fleet::{self, DriftMode, GroupPolicy, Membership};
use switchboard_domain::{Candidate, RevisionComment};
use switchboard_store::{RevisionKind, Store};
use tracing::info;

use crate::views::UpdateView;
use crate::{Change, Engine, EngineError, InputError, Origin, Result, certs};

/// The actor of the revisions the fleet applies.
pub const ACTOR: &str = "fleet";

/// What the agent last did with a policy revision (kept in the store, so
/// that a restart neither applies it twice nor forgets a failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetLast {
    pub policy_revision: i64,
    /// The rollout's attempt (a resume asks again).
    pub attempt: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: FleetOutcome,
    /// The local revision it made, if any.
    pub revision: Option<u64>,
    /// What happened, in words (diagnostics' codes and messages when refused).
    pub detail: String,
    /// How long the local Update and its confirmation took, in milliseconds.
    #[serde(default)]
    pub took_ms: Option<u64>,
}

/// What an appliance reports about itself (etcd's `status/APPLIANCE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberStatus {
    pub appliance: String,
    pub site: String,
    /// The last policy revision it handled (0: none yet).
    pub policy_revision: i64,
    pub attempt: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: FleetOutcome,
    /// The local revision the system runs.
    pub local_revision: Option<u64>,
    /// What happened (the diagnostics of a refused policy, the failure).
    pub detail: String,
    /// Whether the running revision is a local edit, not the fleet's.
    pub drift: bool,
    /// Bindings without a closed padlock: `SERVICE on NIC`.
    pub open_padlocks: Vec<String>,
    /// When it wrote this (RFC 3339).
    pub reported_at: String,
    /// How long its last local Update (with confirmation) took, in ms.
    #[serde(default)]
    pub took_ms: Option<u64>,
}

impl MemberStatus {
    /// What a rollout reads of it.
    pub fn report(&self) -> switchboard_domain::fleet::rollout::Report {
        switchboard_domain::fleet::rollout::Report {
            policy_revision: self.policy_revision,
            attempt: self.attempt,
            outcome: self.outcome,
        }
    }
}

/// The fleet as this appliance sees it (`GET /v1/fleet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetView {
    /// Whether the appliance joined a fleet.
    pub joined: bool,
    pub group: Option<String>,
    pub appliance: Option<String>,
    pub site: Option<String>,
    /// Whether the agent is in contact with etcd now.
    pub connected: bool,
    /// When it last heard from etcd (RFC 3339).
    pub last_contact: Option<String>,
    /// Why it is not in contact, when it is not.
    pub error: Option<String>,
    /// What it last did with a policy revision.
    pub last: Option<FleetLast>,
    /// The live members of its group, as last read from etcd.
    pub members: Vec<MemberStatus>,
}

/// The origin of the fleet's own changes.
pub fn origin(group: &str, policy_revision: i64) -> Origin {
    Origin {
        actor: ACTOR.into(),
        address: format!("fleet group {group}, policy revision {policy_revision}"),
        arrival: None,
    }
}

impl Engine {
    /// Joins a fleet: checks the membership against this appliance (its
    /// NICs) and keeps it. Replaces an earlier membership.
    pub async fn fleet_join(&self, membership: &Membership) -> Result<()> {
        membership.check().map_err(EngineError::Fleet)?;
        let facts = self.current_facts().await?;
        for nic in membership.roles.keys() {
            if facts.nic(nic).is_none() {
                return Err(EngineError::Fleet(fleet::FleetError::UnknownNic(
                    nic.clone(),
                )));
            }
        }
        let text = serde_json::to_string(membership)
            .map_err(|e| EngineError::System(format!("membership: {e}")))?;
        self.store.lock().await.set_fleet_membership(Some(&text))?;
        info!(group = %membership.group, appliance = %membership.appliance, "joined the fleet");
        Ok(())
    }

    /// Leaves the fleet: local edits are the administrator's again.
    pub async fn fleet_leave(&self) -> Result<()> {
        self.store.lock().await.set_fleet_membership(None)?;
        Ok(())
    }

    /// The membership this appliance joined, if any.
    pub async fn fleet_membership(&self) -> Result<Option<Membership>> {
        let store = self.store.lock().await;
        membership_of(&store)
    }

    /// What the agent last did with a policy revision.
    pub async fn fleet_last(&self) -> Result<Option<FleetLast>> {
        let store = self.store.lock().await;
        match store.fleet_last()? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| EngineError::System(format!("the fleet record: {e}"))),
        }
    }

    /// Keeps what the agent did with a policy revision.
    pub async fn fleet_record(&self, last: &FleetLast) -> Result<()> {
        let text = serde_json::to_string(last)
            .map_err(|e| EngineError::System(format!("the fleet record: {e}")))?;
        self.store.lock().await.set_fleet_last(Some(&text))?;
        Ok(())
    }

    /// The fleet as this appliance sees it: its membership, its agent's
    /// contact with etcd, the group's live members as last read.
    pub async fn fleet_view(&self) -> Result<FleetView> {
        let membership = self.fleet_membership().await?;
        let last = self.fleet_last().await?;
        let mut view = self
            .fleet_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        view.joined = membership.is_some();
        view.group = membership.as_ref().map(|m| m.group.to_string());
        view.appliance = membership.as_ref().map(|m| m.appliance.to_string());
        view.site = membership.as_ref().map(|m| m.site.to_string());
        view.last = last;
        Ok(view)
    }

    /// The agent tells what it sees of etcd (contact, members).
    pub fn fleet_saw(&self, update: impl FnOnce(&mut FleetView)) {
        update(&mut self.fleet_seen.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Whether the running revision is someone else's than the fleet's (a
    /// local edit on a fleet-managed appliance, allowed by `drift: report`).
    pub async fn fleet_drift(&self) -> Result<bool> {
        let store = self.store.lock().await;
        Ok(membership_of(&store)?.is_some()
            && self
                .applied(&store)?
                .is_some_and(|r| r.summary.actor != ACTOR))
    }

    /// Applies `policy` (revision `policy_revision` in etcd) as this
    /// appliance's candidate, pending for `confirm_within` seconds: the
    /// agent confirms it ([`Engine::confirm`]) once it has reported, or it
    /// rolls back by itself. A candidate equal to the running one changes
    /// nothing and needs no confirmation.
    pub async fn fleet_apply(
        &self,
        policy: &GroupPolicy,
        policy_revision: i64,
        confirm_within: u64,
    ) -> Result<UpdateView> {
        let window = crate::confirm_window(Some(confirm_within))?;
        if self.fleet_membership().await?.is_none() {
            return Err(EngineError::System(
                "this appliance is not in a fleet".into(),
            ));
        }
        if !policy.trusted_cas.is_empty() {
            // One upload: every CA is checked before any is kept.
            self.add_cas(policy.trusted_cas.join("\n").as_bytes())
                .await
                .map_err(|e| {
                    EngineError::Fleet(fleet::FleetError::Policy(format!("trusted_cas: {e}")))
                })?;
        }
        let kernel = self.current_facts().await?;
        let mut store = self.store.lock().await;
        let Some(membership) = membership_of(&store)? else {
            return Err(EngineError::System(
                "this appliance is not in a fleet".into(),
            ));
        };
        let facts = certs::with_certificates(kernel, &store)?;
        let applied = self.applied(&store)?;
        let local = match &applied {
            Some(r) => r.candidate.clone(),
            None => Self::candidate_of(&store)?,
        };
        let mut candidate: Candidate = fleet::candidate_for(policy, &membership, &local, &facts)
            .map_err(EngineError::Fleet)?;
        candidate.matrix.settle(&facts);
        let same = applied
            .as_ref()
            .is_some_and(|r| r.candidate == candidate && r.summary.actor == ACTOR);
        let origin = origin(membership.group.as_str(), policy_revision);
        let comment: RevisionComment = format!(
            "fleet: policy revision {policy_revision} of group {}",
            membership.group
        )
        .parse()
        .map_err(InputError::from)?;
        let change = Change {
            origin: &origin,
            comment: &comment,
            candidate: candidate.clone(),
            kind: RevisionKind::Update,
            rollback_of: None,
            window: if same { None } else { window },
            next_candidate: Some(candidate),
        };
        let started = std::time::Instant::now();
        let done = self.apply(&mut store, &facts, change).await;
        self.counters.update_took(started.elapsed());
        done
    }

    /// Refuses a local change on an appliance whose fleet membership says
    /// `drift: refuse` (the fleet's own changes pass).
    pub(crate) fn refuse_if_fleet_managed(store: &Store, origin: &Origin) -> Result<()> {
        if origin.actor == ACTOR {
            return Ok(());
        }
        match membership_of(store)? {
            Some(m) if m.drift == DriftMode::Refuse => Err(EngineError::FleetManaged {
                group: m.group.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

fn membership_of(store: &Store) -> Result<Option<Membership>> {
    match store.fleet_membership()? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::System(format!("the fleet membership: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use switchboard_domain::ServiceId;
    use switchboard_domain::fleet::{EtcdAccess, FleetError};
    use switchboard_domain::testing::name;
    use switchboard_store::Outcome;

    use super::*;
    use crate::testing::booted;

    fn membership(drift: DriftMode) -> Membership {
        Membership {
            etcd: EtcdAccess {
                endpoints: vec!["http://192.0.2.201:2379".into()],
                ..Default::default()
            },
            group: "branches".parse().expect("label"),
            appliance: "sb-paris".parse().expect("label"),
            site: "paris".parse().expect("label"),
            roles: [
                (name("lan0"), "internal".parse().expect("label")),
                (name("wan0"), "external".parse().expect("label")),
            ]
            .into(),
            drift,
        }
    }

    fn policy(ssh_external: bool) -> GroupPolicy {
        let ssh = if ssh_external {
            r#"["internal", "external"]"#
        } else {
            r#"["internal"]"#
        };
        GroupPolicy::parse(&format!(
            r#"{{"matrix": {{"console": ["internal"], "ssh": {ssh}, "web": ["external"]}},
                "sip_tls_hostname": "voip.{{site}}.example.test"}}"#
        ))
        .expect("policy")
    }

    fn admin() -> Origin {
        Origin {
            actor: "root".into(),
            address: "unix socket (pid 1)".into(),
            arrival: None,
        }
    }

    #[tokio::test]
    async fn a_policy_is_a_pending_revision_of_the_fleet_kept_by_its_confirmation() {
        let e = booted().await;
        let err = e
            .fleet_apply(&policy(false), 7, 30)
            .await
            .expect_err("not in a fleet");
        assert!(err.to_string().contains("not in a fleet"), "{err}");
        e.fleet_join(&membership(DriftMode::Refuse))
            .await
            .expect("join");
        let v = e.fleet_apply(&policy(false), 7, 30).await.expect("apply");
        assert_eq!(v.outcome, Outcome::Pending);
        let revs = e.revisions().await.expect("revisions");
        assert_eq!(revs[0].actor, ACTOR);
        assert_eq!(
            revs[0].comment,
            "fleet: policy revision 7 of group branches"
        );
        e.confirm(&origin("branches", 7)).await.expect("confirm");
        let m = e.matrix().await.expect("matrix").applied.expect("applied");
        assert!(!m.allows(ServiceId::Ssh, &name("wan0")));
        assert!(m.allows(ServiceId::Ssh, &name("lan0")));
        assert!(!m.allows(ServiceId::Ssh, &name("dmz0")));
        assert_eq!(
            e.candidate()
                .await
                .expect("candidate")
                .provisioning
                .sip_tls_hostname
                .map(|h| h.to_string()),
            Some("voip.paris.example.test".into())
        );
        // The same policy again changes nothing and needs no confirmation.
        let v = e.fleet_apply(&policy(false), 7, 30).await.expect("again");
        assert!(v.no_change, "{v:?}");
        assert!(!e.fleet_drift().await.expect("drift"));
        // The policy's CAs join the appliance's; a CA that does not parse
        // refuses the policy.
        let ca = switchboard_pki::testpki::Ca::root("Fleet test CA");
        let mut with_ca = policy(false);
        with_ca.trusted_cas = vec![ca.pem()];
        e.fleet_apply(&with_ca, 9, 30).await.expect("apply");
        assert!(
            e.cas()
                .await
                .expect("cas")
                .iter()
                .any(|c| c.subject.contains("Fleet test CA"))
        );
        let mut broken = policy(true);
        broken.trusted_cas =
            vec!["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----".into()];
        let err = e.fleet_apply(&broken, 10, 30).await.expect_err("refused");
        assert_eq!(err.code(), "fleet-invalid-policy", "{err}");
        // A policy this appliance cannot fill is refused; nothing changes.
        let mut bad = policy(true);
        bad.web_uri = Some("ftp://{site}".parse().expect("template"));
        let err = e.fleet_apply(&bad, 8, 30).await.expect_err("refused");
        assert!(
            matches!(err, EngineError::Fleet(FleetError::Filled { .. })),
            "{err:?}"
        );
        assert_eq!(e.revisions().await.expect("revisions").len(), revs.len());
    }

    #[tokio::test]
    async fn local_updates_are_refused_or_reported_as_drift_by_the_membership() {
        let e = booted().await;
        e.update(&admin(), "before the fleet", None)
            .await
            .expect("local update");
        e.fleet_join(&membership(DriftMode::Refuse))
            .await
            .expect("join");
        let err = e
            .update(&admin(), "local", None)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), "fleet-managed");
        assert_eq!(
            e.rollback(&admin(), 1, "", None)
                .await
                .expect_err("refused")
                .code(),
            "fleet-managed"
        );
        e.fleet_join(&membership(DriftMode::Report))
            .await
            .expect("join");
        assert!(
            e.fleet_drift().await.expect("drift"),
            "the admin's revision runs"
        );
        e.fleet_apply(&policy(true), 3, 30).await.expect("apply");
        e.confirm(&origin("branches", 3)).await.expect("confirm");
        assert!(!e.fleet_drift().await.expect("drift"));
        e.set_cell(ServiceId::Nrpe, &name("wan0"), true)
            .await
            .expect("edit");
        e.update(&admin(), "local", None).await.expect("allowed");
        assert!(e.fleet_drift().await.expect("drift"));
        e.fleet_leave().await.expect("leave");
        assert!(!e.fleet_drift().await.expect("drift"), "not in a fleet");
        assert!(!e.fleet_view().await.expect("view").joined);
    }

    #[tokio::test]
    async fn a_bad_membership_is_refused_and_nothing_is_kept() {
        let e = booted().await;
        let mut m = membership(DriftMode::Refuse);
        m.roles.insert(name("eth9"), "dmz".parse().expect("label"));
        let err = e.fleet_join(&m).await.expect_err("unknown NIC");
        assert_eq!(err.code(), "fleet-unknown-nic");
        let mut m = membership(DriftMode::Refuse);
        m.etcd.endpoints = vec!["etcd:2379".into()];
        assert_eq!(
            e.fleet_join(&m).await.expect_err("bad endpoint").code(),
            "fleet-invalid-membership"
        );
        assert_eq!(e.fleet_membership().await.expect("read"), None);
        e.fleet_record(&FleetLast {
            policy_revision: 4,
            attempt: 1,
            outcome: FleetOutcome::Failed,
            revision: None,
            detail: "x".into(),
            took_ms: Some(3),
        })
        .await
        .expect("record");
        assert_eq!(
            e.fleet_last().await.expect("last").map(|l| l.attempt),
            Some(1)
        );
    }
}
