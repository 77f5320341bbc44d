//! System adapters: the only code that talks to the kernel, runs commands or
//! writes system files.
//!
//! Everything here returns plain data (no domain types); the domain and
//! engine crates decide what it means.
//!
//! Current limitations:
//! - Only NIC discovery ([`nics`]) exists so far: links and addresses of the
//!   daemon's own network namespace, read over rtnetlink. Firewall (nft),
//!   Kamailio and certificate adapters are still to come.
//! - Linux only, and every async function needs a tokio runtime (the daemon
//!   runs the multi-thread one).

pub mod nics;

#[cfg(feature = "testlab")]
pub mod testlab;
