//! Fault injection for the crash-consistency tests.
//!
//! When the daemon runs with `SWITCHBOARD_CRASH_AT=NAME`, reaching the
//! point `NAME` kills the process with SIGKILL on the spot — exactly what a
//! power cut or `kill -9` does there. Without the variable a failpoint is
//! one atomic load. The named points are listed in ARCHITECTURE.md.
//!
//! `SWITCHBOARD_FAIL_STEP=STEP` makes the named step of the apply pipeline
//! (`firewall`, `listeners`, `tls`, `kamailio`) fail its verification after
//! it applied a change (not when it puts the same plan again, as boot
//! does), so the tests can watch the pipeline undo what was done.
//! `SWITCHBOARD_SLOW_IMPORT_MS=N` makes a certificate import's CPU job last
//! N ms longer (see [`slow_import`]).

use std::sync::OnceLock;

const ENV: &str = "SWITCHBOARD_CRASH_AT";

pub(crate) fn failpoint(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(name) {
        tracing::warn!(failpoint = name, "{ENV}: killing the daemon here");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

const FAIL_STEP_ENV: &str = "SWITCHBOARD_FAIL_STEP";

const SLOW_IMPORT_ENV: &str = "SWITCHBOARD_SLOW_IMPORT_MS";

/// With `SWITCHBOARD_SLOW_IMPORT_MS=N`, a certificate import's CPU job takes
/// N ms more: a test can then act while one is surely running, whatever the
/// speed of the machine. Unset, this is one atomic load.
pub(crate) fn slow_import() {
    static MS: OnceLock<Option<u64>> = OnceLock::new();
    let ms = MS.get_or_init(|| {
        std::env::var(SLOW_IMPORT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(ms) = ms {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}

/// Whether the step `name` must fail (see the module's doc).
pub(crate) fn step_fails(name: &str) -> bool {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(FAIL_STEP_ENV).ok().filter(|v| !v.is_empty()));
    at.as_deref() == Some(name)
}
