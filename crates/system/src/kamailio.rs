//! The Kamailio adapter: check a configuration, run Kamailio as a
//! supervised child, reload its TLS certificates, and keep its subscriber
//! table in step.
//!
//! - [`check`]: `kamailio -c -f CFG`, before anything is replaced.
//! - [`Supervisor`]: Kamailio in the foreground (`-DD -E`) as a child of
//!   the daemon, restarted with backoff when it dies, stopped cleanly.
//! - [`tls_reload`]: `kamcmd tls.reload` — which exits 0 even when the
//!   reload fails, so its answer is read.
//! - [`sync_subscribers`]: the `subscriber` table of Kamailio's SQLite
//!   database (HA1 only, no clear password), replaced in one transaction;
//!   `auth_db` reads it per request, so no restart is needed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum KamailioError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("kamailio refuses the configuration: {0}")]
    Check(String),
    #[error("kamailio did not reload its TLS configuration: {0}")]
    Reload(String),
    #[error("kamailio's RPC interface answered an error: {0}")]
    Rpc(String),
    #[error("the subscriber database {path} cannot be made owner-only: {source}")]
    SubscribersFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the subscriber database {path}: {source}")]
    Subscribers {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

const KAMAILIO: &str = "kamailio";
const KAMCMD: &str = "kamcmd";

/// Whether Kamailio is installed here.
pub fn installed() -> bool {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// The OpenSSL configuration Kamailio runs with, next to its `kamailio.cfg`
/// (the TLS policy's groups, which `tls.cfg` cannot set): when the file is
/// there, `OPENSSL_CONF` names it for `kamailio -c` and the supervised
/// Kamailio.
pub const OPENSSL_CONF: &str = "openssl.cnf";

/// `OPENSSL_CONF` for the Kamailio of `cfg`, when its file exists.
fn openssl_env(cfg: &Path) -> Vec<(&'static str, PathBuf)> {
    let conf = cfg.with_file_name(OPENSSL_CONF);
    if conf.exists() {
        vec![("OPENSSL_CONF", conf)]
    } else {
        vec![]
    }
}

/// `kamailio -c -f CFG`: does Kamailio accept this configuration?
pub async fn check(cfg: &Path) -> Result<(), KamailioError> {
    let out = Command::new(KAMAILIO)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .envs(openssl_env(cfg))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| KamailioError::Spawn {
            program: KAMAILIO,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("error"))
            .take(5)
            .collect();
        Err(KamailioError::Check(if errors.is_empty() {
            text.trim().chars().take(500).collect()
        } else {
            errors.join("; ")
        }))
    }
}

/// `kamcmd -s unix:CTL tls.reload`, reading the answer: kamcmd exits 0
/// whatever Kamailio replied.
pub async fn tls_reload(ctl: &Path) -> Result<(), KamailioError> {
    let out = Command::new(KAMCMD)
        .arg("-s")
        .arg(format!("unix:{}", ctl.display()))
        .arg("tls.reload")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| KamailioError::Spawn {
            program: KAMCMD,
            source,
        })?;
    let answer = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && answer.contains("Ok.") && !answer.contains("error") {
        Ok(())
    } else {
        Err(KamailioError::Reload(answer.trim().to_owned()))
    }
}

