//! The SIP edge's bans: Kamailio decides, switchboard enforces.
//!
//! Kamailio counts failed digest authentications and request floods per
//! source address (htable and pike, see `switchboard_plan::kamailio`) and,
//! at the policy's count, marks the address in its `sbban` htable and
//! stops answering it. [`Engine::poll_bans`] (every second, from `serve`)
//! reads that htable over Kamailio's RPC (`kamcmd htable.dump`) and, for a
//! new offender, adds it to switchboard's own nftables set with a timeout
//! (`banned_v4`/`banned_v6` in `inet switchboard`): a dynamic element, no
//! new revision. The kernel then drops it on SIP/TLS, SIP/UDP and the web
//! services before Kamailio sees it, and the htable entry is deleted
//! (Kamailio starts afresh when the kernel's ban expires). Every ban is
//! recorded (store, with the address's offence count: a repeat offender's
//! ban doubles, up to the policy's cap) and audited.
//!
//! **Invariant.** The ban sets change only under [`SETS`]: a ban, an unban
//! and the firewall step's reload (which reads the live elements and puts
//! them back in the same transaction that replaces the table) never
//! interleave, so an Update keeps every ban with the time it had left.
//!
//! **Limitations.** Polling: the kernel drops a new offender up to a
//! second after Kamailio banned it (Kamailio itself answers nothing
//! meanwhile). Trusted networks added by an Update do not lift bans already
//! in place (`unban` does). With `--firewall plan` nothing is put in the
//! kernel: Kamailio's own drop is the only ban, for `ban_secs` whatever
//! the offences.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use switchboard_domain::{BanPolicy, BanPolicyChange};
use switchboard_plan::kamailio::{BANNED, FAILED};
use switchboard_plan::nft::{BANNED_V4, BANNED_V6, TABLE};
use switchboard_store::{BanRecord, NewAudit, Store};
use switchboard_system::{kamailio, nft};
use tracing::{debug, info, warn};

use crate::views::EditView;
use crate::{Engine, EngineError, FirewallMode, InputError, Result};

/// Held while the ban sets change (see the module's invariant).
pub(crate) static SETS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An offence within this long after the previous ban ended counts as a
/// repeat (the ban doubles); older ones are forgotten.
const REPEAT_WITHIN: SignedDuration = SignedDuration::from_hours(24);

/// At most this many new bans per poll (twice a second): the store's lock
/// is held while they are recorded.
const MAX_NEW_PER_POLL: usize = 64;

/// What a poll does with one reported address afterwards.
enum Forget {
    /// Kamailio forgets it; no ban (trusted, or bans are off).
    Only,
    /// Banned in the kernel: Kamailio forgets it.
    AndBanned(Box<BanView>),
    /// Banned by Kamailio alone (`--firewall plan`): it keeps it.
    No(Box<BanView>),
}

impl Forget {
    fn forget(&self) -> bool {
        !matches!(self, Forget::No(_))
    }
}

impl From<Forget> for Option<BanView> {
    fn from(f: Forget) -> Self {
        match f {
            Forget::Only => None,
            Forget::AndBanned(v) | Forget::No(v) => Some(*v),
        }
    }
}

/// The actor of the audit rows of bans.
const ACTOR: &str = "sip-edge";

fn set_of(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => BANNED_V4,
        IpAddr::V6(_) => BANNED_V6,
    }
}

/// The lines that put the live elements of the ban sets back after the
/// table is redeclared by `ruleset` (appended to it, one transaction).
/// A ruleset without a ban set (a revision recorded before bans existed,
/// put back by a rollback) gets no lines for it. The caller holds [`SETS`].
pub(crate) async fn restore_lines(ruleset: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    for set in ban_sets_declared(ruleset) {
        let live = nft::timed_elements(TABLE, set)
            .await
            .map_err(|e| e.to_string())?;
        out.push_str(&nft::restore_elements(TABLE, set, &live));
    }
    Ok(out)
}

/// The ban sets `ruleset` declares.
fn ban_sets_declared(ruleset: &str) -> Vec<&'static str> {
    [BANNED_V4, BANNED_V6]
        .into_iter()
        .filter(|set| ruleset.contains(&format!("\tset {set} {{\n")))
        .collect()
}

