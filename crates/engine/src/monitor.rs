//! What monitoring reads: the daemon's state in numbers ([`MonitorView`],
//! `GET /v1/monitor`), and the one judgement of it that `switchboard check`
//! gives Nagios ([`assess`]: OK, WARNING, CRITICAL, with the reasons and
//! the performance data).
//!
//! Everything is derived from what the store and the supervisor already
//! hold (revisions, the pending revision, certificates and bindings, the
//! SMS queue, bans, Kamailio's state): nothing is recorded for monitoring.
//! No secret is in it: certificate names and dates, counts and ages only
//! (never an SMS text, a telephone number, a key or a token).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchboard_store::Outcome;

use crate::bans::BanCounts;
use crate::{Engine, Result};

/// The state monitoring reads, as of `checked_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonitorView {
    pub version: String,
    pub checked_at: Timestamp,
    /// The revision the system runs (`None`: nothing applied yet).
    pub revision: Option<u64>,
    /// Revisions recorded, by outcome.
    pub updates: UpdateCounts,
    /// The newest revision: a `failed` outcome is a failed last Update.
    pub last_update: Option<LastUpdate>,
    /// A commit-confirmed revision waiting for its confirmation.
    pub pending: Option<PendingWindow>,
    /// Bindings under the padlock check, and those whose padlock is open.
    pub padlocks: usize,
    pub open_padlocks: Vec<String>,
    /// Every bound certificate's end, soonest first.
    pub certificates: Vec<CertExpiry>,
    /// Kamailio under supervision; `None` when the daemon runs no SIP server.
    pub sip: Option<SipHealth>,
    pub sms: SmsQueue,
    pub bans: BanCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateCounts {
    pub applied: u64,
    pub failed: u64,
    pub pending: u64,
    pub rolled_back: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastUpdate {
    pub revision: u64,
    pub at: Timestamp,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingWindow {
    pub revision: u64,
    /// When it was applied, and by when it must be confirmed.
    pub applied_at: Timestamp,
    pub deadline: Timestamp,
    /// The whole window, and how much of it has passed, in seconds.
    pub window_secs: i64,
    pub elapsed_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertExpiry {
    pub cert: String,
    pub not_after: Timestamp,
    /// Whole days left (negative once expired).
    pub days_left: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SipHealth {
    pub running: bool,
    /// Times the supervisor started it again after it died.
    pub restarts: u32,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SmsQueue {
    /// Messages waiting for the gateway.
    pub queued: u64,
    /// Messages the gateway refused for good.
    pub failed: u64,
    /// Age of the oldest message waiting, in seconds.
    pub oldest_queued_secs: Option<i64>,
}

impl Engine {
    /// The state monitoring reads (see [`MonitorView`]).
    pub async fn monitor(&self) -> Result<MonitorView> {
        let sip = self.sip_state().await.map(|k| SipHealth {
            running: k.running,
            restarts: k.restarts,
            last_exit: k.last_exit,
        });
        let checks = self.padlock().await?;
        let store = self.store.lock().await;
        let now = Timestamp::now();
        let revisions = store.revisions()?;
        let mut updates = UpdateCounts::default();
        for r in &revisions {
            match r.outcome {
                Outcome::Applied => updates.applied += 1,
                Outcome::Failed => updates.failed += 1,
                Outcome::Pending => updates.pending += 1,
                Outcome::RolledBack => updates.rolled_back += 1,
            }
        }
        let pending = store.pending()?.map(|p| {
            let applied_at = revisions
                .iter()
                .find(|r| r.number == p.revision)
                .map_or(now, |r| r.created_at);
            PendingWindow {
                revision: p.revision,
                applied_at,
                deadline: p.deadline,
                window_secs: p.deadline.duration_since(applied_at).as_secs().max(0),
                elapsed_secs: now.duration_since(applied_at).as_secs().max(0),
            }
        });
        let mut sms = SmsQueue::default();
        for m in store.sms()? {
            match m.state.as_str() {
                "queued" => {
                    sms.queued += 1;
                    let age = now.duration_since(m.created_at).as_secs().max(0);
                    sms.oldest_queued_secs =
                        Some(sms.oldest_queued_secs.map_or(age, |a| a.max(age)));
                }
                "failed" => sms.failed += 1,
                _ => {}
            }
        }
        Ok(MonitorView {
            version: env!("CARGO_PKG_VERSION").into(),
            checked_at: now,
            revision: store.applied()?.map(|r| r.summary.number),
            updates,
            last_update: revisions.first().map(|r| LastUpdate {
                revision: r.number,
                at: r.created_at,
                outcome: r.outcome,
            }),
            pending,
            padlocks: checks.len(),
            open_padlocks: checks
                .iter()
                .filter(|p| !p.ok)
                .map(|p| format!("{} on {}", p.service, p.nic))
                .collect(),
            certificates: crate::certs::bound_expiries(&store, now)?,
            sip,
            sms,
            bans: Self::ban_counts(&store)?,
        })
    }
}

/// A Nagios state, in the plugin convention's order of gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// The plugin's exit status.
    pub fn code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// Where WARNING and CRITICAL begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Days left on the nearest certificate.
    pub cert_warning_days: i64,
    pub cert_critical_days: i64,
    /// Age of the oldest SMS waiting, seconds.
    pub sms_warning_secs: i64,
    pub sms_critical_secs: i64,
}

impl Default for Thresholds {
    /// 30 and 7 days (what `status` warns about), 5 and 30 minutes.
    fn default() -> Self {
        Thresholds {
            cert_warning_days: switchboard_pki::EXPIRY_WARNING.as_hours() / 24,
            cert_critical_days: switchboard_pki::EXPIRY_ERROR.as_hours() / 24,
            sms_warning_secs: 300,
            sms_critical_secs: 1800,
        }
    }
}

/// The judgement of a [`MonitorView`]: its state, the problems (worst
/// first) and the performance data (`label=value;warn;crit;min;max`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: State,
    pub problems: Vec<(State, String)>,
    pub perfdata: Vec<String>,
}

impl Assessment {
    /// The plugin's one status line: `SWITCHBOARD STATE - what | perfdata`.
    pub fn line(&self) -> String {
        let what = if self.problems.is_empty() {
            "all is well".to_owned()
        } else {
            self.problems
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!(
            "SWITCHBOARD {} - {what} | {}",
            self.state.as_str(),
            self.perfdata.join(" ")
        )
    }
}

/// Judge `v`: a pending revision is a WARNING, CRITICAL past half its
/// window; a failed last Update, open padlocks, a banned address are
/// WARNINGs; Kamailio not running is CRITICAL (restarts are counted in the
/// data); the nearest certificate and the oldest SMS waiting go by `t`.
pub fn assess(v: &MonitorView, t: &Thresholds) -> Assessment {
    let mut problems: Vec<(State, String)> = Vec::new();
    if let Some(p) = &v.pending {
        let past_half = p.elapsed_secs * 2 >= p.window_secs;
        problems.push((
            if past_half {
                State::Critical
            } else {
                State::Warning
            },
            format!(
                "revision {} pending confirmation for {}s of its {}s window",
                p.revision, p.elapsed_secs, p.window_secs
            ),
        ));
    }
    if let Some(l) = &v.last_update
        && l.outcome == Outcome::Failed
    {
        problems.push((
            State::Warning,
            format!("the last Update (revision {}) failed", l.revision),
        ));
    }
    if let Some(sip) = &v.sip
        && !sip.running
    {
        problems.push((
            State::Critical,
            format!(
                "kamailio is not running{}",
                sip.last_exit
                    .as_deref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(c) = v.certificates.first() {
        let state = if c.days_left < t.cert_critical_days {
            State::Critical
        } else if c.days_left < t.cert_warning_days {
            State::Warning
        } else {
            State::Ok
        };
        if state != State::Ok {
            let when = if c.days_left < 0 {
                format!("expired {} day(s) ago", -c.days_left)
            } else {
                format!("expires in {} day(s)", c.days_left)
            };
            problems.push((state, format!("certificate {} {when}", c.cert)));
        }
    }
    if !v.open_padlocks.is_empty() {
        problems.push((
            State::Warning,
            format!("open padlock: {}", v.open_padlocks.join(", ")),
        ));
    }
    if let Some(age) = v.sms.oldest_queued_secs {
        let state = if age >= t.sms_critical_secs {
            State::Critical
        } else if age >= t.sms_warning_secs {
            State::Warning
        } else {
            State::Ok
        };
        if state != State::Ok {
            problems.push((
                state,
                format!("{} SMS waiting, the oldest for {age}s", v.sms.queued),
            ));
        }
    }
    if v.bans.active > 0 {
        problems.push((
            State::Warning,
            format!("{} address(es) banned", v.bans.active),
        ));
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    let state = problems.first().map_or(State::Ok, |p| p.0);
    let days = v.certificates.first().map(|c| c.days_left);
    let mut perfdata = vec![
        format!("revision={}", v.revision.unwrap_or(0)),
        format!("pending={}", u8::from(v.pending.is_some())),
        format!(
            "pending_elapsed={}s;;;0;{}",
            v.pending.as_ref().map_or(0, |p| p.elapsed_secs),
            v.pending.as_ref().map_or(0, |p| p.window_secs)
        ),
        format!("updates_failed={}c", v.updates.failed),
        format!(
            "open_padlocks={};1;;0;{}",
            v.open_padlocks.len(),
            v.padlocks
        ),
    ];
    if let Some(days) = days {
        perfdata.push(format!(
            "cert_days_left={days};{};{}",
            t.cert_warning_days, t.cert_critical_days
        ));
    }
    if let Some(sip) = &v.sip {
        perfdata.push(format!("kamailio_up={};;1:;0;1", u8::from(sip.running)));
        perfdata.push(format!("kamailio_restarts={}c", sip.restarts));
    }
    perfdata.push(format!("sms_queued={};;;0", v.sms.queued));
    perfdata.push(format!(
        "sms_oldest={}s;{};{};0",
        v.sms.oldest_queued_secs.unwrap_or(0),
        t.sms_warning_secs,
        t.sms_critical_secs
    ));
    perfdata.push(format!("sms_failed={};;;0", v.sms.failed));
    perfdata.push(format!("bans_active={};1;;0", v.bans.active));
    Assessment {
        state,
        problems,
        perfdata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> MonitorView {
        MonitorView {
            version: "0".into(),
            checked_at: "2026-01-01T00:00:00Z".parse().expect("time"),
            revision: Some(3),
            updates: UpdateCounts {
                applied: 3,
                ..UpdateCounts::default()
            },
            last_update: Some(LastUpdate {
                revision: 3,
                at: "2026-01-01T00:00:00Z".parse().expect("time"),
                outcome: Outcome::Applied,
            }),
            pending: None,
            padlocks: 3,
            open_padlocks: vec![],
            certificates: vec![CertExpiry {
                cert: "voip".into(),
                not_after: "2026-06-01T00:00:00Z".parse().expect("time"),
                days_left: 151,
            }],
            sip: Some(SipHealth {
                running: true,
                restarts: 0,
                last_exit: None,
            }),
            sms: SmsQueue::default(),
            bans: BanCounts::default(),
        }
    }

    fn judged(v: &MonitorView) -> Assessment {
        assess(v, &Thresholds::default())
    }

    #[test]
    fn a_healthy_appliance_is_ok_with_its_numbers() {
        let a = judged(&healthy());
        assert_eq!(a.state, State::Ok);
        assert_eq!(
            a.line(),
            "SWITCHBOARD OK - all is well | revision=3 pending=0 pending_elapsed=0s;;;0;0 \
             updates_failed=0c open_padlocks=0;1;;0;3 cert_days_left=151;30;7 kamailio_up=1;;1:;0;1 \
             kamailio_restarts=0c sms_queued=0;;;0 sms_oldest=0s;300;1800;0 sms_failed=0;;;0 bans_active=0;1;;0"
        );
    }

    #[test]
    fn certificate_expiry_warns_at_30_days_and_is_critical_at_7() {
        let mut v = healthy();
        for (days, state) in [
            (30, State::Ok),
            (29, State::Warning),
            (7, State::Warning),
            (6, State::Critical),
            (-2, State::Critical),
        ] {
            v.certificates[0].days_left = days;
            let a = judged(&v);
            assert_eq!(a.state, state, "{days} days: {}", a.line());
        }
        assert!(
            judged(&v)
                .line()
                .contains("certificate voip expired 2 day(s) ago")
        );
    }

    #[test]
    fn a_pending_revision_is_critical_past_half_its_window() {
        let mut v = healthy();
        let p = |elapsed| PendingWindow {
            revision: 4,
            applied_at: "2026-01-01T00:00:00Z".parse().expect("time"),
            deadline: "2026-01-01T00:10:00Z".parse().expect("time"),
            window_secs: 600,
            elapsed_secs: elapsed,
        };
        v.pending = Some(p(299));
        assert_eq!(judged(&v).state, State::Warning);
        v.pending = Some(p(300));
        let a = judged(&v);
        assert_eq!(a.state, State::Critical);
        assert!(
            a.line()
                .contains("revision 4 pending confirmation for 300s of its 600s window")
        );
    }

    #[test]
    fn kamailio_down_is_critical_and_comes_first() {
        let mut v = healthy();
        v.open_padlocks = vec!["web on wan0".into()];
        v.sip = Some(SipHealth {
            running: false,
            restarts: 4,
            last_exit: Some("killed by signal 9".into()),
        });
        let a = judged(&v);
        assert_eq!(a.state, State::Critical);
        assert!(
            a.line().starts_with(
                "SWITCHBOARD CRITICAL - kamailio is not running (last: killed by signal 9); open padlock: web on wan0 |"
            ),
            "{}",
            a.line()
        );
        assert!(
            a.line()
                .contains("kamailio_up=0;;1:;0;1 kamailio_restarts=4c")
        );
    }

    #[test]
    fn a_failed_update_a_stuck_sms_queue_and_bans_are_named() {
        let mut v = healthy();
        v.last_update = Some(LastUpdate {
            revision: 4,
            at: "2026-01-01T00:00:00Z".parse().expect("time"),
            outcome: Outcome::Failed,
        });
        v.sms = SmsQueue {
            queued: 2,
            failed: 0,
            oldest_queued_secs: Some(400),
        };
        v.bans.active = 1;
        let a = judged(&v);
        assert_eq!(a.state, State::Warning);
        assert_eq!(a.problems.len(), 3, "{a:?}");
        v.sms.oldest_queued_secs = Some(1800);
        assert_eq!(judged(&v).state, State::Critical);
    }
}
