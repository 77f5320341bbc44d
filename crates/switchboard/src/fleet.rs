//! `switchboard fleet`: joining a fleet (a request to this appliance's
//! daemon) and the operator's commands, which talk to etcd directly with
//! the operator's certificate (policies, rollouts, the fleet's status).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchboard_domain::NicName;
use switchboard_domain::fleet::rollout::{State, WaveSpec};
use switchboard_domain::fleet::{DriftMode, EtcdAccess, Label, Membership};
use switchboard_engine::fleet::FleetView;
use switchboard_fleet::operator;

/// How to reach etcd.
#[derive(Debug, Clone, Args)]
pub struct Etcd {
    /// etcd's client URLs, comma-separated: https://HOST:PORT,…
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// The CA of etcd's server certificates (PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The client certificate (PEM); etcd's user is its common name.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

impl Etcd {
    fn access(&self) -> anyhow::Result<EtcdAccess> {
        let abs = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
            p.as_ref()
                .map(|p| {
                    std::path::absolute(p)
                        .with_context(|| format!("{}", p.display()))
                        .map(|p| p.to_string_lossy().into_owned())
                })
                .transpose()
        };
        Ok(EtcdAccess {
            endpoints: self.endpoints.clone(),
            ca_file: abs(&self.ca)?,
            cert_file: abs(&self.cert)?,
            key_file: abs(&self.key)?,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Join a fleet: this appliance applies its group's policy from etcd,
    /// its NICs playing the roles given (--role lan0=internal).
    Join {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
        /// This appliance's name in the group (etcd's user for its status).
        #[arg(long)]
        appliance: Label,
        /// The site, filled into the policy's templates ({site}).
        #[arg(long)]
        site: Label,
        /// NIC=ROLE, once per NIC.
        #[arg(long = "role", value_name = "NIC=ROLE", required = true)]
        roles: Vec<String>,
        /// Local Updates on this appliance: refused, or applied and
        /// reported as drift.
        #[arg(long, default_value = "refuse")]
        drift: DriftMode,
    },
    /// Leave the fleet: local Updates are the administrator's again.
    Leave,
    /// This appliance's view of its fleet (through its daemon): contact
    /// with etcd, the last policy revision, the group's live members.
    Show,
    /// Every live appliance of the group, its policy revision, outcome and
    /// last report, read from etcd (operator).
    Status {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
    },
    /// The group's policy (operator).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Rollouts of the group's policy in waves (operator).
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write the group's policy from FILE (JSON); prints its revision.
    Set {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Roll the group's current policy out in waves, and drive it until it
    /// is done or halts (unless --detach).
    Start {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
        /// The waves: counts, percentages, `rest`.
        #[arg(long, default_value = "1,10%,rest")]
        waves: WaveSpec,
        /// Seconds a wave may take before the rollout halts (5 to 86400).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(i64).range(5..=86_400))]
        wave_timeout: i64,
        /// Start it and return; `resume` or another coordinator drives it.
        #[arg(long)]
        detach: bool,
    },
    /// The rollout's state.
    Status {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
    },
    /// Halt the running rollout.
    Halt {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
    },
    /// Resume a halted rollout (its wave again, failed members retry), or
    /// take over a running one whose coordinator stopped; and drive it.
    Resume {
        #[command(flatten)]
        etcd: Etcd,
        #[arg(long)]
        group: Label,
        #[arg(long)]
        detach: bool,
    },
}

fn roles(pairs: &[String]) -> anyhow::Result<BTreeMap<NicName, Label>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((nic, role)) = pair.split_once('=') else {
            bail!("--role {pair:?}: give NIC=ROLE, e.g. lan0=internal");
        };
        let nic: NicName = nic.parse().with_context(|| format!("--role {pair:?}"))?;
        let role: Label = role.parse().with_context(|| format!("--role {pair:?}"))?;
        if out.insert(nic, role).is_some() {
            bail!("--role {pair:?}: that NIC has a role already");
        }
    }
    Ok(out)
}

/// Runs a fleet command; `socket` is the daemon's, for join/leave/status.
pub async fn run(command: &FleetCommand, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let out = match command {
        FleetCommand::Join {
            etcd,
            group,
            appliance,
            site,
            roles: pairs,
            drift,
        } => {
            let m = Membership {
                etcd: etcd.access()?,
                group: group.clone(),
                appliance: appliance.clone(),
                site: site.clone(),
                roles: roles(pairs)?,
                drift: *drift,
            };
            let client = switchboard_web::client::Client::new(socket);
            return daemon(json, client.post("/v1/fleet", &m).await);
        }
        FleetCommand::Leave => {
            let client = switchboard_web::client::Client::new(socket);
            return daemon(json, client.delete("/v1/fleet").await);
        }
        FleetCommand::Show => {
            let client = switchboard_web::client::Client::new(socket);
            return daemon(json, client.get("/v1/fleet").await);
        }
        FleetCommand::Status { etcd, group } => {
            let mut client = switchboard_fleet::connect(
                &etcd.access()?,
                &switchboard_fleet::Keys::new(group).policy(),
            )
            .await?;
            let s = operator::status(&mut client, group).await?;
            if json {
                serde_json::to_string_pretty(&s)? + "\n"
            } else {
                status_text(&s)
            }
        }
        FleetCommand::Policy {
            command: PolicyCommand::Set { etcd, group, file },
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // Checked before etcd is asked anything: a bad policy is never sent.
            switchboard_domain::fleet::GroupPolicy::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}\n  = hint: {}", file.display(), e.hint()))?;
            let mut client = switchboard_fleet::connect(
                &etcd.access()?,
                &switchboard_fleet::Keys::new(group).policy(),
            )
            .await?;
            let revision = operator::set_policy(&mut client, group, &text).await?;
            if json {
                format!("{{\"policy_revision\": {revision}}}\n")
            } else {
                format!("policy of group {group} written: revision {revision}\n")
            }
        }
        FleetCommand::Rollout { command } => rollout(command, json).await?,
    };
    crate::print_out(&out)?;
    Ok(ExitCode::SUCCESS)
}

async fn rollout(command: &RolloutCommand, json: bool) -> anyhow::Result<String> {
    let every = Duration::from_millis(250);
    let r = match command {
        RolloutCommand::Start {
            etcd,
            group,
            waves,
            wave_timeout,
            detach,
        } => {
            let access = etcd.access()?;
            let mut client =
                switchboard_fleet::connect(&access, &switchboard_fleet::Keys::new(group).policy())
                    .await?;
            let r = operator::start(&mut client, group, waves, *wave_timeout).await?;
            if *detach {
                r
            } else {
                operator::drive(&access, group, every).await?
            }
        }
        RolloutCommand::Resume {
            etcd,
            group,
            detach,
        } => {
            let access = etcd.access()?;
            let mut client =
                switchboard_fleet::connect(&access, &switchboard_fleet::Keys::new(group).policy())
                    .await?;
            let r = operator::resume(&mut client, group).await?;
            if *detach {
                r
            } else {
                operator::drive(&access, group, every).await?
            }
        }
        RolloutCommand::Halt { etcd, group } => {
            let mut client = switchboard_fleet::connect(
                &etcd.access()?,
                &switchboard_fleet::Keys::new(group).policy(),
            )
            .await?;
            operator::halt(&mut client, group, "halted by the operator").await?
        }
        RolloutCommand::Status { etcd, group } => {
            let mut client = switchboard_fleet::connect(
                &etcd.access()?,
                &switchboard_fleet::Keys::new(group).policy(),
            )
            .await?;
            let Some((r, _)) =
                switchboard_fleet::rollout(&mut client, &switchboard_fleet::Keys::new(group))
                    .await?
            else {
                bail!("group {group} has no rollout");
            };
            r
        }
    };
    Ok(if json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        let waves: Vec<String> = r.waves.iter().map(|w| w.len().to_string()).collect();
        let state = match &r.state {
            State::Running { wave, .. } => {
                format!("running wave {} of {}", wave + 1, r.waves.len())
            }
            State::Halted { wave, reason } => format!("halted in wave {}: {reason}", wave + 1),
            State::Done => "done".into(),
        };
        format!(
            "rollout of policy revision {}: {state} (waves {}, attempt {})\n",
            r.policy_revision,
            waves.join("+"),
            r.attempt
        )
    })
}

