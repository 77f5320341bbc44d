//! `switchboard serve`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use switchboard_engine::{Engine, EngineConfig, FirewallMode};
use switchboard_store::{AuditRetention, Store};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::config::{FirewallArg, MediaArg, SipArg, SmsArg};

/// Threads of the phones' runtime (the web services); the main runtime has
/// two more for the console, the API and the engine.
const PHONE_WORKERS: usize = 2;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see `switchboard.toml(5)` in the
    /// README). Default: /etc/switchboard/switchboard.toml as root, when it
    /// exists; none otherwise. A flag below wins over the file.
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// `plan` renders and records the ruleset of every revision without
    /// touching the host firewall (the safe default for a daemon started by
    /// hand); `enforce` loads it into the kernel (table inet switchboard).
    /// [default: plan]
    #[arg(long, value_enum)]
    firewall: Option<FirewallArg>,
    /// Where activation SMS go: `outbox` keeps them for `switchboard sms
    /// list` (no gateway needed); `kannel` posts to Kannel's sendsms
    /// interface; `webhook` posts JSON {to, text}. [default: outbox]
    #[arg(long, value_enum)]
    sms_gateway: Option<SmsArg>,
    /// The gateway's URL (kannel: e.g. http://127.0.0.1:13013/cgi-bin/sendsms).
    #[arg(long, value_name = "URL")]
    sms_url: Option<String>,
    /// Kannel's sendsms user.
    #[arg(long, value_name = "USER")]
    sms_user: Option<String>,
    /// A file holding Kannel's sendsms password or the webhook's bearer token.
    #[arg(long, value_name = "FILE")]
    sms_secret_file: Option<PathBuf>,
    /// `kamailio` runs Kamailio (supervised) for the SIP services with the
    /// running revision's configuration; `off` leaves SIP to no one (the
    /// firewall still enforces the SIP rows). [default: off]
    #[arg(long, value_enum)]
    sip: Option<SipArg>,
    /// `rtpengine` runs rtpengine (supervised, userspace forwarding) as the
    /// media relay of calls, on the NICs of the `rtp` row, and Kamailio
    /// routes calls through it; `off`: no relay, and no calls (Kamailio
    /// answers INVITE 405). [default: off]
    #[arg(long, value_enum)]
    media: Option<MediaArg>,
    /// The audit log keeps at most this many entries (the newest).
    /// [default: 100000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    audit_max_entries: Option<u64>,
    /// The audit log keeps no entry older than this many days. [default: 365]
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..))]
    audit_max_days: Option<u32>,
    /// The group that may read the monitoring socket (`monitor.sock`
    /// beside the API socket; `switchboard check` reads it), e.g. `nagios`
    /// for NRPE. [default: none, root only]
    #[arg(long, value_name = "GROUP")]
    monitor_group: Option<String>,
}

/// What the daemon runs with: each setting from its flag, else from the
/// configuration file, else its default.
#[derive(Debug)]
struct Settings {
    firewall: FirewallArg,
    sip: SipArg,
    media: MediaArg,
    /// The gateway, with its secret read (checked before anything is touched).
    sms: switchboard_system::sms::Gateway,
    audit: AuditRetention,
    /// The monitoring socket's group id.
    monitor_group: Option<u32>,
    /// The file read, if any (for the log).
    config: Option<PathBuf>,
}

