//! Where a request comes from, and whether an Update would cut it off.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use switchboard_domain::{Candidate, Facts, NicName, ResolvedMatrix, ServiceId};

/// Where a request came from: recorded with every revision, and checked by
/// the anti-lockout rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Who: a user name, or `uid N`.
    pub actor: String,
    /// From where, for people: `unix socket (pid N)`, `ssh from ADDR ...`.
    pub address: String,
    /// The service and appliance address the administrator's session came
    /// in through, when it came over the network.
    pub arrival: Option<Arrival>,
}

/// The appliance end of an administrator's network session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// `console` or `ssh`.
    pub service: ServiceId,
    pub local: IpAddr,
    pub port: u16,
}

impl Origin {
    /// A client of the local socket, identified by its peer credentials.
    /// If the client runs inside an SSH session (its own environment or an
    /// ancestor's carries `SSH_CONNECTION`), that session is its arrival.
    pub fn local(uid: u32, pid: Option<u32>) -> Origin {
        let actor = if uid == 0 {
            "root".to_owned()
        } else {
            format!("uid {uid}")
        };
        let ssh = pid.and_then(switchboard_system::proc::ssh_connection);
        let pid_text = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        match ssh {
            Some(c) => Origin {
                actor,
                address: format!(
                    "ssh from {} to {}:{}{pid_text}",
                    c.client, c.server, c.server_port
                ),
                arrival: Some(Arrival {
                    service: ServiceId::Ssh,
                    local: c.server,
                    port: c.server_port,
                }),
            },
            None => Origin {
                actor,
                address: format!("unix socket{pid_text}"),
                arrival: None,
            },
        }
    }
}

/// The NIC an address belongs to.
fn nic_of(facts: &Facts, addr: IpAddr) -> Option<&NicName> {
    facts
        .nics
        .iter()
        .find(|n| n.addrs.iter().any(|a| a.addr == addr))
        .map(|n| &n.name)
}

/// The administrator's ways in on a NIC: the console and SSH.
const ACCESS: [ServiceId; 2] = [ServiceId::Console, ServiceId::Ssh];

/// If going from `current` to `next` stops the console or SSH answering on
/// the NIC the administrator's session arrived through, that service and
/// NIC. `current` is `None` on a new appliance (no firewall: everything
/// answers). The session's own service is checked on the port it uses; the
/// other on its configured port.
pub(crate) fn cut_off<'f>(
    origin: &Origin,
    facts: &'f Facts,
    current: Option<(&ResolvedMatrix, &Candidate)>,
    next: (&ResolvedMatrix, &Candidate),
) -> Option<(ServiceId, &'f NicName)> {
    let arrival = origin.arrival.as_ref()?;
    // An address on no NIC (loopback) is always allowed.
    let nic = nic_of(facts, arrival.local)?;
    let default = Candidate::default();
    let now_candidate = current.map_or(&default, |(_, c)| c);
    ACCESS.into_iter().find_map(|service| {
        let port = if service == arrival.service {
            arrival.port
        } else {
            now_candidate.port(service).first()
        };
        let reaches = |m: &ResolvedMatrix, c: &Candidate| {
            m.allows(service, nic) && c.port(service).contains(port)
        };
        let now = current.is_none_or(|(m, c)| reaches(m, c));
        (now && !reaches(next.0, next.1)).then_some((service, nic))
    })
}
