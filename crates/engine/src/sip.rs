//! SIP through Kamailio: the running revision's configuration written
//! where Kamailio reads it, checked first, and Kamailio restarted only when
//! its script changes (`tls.reload` when only certificates do); the
//! subscriber table kept in step with the accounts.

use std::path::PathBuf;

use switchboard_domain::{Facts, ServiceId};
use switchboard_plan::Plan;
use switchboard_plan::kamailio::{Env, KamailioConfig, Paths};
use switchboard_provision::Realm;
use switchboard_store::Store;
use switchboard_system::files::{create_private_dir, write_atomic, write_if_changed};
use switchboard_system::kamailio::{self, KamailioState, Subscriber, Supervisor};
use tracing::info;

use crate::{EngineError, Result};

/// Kamailio's module directory on Debian.
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// The Kamailio switchboard drives (when the daemon runs with `--sip kamailio`).
#[derive(Debug)]
pub(crate) struct Sip {
    dir: PathBuf,
    supervisor: Option<Supervisor>,
    listens: Vec<String>,
    /// What Kamailio was last made to run and verified with: its files
    /// and the fingerprints of the certificates they name.
    running: Option<(KamailioConfig, Vec<String>)>,
}

/// Where the files of Kamailio live, under `dir`.
fn paths(dir: &std::path::Path) -> Paths {
    Paths {
        tls_dir: dir.to_owned(),
        tls_cfg: dir.join("tls.cfg"),
        subscriber_db: dir.join(SUBSCRIBER_DB),
        ctl_socket: dir.join("kamailio.ctl"),
        modules: MODULES.into(),
    }
}

/// What the plan needs to render Kamailio's files for a daemon whose data
/// directory is `data_dir`.
pub(crate) fn env(data_dir: &std::path::Path) -> Env {
    Env {
        paths: paths(&data_dir.join("kamailio")),
        realm: Realm::default().as_str().to_owned(),
    }
}

impl crate::Engine {
    /// Kamailio's control socket, when the daemon drives Kamailio and it
    /// is there to be asked (the RPC of bans and registrations).
    pub(crate) fn kamailio_ctl(&self) -> Option<PathBuf> {
        let config = self.config();
        config
            .sip
            .then(|| env(&config.data_dir).paths.ctl_socket)
            .filter(|c| c.exists())
    }
}

fn system(e: impl std::fmt::Display) -> EngineError {
    EngineError::System(e.to_string())
}

/// Kamailio's files in the data directory: its configuration, its TLS
/// keys ([`KEYS_DIR`], owner-only) and its subscriber table
/// ([`SUBSCRIBER_DB`], HA1 digests, owner-only).
pub(crate) fn dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("kamailio")
}
pub(crate) const KEYS_DIR: &str = "keys";
pub(crate) const SUBSCRIBER_DB: &str = "subscriber.db";

impl Sip {
    pub(crate) fn new(data_dir: &std::path::Path) -> Sip {
        Sip {
            dir: dir(data_dir),
            supervisor: None,
            listens: Vec::new(),
            running: None,
        }
    }

    fn paths(&self) -> Paths {
        paths(&self.dir)
    }

    pub(crate) fn state(&self) -> Option<KamailioState> {
        self.supervisor.as_ref().map(Supervisor::state)
    }

    /// Kamailio's subscriber table: every account, HA1 only.
    pub(crate) fn sync_subscribers(&self, store: &mut Store) -> Result<()> {
        let subscribers: Vec<Subscriber> = store
            .accounts()?
            .into_iter()
            .map(|a| Subscriber {
                username: a.username,
                domain: a.realm,
                ha1: a.ha1,
            })
            .collect();
        std::fs::create_dir_all(&self.dir).map_err(system)?;
        kamailio::sync_subscribers(&self.dir.join(SUBSCRIBER_DB), &subscribers).map_err(system)
    }

