//! The candidate: the configuration being edited. Editing it changes
//! nothing on the system; only an Update does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bans::BanPolicy;
use crate::catalog::{PortRange, ServiceId};
use crate::matrix::Matrix;
use crate::nic::NicName;
use crate::provisioning::ProvisioningSettings;
use crate::tls::{Bindings, NicSettings};

/// Everything the administrator decides. Every field has a default so that
/// a candidate stored by an older version still loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    #[serde(default)]
    pub matrix: Matrix,
    /// Ports that differ from the catalog's defaults.
    #[serde(default)]
    pub ports: BTreeMap<ServiceId, PortRange>,
    /// Which certificate each TLS service presents, per NIC.
    #[serde(default, skip_serializing_if = "is_default")]
    pub bindings: Bindings,
    /// Host names and public addresses of the NICs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nics: BTreeMap<NicName, NicSettings>,
    /// The SIP/TLS host name and web services URI phones are given.
    #[serde(default, skip_serializing_if = "is_default")]
    pub provisioning: ProvisioningSettings,
    /// When addresses that fail SIP authentication or flood are banned.
    #[serde(default, skip_serializing_if = "is_default")]
    pub bans: BanPolicy,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Candidate {
    /// The port(s) `service` listens on in this candidate.
    pub fn port(&self, service: ServiceId) -> PortRange {
        self.ports
            .get(&service)
            .copied()
            .unwrap_or(service.info().default_ports)
    }

    /// Set the ports of `service`; returns whether anything changed. The
    /// catalog default is stored as "no override".
    pub fn set_port(&mut self, service: ServiceId, ports: PortRange) -> bool {
        let before = self.port(service);
        if ports == service.info().default_ports {
            self.ports.remove(&service);
        } else {
            self.ports.insert(service, ports);
        }
        before != ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_to_the_catalog_and_overrides_round_trip() {
        let mut c = Candidate::default();
        assert_eq!(c.port(ServiceId::SipTls).to_string(), "5061");
        assert!(c.set_port(ServiceId::Console, "443".parse().expect("port")));
        assert!(!c.set_port(ServiceId::Console, "443".parse().expect("port")));
        assert!(c.set_port(ServiceId::Console, ServiceId::Console.info().default_ports));
        assert!(
            c.ports.is_empty(),
            "the default is not stored as an override"
        );
        c.set_port(ServiceId::Web, "8444".parse().expect("port"));
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(
            json,
            r#"{"matrix":{"mode":"factory"},"ports":{"web":"8444"}}"#
        );
        assert_eq!(serde_json::from_str::<Candidate>(&json).expect("back"), c);
    }

    #[test]
    fn stored_candidates_with_missing_fields_load_and_unknown_fields_do_not() {
        assert_eq!(
            serde_json::from_str::<Candidate>("{}").expect("empty"),
            Candidate::default()
        );
        assert!(serde_json::from_str::<Candidate>(r#"{"matrx":{}}"#).is_err());
        assert!(serde_json::from_str::<Candidate>(r#"{"ports":{"web":"0"}}"#).is_err());
        assert!(serde_json::from_str::<Candidate>(r#"{"ports":{"telnet":"23"}}"#).is_err());
    }
}
