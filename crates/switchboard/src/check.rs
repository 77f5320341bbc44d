//! `switchboard check`: the daemon's health for people and for Nagios.
//!
//! One API call (`GET /v1/monitor`), judged by
//! [`switchboard_engine::monitor::assess`]; the exit status follows the
//! Nagios plugin convention in every form (0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN: the daemon cannot be asked). `--nagios` prints the plugin's
//! one line with its performance data, what an NRPE command runs.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use switchboard_engine::monitor::{Assessment, MonitorView, State, Thresholds, assess};
use switchboard_web::client::Client;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print one line in the Nagios plugin format (`SWITCHBOARD STATE -
    /// what | perfdata`), for NRPE.
    #[arg(long)]
    nagios: bool,
    /// WARNING when the nearest bound certificate has fewer days left.
    #[arg(long, value_name = "DAYS", default_value_t = Thresholds::default().cert_warning_days)]
    cert_warning: i64,
    /// CRITICAL when the nearest bound certificate has fewer days left.
    #[arg(long, value_name = "DAYS", default_value_t = Thresholds::default().cert_critical_days)]
    cert_critical: i64,
    /// WARNING when an SMS has waited this long for the gateway.
    #[arg(long, value_name = "SECONDS", default_value_t = Thresholds::default().sms_warning_secs)]
    sms_warning: i64,
    /// CRITICAL when an SMS has waited this long for the gateway.
    #[arg(long, value_name = "SECONDS", default_value_t = Thresholds::default().sms_critical_secs)]
    sms_critical: i64,
}

/// The system daemon's monitoring socket (the package's unit runs it as root).
pub const SYSTEM_MONITOR_SOCKET: &str = "/run/switchboard/monitor.sock";

/// The API socket whose monitoring socket `check` reads: the one named
/// (`--socket`, `SWITCHBOARD_SOCKET`); else the system daemon's when it
/// runs, whoever asks (NRPE's user is not root); else `default`.
pub fn api_socket(named: Option<&Path>, default: std::path::PathBuf) -> std::path::PathBuf {
    choose_socket(named, Path::new(SYSTEM_MONITOR_SOCKET).exists(), default)
}

fn choose_socket(
    named: Option<&Path>,
    system_daemon: bool,
    default: std::path::PathBuf,
) -> std::path::PathBuf {
    match named {
        Some(s) => s.to_owned(),
        None if system_daemon => Path::new(SYSTEM_MONITOR_SOCKET).with_file_name("api.sock"),
        None => default,
    }
}

/// The monitoring socket: `monitor.sock` beside the API's socket.
pub fn monitor_socket(api_socket: &Path) -> std::path::PathBuf {
    api_socket.with_file_name("monitor.sock")
}

/// `socket` is the API's; the check reads the monitoring socket beside it
/// (which a monitoring agent's group may be given, see `serve
/// --monitor-group`).
pub async fn run(args: &CheckArgs, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let socket = &monitor_socket(socket);
    let thresholds = Thresholds {
        cert_warning_days: args.cert_warning,
        cert_critical_days: args.cert_critical,
        sms_warning_secs: args.sms_warning,
        sms_critical_secs: args.sms_critical,
    };
    let view: MonitorView = match Client::new(socket).get("/v1/monitor").await {
        Ok(v) => v,
        Err(e) => {
            let line = format!(
                "SWITCHBOARD UNKNOWN - cannot read the daemon's state on {}: {e}",
                socket.display()
            );
            crate::print_out(&format!("{}\n", one_line(&line)))?;
            return Ok(ExitCode::from(State::Unknown.code()));
        }
    };
    let a = assess(&view, &thresholds);
    let text = if args.nagios {
        format!("{}\n", one_line(&a.line()))
    } else if json {
        let mut doc = serde_json::to_value(&view)?;
        doc["state"] = a.state.as_str().into();
        doc["problems"] = a.problems.iter().map(|(_, p)| p.as_str()).collect();
        format!("{doc:#}\n")
    } else {
        text(&view, &a)
    };
    crate::print_out(&text)?;
    Ok(ExitCode::from(a.state.code()))
}

/// Nagios reads the first line only: no line break may hide the rest.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn text(v: &MonitorView, a: &Assessment) -> String {
    let mut out = format!("{}\n", a.state.as_str());
    for (state, p) in &a.problems {
        let _ = writeln!(out, "  {}: {p}", state.as_str());
    }
    let _ = writeln!(
        out,
        "revision: {}",
        v.revision
            .map_or_else(|| "none applied".to_owned(), |r| r.to_string())
    );
    let _ = writeln!(
        out,
        "updates: {} applied, {} failed, {} rolled back",
        v.updates.applied, v.updates.failed, v.updates.rolled_back
    );
    let _ = writeln!(
        out,
        "padlocks: {} closed of {}",
        v.padlocks - v.open_padlocks.len(),
        v.padlocks
    );
    for c in &v.certificates {
        let _ = writeln!(
            out,
            "certificate {}: {} day(s) left (until {})",
            c.cert, c.days_left, c.not_after
        );
    }
    match &v.sip {
        Some(s) => {
            let _ = writeln!(
                out,
                "kamailio: {} (restarted {} time(s))",
                if s.running { "running" } else { "not running" },
                s.restarts
            );
        }
        None => out.push_str("kamailio: not run by this daemon\n"),
    }
    let _ = writeln!(
        out,
        "sms: {} waiting{}, {} failed",
        v.sms.queued,
        v.sms
            .oldest_queued_secs
            .map(|s| format!(" (oldest {s}s)"))
            .unwrap_or_default(),
        v.sms.failed
    );
    let _ = writeln!(
        out,
        "bans: {} active, {} in the last day",
        v.bans.active, v.bans.recent
    );
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn nrpe_s_user_finds_the_system_daemon_without_being_told() {
        let mine = PathBuf::from("/var/lib/nagios/.local/state/switchboard/api.sock");
        assert_eq!(
            monitor_socket(&choose_socket(None, true, mine.clone())),
            Path::new("/run/switchboard/monitor.sock")
        );
        assert_eq!(choose_socket(None, false, mine.clone()), mine);
        assert_eq!(
            monitor_socket(&choose_socket(
                Some(Path::new("/tmp/x/api.sock")),
                true,
                mine
            )),
            Path::new("/tmp/x/monitor.sock")
        );
    }
}