/// `kamcmd -s unix:CTL ARGS...`: what it printed, or an error when it
/// could not run or Kamailio answered an error (kamcmd exits 0 either way).
async fn kamcmd(ctl: &Path, args: &[&str]) -> Result<String, KamailioError> {
    let run = Command::new(KAMCMD)
        .arg("-s")
        .arg(format!("unix:{}", ctl.display()))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .map_err(|_| KamailioError::Rpc("kamcmd did not answer within 5 s".into()))?
        .map_err(|source| KamailioError::Spawn {
            program: KAMCMD,
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stdout.starts_with("error:") || stderr.contains("error") {
        let text = format!("{stdout}{stderr}");
        return Err(KamailioError::Rpc(text.trim().chars().take(300).collect()));
    }
    Ok(stdout)
}

/// The entries of Kamailio's htable `table` whose names are IP addresses,
/// with their values (`kamcmd htable.dump`). Names that are not addresses
/// are skipped; values are cut to 64 characters.
pub async fn htable_addresses(
    ctl: &Path,
    table: &str,
) -> Result<Vec<(std::net::IpAddr, String)>, KamailioError> {
    let text = kamcmd(ctl, &["htable.dump", table]).await?;
    Ok(parse_htable_dump(&text))
}

/// The `name:`/`value:` pairs of a `kamcmd htable.dump` answer.
fn parse_htable_dump(text: &str) -> Vec<(std::net::IpAddr, String)> {
    let mut out = Vec::new();
    let mut name: Option<std::net::IpAddr> = None;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("name: ") {
            name = n.parse().ok();
        } else if let Some(v) = line.strip_prefix("value: ")
            && let Some(addr) = name.take()
        {
            out.push((addr, v.chars().take(64).collect()));
        }
    }
    out
}

/// Delete `addr` from Kamailio's htables `tables` (`kamcmd htable.delete`;
/// an absent entry is not an error).
pub async fn htable_forget(
    ctl: &Path,
    tables: &[&str],
    addr: std::net::IpAddr,
) -> Result<(), KamailioError> {
    let key = addr.to_string();
    for table in tables {
        match kamcmd(ctl, &["htable.delete", table, &key]).await {
            Ok(_) => {}
            Err(KamailioError::Rpc(e)) if e.contains("not found") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One registered contact, as Kamailio's registrar holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The account (the address-of-record's user).
    pub aor: String,
    /// The Contact URI the phone registered.
    pub address: String,
    /// Where the REGISTER came from (`sip:ADDR:PORT;transport=...`), when
    /// recorded.
    pub received: Option<String>,
    /// The socket it arrived on (`tls:198.51.100.1:5061`).
    pub socket: String,
    /// The phone's User-Agent (control characters removed, at most 128).
    pub user_agent: String,
    /// Seconds until it expires.
    pub expires_secs: u64,
}

/// Every registered contact (`kamcmd ul.dump`).
pub async fn registrations(ctl: &Path) -> Result<Vec<Contact>, KamailioError> {
    let text = kamcmd(ctl, &["ul.dump"]).await?;
    Ok(parse_ul_dump(&text))
}

/// The contacts of a `kamcmd ul.dump` answer. The dump is text, so it is
/// read by its structure: an `AoR:` line at the depth of records (5 tabs),
/// contact fields at the depth of contacts (7 tabs); anything else is
/// ignored. (Kamailio refuses REGISTERs with folded header lines, which
/// could otherwise put a line of the attacker's choosing into the dump.)
fn parse_ul_dump(text: &str) -> Vec<Contact> {
    let clean = |v: &str| -> String { v.chars().filter(|c| !c.is_control()).take(128).collect() };
    let mut out: Vec<Contact> = Vec::new();
    let mut aor: Option<String> = None;
    let mut current: Option<Contact> = None;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let depth = line.chars().take_while(|c| *c == '\t').count();
        let body = &line[depth..];
        if depth == 5
            && let Some(a) = body.strip_prefix("AoR: ")
        {
            out.extend(current.take());
            aor = Some(clean(a));
            continue;
        }
        if depth == 6 && body == "Contact: {" {
            out.extend(current.take());
            current = aor.clone().map(|aor| Contact {
                aor,
                address: String::new(),
                received: None,
                socket: String::new(),
                user_agent: String::new(),
                expires_secs: 0,
            });
            continue;
        }
        let Some(c) = current.as_mut().filter(|_| depth == 7) else {
            continue;
        };
        let Some((key, value)) = body.split_once(": ") else {
            continue;
        };
        match key {
            "Address" if c.address.is_empty() => c.address = clean(value),
            "Expires" => c.expires_secs = value.parse().unwrap_or(0),
            "User-Agent" if c.user_agent.is_empty() => c.user_agent = clean(value),
            "Received" if c.received.is_none() && value != "[not set]" => {
                c.received = Some(clean(value));
            }
            "Socket" if c.socket.is_empty() => c.socket = clean(value),
            _ => {}
        }
    }
    out.extend(current);
    out.retain(|c| !c.address.is_empty());
    out
}

/// One dialog (a call) as Kamailio's dialog module tracks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub from_uri: String,
    pub to_uri: String,
    /// 1 unconfirmed, 2 early (ringing), 3 answered (no ACK yet),
    /// 4 confirmed, 5 ended.
    pub state: u8,
    /// When it was answered (seconds since the epoch; 0 before).
    pub start_ts: i64,
    /// When the INVITE came.
    pub init_ts: i64,
    /// The sockets of the caller's and the callee's legs.
    pub caller_socket: String,
    pub callee_socket: String,
}

