//! The services × NICs matrix.
//!
//! Two modes:
//! - **factory** — the state of a new appliance, as the source document
//!   says: every service on every NIC, including NICs that appear later;
//! - **explicit** — after the first edit or Update. The matrix remembers the
//!   NICs the administrator has seen (`known_nics`); a NIC that shows up
//!   afterwards is *new* and gets no service until it is assigned one.
//!
//! A cell that names a NIC which has since disappeared stays in the matrix
//! (so the NIC gets its services back if it returns) and is reported by
//! validation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog::ServiceId;
use crate::nic::{Facts, NicName};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Matrix {
    #[default]
    Factory,
    Explicit {
        known_nics: BTreeSet<NicName>,
        cells: BTreeMap<ServiceId, BTreeSet<NicName>>,
    },
}

/// The matrix made concrete for a given set of facts: for every service of
/// the catalog (always every key), the NICs it is reachable on.
///
/// Stored in every revision's plan. A stored matrix that lacks a service
/// (written before that service was in the catalog, or edited by hand)
/// reads back with that service on no NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ResolvedMatrix(BTreeMap<ServiceId, BTreeSet<NicName>>);

impl<'de> Deserialize<'de> for ResolvedMatrix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cells = BTreeMap::<ServiceId, BTreeSet<NicName>>::deserialize(deserializer)?;
        let mut resolved = ResolvedMatrix::empty();
        resolved.0.extend(cells);
        Ok(resolved)
    }
}

/// The NICs of a service the matrix does not name.
static NO_NIC: BTreeSet<NicName> = BTreeSet::new();

impl ResolvedMatrix {
    pub fn empty() -> Self {
        ResolvedMatrix(ServiceId::all().map(|s| (s, BTreeSet::new())).collect())
    }

    pub fn nics_of(&self, service: ServiceId) -> &BTreeSet<NicName> {
        self.0.get(&service).unwrap_or(&NO_NIC)
    }

    pub fn allows(&self, service: ServiceId, nic: &NicName) -> bool {
        self.nics_of(service).contains(nic)
    }

    /// Every (service, NIC) cell that is allowed, in catalog then name order.
    pub fn cells(&self) -> impl Iterator<Item = (ServiceId, &NicName)> {
        self.0
            .iter()
            .flat_map(|(s, nics)| nics.iter().map(move |n| (*s, n)))
    }

    /// Every NIC named in some cell.
    pub fn nics(&self) -> BTreeSet<&NicName> {
        self.0.values().flatten().collect()
    }

    fn insert(&mut self, service: ServiceId, nic: NicName) {
        self.0.entry(service).or_default().insert(nic);
    }
}

/// An edit of the matrix that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("unknown NIC {0}: it is not on the system and not in the matrix")]
    UnknownNic(NicName),
    #[error("the internal and the external NIC must differ (both are {0})")]
    SameNic(NicName),
}

impl Matrix {
    /// The services on each NIC for these facts.
    pub fn resolve(&self, facts: &Facts) -> ResolvedMatrix {
        let mut resolved = ResolvedMatrix::empty();
        match self {
            Matrix::Factory => {
                for service in ServiceId::all() {
                    for nic in facts.names() {
                        resolved.insert(service, nic.clone());
                    }
                }
            }
            Matrix::Explicit { cells, .. } => {
                for (service, nics) in cells {
                    for nic in nics {
                        resolved.insert(*service, nic.clone());
                    }
                }
            }
        }
        resolved
    }

    pub fn is_factory(&self) -> bool {
        matches!(self, Matrix::Factory)
    }