/// One ban, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: IpAddr,
    /// `auth-failures` (failed digest authentications) or `flood`.
    pub reason: String,
    /// How many times this address was banned, this ban included.
    pub offences: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub banned_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub expires_at: Timestamp,
    /// Seconds left.
    pub remaining_secs: u64,
    /// Whether the kernel drops it (`None` with `--firewall plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_kernel: Option<bool>,
}

/// The bans in force and the policy of the running revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BansView {
    pub bans: Vec<BanView>,
    /// The policy the running revision enforces.
    pub policy: BanPolicy,
    /// The candidate's policy, when it differs (applied by the next Update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_policy: Option<BanPolicy>,
}

/// The counts `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BanCounts {
    /// Addresses banned now.
    pub active: usize,
    /// Addresses banned within the last day (repeat offences count from it).
    pub recent: usize,
}

fn view(b: &BanRecord, now: Timestamp, in_kernel: Option<bool>) -> BanView {
    BanView {
        address: b.address,
        reason: b.reason.clone(),
        offences: b.offences,
        banned_at: b.banned_at,
        expires_at: b.expires_at,
        remaining_secs: u64::try_from(b.expires_at.duration_since(now).as_secs()).unwrap_or(0),
        in_kernel,
    }
}

/// What Kamailio said, reduced to the reasons switchboard knows.
fn reason(value: &str) -> &'static str {
    match value {
        "auth-failures" => "auth-failures",
        "flood" => "flood",
        _ => "reported",
    }
}

impl Engine {
    /// The ban policy of the running revision (the default before any).
    fn running_policy(store: &Store) -> Result<BanPolicy> {
        Ok(store
            .applied()?
            .map(|r| r.candidate.bans)
            .unwrap_or_default())
    }