impl Settings {
    fn new(args: &ServeArgs, root: bool) -> anyhow::Result<Settings> {
        let path = crate::config::locate(args.config.as_deref(), root);
        let file = match &path {
            Some(p) => crate::config::load(p).map_err(|e| {
                crate::CliError::new(
                    "invalid-config",
                    e.to_string(),
                    "correct the file (every key is listed in the README, section \"Configuration file\"), or name another with --config",
                )
            })?,
            None => crate::config::ConfigFile::default(),
        };
        let defaults = AuditRetention::default();
        let sms = sms_gateway(
            args.sms_gateway
                .or(file.sms.gateway)
                .unwrap_or(SmsArg::Outbox),
            args.sms_url.clone().or(file.sms.url),
            args.sms_user.clone().or(file.sms.user),
            args.sms_secret_file.clone().or(file.sms.secret_file),
        )?;
        Ok(Settings {
            firewall: args.firewall.or(file.firewall).unwrap_or(FirewallArg::Plan),
            sip: args.sip.or(file.sip).unwrap_or(SipArg::Off),
            media: args.media.or(file.media).unwrap_or(MediaArg::Off),
            sms,
            audit: AuditRetention {
                max_entries: args
                    .audit_max_entries
                    .or(file.audit.max_entries.map(|n| n.into_inner()))
                    .unwrap_or(defaults.max_entries),
                max_days: args
                    .audit_max_days
                    .or(file.audit.max_days.map(|n| n.into_inner()))
                    .unwrap_or(defaults.max_days),
                ..defaults
            },
            monitor_group: match &args.monitor_group {
                Some(name) => Some(crate::config::group_id(name).ok_or_else(|| {
                    crate::CliError::new(
                        "invalid-arguments",
                        format!("--monitor-group {name:?}: no such group on this system"),
                        "name a group of /etc/group, such as nagios",
                    )
                })?),
                None => file
                    .monitor
                    .group
                    .as_ref()
                    .and_then(|g| crate::config::group_id(g.get_ref())),
            },
            config: path,
        })
    }
}

fn sms_gateway(
    gateway: SmsArg,
    url: Option<String>,
    user: Option<String>,
    secret_file: Option<PathBuf>,
) -> anyhow::Result<switchboard_system::sms::Gateway> {
    use switchboard_system::sms::{Gateway, Secret};
    let secret = secret_file
        .as_deref()
        .map(crate::certcheck::read_password)
        .transpose()?
        .map(Secret::new);
    let url = || {
        url.clone()
            .ok_or_else(|| anyhow::anyhow!("--sms-gateway needs --sms-url (or sms.url)"))
    };
    Ok(match gateway {
        SmsArg::Outbox => Gateway::Outbox,
        SmsArg::Kannel => Gateway::Kannel {
            url: url()?,
            username: user.ok_or_else(|| {
                anyhow::anyhow!("--sms-gateway kannel needs --sms-user (or sms.user)")
            })?,
            password: secret.unwrap_or_else(|| Secret::new("")),
            from: None,
            smsc: None,
        },
        SmsArg::Webhook => Gateway::Webhook {
            url: url()?,
            bearer: secret,
        },
    })
}

