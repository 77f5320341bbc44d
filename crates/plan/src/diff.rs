//! One diff of two plans, section by section, and what a change does to
//! the people on the other side (phones, the administrator's browser).
//!
//! [`diff`] is pure like the planner: the API, the CLI and the console all
//! show the same [`PlanDiff`], and [`PlanDiff::summary`] is its one
//! rendering in words.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use similar::TextDiff;
use switchboard_domain::{NicName, PortRange, ServiceId};

use crate::{Plan, Presented, Socket};

/// Whether something appears or disappears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Change {
    Added,
    Removed,
}

/// A matrix cell that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CellChange {
    pub service: ServiceId,
    pub nic: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortChange {
    pub service: ServiceId,
    pub from: PortRange,
    pub to: PortRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SocketChange {
    pub socket: Socket,
    pub change: Change,
}

/// What a TLS service presents on a NIC (or, `nic` absent, on any other
/// address) before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsChange {
    pub service: ServiceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub nic: Option<NicName>,
    pub from: Option<Presented>,
    pub to: Option<Presented>,
}

/// A setting that changes: a NIC's host name or public address, a
/// provisioning setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingChange {
    /// `wan0 host name`, `SIP/TLS host name`, `web services URI`, ...
    pub setting: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The key pins native documents carry, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinChange {
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// Those of `to` that are next keys, published ahead of a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<String>,
}

/// Kamailio's files, as unified diffs (empty when equal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KamailioDiff {
    /// Kamailio starts: a SIP service is enabled where none was.
    pub started: bool,
    /// Kamailio stops: no SIP service is enabled any more.
    pub stopped: bool,
    pub cfg: String,
    pub tls_cfg: String,
}

/// What a change does to the people on the other side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Note {
    /// Stable kebab-case code: `pins-rotated`, `console-port`, ...
    pub code: String,
    pub text: String,
}

/// Everything that differs between two plans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanDiff {
    pub matrix: Vec<CellChange>,
    pub ports: Vec<PortChange>,
    pub sockets: Vec<SocketChange>,
    pub tls: Vec<TlsChange>,
    pub nics: Vec<SettingChange>,
    pub provisioning: Vec<SettingChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pins: Option<PinChange>,
    pub kamailio: KamailioDiff,
    /// Unified diff of the media relay's `rtpengine.conf`.
    #[serde(default)]
    pub media: String,
    /// Unified diff of the two nftables rulesets.
    pub ruleset: String,
    pub notes: Vec<Note>,
}

impl PlanDiff {
    /// Whether anything differs.
    pub fn changed(&self) -> bool {
        !(self.matrix.is_empty()
            && self.ports.is_empty()
            && self.sockets.is_empty()
            && self.tls.is_empty()
            && self.nics.is_empty()
            && self.provisioning.is_empty()
            && self.pins.is_none()
            && self.kamailio == KamailioDiff::default()
            && self.media.is_empty()
            && self.ruleset.is_empty())
    }

    /// The changes in words, one line each, section by section in the
    /// order of the fields (matrix first, then ports, ...); the rulesets and
    /// Kamailio's files are left to their unified diffs.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.matrix {
            out.push(format!(
                "{} on {}: {}",
                c.service,
                c.nic,
                match c.change {
                    Change::Added => "allowed",
                    Change::Removed => "denied",
                }
            ));
        }
        for p in &self.ports {
            out.push(format!("{} port {} → {}", p.service, p.from, p.to));
        }
        for s in &self.sockets {
            out.push(format!(
                "{} ({}): listen {} {}",
                s.socket.service,
                match s.socket.server {
                    crate::Server::Switchboard => "switchboard",
                    crate::Server::Kamailio => "Kamailio",
                },
                s.socket,
                match s.change {
                    Change::Added => "added",
                    Change::Removed => "removed",
                }
            ));
        }
        for t in &self.tls {
            let place = match &t.nic {
                Some(nic) => format!("{} on {nic}", t.service),
                None => format!("{} (default)", t.service),
            };
            out.push(format!(
                "{place}: certificate {} → {}",
                presented(t.from.as_ref()),
                presented(t.to.as_ref())
            ));
        }
        for s in self.nics.iter().chain(&self.provisioning) {
            out.push(format!(
                "{}: {} → {}",
                s.setting,
                s.from.as_deref().unwrap_or("(none)"),
                s.to.as_deref().unwrap_or("(none)")
            ));
        }
        if let Some(p) = &self.pins {
            let ahead = match p.next.len() {
                0 => String::new(),
                n => format!(" ({n} of them for a next key, published ahead of its rotation)"),
            };
            out.push(format!(
                "native documents' key pins: {} → {}{ahead}",
                list(&p.from),
                list(&p.to)
            ));
        }
        if self.kamailio.started {
            out.push("Kamailio: started".into());
        }
        if self.kamailio.stopped {
            out.push("Kamailio: stopped (no SIP service enabled)".into());
        }
        if !self.kamailio.cfg.is_empty() {
            out.push("Kamailio: kamailio.cfg changes".into());
        }
        if !self.kamailio.tls_cfg.is_empty() {
            out.push("Kamailio: tls.cfg changes".into());
        }
        if !self.media.is_empty() {
            out.push("media relay: rtpengine.conf changes".into());
        }
        out
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// `voip (SHA-256 47:C3:1A:…, expires 2028-01-05)`.
fn presented(p: Option<&Presented>) -> String {
    let Some(p) = p else {
        return "(none)".into();
    };
    let short: String = p.cert.fingerprint.chars().take(8).collect();
    let mut s = format!("{} (SHA-256 {short}…", p.cert.cert);
    if let Some(day) = p.summary.not_after.get(..10) {
        let _ = write!(s, ", expires {day}");
    }
    s.push(')');
    s
}

