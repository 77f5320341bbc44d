//! The daemon's configuration file: `/etc/switchboard/switchboard.toml`
//! (as root; `--config` or `SWITCHBOARD_CONFIG` names another).
//!
//! It holds what `serve` otherwise takes as flags (firewall mode, SIP,
//! the SMS gateway and the file of its secret, the audit log's retention);
//! a flag given on the command line wins over the file. The file is read
//! once, at start, before anything else: a file that does not parse, a key
//! the daemon does not know, a value of the wrong type or out of range, or
//! a file over [`MAX_CONFIG`] bytes stops the start with the file's path,
//! the line and column, and the key. Secrets never go in it: the SMS
//! gateway's password or token stays in a file of its own
//! (`sms.secret_file`), so the configuration can be world-readable.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The configuration file as root, when neither `--config` nor
/// `SWITCHBOARD_CONFIG` names one. It may be absent: every key has a default.
pub const DEFAULT_PATH: &str = "/etc/switchboard/switchboard.toml";

/// The largest configuration file read (a few hundred bytes is typical).
pub const MAX_CONFIG: u64 = 64 * 1024;

/// The firewall's mode (`firewall = "plan" | "enforce"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FirewallArg {
    Plan,
    Enforce,
}

/// Who serves SIP (`sip = "off" | "kamailio"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SipArg {
    Off,
    Kamailio,
}

/// Who relays the media of calls (`media = "off" | "rtpengine"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MediaArg {
    Off,
    Rtpengine,
}

/// Where activation SMS go (`sms.gateway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SmsArg {
    Outbox,
    Kannel,
    Webhook,
}

/// The file, as written. Every key is optional; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub firewall: Option<FirewallArg>,
    pub sip: Option<SipArg>,
    pub media: Option<MediaArg>,
    #[serde(default)]
    pub sms: SmsSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub monitor: MonitorSection,
}

/// `[monitor]`: the monitoring socket (`monitor.sock`, beside the API's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    /// The group that may read it (e.g. `nagios`, NRPE's user): mode 0660.
    /// Absent: root only.
    pub group: Option<Spanned<String>>,
}

/// `[sms]`: the SMS gateway.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
    pub gateway: Option<SmsArg>,
    pub url: Option<String>,
    pub user: Option<String>,
    /// The file holding Kannel's password or the webhook's bearer token.
    pub secret_file: Option<PathBuf>,
}

/// `[audit]`: the audit log's retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub max_entries: Option<Spanned<u64>>,
    pub max_days: Option<Spanned<u32>>,
}

/// Why a configuration file was refused.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub at: Option<(usize, usize)>,
    /// The key the error is about (`sms.gateway`), when there is one.
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which file to read: the one named, or [`DEFAULT_PATH`] as root when it
/// exists; `None` when there is none to read.
pub fn locate(named: Option<&Path>, root: bool) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_owned()),
        None if root && Path::new(DEFAULT_PATH).exists() => Some(PathBuf::from(DEFAULT_PATH)),
        None => None,
    }
}

