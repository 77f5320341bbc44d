//! A rollout: one policy revision moved through a group in waves.
//!
//! The waves are fixed when the rollout starts (the live members, sorted by
//! name, cut by a [`WaveSpec`] such as `1,10%,rest`). [`Rollout::step`] is
//! the whole state machine, a pure function of the rollout, the members'
//! reported statuses and the time: a wave starts only when every member of
//! the waves before it has applied and verified the policy revision; a
//! member that refused or failed it, or that has not applied it within the
//! wave's deadline, halts the rollout by itself.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Label;

/// One wave's size: a count, a percentage of the members, or the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveSize {
    Count(u32),
    Percent(u8),
    Rest,
}

/// The waves of a rollout, e.g. `1,10%,rest`; the last wave always takes
/// the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSpec(pub Vec<WaveSize>);

impl FromStr for WaveSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut sizes = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let size = if part == "rest" {
                WaveSize::Rest
            } else if let Some(p) = part.strip_suffix('%') {
                match p.parse::<u8>() {
                    Ok(p @ 1..=100) => WaveSize::Percent(p),
                    _ => return Err(format!("wave {part:?}: a percentage is 1% to 100%")),
                }
            } else {
                match part.parse::<u32>() {
                    Ok(n @ 1..) => WaveSize::Count(n),
                    _ => {
                        return Err(format!(
                            "wave {part:?}: a wave is a count (1), a percentage (10%) or rest"
                        ));
                    }
                }
            };
            if sizes.last() == Some(&WaveSize::Rest) {
                return Err("rest is the last wave".into());
            }
            sizes.push(size);
        }
        if sizes.len() > 20 {
            return Err("at most 20 waves".into());
        }
        Ok(WaveSpec(sizes))
    }
}

impl WaveSpec {
    /// Cut `members` (sorted, deduplicated here) into waves; empty waves
    /// are dropped, the last wave takes whoever is left.
    pub fn cut(&self, members: &[Label]) -> Vec<Vec<Label>> {
        let mut members = members.to_vec();
        members.sort();
        members.dedup();
        let total = members.len();
        let mut rest = members.as_slice();
        let mut waves = Vec::new();
        for (i, size) in self.0.iter().enumerate() {
            let n = match *size {
                _ if i + 1 == self.0.len() => rest.len(),
                WaveSize::Count(n) => n as usize,
                WaveSize::Percent(p) => (total * p as usize).div_ceil(100),
                WaveSize::Rest => rest.len(),
            };
            let (wave, after) = rest.split_at(n.min(rest.len()));
            if !wave.is_empty() {
                waves.push(wave.to_vec());
            }
            rest = after;
        }
        waves
    }
}

/// What a member reports about a policy revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Applied, verified and confirmed.
    Applied,
    /// Applied on trial, not confirmed yet.
    Pending,
    /// The candidate made of it was refused (diagnostics).
    Refused,
    /// The apply or its verification failed; the previous revision runs.
    Failed,
}

/// A member's report, as far as a rollout cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The policy revision the report is about.
    pub policy_revision: i64,
    /// The rollout's attempt it answered (a failure of an attempt before a
    /// resume is no reason to halt again).
    pub attempt: u32,
    pub outcome: Outcome,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    /// Wave `wave` has been given the policy, since `since` (seconds).
    Running { wave: usize, since: i64 },
    /// Stopped by a failure or by the operator; `wave` was running.
    Halted { wave: usize, reason: String },
    /// Every wave applied the policy.
    Done,
}

/// A rollout of the policy revision `policy_revision` of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub policy_revision: i64,
    pub waves: Vec<Vec<Label>>,
    /// How long a wave may take, in seconds, before it halts the rollout.
    pub wave_timeout: i64,
    /// Bumped by a resume: members given the policy again retry it.
    #[serde(default)]
    pub attempt: u32,
    #[serde(flatten)]
    pub state: State,
}

/// What the coordinator must do after a [`Rollout::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed: wait for reports.
    Wait,
    /// Give these members the policy (the next wave started).
    Assign(Vec<Label>),
    /// The rollout halted (the state says why).
    Halt,
    /// The last wave applied.
    Finish,
}

