//! `switchboard serve`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use switchboard_engine::{Engine, EngineConfig, FirewallMode};
use switchboard_store::{AuditRetention, Store};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// Threads of the phones' runtime (the web services); the main runtime has
/// two more for the console, the API and the engine.
const PHONE_WORKERS: usize = 2;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// `plan` renders and records the ruleset of every revision without
    /// touching the host firewall (the safe default for a daemon started by
    /// hand); `enforce` loads it into the kernel (table inet switchboard).
    #[arg(long, value_enum, default_value_t = FirewallArg::Plan)]
    firewall: FirewallArg,
    /// Where activation SMS go: `outbox` keeps them for `switchboard sms
    /// list` (no gateway needed); `kannel` posts to Kannel's sendsms
    /// interface; `webhook` posts JSON {to, text}.
    #[arg(long, value_enum, default_value_t = SmsArg::Outbox)]
    sms_gateway: SmsArg,
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
    /// firewall still enforces the SIP rows).
    #[arg(long, value_enum, default_value_t = SipArg::Off)]
    sip: SipArg,
    /// `rtpengine` runs rtpengine (supervised, userspace forwarding) as the
    /// media relay of calls, on the NICs of the `rtp` row, and Kamailio
    /// routes calls through it; `off`: no relay, and no calls (Kamailio
    /// answers INVITE 405).
    #[arg(long, value_enum, default_value_t = MediaArg::Off)]
    media: MediaArg,
    /// The audit log keeps at most this many entries (the newest).
    #[arg(long, value_name = "N", default_value_t = AuditRetention::default().max_entries,
          value_parser = clap::value_parser!(u64).range(1..))]
    audit_max_entries: u64,
    /// The audit log keeps no entry older than this many days.
    #[arg(long, value_name = "D", default_value_t = AuditRetention::default().max_days,
          value_parser = clap::value_parser!(u32).range(1..))]
    audit_max_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SipArg {
    Off,
    Kamailio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MediaArg {
    Off,
    Rtpengine,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SmsArg {
    Outbox,
    Kannel,
    Webhook,
}

fn sms_gateway(args: &ServeArgs) -> anyhow::Result<switchboard_system::sms::Gateway> {
    use switchboard_system::sms::{Gateway, Secret};
    let secret = args
        .sms_secret_file
        .as_deref()
        .map(crate::certcheck::read_password)
        .transpose()?
        .map(Secret::new);
    let url = || {
        args.sms_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--sms-gateway needs --sms-url"))
    };
    Ok(match args.sms_gateway {
        SmsArg::Outbox => Gateway::Outbox,
        SmsArg::Kannel => Gateway::Kannel {
            url: url()?,
            username: args
                .sms_user
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--sms-gateway kannel needs --sms-user"))?,
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FirewallArg {
    Plan,
    Enforce,
}

pub async fn run(args: &ServeArgs, data_dir: PathBuf, socket: PathBuf) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Memory a burst took goes back to the kernel (see the task below).
    switchboard_system::memory::configure();

    // The lock comes first: a second daemon is refused before it touches
    // anything, including the socket of the first.
    let mut store = Store::open_dir(&data_dir)?;
    // The audit log's retention: applied now, then every few entries written.
    store.set_audit_retention(AuditRetention {
        max_entries: args.audit_max_entries,
        max_days: args.audit_max_days,
        ..AuditRetention::default()
    });
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
    let firewall = match args.firewall {
        FirewallArg::Plan => FirewallMode::Plan,
        FirewallArg::Enforce => FirewallMode::Enforce,
    };
    let engine = Arc::new(Engine::new(
        EngineConfig {
            data_dir: data_dir.clone(),
            firewall,
            discover: true,
            sms_gateway: sms_gateway(args)?,
            sip: args.sip == SipArg::Kamailio,
            media: args.media == MediaArg::Rtpengine,
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
    tokio::spawn(follow_nics(engine.clone(), changes));
    tokio::spawn(expire_pending(engine.clone()));
    tokio::spawn(deliver_sms(engine.clone()));
    tokio::spawn(enforce_bans(engine.clone()));
    // What a burst of connections allocated goes back to the kernel after it.
    tokio::spawn(switchboard_system::memory::give_back_every(
        switchboard_system::memory::PERIOD,
    ));

    let listener = switchboard_web::bind_unix(&socket).await?;
    info!(socket = %socket.display(), "API listening");
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
    if let Err(e) = std::fs::remove_file(&socket) {
        warn!(socket = %socket.display(), error = %e, "could not remove the socket");
    }
    drop(phones);
    served.context("serving the API")?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
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