/// The daemon's answer, as JSON or a few lines.
fn daemon(
    json: bool,
    answer: Result<FleetView, switchboard_web::client::ClientError>,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(v) => {
            let text = if json {
                serde_json::to_string_pretty(&v)? + "\n"
            } else {
                view_text(&v)
            };
            crate::print_out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(switchboard_web::client::ClientError::Api { body, .. }) => {
            if json {
                crate::print_json_error(&body.code, &body.message, &body.hint);
            } else {
                eprintln!(
                    "error[{}]: {}\n  = hint: {}",
                    body.code, body.message, body.hint
                );
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn view_text(v: &FleetView) -> String {
    if !v.joined {
        return "not in a fleet\n".into();
    }
    let mut s = format!(
        "appliance {} of group {} at site {}: {}\n",
        v.appliance.as_deref().unwrap_or("?"),
        v.group.as_deref().unwrap_or("?"),
        v.site.as_deref().unwrap_or("?"),
        if v.connected {
            "in contact with etcd".to_owned()
        } else {
            format!(
                "out of contact with etcd ({}), running the last applied revision",
                v.error.as_deref().unwrap_or("not yet connected")
            )
        }
    );
    if let Some(l) = &v.last {
        s += &format!(
            "last policy revision {} (attempt {}): {:?}, local revision {}{}\n",
            l.policy_revision,
            l.attempt,
            l.outcome,
            l.revision.map_or("-".into(), |r| r.to_string()),
            if l.detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", l.detail)
            }
        );
    }
    s += &members_text(&v.members);
    s
}

fn members_text(members: &[switchboard_engine::fleet::MemberStatus]) -> String {
    let mut s = format!(
        "{:<20} {:<12} {:>8} {:<9} {:>6} {:<6} {}\n",
        "APPLIANCE", "SITE", "POLICY", "OUTCOME", "LOCAL", "DRIFT", "REPORTED"
    );
    for m in members {
        s += &format!(
            "{:<20} {:<12} {:>8} {:<9} {:>6} {:<6} {}\n",
            m.appliance,
            m.site,
            m.policy_revision,
            format!("{:?}", m.outcome).to_lowercase(),
            m.local_revision.map_or("-".into(), |r| r.to_string()),
            if m.drift { "yes" } else { "no" },
            m.reported_at
        );
    }
    s
}

fn status_text(s: &operator::FleetStatus) -> String {
    let mut out = format!(
        "group {}: policy revision {}\n",
        s.group,
        s.policy_revision.map_or("none".into(), |r| r.to_string())
    );
    if let Some(r) = &s.rollout {
        out += &format!("rollout of revision {}: {:?}\n", r.policy_revision, r.state);
    }
    out += &members_text(&s.members);
    out
}