    /// Make Kamailio run what `plan`'s Kamailio section says: nothing when
    /// it runs that already; when only certificates change, the new
    /// `tls.cfg` and `tls.reload` (which keeps the running configuration if
    /// the new one does not load); otherwise [`Sip::install_script`]. Every
    /// TLS socket is then verified by a handshake.
    pub(crate) async fn apply(
        &mut self,
        store: &mut Store,
        facts: &Facts,
        plan: &Plan,
    ) -> Result<String> {
        if !kamailio::installed() {
            return Ok("kamailio is not installed: the SIP services are enforced by the firewall, no SIP server runs".into());
        }
        let Some(k) = plan.kamailio.as_ref().filter(|k| !k.is_idle()) else {
            if let Some(s) = self.supervisor.take() {
                s.stop().await;
                info!("no SIP service enabled anywhere: kamailio stopped");
            }
            self.listens.clear();
            self.running = None;
            return Ok("no SIP service enabled: kamailio not running".into());
        };
        // The same files with the same certificates behind them, and the
        // supervisor still runs them: nothing to do.
        let wanted = (k.clone(), sip_tls_fingerprints(plan));
        if self.supervisor.is_some() && self.running.as_ref() == Some(&wanted) {
            return Ok("kamailio unchanged".into());
        }
        let previous = self.running.take();
        let paths = self.paths();
        create_private_dir(&self.dir.join(KEYS_DIR)).map_err(system)?;
        for name in &k.certificates {
            let c = store
                .cert(name)?
                .ok_or_else(|| EngineError::NoSuchCert(name.clone()))?;
            let key = c.key.as_ref().ok_or_else(|| EngineError::CertUnbindable {
                name: name.clone(),
                why: "it has no private key".into(),
            })?;
            write_if_changed(
                &self.dir.join("certs").join(format!("{name}.pem")),
                c.chain_pem.as_bytes(),
                0o644,
            )
            .map_err(system)?;
            write_if_changed(
                &self.dir.join(KEYS_DIR).join(format!("{name}.key")),
                key.expose_secret().as_bytes(),
                0o600,
            )
            .map_err(system)?;
        }
        let same_script =
            self.supervisor.is_some() && previous.as_ref().is_some_and(|(p, _)| p.cfg == k.cfg);
        let done = if same_script {
            // Only certificates changed: Kamailio loads the new tls.cfg at
            // tls.reload and keeps the running one when it does not load,
            // so the reload is the check.
            write_atomic(&paths.tls_cfg, k.tls_cfg.as_bytes(), 0o644).map_err(system)?;
            kamailio::tls_reload(&paths.ctl_socket)
                .await
                .map_err(|e| system(format!("kamailio refused the new certificates: {e}")))?;
            "kamailio reloaded its certificates (no restart)"
        } else {
            self.install_script(store, k, &paths).await?
        };
        self.listens = k.listens();
        let checked = verify(&self.listens, facts, plan).await?;
        self.running = Some(wanted);
        info!(listens = ?self.listens, checked, "{done}");
        Ok(format!(
            "{done}; listening on {}; {checked} TLS socket(s) verified",
            self.listens.join(", ")
        ))
    }