fn unified(from: &str, to: &str, labels: (&str, &str)) -> String {
    TextDiff::from_lines(from, to)
        .unified_diff()
        .header(labels.0, labels.1)
        .to_string()
}

/// What changes from `from` to `to`; `labels` name the two sides in the
/// unified diffs (`revision 3`, `candidate`).
pub fn diff(from: &Plan, to: &Plan, labels: (&str, &str)) -> PlanDiff {
    let mut d = PlanDiff::default();
    for service in ServiceId::all() {
        let (a, b) = (from.matrix.nics_of(service), to.matrix.nics_of(service));
        for (set, other, change) in [(b, a, Change::Added), (a, b, Change::Removed)] {
            for nic in set.difference(other) {
                d.matrix.push(CellChange {
                    service,
                    nic: nic.to_string(),
                    change,
                });
            }
        }
        let (pa, pb) = (from.port(service), to.port(service));
        if pa != pb {
            d.ports.push(PortChange {
                service,
                from: pa,
                to: pb,
            });
        }
    }
    let (sa, sb): (BTreeSet<&Socket>, BTreeSet<&Socket>) =
        (from.sockets.iter().collect(), to.sockets.iter().collect());
    for (set, other, change) in [(&sb, &sa, Change::Added), (&sa, &sb, Change::Removed)] {
        for s in set.difference(other) {
            d.sockets.push(SocketChange {
                socket: (*s).clone(),
                change,
            });
        }
    }
    d.sockets.sort_by(|x, y| {
        (&x.socket, x.change == Change::Added).cmp(&(&y.socket, y.change == Change::Added))
    });
    d.tls = tls_changes(from, to);
    d.nics = nic_changes(from, to);
    d.provisioning = provisioning_changes(from, to);
    if from.provisioning.pins != to.provisioning.pins {
        d.pins = Some(PinChange {
            from: from.provisioning.pins.clone(),
            to: to.provisioning.pins.clone(),
            next: to.provisioning.next_pins.clone(),
        });
    }
    let (ka, kb) = (from.kamailio.as_ref(), to.kamailio.as_ref());
    let file = |k: Option<&crate::kamailio::KamailioConfig>,
                f: fn(&crate::kamailio::KamailioConfig) -> &str| {
        k.map(f).unwrap_or_default().to_owned()
    };
    let runs = |k: Option<&crate::kamailio::KamailioConfig>| k.is_some_and(|k| !k.is_idle());
    d.kamailio = KamailioDiff {
        started: !runs(ka) && runs(kb),
        stopped: runs(ka) && !runs(kb),
        cfg: unified(&file(ka, |k| &k.cfg), &file(kb, |k| &k.cfg), labels),
        tls_cfg: unified(&file(ka, |k| &k.tls_cfg), &file(kb, |k| &k.tls_cfg), labels),
    };
    let conf = |p: &Plan| p.media.as_ref().map(|m| m.conf.clone()).unwrap_or_default();
    d.media = unified(&conf(from), &conf(to), labels);
    d.ruleset = unified(&from.ruleset, &to.ruleset, labels);
    d.notes = notes(from, to, &d);
    d
}

fn tls_changes(from: &Plan, to: &Plan) -> Vec<TlsChange> {
    let cells = |p: &Plan| -> BTreeMap<(ServiceId, Option<NicName>), Presented> {
        p.tls
            .iter()
            .map(|a| ((a.service, Some(a.nic.clone())), p.presented(&a.cert)))
            .chain(
                p.tls_defaults
                    .iter()
                    .map(|(s, c)| ((*s, None), p.presented(c))),
            )
            .collect()
    };
    let (a, b) = (cells(from), cells(to));
    let keys: BTreeSet<_> = a.keys().chain(b.keys()).cloned().collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(&k), b.get(&k));
            // A cell appearing or disappearing with the matrix is said by
            // the matrix section; a certificate change is said here.
            let same = match (x, y) {
                (Some(x), Some(y)) => x.cert == y.cert,
                _ => k.1.is_some(),
            };
            (!same).then(|| TlsChange {
                service: k.0,
                nic: k.1,
                from: x.cloned(),
                to: y.cloned(),
            })
        })
        .collect()
}

