//! A fleet of appliances on etcd.
//!
//! **What.** The shared state of a fleet lives in etcd (v3 API), under
//! `/switchboard/groups/GROUP/`:
//!
//! | key | written by | what |
//! |---|---|---|
//! | `policy` | operator | the group's [`GroupPolicy`] (JSON); its etcd `mod_revision` is the *policy revision* |
//! | `rollout` | operator (coordinator) | the [`Rollout`] moving a policy revision through the group in waves |
//! | `assign/APPLIANCE` | operator (coordinator) | the [`Assignment`] an appliance must apply: a policy revision and the policy |
//! | `status/APPLIANCE` | that appliance only | its [`Status`], under a lease: a dead appliance drops out of the live set |
//!
//! [`agent`] runs inside each appliance's daemon: it watches its own
//! assignment, applies it through the engine's spine (a commit-confirmed
//! revision of the actor `fleet`), reports, confirms. [`operator`] is the
//! operator's side: policies, rollouts (the coordinator drives
//! [`Rollout::step`] with etcd transactions), the fleet's status.
//!
//! **Boundary.** This crate talks to etcd and to the [`Engine`]; it never
//! touches the system itself. Roles and users in etcd (who may write what)
//! are the etcd administrator's (the system test sets them up with `etcdctl`).
//!
//! **Limitations.** Fail-static means the appliance keeps its last applied
//! revision while etcd is away; a policy written meanwhile reaches it when
//! it is back. The coordinator runs in the CLI that starts or resumes a
//! rollout: when it stops, the rollout waits (a `resume` takes over).

pub mod agent;
pub mod operator;

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};
use switchboard_domain::fleet::rollout::Rollout;
use switchboard_domain::fleet::{EtcdAccess, GroupPolicy, Label};

#[cfg(doc)]
use switchboard_engine::Engine;

/// The root of every key of the fleet.
pub const ROOT: &str = "/switchboard/groups/";

/// The keys of a group.
#[derive(Debug, Clone)]
pub struct Keys {
    group: String,
}

impl Keys {
    pub fn new(group: &Label) -> Keys {
        Keys {
            group: format!("{ROOT}{group}/"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.group
    }

    pub fn policy(&self) -> String {
        format!("{}policy", self.group)
    }

    pub fn rollout(&self) -> String {
        format!("{}rollout", self.group)
    }

    pub fn assign(&self, appliance: &Label) -> String {
        format!("{}assign/{appliance}", self.group)
    }

    pub fn assign_prefix(&self) -> String {
        format!("{}assign/", self.group)
    }

    pub fn status(&self, appliance: &Label) -> String {
        format!("{}status/{appliance}", self.group)
    }

    pub fn status_prefix(&self) -> String {
        format!("{}status/", self.group)
    }
}

/// What an appliance is asked to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub policy_revision: i64,
    /// Bumped when a rollout resumes: the same revision is tried again.
    #[serde(default)]
    pub attempt: u32,
    pub policy: GroupPolicy,
}

pub use switchboard_engine::fleet::MemberStatus as Status;

/// A failure to talk to etcd, or what it holds not reading.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] switchboard_engine::EngineError),
}

pub type Result<T> = std::result::Result<T, FleetError>;

/// How long a request to etcd may take before it counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to etcd with `access`: TLS with the client certificate when
/// given (etcd's user is its common name), a leader required (a member cut
/// off from the others answers with an error instead of stale data).
///
/// One endpoint at a time, starting after the one used last, each tried
/// with a read of `probe` (a key the user may read): the etcd-client
/// crate's balanced channel fails every request while any one of its
/// endpoints is down (etcdv3/etcd-client#39), which is exactly when a
/// fleet needs the others.
pub async fn connect(access: &EtcdAccess, probe: &str) -> Result<Client> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_require_leader(true);
    if let (Some(ca), Some(cert), Some(key)) =
        (&access.ca_file, &access.cert_file, &access.key_file)
    {
        let read = |path: &String| {
            std::fs::read(path).map_err(|source| FleetError::File {
                path: path.clone(),
                source,
            })
        };
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(cert)?, read(key)?));
        options = options.with_tls(tls);
    }
    let n = access.endpoints.len();
    if n == 0 {
        return Err(FleetError::Invalid("no etcd endpoint".into()));
    }
    let start = NEXT.load(std::sync::atomic::Ordering::Relaxed);
    let mut last = None;
    for i in 0..n {
        let at = (start + i) % n;
        let endpoint = &access.endpoints[at];
        let attempt = async {
            let mut client = Client::connect([endpoint], Some(options.clone())).await?;
            client
                .get(
                    probe,
                    Some(etcd_client::GetOptions::new().with_count_only()),
                )
                .await?;
            Ok::<_, FleetError>(client)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(client)) => {
                // Next time, the one after this one first.
                NEXT.store(at + 1, std::sync::atomic::Ordering::Relaxed);
                return Ok(client);
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(FleetError::Invalid(format!("{endpoint}: no answer"))),
        }
    }
    NEXT.store(start + 1, std::sync::atomic::Ordering::Relaxed);
    Err(last.unwrap_or_else(|| FleetError::Invalid("no etcd endpoint answered".into())))
}

/// Reads a JSON value of ours from etcd.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value)
        .map_err(|e| FleetError::Invalid(format!("{key} does not read: {e}")))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("fleet documents serialize")
}

/// The live members' statuses of a group, by appliance name.
pub async fn statuses(
    client: &mut Client,
    keys: &Keys,
) -> Result<std::collections::BTreeMap<Label, Status>> {
    let resp = client
        .get(
            keys.status_prefix(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let mut out = std::collections::BTreeMap::new();
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let Some(name) = key.strip_prefix(&keys.status_prefix()) else {
            continue;
        };
        let Ok(name) = name.parse::<Label>() else {
            continue;
        };
        if let Ok(s) = decode::<Status>(&key, kv.value()) {
            out.insert(name, s);
        }
    }
    Ok(out)
}

/// The group's rollout and its `mod_revision`, if one was ever started.
pub async fn rollout(client: &mut Client, keys: &Keys) -> Result<Option<(Rollout, i64)>> {
    let resp = client.get(keys.rollout(), None).await?;
    match resp.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some((
            decode(&keys.rollout(), kv.value())?,
            kv.mod_revision(),
        ))),
    }
}
