//! The nftables adapter: check, load, read back and remove switchboard's
//! own table, one atomic transaction per load.
//!
//! It talks to the kernel through **libnftables** (the library the `nft`
//! program is made of, shipped with the `nftables` package), loaded at run
//! time and kept open: the same parser and the same transactions as
//! `nft -c -f` and `nft -f`, without starting a program three times per
//! Update. Measured on this project's machine (`cargo xtask bench`): a
//! live load of a 64-NIC ruleset takes about 1 ms in-process against
//! ~15 ms for `nft -f`; the check (`nft -c`, a transaction the kernel
//! aborts) costs a fixed ~8-16 ms in the kernel's abort path either way.
//!
//! Every function takes the table name; nothing here ever names, lists or
//! flushes another table. Calls are serialized on one libnftables context
//! and run on tokio's blocking pool.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot use libnftables ({0}); install the `nftables` package")]
    Library(String),
    #[error("the ruleset does not pass the check (nft -c): {0}")]
    Check(String),
    #[error("loading the ruleset failed (nothing was changed, the transaction is atomic): {0}")]
    Load(String),
    #[error("reading the loaded ruleset failed: {0}")]
    Read(String),
    #[error("removing table inet {table} failed: {reason}")]
    Remove { table: String, reason: String },
}

/// `nft -c -f -`: would this script load? Changes nothing.
pub async fn check(script: &str) -> Result<(), NftError> {
    run(script.to_owned(), Mode::DryRun)
        .await?
        .map(drop)
        .map_err(NftError::Check)
}

/// `nft -f -`: load the script as one transaction.
pub async fn load(script: &str) -> Result<(), NftError> {
    run(script.to_owned(), Mode::Apply)
        .await?
        .map(drop)
        .map_err(NftError::Load)
}

/// `nft list table inet TABLE`, or `None` when the table does not exist.
pub async fn list_table(table: &str) -> Result<Option<String>, NftError> {
    match run(format!("list table inet {table}"), Mode::Apply).await? {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.contains("No such file or directory") => Ok(None),
        Err(e) => Err(NftError::Read(e)),
    }
}

/// Delete table inet TABLE if it exists (declared first so that the delete
/// cannot fail on a missing table; one transaction).
pub async fn remove_table(table: &str) -> Result<(), NftError> {
    let script = format!("table inet {table}\ndelete table inet {table}\n");
    run(script, Mode::Apply)
        .await?
        .map(drop)
        .map_err(|reason| NftError::Remove {
            table: table.to_owned(),
            reason,
        })
}

/// `nft -t list table inet TABLE`: the table without the elements of its
/// sets (cheap whatever their size), or `None` when it does not exist.
pub async fn list_table_terse(table: &str) -> Result<Option<String>, NftError> {
    match run(format!("list table inet {table}"), Mode::Terse).await? {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.contains("No such file or directory") => Ok(None),
        Err(e) => Err(NftError::Read(e)),
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Apply,
    DryRun,
    Terse,
    Json,
}

/// One element of a set with timeouts: an address, how long it was added
/// for and how long it has left (whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedElement {
    pub addr: IpAddr,
    pub timeout_secs: u64,
    pub expires_secs: u64,
}

/// The elements of the address set `table`.`set` (empty when the table or
/// the set does not exist), read as JSON.
pub async fn timed_elements(table: &str, set: &str) -> Result<Vec<TimedElement>, NftError> {
    let text = match run(format!("list set inet {table} {set}"), Mode::Json).await? {
        Ok(text) => text,
        Err(e) if e.contains("No such file or directory") => return Ok(vec![]),
        Err(e) => return Err(NftError::Read(e)),
    };
    parse_timed_elements(&text).map_err(NftError::Read)
}