/// Read and parse the file at `path` (at most [`MAX_CONFIG`] bytes).
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let refuse = |message: String| ConfigError {
        path: path.to_owned(),
        at: None,
        key: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| refuse(format!("cannot open it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG {
        return Err(refuse(format!(
            "the file is over {MAX_CONFIG} bytes; a configuration is a few lines"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(
            &String::from_utf8_lossy(e.as_bytes()),
            e.utf8_error().valid_up_to(),
        );
        ConfigError {
            at: Some((line, col)),
            ..refuse("the file is not UTF-8 text".into())
        }
    })?;
    parse(path, &text)
}

/// Parse `text` (the content of `path`) and check its values' ranges.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let config: ConfigFile = toml::from_str(text).map_err(|e| {
        let place = e.span().map(|span| span.start);
        ConfigError {
            path: path.to_owned(),
            at: place.map(|p| line_col(text, p)),
            key: place.and_then(|p| key_at(text, p)),
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let at_least_one = |key: &str, span: std::ops::Range<usize>| ConfigError {
        path: path.to_owned(),
        at: Some(line_col(text, span.start)),
        key: Some(key.into()),
        message: "must be at least 1".into(),
    };
    if let Some(n) = &config.audit.max_entries
        && *n.get_ref() == 0
    {
        return Err(at_least_one("audit.max_entries", n.span()));
    }
    if let Some(n) = &config.audit.max_days
        && *n.get_ref() == 0
    {
        return Err(at_least_one("audit.max_days", n.span()));
    }
    if let Some(g) = &config.monitor.group
        && group_id(g.get_ref()).is_none()
    {
        return Err(ConfigError {
            path: path.to_owned(),
            at: Some(line_col(text, g.span().start)),
            key: Some("monitor.group".into()),
            message: format!("no group {:?} on this system (see /etc/group)", g.get_ref()),
        });
    }
    Ok(config)
}

/// The id of the group `name`, from `/etc/group`.
pub fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The dotted key of the `key = value` line holding byte `offset`, with
/// the `[table]` it is under; `None` when that line is no assignment.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[[") && l.ends_with(']'))
            .then(|| l[1..l.len() - 1].trim().to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> ConfigError {
        parse(Path::new("/etc/switchboard/switchboard.toml"), text)
            .expect_err("the file should be refused")
    }

    #[test]
    fn a_complete_file_parses() {
        let c = parse(
            Path::new("t.toml"),
            r#"
firewall = "enforce"
sip = "kamailio"
media = "rtpengine"

[sms]
gateway = "kannel"
url = "http://127.0.0.1:13013/cgi-bin/sendsms"
user = "switchboard"
secret_file = "/etc/switchboard/sms.secret"

[audit]
max_entries = 5000
max_days = 90

[monitor]
group = "root"
"#,
        )
        .expect("parses");
        assert_eq!(c.firewall, Some(FirewallArg::Enforce));
        assert_eq!(c.media, Some(MediaArg::Rtpengine));
        assert_eq!(c.sip, Some(SipArg::Kamailio));
        assert_eq!(c.sms.gateway, Some(SmsArg::Kannel));
        assert_eq!(c.sms.user.as_deref(), Some("switchboard"));
        assert_eq!(c.audit.max_entries.map(|n| n.into_inner()), Some(5000));
        assert_eq!(c.audit.max_days.map(|n| n.into_inner()), Some(90));
        assert_eq!(
            c.monitor.group.map(|g| g.into_inner()).as_deref(),
            Some("root")
        );
        let e = refused("[monitor]\ngroup = \"no-such-group-here\"\n");
        assert_eq!(e.at, Some((2, 9)), "{e}");
        assert_eq!(e.key.as_deref(), Some("monitor.group"), "{e}");
    }

    #[test]
    fn the_packaged_file_parses() {
        let c = parse(
            Path::new("debian/switchboard.toml"),
            include_str!("../debian/switchboard.toml"),
        )
        .expect("the packaged configuration parses");
        assert_eq!(c.firewall, Some(FirewallArg::Enforce));
        assert_eq!(c.sms.gateway, Some(SmsArg::Outbox));
    }

    #[test]
    fn an_empty_file_is_every_default() {
        let c = parse(Path::new("t.toml"), "# nothing set\n").expect("parses");
        assert!(c.firewall.is_none() && c.sip.is_none() && c.sms.gateway.is_none());
    }

    #[test]
    fn malformed_toml_gives_line_and_key() {
        let e = refused("firewall = \"plan\"\nsip = \"kamailio\n");
        assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("sip"), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/switchboard/switchboard.toml:2:"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table() {
        let e = refused("firewall = \"plan\"\n\n[sms]\ngatway = \"kannel\"\n");
        assert_eq!(e.at, Some((4, 1)), "{e}");
        assert_eq!(e.key.as_deref(), Some("sms.gatway"), "{e}");
        assert!(e.message.contains("unknown field `gatway`"), "{e}");
        let e = refused("password = \"hunter2\"\n");
        assert_eq!(e.key.as_deref(), Some("password"), "{e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "a value is never echoed: {e}"
        );
    }

    #[test]
    fn a_wrong_type_or_value_is_named() {
        let e = refused("[audit]\nmax_days = \"ninety\"\n");
        assert_eq!(e.at.map(|a| a.0), Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("audit.max_days"), "{e}");
        let e = refused("firewall = \"on\"\n");
        assert_eq!(e.key.as_deref(), Some("firewall"), "{e}");
        assert!(
            e.message.contains("plan") && e.message.contains("enforce"),
            "{e}"
        );
        let e = refused("[audit]\nmax_entries = -1\n");
        assert_eq!(e.key.as_deref(), Some("audit.max_entries"), "{e}");
        let e = refused("[audit]\nmax_entries = 0\n");
        assert_eq!(e.at, Some((2, 15)), "{e}");
        assert_eq!(e.message, "must be at least 1");
    }

    #[test]
    fn an_oversize_or_binary_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.toml");
        let line = "# padding padding padding padding padding padding padding\n";
        std::fs::write(&big, line.repeat((MAX_CONFIG as usize / line.len()) + 2)).expect("write");
        let e = load(&big).expect_err("oversize");
        assert!(e.message.contains("over 65536 bytes"), "{e}");
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, b"firewall = \"plan\"\n\xff\xfe\n").expect("write");
        let e = load(&bin).expect_err("not UTF-8");
        assert_eq!(e.at, Some((2, 1)), "{e}");
        let e = load(&dir.path().join("absent.toml")).expect_err("absent");
        assert!(e.message.starts_with("cannot open it"), "{e}");
    }

    #[test]
    fn the_default_file_is_read_only_as_root() {
        assert_eq!(locate(None, false), None);
        assert_eq!(
            locate(Some(Path::new("/tmp/x.toml")), false),
            Some(PathBuf::from("/tmp/x.toml"))
        );
    }
}
