//! The Prometheus metrics (`GET /metrics` on the `metrics` service, text
//! exposition format, from the `prometheus-client` crate).
//!
//! Two kinds: what the daemon counts while it runs ([`Counters`]: how long
//! each Update took, TLS handshakes per service, configuration documents
//! served), lost at a restart as Prometheus counters are; and what is read
//! afresh at each scrape from the [`MonitorView`](crate::monitor::MonitorView)
//! (revision, Updates by outcome, padlocks, certificate ends, Kamailio, the
//! SMS queue, bans). Labels carry service names and certificate names only:
//! never an address, a telephone number, a user name or a secret.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::monitor::MonitorView;
use crate::{Engine, Result};

/// What the daemon counts as it runs; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Counters {
    /// Seconds per Update or rollback, applied or not.
    update_seconds: Histogram,
    /// Completed TLS handshakes, by service.
    handshakes: Family<Vec<(String, String)>, Counter>,
    /// Configuration documents served behind activation links.
    documents: Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            // 1 ms to about 33 s.
            update_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            handshakes: Family::default(),
            documents: Counter::default(),
        }
    }
}

impl Counters {
    pub fn update_took(&self, elapsed: std::time::Duration) {
        self.update_seconds.observe(elapsed.as_secs_f64());
    }

    /// A TLS handshake of `service` completed.
    pub fn handshake(&self, service: &str) {
        self.handshakes
            .get_or_create(&vec![("service".to_owned(), service.to_owned())])
            .inc();
    }

    /// A configuration document was served.
    pub fn document(&self) {
        self.documents.inc();
    }
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

/// Kamailio's registrations: contacts, and the accounts they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registrations {
    pub contacts: usize,
    pub accounts: usize,
}

/// The exposition text of `counters`, `view` and the registrations (when
/// Kamailio could be asked).
pub fn render(
    counters: &Counters,
    view: &MonitorView,
    registrations: Option<Registrations>,
) -> String {
    let mut r = Registry::with_prefix("switchboard");
    r.register(
        "update_duration_seconds",
        "Time an Update (or rollback) took, from plan to record",
        counters.update_seconds.clone(),
    );
    r.register(
        "tls_handshakes",
        "TLS handshakes completed by the built-in HTTPS listeners",
        counters.handshakes.clone(),
    );
    r.register(
        "documents_served",
        "Configuration documents served behind activation links",
        counters.documents.clone(),
    );
    r.register(
        "revision",
        "The revision the system runs (0: none applied)",
        gauge(
            view.revision
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        ),
    );
    let updates: Family<Vec<(String, String)>, Gauge> = Family::default();
    for (outcome, n) in [
        ("applied", view.updates.applied),
        ("failed", view.updates.failed),
        ("pending", view.updates.pending),
        ("rolled-back", view.updates.rolled_back),
    ] {
        updates
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(
        "revisions",
        "Revisions recorded (Updates and rollbacks), by outcome",
        updates,
    );
    r.register(
        "pending",
        "1 while a commit-confirmed revision waits for its confirmation",
        gauge(i64::from(view.pending.is_some())),
    );
    r.register(
        "padlocks",
        "TLS bindings under the padlock check",
        gauge(view.padlocks as i64),
    );
    r.register(
        "padlocks_open",
        "TLS bindings whose padlock is open",
        gauge(view.open_padlocks.len() as i64),
    );
    let ends: Family<Vec<(String, String)>, Gauge> = Family::default();
    for c in &view.certificates {
        ends.get_or_create(&vec![("cert".to_owned(), c.cert.clone())])
            .set(c.not_after.as_second());
    }
    r.register(
        "certificate_not_after_timestamp_seconds",
        "When each bound certificate ends (Unix time)",
        ends,
    );
    if let Some(sip) = &view.sip {
        r.register(
            "kamailio_up",
            "1 while the supervised Kamailio runs",
            gauge(i64::from(sip.running)),
        );
        r.register(
            "kamailio_restarts",
            "Times the supervisor started Kamailio again after it died",
            gauge(i64::from(sip.restarts)),
        );
    }
    if let Some(reg) = registrations {
        r.register(
            "registrations",
            "Contacts registered with Kamailio now",
            gauge(reg.contacts as i64),
        );
        r.register(
            "registered_accounts",
            "Accounts with at least one contact registered now",
            gauge(reg.accounts as i64),
        );
    }
    r.register(
        "sms_queued",
        "SMS waiting for the gateway",
        gauge(i64::try_from(view.sms.queued).unwrap_or(i64::MAX)),
    );
    r.register(
        "sms_oldest_queued_seconds",
        "Age of the oldest SMS waiting for the gateway (0: none)",
        gauge(view.sms.oldest_queued_secs.unwrap_or(0)),
    );
    r.register(
        "sms_failed",
        "SMS the gateway refused for good",
        gauge(i64::try_from(view.sms.failed).unwrap_or(i64::MAX)),
    );
    r.register(
        "bans_active",
        "Addresses the SIP edge bans now",
        gauge(view.bans.active as i64),
    );
    r.register(
        "bans_recent",
        "Addresses banned within the last day",
        gauge(view.bans.recent as i64),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

impl Engine {
    /// What the daemon counts (the web layer counts handshakes and
    /// documents into it).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The exposition text of `GET /metrics`.
    pub async fn metrics_text(&self) -> Result<String> {
        let view = self.monitor().await?;
        let registrations = match self.kamailio_ctl() {
            Some(ctl) => switchboard_system::kamailio::registrations(&ctl)
                .await
                .ok()
                .map(|all| Registrations {
                    contacts: all.len(),
                    accounts: all
                        .iter()
                        .map(|c| c.aor.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                }),
            None => None,
        };
        Ok(render(&self.counters, &view, registrations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_counters_and_the_state() {
        let c = Counters::default();
        c.update_took(std::time::Duration::from_millis(12));
        c.handshake("web");
        c.handshake("web");
        c.document();
        let view: MonitorView = serde_json::from_value(serde_json::json!({
            "version": "0", "checked_at": "2026-01-01T00:00:00Z", "revision": 3,
            "updates": {"applied": 3, "failed": 1, "pending": 0, "rolled_back": 0},
            "last_update": null, "pending": null, "padlocks": 3, "open_padlocks": ["web on wan0"],
            "certificates": [{"cert": "voip", "not_after": "2026-06-01T00:00:00Z", "days_left": 151}],
            "sip": {"running": true, "restarts": 2, "last_exit": null},
            "sms": {"queued": 1, "failed": 0, "oldest_queued_secs": 42},
            "bans": {"active": 0, "recent": 1}
        }))
        .expect("a view");
        let text = render(
            &c,
            &view,
            Some(Registrations {
                contacts: 3,
                accounts: 2,
            }),
        );
        for line in [
            "switchboard_update_duration_seconds_count 1",
            "switchboard_tls_handshakes_total{service=\"web\"} 2",
            "switchboard_documents_served_total 1",
            "switchboard_revision 3",
            "switchboard_revisions{outcome=\"failed\"} 1",
            "switchboard_padlocks_open 1",
            "switchboard_certificate_not_after_timestamp_seconds{cert=\"voip\"} 1780272000",
            "switchboard_kamailio_up 1",
            "switchboard_sms_oldest_queued_seconds 42",
            "switchboard_bans_recent 1",
            "switchboard_registrations 3",
            "switchboard_registered_accounts 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
