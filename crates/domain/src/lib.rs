//! The words of switchboard, as types.
//!
//! This crate is the vocabulary every other crate speaks: the service
//! [`catalog`], the [`nic`]s the kernel reports, the service × NIC
//! [`matrix`], the [`candidate`] configuration the administrator edits (with the SIP edge's
//! [`bans`] policy), the
//! [`diagnostic`]s that [`validate`] finds in it, the [`fleet`]'s group policy
//! and the candidate an appliance makes of it (with its rollouts' state machine), the one [`tls_policy`] of every TLS socket, the changes the engine
//! applies to it (absent keeps, blank clears) and a [`revision`]'s comment.
//!
//! **Boundary.** Pure data and pure functions: no I/O, no clock, no
//! randomness, no async. Values that have a syntax (service ids, interface
//! names, port ranges) are newtypes that cannot hold an invalid value
//! ("parse, don't validate"): whoever holds a [`nic::NicName`] holds a name
//! that is safe to put in an nftables ruleset.
//!
//! **Feature `openapi`**: the types that appear in the API describe
//! themselves for its OpenAPI document (`utoipa::ToSchema`); off by default.
//!
//! **Limitations.** Every field added to the candidate defaults to empty,
//! so candidates stored by older versions stay readable.

pub mod bans;
pub mod candidate;
pub mod catalog;
pub mod diagnostic;
pub mod fleet;
pub mod host;
pub mod install;
pub mod matrix;
pub mod nic;
#[cfg(feature = "openapi")]
mod openapi;
pub mod provisioning;
pub mod revision;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod tls_policy;
pub mod validate;

pub use bans::{BanPolicy, BanPolicyChange, InvalidBanPolicy, IpNetwork};
pub use candidate::Candidate;
pub use catalog::{PortRange, ServiceId, Transport};
pub use diagnostic::{Diagnostic, DiagnosticCode, Severity};
pub use host::{Host, Hostname, InvalidHostname};
pub use matrix::{Matrix, ResolvedMatrix};
pub use nic::{Facts, Nic, NicAddr, NicName};
pub use revision::{InvalidComment, RevisionComment};
pub use tls::{Bindings, CertFacts, CertName, NicSettings, Validity};
pub use tls_policy::{TLS_POLICY, TlsPolicy};
pub use validate::validate;