impl Rollout {
    /// A rollout that starts with its first wave at `now`: assign it.
    pub fn start(
        policy_revision: i64,
        spec: &WaveSpec,
        members: &[Label],
        wave_timeout: i64,
        now: i64,
    ) -> Result<(Rollout, Vec<Label>), String> {
        let waves = spec.cut(members);
        let Some(first) = waves.first().cloned() else {
            return Err("no live member in the group: nothing to roll out to".into());
        };
        Ok((
            Rollout {
                policy_revision,
                waves,
                wave_timeout,
                attempt: 0,
                state: State::Running {
                    wave: 0,
                    since: now,
                },
            },
            first,
        ))
    }

    /// Every member given the policy so far (waves up to the running or
    /// halted one).
    pub fn assigned(&self) -> Vec<Label> {
        let upto = match self.state {
            State::Running { wave, .. } | State::Halted { wave, .. } => wave + 1,
            State::Done => self.waves.len(),
        };
        self.waves.iter().take(upto).flatten().cloned().collect()
    }

    /// Move on from the members' reports (absent: no report, e.g. a member
    /// that is not live) at `now`.
    pub fn step(&mut self, reports: &BTreeMap<Label, Report>, now: i64) -> Action {
        let State::Running { wave, since } = self.state else {
            return Action::Wait;
        };
        for member in self.assigned() {
            if let Some(r) = reports.get(&member)
                && r.policy_revision == self.policy_revision
                && r.attempt == self.attempt
                && matches!(r.outcome, Outcome::Refused | Outcome::Failed)
            {
                let what = match r.outcome {
                    Outcome::Refused => "refused",
                    _ => "failed to apply",
                };
                self.state = State::Halted {
                    wave,
                    reason: format!("{member} {what} policy revision {}", self.policy_revision),
                };
                return Action::Halt;
            }
        }
        let done = self.waves[wave].iter().all(|m| {
            reports.get(m).is_some_and(|r| {
                r.policy_revision == self.policy_revision && r.outcome == Outcome::Applied
            })
        });
        if !done {
            if now - since > self.wave_timeout {
                let late: Vec<&str> = self.waves[wave]
                    .iter()
                    .filter(|m| {
                        !reports.get(*m).is_some_and(|r| {
                            r.policy_revision == self.policy_revision
                                && r.outcome == Outcome::Applied
                        })
                    })
                    .map(Label::as_str)
                    .collect();
                self.state = State::Halted {
                    wave,
                    reason: format!(
                        "wave {} not applied within {} s: {}",
                        wave + 1,
                        self.wave_timeout,
                        late.join(", ")
                    ),
                };
                return Action::Halt;
            }
            return Action::Wait;
        }
        if wave + 1 == self.waves.len() {
            self.state = State::Done;
            return Action::Finish;
        }
        self.state = State::Running {
            wave: wave + 1,
            since: now,
        };
        Action::Assign(self.waves[wave + 1].clone())
    }

    /// The operator halts the rollout.
    pub fn halt(&mut self, reason: &str) -> Result<(), String> {
        match self.state {
            State::Running { wave, .. } => {
                self.state = State::Halted {
                    wave,
                    reason: reason.to_owned(),
                };
                Ok(())
            }
            _ => Err("the rollout is not running".into()),
        }
    }

