//! The certificate tables of the built-in HTTPS listeners (`console`,
//! `web`), kept in step with the running revision: the certificate bound
//! for each NIC is presented on every address of that NIC, the service's
//! default everywhere else. Swapped atomically: no listener restarts,
//! established connections keep their certificate.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchboard_domain::{CertName, Facts, ServiceId};
use switchboard_pki::{CertBindings, CertTable, TlsIdentity};
use switchboard_plan::Plan;
use switchboard_store::Store;

use crate::{EngineError, Result};

/// The tables the listeners read, one per built-in HTTPS service.
#[derive(Debug)]
pub struct TlsTables {
    pub console: Arc<CertTable>,
    pub web: Arc<CertTable>,
}

impl TlsTables {
    pub(crate) fn new() -> TlsTables {
        let empty = || {
            Arc::new(CertTable::new(
                vec![b"http/1.1".to_vec()],
                CertBindings::new(),
            ))
        };
        TlsTables {
            console: empty(),
            web: empty(),
        }
    }

    /// Present what `plan`'s TLS table says, on the addresses the NICs
    /// have now: check (every certificate loads, with its key), swap, and
    /// verify (each address's table presents the planned fingerprint).
    pub(crate) fn install(&self, plan: &Plan, facts: &Facts, store: &Store) -> Result<String> {
        let mut identities: BTreeMap<CertName, TlsIdentity> = BTreeMap::new();
        let mut identity = |name: &CertName| -> Result<TlsIdentity> {
            if let Some(id) = identities.get(name) {
                return Ok(id.clone());
            }
            let stored = store
                .cert(name)?
                .ok_or_else(|| EngineError::NoSuchCert(name.clone()))?;
            let key = stored.key.as_ref().map(|k| k.expose_secret().as_bytes());
            let bundle = switchboard_pki::import(stored.chain_pem.as_bytes(), key, None)?;
            let id = TlsIdentity::new(&bundle).map_err(|e| EngineError::CertUnbindable {
                name: name.clone(),
                why: e.to_string(),
            })?;
            identities.insert(name.clone(), id.clone());
            Ok(id)
        };
        // Check: build every table before swapping any.
        let mut tables = Vec::new();
        let mut expected: Vec<(ServiceId, std::net::IpAddr, String)> = Vec::new();
        for (service, table) in [
            (ServiceId::Console, &self.console),
            (ServiceId::Web, &self.web),
        ] {
            let mut b = CertBindings::new();
            if let Some(default) = plan.tls_defaults.get(&service) {
                b.set_default(identity(&default.cert)?);
            }
            for a in plan.tls.iter().filter(|a| a.service == service) {
                let id = identity(&a.cert.cert)?;
                for addr in facts.nic(&a.nic).into_iter().flat_map(|n| &n.addrs) {
                    b.bind(addr.addr, id.clone());
                    expected.push((service, addr.addr, a.cert.fingerprint.clone()));
                }
            }
            tables.push((table, b));
        }
        for (table, bindings) in tables {
            table.swap(bindings);
        }
        for (service, addr, want) in &expected {
            let table = match service {
                ServiceId::Console => &self.console,
                _ => &self.web,
            };
            let presented = table.presented(*addr);
            if !presented.iter().any(|f| f.to_string() == *want) {
                return Err(EngineError::System(format!(
                    "verification failed: {service} on {addr} presents {presented:?}, not the planned {want}"
                )));
            }
        }
        Ok(format!(
            "TLS tables swapped and verified ({} address binding(s))",
            expected.len()
        ))
    }
}