/// Every dialog Kamailio tracks (`kamcmd dlg.list`).
pub async fn dialogs(ctl: &Path) -> Result<Vec<Dialog>, KamailioError> {
    let text = kamcmd(ctl, &["dlg.list"]).await?;
    Ok(parse_dlg_list(&text))
}

/// The dialogs of a `kamcmd dlg.list` answer, read by its structure: a
/// `{` at depth 0 opens a dialog, its fields at depth 1, the `socket` of
/// its `caller: {` and `callee: {` blocks at depth 2; values cleaned of
/// control characters and cut to 256 characters.
fn parse_dlg_list(text: &str) -> Vec<Dialog> {
    let clean = |v: &str| -> String { v.chars().filter(|c| !c.is_control()).take(256).collect() };
    let mut out = Vec::new();
    let mut current: Option<Dialog> = None;
    let mut leg = "";
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        let depth = line.chars().take_while(|c| *c == '\t').count();
        let body = &line[depth..];
        match (depth, body) {
            (0, "{") => {
                out.extend(current.take());
                current = Some(Dialog::default());
                continue;
            }
            (0, "}") => {
                out.extend(current.take());
                continue;
            }
            _ => {}
        }
        let Some(d) = current.as_mut() else { continue };
        let (key, value) = body
            .split_once(':')
            .map_or((body, ""), |(k, v)| (k, v.trim()));
        match depth {
            1 => {
                leg = "";
                match key {
                    "call-id" => d.call_id = clean(value),
                    "from_uri" => d.from_uri = clean(value),
                    "to_uri" => d.to_uri = clean(value),
                    "state" => d.state = value.parse().unwrap_or(0),
                    "start_ts" => d.start_ts = value.parse().unwrap_or(0),
                    "init_ts" => d.init_ts = value.parse().unwrap_or(0),
                    "caller" => leg = "caller",
                    "callee" => leg = "callee",
                    _ => {}
                }
            }
            2 if key == "socket" => match leg {
                "caller" => d.caller_socket = clean(value),
                "callee" => d.callee_socket = clean(value),
                _ => {}
            },
            _ => {}
        }
    }
    out.extend(current);
    out.retain(|d| !d.call_id.is_empty());
    out
}

/// One SIP account as Kamailio authenticates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub username: String,
    pub domain: String,
    /// MD5(username:realm:password), hex.
    pub ha1: String,
}