pub async fn run(args: &ServeArgs, data_dir: PathBuf, socket: PathBuf) -> anyhow::Result<ExitCode> {
    // The configuration is read before anything else: a file refused
    // stops the start with nothing touched.
    let settings = Settings::new(args, crate::is_root())?;
    init_logging();
    // Memory a burst took goes back to the kernel (see the task below).
    switchboard_system::memory::configure();

    // The lock comes first: a second daemon is refused before it touches
    // anything, including the socket of the first.
    let mut store = Store::open_dir(&data_dir)?;
    // The audit log's retention: applied now, then every few entries written.
    store.set_audit_retention(settings.audit);
    if let Some(pruned) = store.prune_audit(jiff::Timestamp::now())? {
        info!(
            entries = pruned.entries,
            older_than = %pruned.older_than,
            "pruned the audit log"
        );
    }
    // Owner-only, whatever the directory held before this start.
    let tightened = switchboard_engine::datadir::secure_data_dir(&data_dir)
        .with_context(|| format!("narrowing the modes in {}", data_dir.display()))?;
    for t in tightened {
        warn!(
            "tightened the mode of {} from {:o} to {:o}: it holds secrets",
            t.path.display(),
            t.from,
            t.to
        );
    }
    let firewall = match settings.firewall {
        FirewallArg::Plan => FirewallMode::Plan,
        FirewallArg::Enforce => FirewallMode::Enforce,
    };
    let engine = Arc::new(Engine::new(
        EngineConfig {
            data_dir: data_dir.clone(),
            firewall,
            discover: true,
            sms_gateway: settings.sms,
            sip: settings.sip == SipArg::Kamailio,
            media: settings.media == MediaArg::Rtpengine,
        },
        store,
    )?);

    // Subscribe before the first read, so no change is missed in between.
    let changes = switchboard_system::nics::watch()
        .await
        .context("watching the NICs")?;
    let facts = engine.refresh_facts().await?;
    let applied = engine.status().await?.applied_revision;
    info!(
        data_dir = %data_dir.display(),
        nics = facts.nics.len(),
        applied_revision = ?applied,
        firewall = ?firewall,
        config = %settings.config.as_deref().map_or("(none)".into(), |p| p.display().to_string()),
        "switchboard starting"
    );
    match firewall {
        FirewallMode::Plan => info!(
            "firewall mode plan: rulesets are rendered and recorded, the host firewall is not touched"
        ),
        FirewallMode::Enforce => {
            info!("firewall mode enforce: table inet switchboard follows the applied revision")
        }
    }
    // The console and web services' HTTPS listeners, on every address (the
    // firewall decides who reaches them; the certificate follows the
    // address a connection arrived on). The engine moves them with each
    // revision it installs, starting with boot's; a port that cannot be
    // bound then is logged and skipped: the rest of the appliance runs.
    // The web services, which phones use, run on a runtime of their own:
    // nothing the console, the API or an Update does can starve them.
    let phones = switchboard_web::https::Plane::new("phones", PHONE_WORKERS)
        .context("starting the phones' runtime")?;
    let https = switchboard_web::https::Listeners::for_engine(&engine, &phones);
    // Boot reconciles before anything is served: an expired pending
    // revision is rolled back, the applied one is loaded again.
    let reconciled = engine
        .boot()
        .await
        .context("reconciling the system at boot")?;
    info!("{reconciled}");
    // The one secret the log ever shows, once: the first administrator's.
    if let Some(pw) = engine.ensure_admin().await? {
        warn!(
            "first start: the console's administrator is `admin`, password {pw}; change it with `switchboard admin set-password`"
        );
    }
    // Where to go next, on the terminal of whoever started the daemon.
    match engine.console_places().await {
        Ok((_, places)) if places.is_empty() => warn!(
            "the console answers on no NIC with an address: open it in the matrix (switchboard allow console NIC) and Update"
        ),
        Ok((port, places)) => {
            let urls: Vec<String> = places
                .iter()
                .map(|(nic, name)| format!("https://{name}:{port}/ ({nic})"))
                .collect();
            info!("the console: {}", urls.join(", "))
        }
        Err(e) => warn!(error = %e, "cannot say where the console answers"),
    }
    tokio::spawn(follow_nics(engine.clone(), changes));
    tokio::spawn(expire_pending(engine.clone()));
    tokio::spawn(deliver_sms(engine.clone()));
    tokio::spawn(enforce_bans(engine.clone()));
    tokio::spawn(renew_certificates(engine.clone()));
    tokio::spawn(switchboard_fleet::agent::run(engine.clone()));
    // What a burst of connections allocated goes back to the kernel after it.
    tokio::spawn(switchboard_system::memory::give_back_every(
        switchboard_system::memory::PERIOD,
    ));

    let listener = switchboard_web::bind_unix(&socket).await?;
    info!(socket = %socket.display(), "API listening");
    let monitor_socket = crate::check::monitor_socket(&socket);
    let monitor_listener =
        switchboard_web::bind_monitor_unix(&monitor_socket, settings.monitor_group).await?;
    info!(socket = %monitor_socket.display(), group = ?settings.monitor_group, "monitoring socket listening");
    // Boot is reconciled and every socket listens: tell systemd
    // (Type=notify), and keep its watchdog fed while the runtime runs.
    notify_ready(engine.clone());
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        let _ = stop.send(true);
    };
    // The HTTPS listeners drain alongside the API (the sender gone, when
    // the API ends on its own, is a stop too).
    let mut monitor_stopped = stopped.clone();
    let monitor = tokio::spawn(switchboard_web::serve_monitor_unix(
        monitor_listener,
        engine.clone(),
        async move {
            let _ = monitor_stopped.wait_for(|s| *s).await;
        },
    ));
    let https_shutdown = async {
        let _ = stopped.wait_for(|s| *s).await;
        https.shutdown().await;
    };
    let engine_for_shutdown = engine.clone();
    let (served, ()) = tokio::join!(
        switchboard_web::serve_unix(listener, engine, shutdown),
        https_shutdown
    );
    engine_for_shutdown.shutdown().await;
    if let Ok(Err(e)) = monitor.await {
        warn!(error = %e, "the monitoring socket failed");
    }
    for path in [&socket, &monitor_socket] {
        if let Err(e) = std::fs::remove_file(path) {
            warn!(socket = %path.display(), error = %e, "could not remove the socket");
        }
    }
    drop(phones);
    served.context("serving the API")?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The log: to the journal, with every span's and event's fields as journal
