//! The audit log of changes: each entry says what changed, in words
//! (`bound certificate voip2 to sip-tls on wan0`) and in data (a JSON
//! object), who (the signed-in name, `root` on the appliance, `system` for
//! what the daemon does by itself, `acme` for renewals), from where, and
//! the outcome.
//!
//! **Where.** Entries are written by the engine where the change happens,
//! so the CLI, the API and the console write the same entry for the same
//! change. Who asked is the request's [`Origin`]: the web crate runs each
//! request inside [`on_behalf_of`], a task-local scope the engine reads when
//! it records; outside any request (the trial's deadline, boot, timers)
//! the actor is [`SYSTEM_ACTOR`]. An Update or rollback records under the
//! origin it was given (a renewal's is `acme`).
//!
//! **What never.** A request body, a password, a key, a TOTP secret, a
//! recovery code or a token: the words and data are built from names and
//! numbers only.
//!
//! **Export.** [`to_csv`] (a cell starting with `=`, `+`, `-`, `@`, a tab or
//! a carriage return is prefixed with `'`, so no spreadsheet runs it as a
//! formula) and [`to_jsonl`] (one JSON document per line).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use jiff::Timestamp;
use switchboard_store::{AuditFilter, NewAudit, Store};
use tracing::error;

use crate::views::AuditView;
use crate::{Engine, Origin, Result};

/// The actor of what the daemon does by itself (a trial's deadline).
pub const SYSTEM_ACTOR: &str = "system";
/// Audit texts (actor, address, words, outcome) are cut to this many characters.
pub const MAX_AUDIT_TEXT: usize = 300;
/// The largest data document of an entry, in bytes (larger: replaced by a note).
const MAX_AUDIT_DATA: usize = 4096;

tokio::task_local! {
    static SCOPE: Scope;
}

struct Scope {
    origin: Origin,
    recorded: AtomicU32,
}

/// Run `f` on behalf of `origin`: the changes the engine records while it
/// runs (in this task) are recorded under `origin`. Returns `f`'s output
/// and how many entries were recorded.
pub async fn on_behalf_of<F: Future>(origin: Origin, f: F) -> (F::Output, u32) {
    let scope = Scope {
        origin,
        recorded: AtomicU32::new(0),
    };
    SCOPE
        .scope(scope, async {
            let out = f.await;
            let n = SCOPE.with(|s| s.recorded.load(Ordering::Relaxed));
            (out, n)
        })
        .await
}

/// Who the current change is for: the request's origin, or the system.
pub fn current_origin() -> Origin {
    SCOPE
        .try_with(|s| s.origin.clone())
        .unwrap_or_else(|_| system_origin())
}

/// The origin of what the daemon does by itself.
pub fn system_origin() -> Origin {
    Origin {
        actor: SYSTEM_ACTOR.into(),
        address: "the daemon".into(),
        arrival: None,
    }
}

fn count_one() {
    let _ = SCOPE.try_with(|s| s.recorded.fetch_add(1, Ordering::Relaxed));
}

/// `text`, cut to [`MAX_AUDIT_TEXT`] characters.
pub(crate) fn capped(text: &str) -> &str {
    match text.char_indices().nth(MAX_AUDIT_TEXT) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A change to record: its kind, words and data.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: &'static str,
    pub words: String,
    pub data: serde_json::Value,
}

impl Entry {
    pub fn new(kind: &'static str, words: impl Into<String>, data: serde_json::Value) -> Entry {
        Entry {
            kind,
            words: words.into(),
            data,
        }
    }
}

/// Write `entry` under `origin` with `outcome`, in `store` (whose lock the
/// caller holds).
pub(crate) fn write(
    store: &mut Store,
    origin: &Origin,
    entry: &Entry,
    outcome: &str,
) -> Result<()> {
    let mut data = entry.data.to_string();
    if data.len() > MAX_AUDIT_DATA {
        data = serde_json::json!({ "note": "data too large to record" }).to_string();
    }
    store.record_audit(&NewAudit {
        at: Timestamp::now(),
        actor: capped(&origin.actor),
        address: capped(&origin.address),
        kind: entry.kind,
        action: capped(&entry.words),
        data: &data,
        outcome: capped(outcome),
    })?;
    count_one();
    Ok(())
}

