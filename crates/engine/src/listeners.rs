//! switchboard's own HTTPS listeners (console, web services), as the engine
//! sees them: the sockets a revision wants, and the [`ListenerControl`] the
//! daemon hands over to bind them.
//!
//! An Update asks for exactly its revision's sockets (the plan's
//! `sockets` served by switchboard): a new port is bound before the old one
//! stops accepting, and a new port that cannot be bound fails the Update
//! that moves it (which is then undone like any other failure). An Update
//! that keeps the sockets, and putting a recorded revision back (boot, NIC
//! changes, rollbacks of a failed or unconfirmed revision), bind what they
//! can and report the rest, so that a busy port never keeps the daemon from
//! starting, from applying other changes, or from restoring the rest of a
//! revision.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;

use switchboard_domain::ServiceId;
use tracing::warn;

/// A socket of switchboard's own HTTPS listeners: which service, which port (every address, [::]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenSocket {
    pub service: ServiceId,
    pub port: u16,
}

impl std::fmt::Display for ListenSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.service, self.port)
    }
}

/// The built-in HTTPS listeners as the daemon runs them; `serve` gives one to the engine.
pub trait ListenerControl: Send + Sync + std::fmt::Debug {
    /// Listen on exactly `sockets`: bind every socket not yet bound first (an error, with
    /// nothing changed, when one cannot be bound), then stop accepting on the sockets no
    /// longer wanted (connections in flight on them finish). Returns a one-line account.
    fn listen<'a>(
        &'a self,
        sockets: &'a [ListenSocket],
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
    /// The sockets bound now.
    fn bound(&self) -> Vec<ListenSocket>;
}

/// How a socket that cannot be bound is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The step fails with nothing changed (an Update: it is undone).
    Required,
    /// Every socket that can be bound is, the sockets no longer wanted
    /// stop, and the others are logged and reported in the account (boot,
    /// NIC changes, putting a recorded revision back).
    BestEffort,
}

/// Make `control` listen on `wanted`. Returns a line for the revision's
/// detail when the sockets changed or some could not be bound, and an
/// empty one when nothing changed.
pub(crate) async fn listen(
    control: &dyn ListenerControl,
    wanted: &[ListenSocket],
    binding: Binding,
) -> Result<String, String> {
    let mut before = control.bound();
    before.sort();
    let mut sorted = wanted.to_vec();
    sorted.sort();
    let failed = match control.listen(wanted).await {
        Ok(_) if before == sorted => return Ok(String::new()),
        Ok(account) => return Ok(account),
        Err(e) if binding == Binding::Required => return Err(e),
        Err(e) => e,
    };
    // Best effort: keep what is wanted and bound, stop the rest, then add
    // the new sockets one at a time, so one busy port costs only itself.
    warn!(error = %failed, "cannot listen on every HTTPS socket; binding them one at a time");
    let mut kept: Vec<ListenSocket> = wanted
        .iter()
        .filter(|s| before.contains(s))
        .copied()
        .collect();
    let mut account = match control.listen(&kept).await {
        Ok(account) => account,
        Err(e) => format!("the listeners could not even keep their bound sockets: {e}"),
    };
    for socket in wanted.iter().filter(|s| !before.contains(s)) {
        kept.push(*socket);
        match control.listen(&kept).await {
            Ok(done) => account = done,
            Err(e) => {
                warn!(%socket, error = %e, "cannot listen: this service is unavailable");
                kept.pop();
                let _ = write!(account, "; {socket} unavailable: {e}");
            }
        }
    }
    Ok(account)
}