/// The elements of a `list set` in libnftables' JSON output.
fn parse_timed_elements(text: &str) -> Result<Vec<TimedElement>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("unexpected JSON from nft: {e}"))?;
    let mut out = Vec::new();
    let items = doc["nftables"].as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            let e = &e["elem"];
            let addr = e["val"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("unexpected set element from nft: {e}"))?;
            out.push(TimedElement {
                addr,
                timeout_secs: e["timeout"].as_u64().unwrap_or(0),
                expires_secs: e["expires"].as_u64().unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// `add element` lines that put `elements` back into `table`.`set` with
/// what they had left: appended to a script that redeclares the table, in
/// the same transaction. The kernel reports whole seconds left, rounded
/// down, so a second is added: a ban may end up to a second late, never
/// early. Elements with less than a second left are gone.
pub fn restore_elements(table: &str, set: &str, elements: &[TimedElement]) -> String {
    elements
        .iter()
        .filter(|e| e.expires_secs >= 1)
        .map(|e| {
            format!(
                "add element inet {table} {set} {{ {} timeout {}s expires {}s }}\n",
                e.addr,
                e.timeout_secs.max(e.expires_secs + 1),
                e.expires_secs + 1
            )
        })
        .collect()
}

/// Put `addr` into `table`.`set` for `secs` seconds, replacing an element
/// already there (its timeout starts again), in one transaction.
pub async fn add_timed(table: &str, set: &str, addr: IpAddr, secs: u64) -> Result<(), NftError> {
    let script = format!(
        "add element inet {table} {set} {{ {addr} timeout 1s }}\n\
         delete element inet {table} {set} {{ {addr} }}\n\
         add element inet {table} {set} {{ {addr} timeout {secs}s }}\n"
    );
    run(script, Mode::Apply)
        .await?
        .map(drop)
        .map_err(NftError::Load)
}

/// Take `addr` out of `table`.`set` (nothing if it is not there).
pub async fn remove_element(table: &str, set: &str, addr: IpAddr) -> Result<(), NftError> {
    let script = format!(
        "add element inet {table} {set} {{ {addr} timeout 1s }}\n\
         delete element inet {table} {set} {{ {addr} }}\n"
    );
    run(script, Mode::Apply)
        .await?
        .map(drop)
        .map_err(NftError::Load)
}

/// The process's libnftables context, opened on first use.
fn context() -> Result<&'static Mutex<ffi::Context>, NftError> {
    static CONTEXT: OnceLock<Result<Mutex<ffi::Context>, String>> = OnceLock::new();
    CONTEXT
        .get_or_init(|| ffi::Context::open().map(Mutex::new))
        .as_ref()
        .map_err(|e| NftError::Library(e.clone()))
}

/// Run one command buffer: `Ok(Ok(output))`, or `Ok(Err(nft's message))`.
async fn run(buffer: String, mode: Mode) -> Result<Result<String, String>, NftError> {
    let ctx = context()?;
    tokio::task::spawn_blocking(move || {
        let mut ctx = ctx.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let flags = match mode {
            Mode::Terse => ffi::OUTPUT_TERSE,
            Mode::Json => ffi::OUTPUT_JSON,
            Mode::Apply | Mode::DryRun => 0,
        };
        let result = ctx.run(&buffer, matches!(mode, Mode::DryRun), flags);
        tracing::debug!(?mode, elapsed = ?started.elapsed(), ok = result.is_ok(), "libnftables");
        result
    })
    .await
    .map_err(|e| NftError::Library(format!("the nftables worker failed: {e}")))
}

/// The few libnftables functions switchboard uses, loaded with `dlopen`.
///
/// With [`crate::memory`]'s two libc calls, this is the only `unsafe` code
/// of the project: calls into a C library
/// through the ABI its header (`nftables/libnftables.h`) declares.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

    use libloading::Library;

    const LIBRARY: &str = "libnftables.so.1";
    /// `NFT_CTX_OUTPUT_TERSE` in libnftables.h: omit the elements of sets.
    pub(super) const OUTPUT_TERSE: c_uint = 1 << 11;
    /// `NFT_CTX_OUTPUT_JSON`: JSON output.
    pub(super) const OUTPUT_JSON: c_uint = 1 << 4;

    type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
    type CtxFree = unsafe extern "C" fn(*mut c_void);
    type SetDryRun = unsafe extern "C" fn(*mut c_void, bool);
    type SetOutputFlags = unsafe extern "C" fn(*mut c_void, c_uint);
    type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
    type GetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
    type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

    pub(super) struct Context {
        ctx: *mut c_void,
        free: CtxFree,
        set_dry_run: SetDryRun,
        set_output_flags: SetOutputFlags,
        output: GetBuffer,
        error: GetBuffer,
        run_cmd: RunCmd,
        // Keeps the functions above valid; dropped last.
        _lib: Library,
    }

    // SAFETY: a libnftables context is plain heap state plus a netlink
    // socket; it may move between threads. It is never used concurrently:
    // every use goes through the Mutex in `context()`.
    unsafe impl Send for Context {}

    impl std::fmt::Debug for Context {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("libnftables context")
        }
    }

    impl Context {
        pub(super) fn open() -> Result<Context, String> {
            // SAFETY: loading libnftables runs no initialisation code with
            // preconditions; the symbol types below are those of
            // libnftables.h (nftables 0.9 to 1.1).
            unsafe {
                let lib = Library::new(LIBRARY).map_err(|e| format!("{LIBRARY}: {e}"))?;
                let new: CtxNew = *lib.get(b"nft_ctx_new\0").map_err(|e| e.to_string())?;
                let buffer_output: Buffer = *lib
                    .get(b"nft_ctx_buffer_output\0")
                    .map_err(|e| e.to_string())?;
                let buffer_error: Buffer = *lib
                    .get(b"nft_ctx_buffer_error\0")
                    .map_err(|e| e.to_string())?;
                let free: CtxFree = *lib.get(b"nft_ctx_free\0").map_err(|e| e.to_string())?;
                let set_dry_run: SetDryRun = *lib
                    .get(b"nft_ctx_set_dry_run\0")
                    .map_err(|e| e.to_string())?;
                let set_output_flags: SetOutputFlags = *lib
                    .get(b"nft_ctx_output_set_flags\0")
                    .map_err(|e| e.to_string())?;
                let output: GetBuffer = *lib
                    .get(b"nft_ctx_get_output_buffer\0")
                    .map_err(|e| e.to_string())?;
                let error: GetBuffer = *lib
                    .get(b"nft_ctx_get_error_buffer\0")
                    .map_err(|e| e.to_string())?;
                let run_cmd: RunCmd = *lib
                    .get(b"nft_run_cmd_from_buffer\0")
                    .map_err(|e| e.to_string())?;
                let ctx = new(0); // NFT_CTX_DEFAULT
                if ctx.is_null() {
                    return Err("nft_ctx_new failed".into());
                }
                // From here on, Drop frees the context.
                let context = Context {
                    ctx,
                    free,
                    set_dry_run,
                    set_output_flags,
                    output,
                    error,
                    run_cmd,
                    _lib: lib,
                };
                if buffer_output(ctx) != 0 || buffer_error(ctx) != 0 {
                    return Err("cannot buffer libnftables output".into());
                }
                Ok(context)
            }
        }

        /// Run a command buffer; the output on success, nft's error
        /// message otherwise.
        pub(super) fn run(
            &mut self,
            buffer: &str,
            dry_run: bool,
            flags: c_uint,
        ) -> Result<String, String> {
            let buffer =
                CString::new(buffer).map_err(|_| "the script contains a NUL byte".to_owned())?;
            // SAFETY: `self.ctx` is a live context (freed only in Drop);
            // `buffer` is NUL-terminated and outlives the call; the returned
            // buffers stay valid until the next run on this context, and
            // are copied before that.
            unsafe {
                (self.set_dry_run)(self.ctx, dry_run);
                (self.set_output_flags)(self.ctx, flags);
                let rc = (self.run_cmd)(self.ctx, buffer.as_ptr());
                let read = |p: *const c_char| {
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                };
                let output = read((self.output)(self.ctx));
                let error = read((self.error)(self.ctx));
                if rc == 0 {
                    Ok(output)
                } else {
                    Err(error.trim().to_owned())
                }
            }
        }
    }

    impl Drop for Context {
        fn drop(&mut self) {
            // SAFETY: the context was created by nft_ctx_new and is freed once.
            unsafe { (self.free)(self.ctx) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_elements_parse_from_json_and_hostile_output_is_an_error() {
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "banned_v4", "table": "switchboard", "type": "ipv4_addr", "flags": ["timeout"], "elem": [{"elem": {"val": "192.0.2.5", "timeout": 300, "expires": 299}}]}}]}"#;
        let e = parse_timed_elements(text).expect("parse");
        assert_eq!(
            e,
            [TimedElement {
                addr: "192.0.2.5".parse().expect("ip"),
                timeout_secs: 300,
                expires_secs: 299
            }]
        );
        let empty = r#"{"nftables": [{"set": {"name": "banned_v6", "type": "ipv6_addr"}}]}"#;
        assert!(parse_timed_elements(empty).expect("parse").is_empty());
        for bad in [
            "",
            "not json",
            r#"{"nftables": [{"set": {"elem": [{"elem": {"val": "x; flush ruleset"}}]}}]}"#,
        ] {
            assert!(parse_timed_elements(bad).is_err(), "{bad}");
        }
        let lines = restore_elements(
            "switchboard",
            "banned_v4",
            &[
                e[0],
                TimedElement {
                    addr: "192.0.2.6".parse().expect("ip"),
                    timeout_secs: 300,
                    expires_secs: 0,
                },
            ],
        );
        assert_eq!(
            lines,
            "add element inet switchboard banned_v4 { 192.0.2.5 timeout 300s expires 300s }\n"
        );
    }
}