/// Make the `subscriber` table hold exactly `subscribers` (creating the
/// database with Kamailio's schema if needed), in one transaction.
pub fn sync_subscribers(db: &Path, subscribers: &[Subscriber]) -> Result<(), KamailioError> {
    let err = |source| KamailioError::Subscribers {
        path: db.to_owned(),
        source,
    };
    // HA1 digests: owner-only (Kamailio runs as the daemon's user). SQLite
    // gives its journal the database's mode.
    crate::files::ensure_private_file(db).map_err(|source| KamailioError::SubscribersFile {
        path: db.to_owned(),
        source,
    })?;
    let mut conn = Connection::open(db).map_err(err)?;
    // Write-ahead logging (a property of the file, kept): Kamailio's
    // readers (auth_db, per request) never meet a lock while usrloc writes
    // its registrations back or the accounts are synced; in the rollback
    // journal's mode such a read fails at once (its driver sets no busy
    // timeout) and the request is refused as if its credentials were wrong.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS version (
            id INTEGER PRIMARY KEY NOT NULL,
            table_name VARCHAR(32) NOT NULL,
            table_version INTEGER DEFAULT 0 NOT NULL,
            CONSTRAINT version_table_name_idx UNIQUE (table_name));
         INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('version', 1);
         CREATE TABLE IF NOT EXISTS subscriber (
            id INTEGER PRIMARY KEY NOT NULL,
            username VARCHAR(64) DEFAULT '' NOT NULL,
            domain VARCHAR(64) DEFAULT '' NOT NULL,
            password VARCHAR(64) DEFAULT '' NOT NULL,
            ha1 VARCHAR(128) DEFAULT '' NOT NULL,
            ha1b VARCHAR(128) DEFAULT '' NOT NULL,
            CONSTRAINT subscriber_account_idx UNIQUE (username, domain));
         INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('subscriber', 7);
         CREATE TABLE IF NOT EXISTS location (
            id INTEGER PRIMARY KEY NOT NULL,
            ruid VARCHAR(64) DEFAULT '' NOT NULL,
            username VARCHAR(64) DEFAULT '' NOT NULL,
            domain VARCHAR(64) DEFAULT NULL,
            contact VARCHAR(512) DEFAULT '' NOT NULL,
            received VARCHAR(128) DEFAULT NULL,
            path VARCHAR(512) DEFAULT NULL,
            expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
            q REAL DEFAULT 1.0 NOT NULL,
            callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
            cseq INTEGER DEFAULT 1 NOT NULL,
            last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
            flags INTEGER DEFAULT 0 NOT NULL,
            cflags INTEGER DEFAULT 0 NOT NULL,
            user_agent VARCHAR(255) DEFAULT '' NOT NULL,
            socket VARCHAR(64) DEFAULT NULL,
            methods INTEGER DEFAULT NULL,
            instance VARCHAR(255) DEFAULT NULL,
            reg_id INTEGER DEFAULT 0 NOT NULL,
            server_id INTEGER DEFAULT 0 NOT NULL,
            connection_id INTEGER DEFAULT 0 NOT NULL,
            keepalive INTEGER DEFAULT 0 NOT NULL,
            partition INTEGER DEFAULT 0 NOT NULL,
            CONSTRAINT location_ruid_idx UNIQUE (ruid));
         CREATE INDEX IF NOT EXISTS location_account_contact_idx ON location (username, domain, contact);
         CREATE INDEX IF NOT EXISTS location_expires_idx ON location (expires);
         CREATE INDEX IF NOT EXISTS location_tcpcon_idx ON location (connection_id);
         CREATE INDEX IF NOT EXISTS location_connection_idx ON location (server_id, connection_id);
         INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('location', 9);",
    )
    .map_err(err)?;
    let tx = conn.transaction().map_err(err)?;
    tx.execute("DELETE FROM subscriber", []).map_err(err)?;
    for s in subscribers {
        tx.execute(
            "INSERT INTO subscriber (username, domain, ha1) VALUES (?1, ?2, ?3)",
            params![s.username, s.domain, s.ha1],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(())
}

/// What the supervisor knows about Kamailio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KamailioState {
    pub running: bool,
    pub pid: Option<u32>,
    /// How many times it was started again after it died.
    pub restarts: u32,
    /// How it last ended, if it did.
    pub last_exit: Option<String>,
}

/// Kill a Kamailio left running by an earlier daemon that died without
/// stopping it (SIGKILL, power cut of the daemon alone): its pid is in
/// `pidfile`, and its command line names `cfg`. Returns whether one was.
pub fn kill_stale(pidfile: &Path, cfg: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return false;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&cfg.display().to_string());
    if ours && let Some(group) = rustix::process::Pid::from_raw(pid) {
        warn!(
            pid,
            "a kamailio of an earlier daemon is still running: stopping it"
        );
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_file(pidfile);
    ours
}