    /// NICs on the system that the administrator has not seen yet (always
    /// empty in factory mode, where every NIC gets every service).
    pub fn new_nics<'f>(&self, facts: &'f Facts) -> Vec<&'f NicName> {
        match self {
            Matrix::Factory => Vec::new(),
            Matrix::Explicit { known_nics, .. } => {
                facts.names().filter(|n| !known_nics.contains(*n)).collect()
            }
        }
    }

    /// Turn factory mode into the explicit matrix it stands for, and mark
    /// every NIC now on the system as known. Called on every Update: the
    /// administrator saw the new NICs listed before pressing it.
    pub fn settle(&mut self, facts: &Facts) {
        if self.is_factory() {
            let resolved = self.resolve(facts);
            *self = Matrix::Explicit {
                known_nics: BTreeSet::new(),
                cells: resolved.0,
            };
        }
        if let Matrix::Explicit { known_nics, .. } = self {
            known_nics.extend(facts.names().cloned());
        }
    }

    fn known(&self, nic: &NicName, facts: &Facts) -> bool {
        facts.nic(nic).is_some()
            || matches!(self, Matrix::Explicit { known_nics, .. } if known_nics.contains(nic))
    }

    /// Allow or deny `service` on `nic`. Returns whether anything changed.
    pub fn set(
        &mut self,
        service: ServiceId,
        nic: &NicName,
        allowed: bool,
        facts: &Facts,
    ) -> Result<bool, MatrixError> {
        if !self.known(nic, facts) {
            return Err(MatrixError::UnknownNic(nic.clone()));
        }
        let is_new = self.new_nics(facts).contains(&nic);
        if !is_new && self.resolve(facts).allows(service, nic) == allowed {
            return Ok(false);
        }
        let before = self.clone();
        self.settle_nic_set(facts);
        let Matrix::Explicit { known_nics, cells } = self else {
            unreachable!("settled above")
        };
        known_nics.insert(nic.clone());
        let nics = cells.entry(service).or_default();
        if allowed {
            nics.insert(nic.clone());
        } else {
            nics.remove(nic);
        }
        Ok(*self != before)
    }

    /// Materialize factory mode without acknowledging new NICs.
    fn settle_nic_set(&mut self, facts: &Facts) {
        if self.is_factory() {
            let resolved = self.resolve(facts);
            *self = Matrix::Explicit {
                known_nics: facts.names().cloned().collect(),
                cells: resolved.0,
            };
        }
    }

    /// The suggested production layout (section 2.9 of the admin manual):
    /// console, SSH, SQL, NRPE and SIP/UDP (legacy PBX trunks) on the
    /// internal NIC; SIP/TLS, web services and RTP media on the external
    /// one; the metrics internal; nothing anywhere else (the http-01 port
    /// is the administrator's to open).
    pub fn production(
        &self,
        internal: &NicName,
        external: &NicName,
        facts: &Facts,
    ) -> Result<Matrix, MatrixError> {
        for nic in [internal, external] {
            if !self.known(nic, facts) {
                return Err(MatrixError::UnknownNic(nic.clone()));
            }
        }
        if internal == external {
            return Err(MatrixError::SameNic(internal.clone()));
        }
        let mut known_nics: BTreeSet<NicName> = facts.names().cloned().collect();
        if let Matrix::Explicit {
            known_nics: old, ..
        } = self
        {
            known_nics.extend(old.iter().cloned());
        }
        let cells = ServiceId::all()
            .map(|service| {
                let nics = match service {
                    ServiceId::Console
                    | ServiceId::Ssh
                    | ServiceId::Sql
                    | ServiceId::Nrpe
                    | ServiceId::Metrics
                    | ServiceId::SipUdp => BTreeSet::from([internal.clone()]),
                    ServiceId::SipTls | ServiceId::Web | ServiceId::Rtp => {
                        BTreeSet::from([external.clone()])
                    }
                    // Opened by the administrator who wants http-01.
                    ServiceId::Http => BTreeSet::new(),
                };
                (service, nics)
            })
            .collect();
        Ok(Matrix::Explicit { known_nics, cells })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{facts, name, nic};

    fn lan_wan() -> Facts {
        facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))])
    }

    #[test]
    fn factory_default_is_every_service_on_every_nic_even_late_ones() {
        let m = Matrix::Factory;
        let mut f = lan_wan();
        assert_eq!(m.resolve(&f).cells().count(), 20, "10 services x 2 NICs");
        f.nics.push(nic("dmz0", None));
        let r = m.resolve(&f);
        assert!(ServiceId::all().all(|s| r.allows(s, &name("dmz0"))));
        assert!(m.new_nics(&f).is_empty());
    }

    #[test]
    fn a_nic_that_appears_after_the_first_update_gets_nothing_and_is_new() {
        let mut m = Matrix::Factory;
        let mut f = lan_wan();
        m.settle(&f);
        f.nics.push(nic("dmz0", None));
        let r = m.resolve(&f);
        assert!(r.nics_of(ServiceId::Ssh).contains(&name("lan0")));
        assert!(!r.nics().contains(&name("dmz0")));
        assert_eq!(m.new_nics(&f), [&name("dmz0")]);
        m.set(ServiceId::Rtp, &name("dmz0"), true, &f)
            .expect("known now");
        assert!(m.new_nics(&f).is_empty());
        assert!(m.resolve(&f).allows(ServiceId::Rtp, &name("dmz0")));
    }

    #[test]
    fn editing_the_factory_matrix_keeps_everything_else() {
        let mut m = Matrix::Factory;
        let f = lan_wan();
        assert_eq!(m.set(ServiceId::Ssh, &name("wan0"), false, &f), Ok(true));
        assert_eq!(m.set(ServiceId::Ssh, &name("wan0"), false, &f), Ok(false));
        let mut untouched = Matrix::Factory;
        assert_eq!(
            untouched.set(ServiceId::Ssh, &name("wan0"), true, &f),
            Ok(false)
        );
        assert!(
            untouched.is_factory(),
            "a no-op edit leaves factory mode alone"
        );
        let r = m.resolve(&f);
        assert_eq!(r.cells().count(), 19);
        assert!(!r.allows(ServiceId::Ssh, &name("wan0")));
    }

    #[test]
    fn unknown_nics_are_refused_and_change_nothing() {
        let mut m = Matrix::Factory;
        let f = lan_wan();
        assert_eq!(
            m.set(ServiceId::Ssh, &name("eth9"), true, &f),
            Err(MatrixError::UnknownNic(name("eth9")))
        );
        assert_eq!(m, Matrix::Factory);
        assert!(m.production(&name("lan0"), &name("eth9"), &f).is_err());
        assert!(matches!(
            m.production(&name("lan0"), &name("lan0"), &f),
            Err(MatrixError::SameNic(_))
        ));
    }

    #[test]
    fn a_gone_nic_can_still_be_edited_because_it_is_known() {
        let mut m = Matrix::Factory;
        let mut f = lan_wan();
        m.settle(&f);
        f.nics.retain(|n| n.name.as_str() != "wan0");
        assert_eq!(m.set(ServiceId::Web, &name("wan0"), false, &f), Ok(true));
    }

    #[test]
    fn production_layout_matches_the_manual() {
        let f = facts(&[
            ("lan0", Some("192.0.2.1")),
            ("wan0", Some("198.51.100.1")),
            ("dmz0", None),
        ]);
        let m = Matrix::Factory
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        let r = m.resolve(&f);
        let on = |s| r.nics_of(s).iter().map(NicName::as_str).collect::<Vec<_>>();
        for s in [
            ServiceId::Console,
            ServiceId::Ssh,
            ServiceId::Sql,
            ServiceId::Nrpe,
            ServiceId::Metrics,
            ServiceId::SipUdp,
        ] {
            assert_eq!(on(s), ["lan0"], "{s}");
        }
        for s in [ServiceId::SipTls, ServiceId::Web, ServiceId::Rtp] {
            assert_eq!(on(s), ["wan0"], "{s}");
        }
        assert!(on(ServiceId::Http).is_empty(), "http-01 is opened by hand");
        assert!(
            m.new_nics(&f).is_empty(),
            "dmz0 was seen when the preset was chosen"
        );
    }

    #[test]
    fn a_stored_resolved_matrix_without_a_service_reads_as_that_service_on_no_nic() {
        let stored = r#"{"sql":["lan0"],"console":["lan0"],"ssh":["lan0"],"sip-tls":["wan0"],
                         "sip-udp":["lan0"],"nrpe":["lan0"],"web":["wan0"]}"#;
        let m: ResolvedMatrix = serde_json::from_str(stored).expect("reads");
        assert!(m.nics_of(ServiceId::Rtp).is_empty());
        assert!(!m.allows(ServiceId::Rtp, &name("wan0")));
        assert!(m.allows(ServiceId::Web, &name("wan0")));
        assert_eq!(m.cells().count(), 7);
        let written = serde_json::to_value(&m).expect("json");
        assert_eq!(written["rtp"], serde_json::json!([]), "written whole again");
        assert_eq!(
            serde_json::from_str::<ResolvedMatrix>("{}").expect("empty"),
            ResolvedMatrix::empty()
        );
    }

    #[test]
    fn the_stored_form_is_stable() {
        let f = lan_wan();
        let mut m = Matrix::Factory;
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            r#"{"mode":"factory"}"#
        );
        m.set(ServiceId::Rtp, &name("lan0"), false, &f)
            .expect("edit");
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["mode"], "explicit");
        assert_eq!(json["cells"]["rtp"], serde_json::json!(["wan0"]));
        assert_eq!(serde_json::from_value::<Matrix>(json).expect("back"), m);
    }
}
