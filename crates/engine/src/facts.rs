//! From what the kernel reports to the domain's facts.

use switchboard_domain::nic::{Nic, NicAddr};
use switchboard_domain::{Facts, NicName};
use switchboard_system::nics::KernelNic;

/// Loopback is left out (it is always allowed and never in the matrix);
/// interfaces whose names switchboard cannot manage are listed apart.
pub fn facts_from_kernel(kernel: Vec<KernelNic>) -> Facts {
    let mut facts = Facts::default();
    for k in kernel.into_iter().filter(|k| !k.loopback) {
        match k.name.parse::<NicName>() {
            Ok(name) => facts.nics.push(Nic {
                name,
                index: k.index,
                mac: k.mac,
                up: k.up,
                running: k.running,
                addrs: k
                    .addrs
                    .into_iter()
                    .map(|a| NicAddr {
                        addr: a.addr,
                        prefix_len: a.prefix_len,
                    })
                    .collect(),
            }),
            Err(_) => facts.unsupported_nics.push(k.name),
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use switchboard_system::nics::KernelAddr;

    use super::*;

    #[test]
    fn loopback_is_left_out_and_odd_names_are_set_apart() {
        let k = |index, name: &str, loopback| KernelNic {
            index,
            name: name.into(),
            mac: None,
            up: true,
            running: true,
            loopback,
            addrs: vec![KernelAddr {
                addr: "192.0.2.1".parse().expect("ip"),
                prefix_len: 24,
            }],
        };
        let f = facts_from_kernel(vec![
            k(1, "lo", true),
            k(2, "lan0", false),
            k(3, "we\"ird", false),
        ]);
        assert_eq!(f.nics.len(), 1);
        assert_eq!(f.nics[0].name.as_str(), "lan0");
        assert_eq!(f.nics[0].addrs[0].to_string(), "192.0.2.1/24");
        assert_eq!(f.unsupported_nics, ["we\"ird"]);
    }
}