/// Kamailio as a supervised child: restarted with backoff (1 s doubling
/// to 30 s, back to 1 s after a minute of running) when it dies.
#[derive(Debug)]
pub struct Supervisor {
    state: Arc<Mutex<KamailioState>>,
    restart: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A program the [`Supervisor`] runs in the foreground: its name in the
/// log, the command line, the environment, and the file its pid is kept in.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: &'static str,
    pub program: &'static str,
    pub args: Vec<std::ffi::OsString>,
    pub envs: Vec<(&'static str, PathBuf)>,
    pub pidfile: PathBuf,
}

impl Supervisor {
    /// Start Kamailio on `cfg` and keep it running; its pid is kept in
    /// `pidfile` (see [`kill_stale`]).
    pub fn start(cfg: PathBuf, pidfile: PathBuf) -> Supervisor {
        let mut args: Vec<std::ffi::OsString> = ["-DD", "-E", "-f"].map(Into::into).to_vec();
        args.push(cfg.clone().into());
        Supervisor::run(Program {
            name: "kamailio",
            program: KAMAILIO,
            args,
            envs: openssl_env(&cfg),
            pidfile,
        })
    }

    /// Run `program` (in the foreground, logging to stderr) and keep it
    /// running, in its own process group, like Kamailio.
    pub fn run(program: Program) -> Supervisor {
        let state = Arc::new(Mutex::new(KamailioState::default()));
        let (restart, restart_rx) = watch::channel(0u64);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(program, state.clone(), restart_rx, stop_rx));
        Supervisor {
            state,
            restart,
            stop,
            task,
        }
    }

    pub fn state(&self) -> KamailioState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stop Kamailio and start it again (its listen sockets changed).
    pub fn restart(&self) {
        self.restart.send_modify(|n| *n += 1);
    }

    /// Stop Kamailio and the supervision.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn supervise(
    program: Program,
    state: Arc<Mutex<KamailioState>>,
    mut restart: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let set =
        |f: &dyn Fn(&mut KamailioState)| f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
    loop {
        let started = Instant::now();
        // Its own process group: Kamailio forks workers, and a stop or a
        // restart must take them all (they hold the listen sockets).
        let name = program.name;
        let pidfile = &program.pidfile;
        let mut child = match Command::new(program.program)
            .args(&program.args)
            .envs(program.envs.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot start {name}");
                set(&|s| s.last_exit = Some(format!("cannot start: {e}")));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let pid = child.id();
        info!(?pid, args = ?program.args, "{name} started");
        if let Some(pid) = pid {
            let _ = std::fs::write(pidfile, format!("{pid}\n"));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_log(name, stderr));
        }
        set(&|s| {
            s.running = true;
            s.pid = pid;
        });
        let asked_restart = tokio::select! {
            status = child.wait() => {
                kill_group(pid);
                let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                warn!(%how, "{name} ended; starting it again");
                set(&|s| { s.running = false; s.pid = None; s.last_exit = Some(how.clone()); s.restarts += 1; });
                false
            }
            _ = restart.changed() => true,
            _ = stopped(&mut stop) => {
                terminate(&mut child).await;
                set(&|s| { s.running = false; s.pid = None; s.last_exit = Some("stopped".into()); });
                let _ = std::fs::remove_file(pidfile);
                info!("{name} stopped");
                return;
            }
        };
        if asked_restart {
            terminate(&mut child).await;
            set(&|s| {
                s.running = false;
                s.pid = None;
            });
            backoff = Duration::from_secs(1);
            continue;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Resolves when the supervisor is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM to Kamailio's process group, then SIGKILL to what is left
/// once the main process has ended (or after 5 s).
async fn terminate(child: &mut tokio::process::Child) {
    let pid = child.id();
    if let Some(group) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    kill_group(pid);
}

/// Kill whatever is left of a Kamailio process group (workers whose main
/// process died).
fn kill_group(pid: Option<u32>) {
    if let Some(group) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

/// A supervised program's log lines (on its stderr) into ours: errors as
/// warnings, the script's own notes (an address banned) as information,
/// the rest at debug level.
async fn forward_log(name: &'static str, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let l = line.trim();
        if l.contains("ERROR")
            || l.contains("CRITICAL")
            || l.contains("[crit]")
            || l.contains("[err]")
        {
            warn!(process = name, "{l}");
        } else if l.contains("<script>: switchboard: ") {
            info!(process = name, "{l}");
        } else {
            tracing::debug!(process = name, "{l}");
        }
    }
}

/// The leaf certificate (DER) a TLS server at `addr:port` presents, read
/// with a handshake that checks nothing else: the caller compares it with
/// what it meant the server to present. An error when nothing answers
/// within `timeout`.
pub async fn presented_certificate(
    addr: std::net::IpAddr,
    port: u16,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((addr, port)).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or_else(|| std::io::Error::other("no certificate presented"))
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no TLS answer"))?
}

/// Accepts any certificate (the signatures of the handshake are still
/// checked): for reading what a server presents, never for trusting it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn dialogs_are_read_by_their_structure() {
        let text = "{\n\th_entry: 1252\n\tcall-id: c1@test\n\tfrom_uri: sip:1000@voip.example.test\n\tto_uri: sip:1001@voip.example.test\n\tstate: 4\n\tstart_ts: 1796311481\n\tinit_ts: 1796311480\n\tcaller: {\n\t\ttag: f1\n\t\tsocket: tls:198.51.100.1:5061\n\t}\n\tcallee: {\n\t\tsocket: tls:192.0.2.1:5061\n\t}\n\tvariables: {\n\t\tsocket: forged\n\t}\n}\n{\n\tcall-id: c2\n\tstate: 2\n\tfrom_uri: \u{1b}[31mx\n}\nnonsense\n\tcall-id: orphan\n";
        let d = parse_dlg_list(text);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[0],
            Dialog {
                call_id: "c1@test".into(),
                from_uri: "sip:1000@voip.example.test".into(),
                to_uri: "sip:1001@voip.example.test".into(),
                state: 4,
                start_ts: 1796311481,
                init_ts: 1796311480,
                caller_socket: "tls:198.51.100.1:5061".into(),
                callee_socket: "tls:192.0.2.1:5061".into(),
            }
        );
        assert_eq!((d[1].state, d[1].from_uri.as_str()), (2, "[31mx"));
        assert!(parse_dlg_list("").is_empty());
    }
    use super::*;
    use std::os::unix::process::CommandExt as _;