/// [`write`] under the current origin; a failed write is logged, never
/// undoes the change it describes (which is already on disk).
pub(crate) fn record_in(store: &mut Store, entry: &Entry, outcome: &str) {
    if let Err(e) = write(store, &current_origin(), entry, outcome) {
        error!(error = %e, kind = entry.kind, "could not write the audit log");
    }
}

impl Engine {
    /// Record a request for which no change was recorded (refused, or a
    /// route whose change the engine does not describe): `kind` `request`,
    /// `action` in words (`POST /v1/bind`), its outcome.
    pub async fn audit(&self, origin: &Origin, action: &str, outcome: &str) -> Result<()> {
        let entry = Entry::new("request", action, serde_json::json!({}));
        write(&mut *self.store.lock().await, origin, &entry, outcome)
    }

    /// Record an entry under `origin` (a sign-in, which has no session yet).
    pub async fn audit_entry(&self, origin: &Origin, entry: Entry, outcome: &str) -> Result<()> {
        write(&mut *self.store.lock().await, origin, &entry, outcome)
    }

    /// The last `limit` entries of the audit log, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditView>> {
        Ok(self.store.lock().await.audit(limit)?)
    }

    /// The newest entries that match `filter`, newest first.
    pub async fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditView>> {
        Ok(self.store.lock().await.audit_query(filter)?)
    }
}

/// A CSV cell that no spreadsheet takes for a formula: a leading `=`, `+`,
/// `-`, `@`, tab or carriage return gets a `'` before it.
pub fn neutralised(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// The entries as CSV (RFC 4180, a header line first), injection-safe.
pub fn to_csv(entries: &[AuditView]) -> String {
    fn cell(out: &mut String, text: &str) {
        let text = neutralised(text);
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    let mut out = String::from("id,at,actor,address,kind,action,outcome,data\r\n");
    for e in entries {
        let cells = [
            e.id.to_string(),
            e.at.to_string(),
            e.actor.clone(),
            e.address.clone(),
            e.kind.clone(),
            e.action.clone(),
            e.outcome.clone(),
            e.data.to_string(),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            cell(&mut out, c);
        }
        out.push_str("\r\n");
    }
    out
}

/// The entries as JSON Lines: one document per line.
pub fn to_jsonl(entries: &[AuditView]) -> String {
    let mut out = String::new();
    for e in entries {
        // A row always serializes (strings, numbers and a JSON value).
        if let Ok(line) = serde_json::to_string(e) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &str, actor: &str) -> AuditView {
        AuditView {
            id: 7,
            at: Timestamp::UNIX_EPOCH,
            actor: actor.into(),
            address: "console from 192.0.2.2".into(),
            kind: "cert.bind".into(),
            action: action.into(),
            data: serde_json::json!({ "cert": "=cmd" }),
            outcome: "done".into(),
        }
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised() {
        for bad in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralised(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(
            neutralised("bound certificate voip2"),
            "bound certificate voip2"
        );
        assert_eq!(neutralised(""), "");
        let csv = to_csv(&[row("=HYPERLINK(\"http://x\",\"a, b\")", "-admin")]);
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some("id,at,actor,address,kind,action,outcome,data")
        );
        let line = lines.next().expect("a row");
        assert!(line.contains(",'-admin,"), "{line}");
        assert!(
            line.contains(r#""'=HYPERLINK(""http://x"",""a, b"")""#),
            "quoted, doubled quotes, neutralised: {line}"
        );
        // No cell of the line starts with a formula character.
        let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
        for record in reader.records() {
            for cell in record.expect("parses").iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@']),
                    "formula cell {cell:?}"
                );
            }
        }
    }

    #[test]
    fn jsonl_is_one_document_per_line() {
        let text = to_jsonl(&[row("a\nb", "alice"), row("c", "bob")]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: AuditView = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(first.action, "a\nb");
        assert_eq!(first.data["cert"], "=cmd");
    }

    #[tokio::test]
    async fn the_actor_is_the_scope_s_origin_or_the_system() {
        assert_eq!(current_origin().actor, SYSTEM_ACTOR);
        let alice = Origin {
            actor: "alice".into(),
            address: "console".into(),
            arrival: None,
        };
        let (actor, n) = on_behalf_of(alice, async {
            count_one();
            current_origin().actor
        })
        .await;
        assert_eq!((actor.as_str(), n), ("alice", 1));
        assert_eq!(current_origin().actor, SYSTEM_ACTOR);
    }
}