    /// The operator resumes a halted rollout: its wave runs again from
    /// `now`, and every member given the policy so far is given it again
    /// (a new attempt), so that a failed member retries.
    pub fn resume(&mut self, now: i64) -> Result<Vec<Label>, String> {
        match self.state {
            State::Halted { wave, .. } => {
                self.state = State::Running { wave, since: now };
                self.attempt += 1;
                Ok(self.assigned())
            }
            _ => Err("only a halted rollout resumes".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Label> {
        (0..n)
            .map(|i| format!("sb-{i:02}").parse().expect("label"))
            .collect()
    }

    fn applied(rev: i64) -> Report {
        Report {
            policy_revision: rev,
            attempt: 0,
            outcome: Outcome::Applied,
        }
    }

    #[test]
    fn waves_are_cut_from_the_sorted_members() {
        let spec: WaveSpec = "1,10%,rest".parse().expect("spec");
        let mut m = members(20);
        m.reverse();
        let waves = spec.cut(&m);
        assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [1, 2, 17]);
        assert_eq!(waves[0][0].as_str(), "sb-00");
        // Fewer members than waves: empty waves vanish.
        assert_eq!(spec.cut(&members(1)).len(), 1);
        assert!(spec.cut(&[]).is_empty());
        // The last wave takes the rest whatever it says.
        let waves = "1,2".parse::<WaveSpec>().expect("spec").cut(&members(10));
        assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [1, 9]);
        for bad in ["", "0", "0%", "101%", "rest,1", "x", "-1", "1,,2"] {
            assert!(bad.parse::<WaveSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_wave_starts_only_when_the_previous_one_applied_everywhere() {
        let spec: WaveSpec = "1,50%,rest".parse().expect("spec");
        let (mut r, first) = Rollout::start(7, &spec, &members(4), 60, 0).expect("start");
        assert_eq!(first.len(), 1);
        let mut reports = BTreeMap::new();
        assert_eq!(r.step(&reports, 1), Action::Wait);
        // An old revision applied does not count, nor does a pending one.
        reports.insert(first[0].clone(), applied(6));
        assert_eq!(r.step(&reports, 2), Action::Wait);
        reports.insert(
            first[0].clone(),
            Report {
                policy_revision: 7,
                attempt: 0,
                outcome: Outcome::Pending,
            },
        );
        assert_eq!(r.step(&reports, 3), Action::Wait);
        reports.insert(first[0].clone(), applied(7));
        let Action::Assign(second) = r.step(&reports, 4) else {
            panic!("the second wave starts: {r:?}")
        };
        assert_eq!(second.len(), 2);
        for m in &second {
            reports.insert(m.clone(), applied(7));
        }
        let Action::Assign(third) = r.step(&reports, 5) else {
            panic!("the third wave starts")
        };
        assert_eq!(third.len(), 1);
        reports.insert(third[0].clone(), applied(7));
        assert_eq!(r.step(&reports, 6), Action::Finish);
        assert_eq!(r.state, State::Done);
        assert_eq!(r.step(&reports, 7), Action::Wait);
        assert_eq!(r.assigned().len(), 4);
    }

    #[test]
    fn a_failure_or_a_late_member_halts_the_rollout_by_itself_and_resume_retries() {
        let spec: WaveSpec = "1,rest".parse().expect("spec");
        let (mut r, first) = Rollout::start(9, &spec, &members(3), 30, 100).expect("start");
        let mut reports = BTreeMap::new();
        reports.insert(
            first[0].clone(),
            Report {
                policy_revision: 9,
                attempt: 0,
                outcome: Outcome::Failed,
            },
        );
        assert_eq!(r.step(&reports, 101), Action::Halt);
        let State::Halted { wave: 0, reason } = &r.state else {
            panic!("{r:?}")
        };
        assert!(reason.contains("sb-00 failed"), "{reason}");
        // Halted stays halted whatever comes.
        assert_eq!(r.step(&reports, 102), Action::Wait);
        assert_eq!(r.resume(103).expect("resume"), first);
        assert_eq!(r.attempt, 1);
        // The failure of the attempt before the resume halts nothing.
        assert_eq!(r.step(&reports, 103), Action::Wait);
        reports.insert(first[0].clone(), applied(9));
        assert!(matches!(r.step(&reports, 104), Action::Assign(_)));
        // The second wave says nothing for longer than its deadline.
        assert_eq!(r.step(&reports, 120), Action::Wait);
        assert_eq!(r.step(&reports, 140), Action::Halt);
        let State::Halted { wave: 1, reason } = &r.state else {
            panic!("{r:?}")
        };
        assert!(reason.contains("sb-01, sb-02"), "{reason}");
        // A failure of an earlier wave's member also halts a later wave.
        let (mut r, _) = Rollout::start(9, &spec, &members(3), 30, 0).expect("start");
        let mut reports: BTreeMap<_, _> = members(1).into_iter().map(|m| (m, applied(9))).collect();
        assert!(matches!(r.step(&reports, 1), Action::Assign(_)));
        reports.insert(
            members(1)[0].clone(),
            Report {
                policy_revision: 9,
                attempt: 0,
                outcome: Outcome::Refused,
            },
        );
        assert_eq!(r.step(&reports, 2), Action::Halt);
        assert!(r.halt("again").is_err());
        assert!(Rollout::start(1, &spec, &[], 30, 0).is_err());
    }

    #[test]
    fn the_operator_halts_a_running_rollout_only() {
        let spec: WaveSpec = "rest".parse().expect("spec");
        let (mut r, _) = Rollout::start(1, &spec, &members(2), 30, 0).expect("start");
        assert!(r.resume(1).is_err());
        r.halt("by hand").expect("halt");
        assert_eq!(
            r.state,
            State::Halted {
                wave: 0,
                reason: "by hand".into()
            }
        );
        // The stored form reads back.
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<Rollout>(&text).expect("back"), r);
    }
}
