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
//!   table, through libnftables (the only `unsafe` code of the project,
//!   confined to `nft::ffi`); timed elements of its sets (the bans).
//! - [`proc`]: what the kernel says about a local client process.
//! - [`dns`]: the host name, and what the system resolver says a name is.
//! - [`files`]: atomic writes of the files other programs read.
//! - [`kamailio`]: check, supervise and reload Kamailio; its subscriber and
//!   location tables; its htables (`htable.dump`, `htable.delete`) and
//!   registrations (`ul.dump`) over `kamcmd`.
//! - [`sms`]: send an SMS through Kannel's `sendsms`, an HTTP webhook, or the outbox.
//!
//! Current limitations:
//! - Linux only, and every async function needs a tokio runtime (the daemon
//!   runs the multi-thread one).

pub mod acme;
pub mod dns;
pub mod files;
pub mod kamailio;
pub mod nft;
pub mod nics;
pub mod proc;
pub mod sms;

#[cfg(feature = "testlab")]
pub mod testlab;