fn setting(name: String, a: Option<String>, b: Option<String>) -> Option<SettingChange> {
    (a != b).then_some(SettingChange {
        setting: name,
        from: a,
        to: b,
    })
}

fn nic_changes(from: &Plan, to: &Plan) -> Vec<SettingChange> {
    let nics: BTreeSet<&NicName> = from.nics.keys().chain(to.nics.keys()).collect();
    let mut out = Vec::new();
    for nic in nics {
        let (a, b) = (from.nics.get(nic), to.nics.get(nic));
        out.extend(setting(
            format!("{nic} host name"),
            a.and_then(|s| s.hostname.as_ref()).map(ToString::to_string),
            b.and_then(|s| s.hostname.as_ref()).map(ToString::to_string),
        ));
        out.extend(setting(
            format!("{nic} public address"),
            a.and_then(|s| s.public_address).map(|x| x.to_string()),
            b.and_then(|s| s.public_address).map(|x| x.to_string()),
        ));
    }
    out
}

fn provisioning_changes(from: &Plan, to: &Plan) -> Vec<SettingChange> {
    let (a, b) = (&from.provisioning.settings, &to.provisioning.settings);
    let mut out = Vec::new();
    out.extend(setting(
        "SIP/TLS host name".into(),
        a.sip_tls_hostname.as_ref().map(ToString::to_string),
        b.sip_tls_hostname.as_ref().map(ToString::to_string),
    ));
    out.extend(setting(
        "web services URI".into(),
        a.web_uri.as_ref().map(ToString::to_string),
        b.web_uri.as_ref().map(ToString::to_string),
    ));
    let platforms: BTreeSet<_> = a.app_stores.keys().chain(b.app_stores.keys()).collect();
    for p in platforms {
        out.extend(setting(
            format!("app store page ({p:?})").to_lowercase(),
            a.app_stores.get(p).map(ToString::to_string),
            b.app_stores.get(p).map(ToString::to_string),
        ));
    }
    out
}

fn notes(from: &Plan, to: &Plan, d: &PlanDiff) -> Vec<Note> {
    let mut out = Vec::new();
    let mut note = |code: &str, text: String| {
        out.push(Note {
            code: code.into(),
            text,
        })
    };
    let relays = |p: &Plan| p.media.as_ref().is_some_and(|m| !m.is_idle());
    if !d.media.is_empty() && relays(from) {
        note(
            "media-restart",
            if relays(to) {
                "the media relay restarts with its new interfaces or ports: calls in progress lose \
                 their media (their signalling stays up)"
            } else {
                "the media relay stops (rtp enabled on no NIC with an address): calls in progress \
                 lose their media, new calls are refused"
            }
            .into(),
        );
    }
    if let Some(p) = &d.pins
        && !p.from.is_empty()
        && p.to
            .iter()
            .filter(|pin| !p.next.contains(pin))
            .any(|pin| !p.from.contains(pin))
    {
        note(
            "pins-rotated",
            "phones activated before this change pin only the old keys: a native phone that \
             enforces its pin refuses a certificate with a new key until it is activated again"
                .into(),
        );
    }
    for p in &d.ports {
        match p.service {
            ServiceId::Console => note(
                "console-port",
                format!(
                    "your browser will reconnect on port {}: the console stops answering on {}",
                    p.to.first(),
                    p.from.first()
                ),
            ),
            ServiceId::SipTls => note(
                "sip-tls-port",
                format!(
                    "phones activated before this change connect to port {}; activate them again",
                    p.from.first()
                ),
            ),
            ServiceId::Web => note(
                "web-port",
                format!(
                    "the web services move to port {}: activation links already sent name the old one",
                    p.to.first()
                ),
            ),
            _ => {}
        }
    }
    let (a, b) = (&from.provisioning.settings, &to.provisioning.settings);
    if a.sip_tls_hostname.is_some() && a.sip_tls_hostname != b.sip_tls_hostname {
        note(
            "sip-tls-hostname",
            "phones activated before this change keep connecting to the old SIP/TLS host name"
                .into(),
        );
    }
    if a.web_uri.is_some() && a.web_uri != b.web_uri {
        note(
            "web-uri",
            "activation links already sent still point to the old web services URI".into(),
        );
    }
    out
}