    /// Read the addresses Kamailio banned and ban the new ones in the
    /// kernel (see the module). Returns the bans made. Kamailio not
    /// running (or not driven) is not an error: nothing to read.
    pub async fn poll_bans(&self) -> Result<Vec<BanView>> {
        let Some(ctl) = self.kamailio_ctl() else {
            return Ok(vec![]);
        };
        let reported = match kamailio::htable_addresses(&ctl, BANNED).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "cannot read kamailio's bans");
                return Ok(vec![]);
            }
        };
        if reported.is_empty() {
            return Ok(vec![]);
        }
        let enforce = self.config.firewall == FirewallMode::Enforce;
        let made = self.ban_reported(reported, enforce).await?;
        // Kamailio's entries of the addresses the kernel now drops (and of
        // trusted ones) go, outside the locks: each is a `kamcmd` call.
        for (addr, _) in made.iter().filter(|(_, f)| f.forget()) {
            let _ = kamailio::htable_forget(&ctl, &[BANNED, FAILED], *addr).await;
        }
        Ok(made.into_iter().filter_map(|(_, v)| v.into()).collect())
    }

    /// Record and enforce the bans Kamailio reported (at most
    /// [`MAX_NEW_PER_POLL`] new ones: the rest wait for the next poll,
    /// Kamailio dropping them meanwhile). Returns, per address to act on,
    /// whether Kamailio should forget it and the ban made, if any.
    async fn ban_reported(
        &self,
        reported: Vec<(IpAddr, String)>,
        enforce: bool,
    ) -> Result<Vec<(IpAddr, Forget)>> {
        let _sets = SETS.lock().await;
        let mut store = self.store.lock().await;
        let policy = Self::running_policy(&store)?;
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut new = 0;
        for (addr, value) in reported {
            if policy.is_trusted(addr) || !policy.enabled {
                warn!(%addr, "kamailio banned a trusted address (or bans are off): forgotten");
                out.push((addr, Forget::Only));
                continue;
            }
            if new >= MAX_NEW_PER_POLL {
                break;
            }
            let last = store.ban(addr)?;
            let fresh = |b: &BanRecord| {
                b.active(now) || now.duration_since(b.banned_at) < SignedDuration::from_secs(10)
            };
            if last.as_ref().is_some_and(fresh) {
                continue;
            }
            new += 1;
            let offences = match &last {
                Some(b)
                    if now.duration_since(b.lifted_at.unwrap_or(b.expires_at)) < REPEAT_WITHIN =>
                {
                    b.offences.saturating_add(1)
                }
                _ => 1,
            };
            let secs = if enforce {
                policy.ban_duration(offences)
            } else {
                policy.ban_secs
            };
            if enforce
                && let Err(e) = nft::add_timed(TABLE, set_of(addr), addr, u64::from(secs)).await
            {
                warn!(%addr, error = %e, "cannot ban in the kernel");
                continue;
            }
            let record = BanRecord {
                address: addr,
                reason: reason(&value).into(),
                offences,
                banned_at: now,
                expires_at: now + SignedDuration::from_secs(i64::from(secs)),
                lifted_at: None,
            };
            store.put_ban(&record)?;
            let outcome = format!(
                "banned for {secs} s: {} (offence {offences})",
                record.reason
            );
            let data = serde_json::json!({
                "address": addr.to_string(),
                "reason": record.reason,
                "seconds": secs,
                "offences": offences,
            });
            store.record_audit(&NewAudit {
                at: now,
                actor: ACTOR,
                address: &addr.to_string(),
                kind: "ban.add",
                action: &format!("banned {addr} for {secs} s ({})", record.reason),
                data: &data.to_string(),
                outcome: &outcome,
            })?;
            info!(%addr, reason = %record.reason, secs, offences, "address banned");
            // With the kernel dropping it, Kamailio forgets it (it starts
            // afresh when the kernel's ban ends); without, Kamailio's own
            // drop is the ban.
            let v = view(&record, now, Some(enforce));
            out.push((
                addr,
                if enforce {
                    Forget::AndBanned(Box::new(v))
                } else {
                    Forget::No(Box::new(v))
                },
            ));
        }
        if new > 0 {
            store.prune_bans(now - REPEAT_WITHIN)?;
        }
        Ok(out)
    }

    /// The addresses banned now, and the policy.
    pub async fn bans(&self) -> Result<BansView> {
        let now = Timestamp::now();
        let kernel = self.kernel_bans().await;
        let store = self.store.lock().await;
        let policy = Self::running_policy(&store)?;
        let candidate = Self::candidate_of(&store)?.bans;
        let bans = store
            .bans()?
            .iter()
            .filter(|b| b.active(now))
            .map(|b| {
                let in_kernel = kernel.as_ref().map(|k| k.contains(&b.address));
                view(b, now, in_kernel)
            })
            .collect();
        Ok(BansView {
            bans,
            candidate_policy: (candidate != policy).then_some(candidate),
            policy,
        })
    }

    /// The addresses in the kernel's ban sets (`None` when not enforcing
    /// or unreadable).
    async fn kernel_bans(&self) -> Option<Vec<IpAddr>> {
        if self.config.firewall != FirewallMode::Enforce {
            return None;
        }
        let mut out = Vec::new();
        for set in [BANNED_V4, BANNED_V6] {
            out.extend(
                nft::timed_elements(TABLE, set)
                    .await
                    .ok()?
                    .into_iter()
                    .map(|e| e.addr),
            );
        }
        Some(out)
    }

    /// The counts of `status`.
    pub(crate) fn ban_counts(store: &Store) -> Result<BanCounts> {
        let now = Timestamp::now();
        let all = store.bans()?;
        Ok(BanCounts {
            active: all.iter().filter(|b| b.active(now)).count(),
            recent: all
                .iter()
                .filter(|b| now.duration_since(b.banned_at) < REPEAT_WITHIN)
                .count(),
        })
    }

    /// Lift the ban of `address` at once: out of the kernel's set and of
    /// Kamailio's tables, recorded as lifted (its offences still count).
    pub async fn unban(&self, address: &str) -> Result<BanView> {
        let addr: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| InputError::Address(address.chars().take(64).collect()))?;
        let enforce = self.config.firewall == FirewallMode::Enforce;
        let _sets = SETS.lock().await;
        let in_kernel = self.kernel_bans().await.is_some_and(|k| k.contains(&addr));
        let mut store = self.store.lock().await;
        let now = Timestamp::now();
        let record = store.ban(addr)?.filter(|b| b.active(now));
        if record.is_none() && !in_kernel {
            return Err(EngineError::NotBanned(addr));
        }
        if enforce {
            nft::remove_element(TABLE, set_of(addr), addr)
                .await
                .map_err(|e| EngineError::System(e.to_string()))?;
        }
        if let Some(ctl) = self.kamailio_ctl()
            && let Err(e) = kamailio::htable_forget(&ctl, &[BANNED, FAILED], addr).await
        {
            warn!(%addr, error = %e, "kamailio did not forget the address");
        }
        let mut record = record.unwrap_or(BanRecord {
            address: addr,
            reason: "reported".into(),
            offences: 1,
            banned_at: now,
            expires_at: now,
            lifted_at: None,
        });
        record.lifted_at = Some(now);
        store.put_ban(&record)?;
        info!(%addr, "ban lifted");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "ban.lift",
                format!("ban of {addr} lifted"),
                serde_json::json!({ "address": addr.to_string() }),
            ),
            "done",
        );
        Ok(view(&record, now, Some(false).filter(|_| enforce)))
    }

    /// Change the candidate's ban policy (absent keeps); a value out of
    /// bounds is refused and changes nothing.
    pub async fn set_ban_policy(&self, change: &BanPolicyChange) -> Result<EditView<()>> {
        let what =
            crate::audit::Entry::new("bans.policy", "ban policy changed", serde_json::json!({}));
        self.edit(what, |c, _| {
            c.bans = c.bans.changed(change).map_err(InputError::from)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_policy_is_edited_in_the_candidate_and_bad_values_change_nothing() {
        let e = Engine::in_memory().expect("engine");
        let ok = e
            .set_ban_policy(&BanPolicyChange {
                failures: Some(10),
                trusted: Some(vec!["192.0.2.0/24".into()]),
                ..Default::default()
            })
            .await
            .expect("edit");
        assert!(ok.changed);
        let before = e.candidate().await.expect("candidate");
        assert_eq!(before.bans.failures, 10);
        for bad in [
            BanPolicyChange {
                failures: Some(0),
                ..Default::default()
            },
            BanPolicyChange {
                trusted: Some(vec!["192.0.2.0/24; flush ruleset".into()]),
                ..Default::default()
            },
            BanPolicyChange {
                ban_secs: Some(100_000),
                max_ban_secs: Some(60),
                ..Default::default()
            },
        ] {
            let err = e.set_ban_policy(&bad).await.expect_err("refused");
            assert_eq!(err.code(), "invalid-ban-policy", "{err}");
        }
        assert_eq!(e.candidate().await.expect("candidate"), before, "unchanged");
        let view = e.bans().await.expect("bans");
        assert!(view.bans.is_empty());
        assert_eq!(view.policy, BanPolicy::default(), "nothing applied yet");
        assert_eq!(view.candidate_policy, Some(before.bans));
    }

    #[test]
    fn only_the_ban_sets_a_ruleset_declares_are_restored() {
        let now = switchboard_plan::nft::render(
            &switchboard_domain::Candidate::default(),
            &switchboard_domain::Candidate::default()
                .matrix
                .resolve(&switchboard_domain::Facts::default()),
        );
        assert_eq!(ban_sets_declared(&now), [BANNED_V4, BANNED_V6]);
        // A revision recorded before bans existed has no ban set: a rollback
        // to it must load, so nothing is restored into it.
        let old = "table inet switchboard {\n\tset nics_ssh {\n\t\ttype ifname\n\t}\n}\n";
        assert!(ban_sets_declared(old).is_empty());
    }

    #[tokio::test]
    async fn unban_refuses_what_is_not_an_address_or_not_banned() {
        let e = Engine::in_memory().expect("engine");
        for bad in [
            "",
            "192.0.2.300",
            "192.0.2.0/24",
            "lan0",
            &"9".repeat(10_000),
        ] {
            let err = e.unban(bad).await.expect_err("refused");
            assert_eq!(err.code(), "invalid-address", "{bad:?}");
            assert!(err.to_string().len() < 200, "the input is cut: {err}");
        }
        let err = e.unban("198.51.100.9").await.expect_err("not banned");
        assert_eq!(err.code(), "not-banned");
        {
            let mut store = e.store.lock().await;
            let now = Timestamp::now();
            store
                .put_ban(&BanRecord {
                    address: "198.51.100.9".parse().expect("ip"),
                    reason: "flood".into(),
                    offences: 2,
                    banned_at: now,
                    expires_at: now + SignedDuration::from_secs(600),
                    lifted_at: None,
                })
                .expect("put");
        }
        let listed = e.bans().await.expect("bans");
        assert_eq!(listed.bans.len(), 1);
        assert!(listed.bans[0].remaining_secs > 590);
        let lifted = e.unban("198.51.100.9").await.expect("lifted");
        assert_eq!(lifted.offences, 2);
        assert!(e.bans().await.expect("bans").bans.is_empty());
        assert_eq!(
            e.unban("198.51.100.9").await.expect_err("again").code(),
            "not-banned"
        );
    }
}
