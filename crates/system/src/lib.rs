//! System adapters: the only code that talks to the kernel, runs commands or
//! writes system files.
//!
//! Everything here returns plain data (no domain types); the domain and
//! engine crates decide what it means.
//!
//! - [`acme`]: an ACME CA over HTTPS (accounts, orders proven by
//!   `tls-alpn-01`); the caller shows the challenges' answers.
//! - [`nics`]: links and addresses of the daemon's network namespace, read
//!   over rtnetlink, and a change feed.
//! - [`nft`]: check, load, read back and remove switchboard's own nftables
//!   table, through libnftables (`unsafe` confined to `nft::ffi`, and to the
//!   two libc calls of [`memory`]: the project's only `unsafe`); timed elements of its sets (the bans).
//! - [`memory`]: what a burst of connections allocated goes back to the
//!   kernel after it (glibc's allocator: a fixed mmap threshold, `malloc_trim`).
//! - [`proc`]: what the kernel says about a local client process.
//! - [`dns`]: the host name, and what the system resolver says a name is.
//! - [`files`]: atomic writes of the files other programs read.
//! - [`kamailio`]: check, supervise and reload Kamailio; its subscriber and
//!   location tables; its htables (`htable.dump`, `htable.delete`) and
//!   registrations (`ul.dump`) and dialogs (`dlg.list`) over `kamcmd`; the
//!   supervisor of a child program (Kamailio, rtpengine).
//! - [`rtpengine`]: run the media relay (supervised, userspace forwarding
//!   only) and ask it over its control protocols (ng `ping`, `list`,
//!   `query`; the CLI's `list interfaces`).
//! - [`sms`]: send an SMS through Kannel's `sendsms`, an HTTP webhook, or the outbox.
//!
//! Current limitations:
//! - Linux only, and every async function needs a tokio runtime (the daemon
//!   runs the multi-thread one).

pub mod acme;
pub mod dns;
pub mod files;
pub mod kamailio;
pub mod memory;
pub mod nft;
pub mod nics;
pub mod proc;
pub mod rtpengine;
pub mod sms;

#[cfg(feature = "testlab")]
pub mod testlab;
