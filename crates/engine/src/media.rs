//! The media relay through rtpengine: the running revision's
//! `rtpengine.conf` written where rtpengine reads it, rtpengine started (or
//! restarted when the file changes: it reads it only when it starts) under
//! supervision, and verified: its control socket answers and the
//! interfaces it runs are exactly the planned ones.
//!
//! A restart of the relay ends the media of the calls in progress (their
//! signalling stays up); an Update restarts it only when the `rtp` row, its
//! ports or the NICs' addresses change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchboard_plan::Plan;
use switchboard_plan::media::{Env, MediaConfig};
use switchboard_system::files::write_atomic;
use switchboard_system::kamailio::{KamailioState, Supervisor, kill_stale};
use switchboard_system::rtpengine;
use tracing::info;

use crate::{EngineError, Result};

/// The relay the daemon drives (`serve --media rtpengine`).
#[derive(Debug)]
pub(crate) struct Media {
    dir: PathBuf,
    supervisor: Option<Supervisor>,
    /// What rtpengine was last made to run and verified with.
    running: Option<MediaConfig>,
}

/// Where the relay's files live, under the data directory.
pub(crate) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rtpengine")
}

/// What the plan needs to render the relay's configuration.
pub(crate) fn env() -> Env {
    Env::default()
}

fn system(e: impl std::fmt::Display) -> EngineError {
    EngineError::System(e.to_string())
}

impl Media {
    pub(crate) fn new(data_dir: &Path) -> Media {
        Media {
            dir: dir(data_dir),
            supervisor: None,
            running: None,
        }
    }

    pub(crate) fn state(&self) -> Option<KamailioState> {
        self.supervisor.as_ref().map(Supervisor::state)
    }

    /// The control sockets of the relay that runs, if one does.
    pub(crate) fn running(&self) -> Option<&MediaConfig> {
        self.running.as_ref().filter(|_| self.supervisor.is_some())
    }

    /// Make rtpengine run what `plan`'s media section says.
    pub(crate) async fn apply(&mut self, plan: &Plan) -> Result<String> {
        if !rtpengine::installed() {
            return Ok("rtpengine is not installed: the rtp row is enforced by the firewall, no media relay runs".into());
        }
        let Some(m) = plan.media.as_ref().filter(|m| !m.is_idle()) else {
            self.stop().await;
            return Ok(
                "rtp enabled on no NIC with an address: the media relay is not running".into(),
            );
        };
        if self.supervisor.is_some() && self.running.as_ref() == Some(m) {
            return Ok("media relay unchanged".into());
        }
        let conf = self.dir.join("rtpengine.conf");
        write_atomic(&conf, m.conf.as_bytes(), 0o644).map_err(system)?;
        let done = match &self.supervisor {
            None => {
                let pidfile = self.dir.join("rtpengine.pid");
                kill_stale(&pidfile, &conf);
                self.supervisor = Some(rtpengine::supervisor(&conf, pidfile));
                "media relay started"
            }
            Some(s) => {
                s.restart();
                "media relay restarted: its interfaces or ports changed"
            }
        };
        self.running = None;
        let verified = verify(m).await?;
        self.running = Some(m.clone());
        info!(interfaces = %verified, ports = %m.ports, "{done}");
        Ok(format!(
            "{done}; relaying media on {verified}, ports {}",
            m.ports
        ))
    }

    pub(crate) async fn stop(&mut self) {
        self.running = None;
        if let Some(s) = self.supervisor.take() {
            s.stop().await;
            info!("media relay stopped");
        }
    }
}

/// Wait (up to 10 s) for rtpengine to answer `ping` and to list exactly
/// the planned interfaces. Returns them in words.
async fn verify(m: &MediaConfig) -> Result<String> {
    let mut want: Vec<(String, std::net::IpAddr)> = m
        .interfaces
        .iter()
        .map(|i| (i.nic.to_string(), i.address))
        .collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let check = async {
            rtpengine::ping(m.ng).await.map_err(|e| e.to_string())?;
            let mut got = rtpengine::interfaces(m.cli)
                .await
                .map_err(|e| e.to_string())?;
            got.sort();
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "rtpengine runs the interfaces {got:?}, not the planned {want:?}"
                ))
            }
        };
        match check.await {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(system(format!(
                    "the media relay does not run as planned: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(want
        .iter()
        .map(|(n, a)| format!("{n} {a}"))
        .collect::<Vec<_>>()
        .join(", "))
}