    /// A new script (or none running yet): checked with `kamailio -c`
    /// before it replaces the running files, then Kamailio started or
    /// restarted (it reads its script only when it starts).
    async fn install_script(
        &mut self,
        store: &mut Store,
        k: &KamailioConfig,
        paths: &Paths,
    ) -> Result<&'static str> {
        // The TLS policy's groups, for every TLS context of Kamailio (read
        // when it starts, and by `kamailio -c`).
        write_atomic(
            &self.dir.join(kamailio::OPENSSL_CONF),
            switchboard_plan::kamailio::openssl_conf().as_bytes(),
            0o644,
        )
        .map_err(system)?;
        let staged = self.dir.join("kamailio.cfg.new");
        let staged_tls = self.dir.join("tls.cfg.new");
        write_atomic(&staged_tls, k.tls_cfg.as_bytes(), 0o644).map_err(system)?;
        let staged_cfg = k.cfg.replace(
            &paths.tls_cfg.display().to_string(),
            &staged_tls.display().to_string(),
        );
        write_atomic(&staged, staged_cfg.as_bytes(), 0o644).map_err(system)?;
        kamailio::check(&staged).await.map_err(system)?;
        write_atomic(&paths.tls_cfg, k.tls_cfg.as_bytes(), 0o644).map_err(system)?;
        let cfg = self.dir.join("kamailio.cfg");
        write_atomic(&cfg, k.cfg.as_bytes(), 0o644).map_err(system)?;
        self.sync_subscribers(store)?;
        Ok(match &self.supervisor {
            None => {
                let pidfile = self.dir.join("kamailio.pid");
                kamailio::kill_stale(&pidfile, &cfg);
                self.supervisor = Some(Supervisor::start(cfg, pidfile));
                "kamailio started"
            }
            Some(s) if self.listens != k.listens() => {
                s.restart();
                "kamailio restarted: its listen sockets changed"
            }
            // Kamailio reads its routing script only when it starts
            // (`tls.reload` reloads tls.cfg alone): a new script, such as a
            // new ban policy or alias, needs a restart.
            Some(s) => {
                s.restart();
                "kamailio restarted: its script changed"
            }
        })
    }

    pub(crate) async fn stop(&mut self) {
        self.running = None;
        if let Some(s) = self.supervisor.take() {
            s.stop().await;
        }
    }
}

/// The certificates behind `sip-tls`'s files: a certificate deleted and
/// imported again under the same name changes them, not the files' names.
fn sip_tls_fingerprints(plan: &Plan) -> Vec<String> {
    plan.tls
        .iter()
        .filter(|a| a.service == ServiceId::SipTls)
        .map(|a| a.cert.fingerprint.clone())
        .chain(
            plan.tls_defaults
                .get(&ServiceId::SipTls)
                .map(|c| c.fingerprint.clone()),
        )
        .collect()
}

/// Handshake with every TLS socket Kamailio listens on and compare the
/// certificate it presents with the one bound there (waiting up to 10 s for
/// a Kamailio that is starting). Returns how many were checked.
async fn verify(listens: &[String], facts: &Facts, plan: &Plan) -> Result<usize> {
    let default = plan
        .tls_defaults
        .get(&ServiceId::SipTls)
        .map(|c| c.fingerprint.clone());
    let mut checked = 0;
    for listen in listens.iter().filter_map(|l| l.strip_prefix("tls:")) {
        let (addr, port) = listen
            .rsplit_once(':')
            .ok_or_else(|| system(format!("odd listen {listen}")))?;
        let addr: std::net::IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(system)?;
        let port: u16 = port.parse().map_err(system)?;
        let nic = facts
            .nics
            .iter()
            .find(|n| n.addrs.iter().any(|a| a.addr == addr));
        let want = nic
            .and_then(|n| {
                plan.tls
                    .iter()
                    .find(|a| a.service == ServiceId::SipTls && a.nic == n.name)
                    .map(|a| a.cert.fingerprint.clone())
            })
            .or_else(|| default.clone())
            .ok_or_else(|| system(format!("no certificate is bound for {listen}")))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got =
                kamailio::presented_certificate(addr, port, std::time::Duration::from_secs(2))
                    .await
                    .map(|der| switchboard_pki::Fingerprint::of(&der).to_string());
            match got {
                Ok(fp) if fp == want => break,
                Ok(fp) if std::time::Instant::now() > deadline => {
                    return Err(system(format!(
                        "kamailio presents {fp} on {listen}, not the bound {want}"
                    )));
                }
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(system(format!(
                        "kamailio does not answer TLS on {listen}: {e}"
                    )));
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        checked += 1;
    }
    Ok(checked)
}