/// fields (`SB_REVISION`, `SB_ACTOR`, `SB_ID` the request's number...), when
/// systemd started the daemon with its output on the journal
/// (`JOURNAL_STREAM`); to stderr, as text, otherwise (or when journald
/// does not answer). `RUST_LOG` filters both.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| {
            layer
                .with_field_prefix(Some("SB".into()))
                .with_syslog_identifier("switchboard".into())
        });
    match journald {
        Some(journald) => tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// `READY=1` to systemd (nothing when not started by it), and a task that
/// sends `WATCHDOG=1` at half the unit's `WatchdogSec` once the engine has
/// answered a read (so a wedged store lock, or a runtime that no longer
/// runs tasks, gets the daemon restarted).
fn notify_ready(engine: Arc<Engine>) {
    use sd_notify::NotifyState;
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]) {
        warn!(error = %e, "cannot tell systemd the daemon is ready");
    }
    if let Some(period) = sd_notify::watchdog_enabled() {
        info!(?period, "systemd watchdog: keep-alive every half period");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                match tokio::time::timeout(period / 2, engine.audit_log(1)).await {
                    Ok(Ok(_)) => {
                        if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
                            warn!(error = %e, "cannot feed systemd's watchdog");
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "the store does not answer; systemd's watchdog is not fed")
                    }
                    Err(_) => {
                        warn!("the engine did not answer in time; systemd's watchdog is not fed")
                    }
                }
            }
        });
    }
}

/// Send what the SMS queue holds, now and then; the queue is in the store,
/// so a gateway outage (or a restart) loses nothing.
async fn deliver_sms(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = engine.deliver_sms().await {
            error!(error = %e, "delivering the SMS queue failed; retrying");
        }
    }
}

/// Put the addresses Kamailio banned into the kernel's ban set (see
/// `switchboard_engine::bans`), twice a second.
async fn enforce_bans(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = engine.poll_bans().await {
            error!(error = %e, "enforcing the SIP edge's bans failed; retrying");
        }
    }
}

/// Renew the ACME certificates that are due (see
/// `switchboard_engine::renewal`): a look at the store every second, the
/// CA asked only when one is due.
async fn renew_certificates(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        engine.acme_renew_due(jiff::Timestamp::now()).await;
    }
}

/// Roll back a commit-confirmed revision whose deadline has passed.
async fn expire_pending(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Err(e) = engine.expire_pending(jiff::Timestamp::now()).await {
            error!(error = %e, "rolling back the unconfirmed revision failed; retrying");
        }
    }
}

/// Keep the engine's facts in step with the kernel.
async fn follow_nics(engine: Arc<Engine>, mut changes: tokio::sync::mpsc::Receiver<()>) {
    while changes.recv().await.is_some() {
        if let Err(e) = engine.refresh_facts().await {
            error!(error = %e, "re-reading the NICs failed");
        }
    }
    warn!("the NIC change feed ended; NIC changes are seen only at the next Update");
}