    /// A process group leader whose command line names `cfg`, as a
    /// Kamailio left over by an earlier daemon would.
    fn leftover(cfg: &Path) -> std::process::Child {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30"])
            .arg(cfg)
            .process_group(0)
            .spawn()
            .expect("sh starts");
        // Until it has exec'd, its command line is this test's.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let name = cfg.display().to_string();
        let since = Instant::now();
        while !String::from_utf8_lossy(&std::fs::read(&cmdline).unwrap_or_default()).contains(&name)
        {
            assert!(since.elapsed() < Duration::from_secs(5), "sh did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    #[test]
    fn an_htable_dump_parses_and_only_addresses_count() {
        let text = "{\n\tentry: 383\n\tsize: 2\n\tslot: {\n\t\t{\n\t\t\tname: 192.0.2.9\n\t\t\tvalue: flood\n\t\t\ttype: str\n\t\t}\n\t\t{\n\t\t\tname: not-an-address\n\t\t\tvalue: x\n\t\t}\n\t\t{\n\t\t\tname: 2001:db8::1\n\t\t\tvalue: auth-failures\n\t\t}\n\t}\n}\n";
        assert_eq!(
            parse_htable_dump(text),
            [
                ("192.0.2.9".parse().expect("ip"), "flood".to_owned()),
                (
                    "2001:db8::1".parse().expect("ip"),
                    "auth-failures".to_owned()
                )
            ]
        );
        assert!(parse_htable_dump("").is_empty());
        assert!(parse_htable_dump("value: orphan\nname: 192.0.2.1\n").is_empty());
        let long = format!("name: 192.0.2.1\nvalue: {}\n", "x".repeat(10_000));
        assert_eq!(parse_htable_dump(&long)[0].1.len(), 64);
    }

    #[test]
    fn a_ul_dump_parses_by_its_structure() {
        let contact = |addr: &str, ua: &str, rcv: &str| {
            format!(
                "\t\t\t\t\t\tContact: {{\n\t\t\t\t\t\t\tAddress: {addr}\n\t\t\t\t\t\t\tExpires: 598\n\t\t\t\t\t\t\tUser-Agent: {ua}\n\t\t\t\t\t\t\tReceived: {rcv}\n\t\t\t\t\t\t\tSocket: tls:198.51.100.1:5061\n\t\t\t\t\t\t}}\n"
            )
        };
        let text = format!(
            "{{\n\tDomains: {{\n\t\tDomain: {{\n\t\t\tDomain: location\n\t\t\tAoRs: {{\n\t\t\t\tInfo: {{\n\t\t\t\t\tAoR: 1000\n\t\t\t\t\tContacts: {{\n{}{}\t\t\t\t\t}}\n\t\t\t\t}}\n\t\t\t\tInfo: {{\n\t\t\t\t\tAoR: 1001\n\t\t\t\t\tContacts: {{\n{}\t\t\t\t\t}}\n\t\t\t\t}}\n\t\t\t}}\n\t\t}}\n\t}}\n}}\n",
            contact(
                "sip:1000@198.51.100.2:5061;transport=tls",
                "Phone 1.0",
                "sip:198.51.100.2:40000;transport=tls"
            ),
            contact("sip:1000@192.0.2.7", "evil\r\n AoR: 9999\u{7}", "[not set]"),
            contact("sip:1001@192.0.2.8", "Other", "[not set]"),
        );
        let c = parse_ul_dump(&text);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].aor, "1000");
        assert_eq!(
            c[0].received.as_deref(),
            Some("sip:198.51.100.2:40000;transport=tls")
        );
        assert_eq!(
            (c[0].socket.as_str(), c[0].expires_secs),
            ("tls:198.51.100.1:5061", 598)
        );
        assert_eq!(
            c[1].aor, "1000",
            "an injected line at the wrong depth is ignored"
        );
        assert!(!c[1].user_agent.chars().any(char::is_control));
        assert_eq!(c[1].received, None);
        assert_eq!(c[2].aor, "1001");
        assert!(parse_ul_dump("").is_empty());
        assert!(
            parse_ul_dump("\t\t\t\t\t\t\tAddress: sip:x\n").is_empty(),
            "a field outside a contact"
        );
    }

    #[test]
    fn kill_stale_kills_only_a_kamailio_of_this_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cfg, pidfile) = (dir.path().join("kamailio.cfg"), dir.path().join("pid"));

        // Another program's pid in the file: left alone, the file removed.
        let mut other = leftover(&dir.path().join("other.cfg"));
        std::fs::write(&pidfile, format!("{}\n", other.id())).expect("write");
        assert!(!kill_stale(&pidfile, &cfg));
        assert!(!pidfile.exists());
        assert!(other.try_wait().expect("wait").is_none(), "still running");
        other.kill().ok();
        other.wait().ok();

        // Ours: killed, the file removed.
        let mut stale = leftover(&cfg);
        std::fs::write(&pidfile, format!("{}\n", stale.id())).expect("write");
        assert!(kill_stale(&pidfile, &cfg));
        assert!(!pidfile.exists());
        let status = stale.wait().expect("wait");
        assert!(!status.success(), "killed: {status}");

        // No file: nothing to do.
        assert!(!kill_stale(&pidfile, &cfg));
    }

    #[test]
    fn the_subscriber_database_is_created_and_kept_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("subscriber.db");
        let mode = || std::fs::metadata(&db).expect("meta").permissions().mode() & 0o777;
        let one = Subscriber {
            username: "1000".into(),
            domain: "switchboard".into(),
            ha1: "0123456789abcdef0123456789abcdef".into(),
        };
        sync_subscribers(&db, std::slice::from_ref(&one)).expect("sync");
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        sync_subscribers(&db, &[one]).expect("sync again");
        assert_eq!(mode(), 0o600, "narrowed again, the digests kept private");
    }
}
