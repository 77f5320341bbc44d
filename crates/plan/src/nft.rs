//! The nftables renderer.
//!
//! The matrix becomes, per service that answers somewhere, a set of the
//! NICs where it answers and one rule `iifname @nics_SERVICE PROTO dport
//! PORTS accept`: at most eight rules and hash lookups per packet, for 2
//! NICs or 500. (One set keyed by `iifname . l4proto . dport` with
//! intervals did the same with one lookup, but the kernel's interval sets
//! for concatenations made every transaction about twice as slow at 256
//! NICs: see the benchmark.) The table's comment carries the script's
//! [`marker`].
//! Around it, the appliance policy: inbound default drop; established and
//! related traffic, loopback, the ICMP/ICMPv6 that IP needs (neighbour
//! discovery, path MTU, errors, ping) and DHCP replies are allowed; a packet
//! whose destination address is not local to the NIC it arrived on is
//! dropped (without that, a LAN host could reach the services of the WAN
//! address through the LAN NIC).
//!
//! The script is one transaction that replaces switchboard's own table
//! (`inet switchboard`) and touches no other. nft 1.0.6 has no
//! `destroy table`, so the table is declared (a no-op if it exists), deleted
//! and declared again, all in the same file: `nft -f` applies the file
//! atomically or not at all.

use std::fmt::Write as _;

use switchboard_domain::{Candidate, ResolvedMatrix, ServiceId, Transport};

/// The name of switchboard's table (family `inet`).
pub const TABLE: &str = "switchboard";

/// The table comment that names a rendering: `switchboard plan <digest>`,
/// where the digest is FNV-1a (64 bits) of the script without this line.
/// Reading it back from the kernel proves that the table loaded is this
/// plan's, without listing thousands of elements.
pub fn marker(script: &str) -> Option<&str> {
    script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(MARKER_PREFIX))
}

const MARKER_PREFIX: &str = "comment \"switchboard plan ";

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Render the complete script for this matrix and these ports.
pub fn render(candidate: &Candidate, matrix: &ResolvedMatrix) -> String {
    let body = render_body(candidate, matrix);
    let digest = fnv1a64(&body);
    let head = format!("table inet {TABLE} {{\n");
    body.replacen(
        &head,
        &format!("{head}\t{MARKER_PREFIX}{digest:016x}\"\n"),
        1,
    )
}

/// The set of the NICs where `service` answers. Service ids are
/// `[a-z-]`; set names take no `-`.
fn set_name(service: ServiceId) -> String {
    format!("nics_{}", service.to_string().replace('-', "_"))
}

/// The NICs a script written by [`render`] lets `service` answer on, as
/// written (empty when it answers nowhere): what `firewall show` and the
/// tests read back.
pub fn allowed_nics(script: &str, service: ServiceId) -> Vec<String> {
    let head = format!("\tset {} {{", set_name(service));
    script
        .lines()
        .skip_while(|l| *l != head)
        .take_while(|l| *l != "\t}")
        .filter_map(|l| l.trim().strip_prefix('"')?.strip_suffix("\","))
        .map(str::to_owned)
        .collect()
}

/// The set of the banned IPv4 addresses.
pub const BANNED_V4: &str = "banned_v4";
/// The set of the banned IPv6 addresses.
pub const BANNED_V6: &str = "banned_v6";

/// The services a banned address cannot reach: the SIP edge and the web
/// services phones use. Not the console nor SSH: a UDP source address can
/// be forged, and a forged flood must not lock the administrator out.
pub const BANNED_FROM: [ServiceId; 3] = [ServiceId::SipTls, ServiceId::SipUdp, ServiceId::Web];

/// The drop rules of the banned addresses, first in the input chain (before
/// the established connections are accepted: a ban cuts them too). None when
/// the policy is off; the sets stay, so that turning it on again keeps them.
fn ban_rules(candidate: &Candidate) -> String {
    let mut out = String::new();
    if !candidate.bans.enabled {
        return out;
    }
    for service in BANNED_FROM {
        let proto = match service.info().transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        let ports = candidate.port(service);
        for (family, set) in [("ip", BANNED_V4), ("ip6", BANNED_V6)] {
            let _ = writeln!(
                out,
                "\t\t{family} saddr @{set} {proto} dport {ports} counter drop comment \"banned: {service}\""
            );
        }
    }
    out
}

fn render_body(candidate: &Candidate, matrix: &ResolvedMatrix) -> String {
    let (mut sets, mut rules) = (String::new(), String::new());
    for service in ServiceId::all() {
        let nics = matrix.nics_of(service);
        if nics.is_empty() {
            continue;
        }
        let proto = match service.info().transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        let ports = candidate.port(service);
        let set = set_name(service);
        let _ = writeln!(
            sets,
            "\t# The NICs where {service} answers.\n\tset {set} {{\n\t\ttype ifname\n\t\telements = {{"
        );
        for nic in nics {
            // NicName admits only [A-Za-z0-9_.-]: nothing to escape.
            let _ = writeln!(sets, "\t\t\t\"{nic}\",");
        }
        sets.push_str("\t\t}\n\t}\n\n");
        let _ = writeln!(
            rules,
            "\t\tiifname @{set} {proto} dport {ports} accept comment \"{service}\""
        );
    }
    if rules.is_empty() {
        rules.push_str("\t\t# no cell of the matrix is allowed\n");
    }
    let bans = ban_rules(candidate);

    format!(
        "\
#!/usr/sbin/nft -f
# Generated by switchboard from the services x NICs matrix. Do not edit:
# every Update replaces this table whole, in one transaction.
table inet {TABLE}
delete table inet {TABLE}
table inet {TABLE} {{
{sets}\t# Addresses banned by the SIP edge: the daemon adds them with a
\t# timeout (no new revision), and an Update keeps them.
\tset {BANNED_V4} {{
\t\ttype ipv4_addr
\t\tflags timeout
\t}}

\tset {BANNED_V6} {{
\t\ttype ipv6_addr
\t\tflags timeout
\t}}

\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
{bans}\t\tct state established,related accept
\t\tct state invalid drop
\t\tiif \"lo\" accept
\t\ticmp type {{ echo-request, destination-unreachable, time-exceeded, parameter-problem }} accept
\t\ticmpv6 type {{ echo-request, destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-query }} accept
\t\tudp sport 67 udp dport 68 accept comment \"DHCPv4 replies\"
\t\tudp sport 547 udp dport 546 accept comment \"DHCPv6 replies\"
\t\tfib daddr . iif type != {{ local, broadcast, multicast }} drop comment \"destination not local to the arrival NIC\"
{rules}\t}}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use expect_test::{ExpectFile, expect_file};
    use switchboard_domain::testing::{facts, name};
    use switchboard_domain::{Facts, Matrix};

    use super::*;

    /// Render, compare with the golden file, and check the invariants every
    /// rendering must keep whatever the golden file says.
    fn check(candidate: &Candidate, facts: &Facts, expect: ExpectFile) {
        let matrix = candidate.matrix.resolve(facts);
        let text = render(candidate, &matrix);
        expect.assert_eq(&text);
        assert!(text.starts_with("#!/usr/sbin/nft -f\n"));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("table ") || l.starts_with("delete "))
                .count(),
            3,
            "declare, delete, redeclare — and no other table"
        );
        let mark = marker(&text).expect("every rendering carries its marker");
        let without: String = text
            .lines()
            .filter(|l| l.trim() != mark)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            mark,
            format!("comment \"switchboard plan {:016x}\"", fnv1a64(&without))
        );
        let element_lines = text.lines().filter(|l| l.trim_end().ends_with(',')).count();
        assert_eq!(
            element_lines,
            matrix.cells().count(),
            "one element per allowed cell"
        );
        let services = ServiceId::all()
            .filter(|s| !matrix.nics_of(*s).is_empty())
            .count();
        assert_eq!(
            text.lines().filter(|l| l.contains(" @nics_")).count(),
            services,
            "one rule per service that answers somewhere"
        );
    }

    #[test]
    fn factory_default() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        check(
            &Candidate::default(),
            &f,
            expect_file!["../test_data/factory.nft"],
        );
    }

    #[test]
    fn production_preset_with_an_unconfigured_dmz() {
        let f = facts(&[
            ("lan0", Some("192.0.2.1")),
            ("wan0", Some("198.51.100.1")),
            ("dmz0", None),
        ]);
        let mut c = Candidate::default();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        check(&c, &f, expect_file!["../test_data/production.nft"]);
    }

    #[test]
    fn nic_without_address_and_custom_ports() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("dmz0", None)]);
        let mut c = Candidate::default();
        c.matrix.settle(&f);
        c.matrix
            .set(ServiceId::Sql, &name("dmz0"), false, &f)
            .expect("edit");
        c.set_port(ServiceId::Console, "4443".parse().expect("port"));
        c.set_port(ServiceId::Rtp, "30000-30999".parse().expect("port"));
        check(&c, &f, expect_file!["../test_data/no-address.nft"]);
    }

    #[test]
    fn empty_matrix_renders_no_set_and_no_rule() {
        let f = facts(&[("lan0", Some("192.0.2.1"))]);
        let c = Candidate {
            matrix: Matrix::Explicit {
                known_nics: BTreeSet::from([name("lan0")]),
                cells: Default::default(),
            },
            ..Candidate::default()
        };
        check(&c, &f, expect_file!["../test_data/empty.nft"]);
    }

    #[test]
    fn banned_addresses_are_dropped_first_on_the_sip_edge_and_web_only() {
        let f = facts(&[("lan0", Some("192.0.2.1"))]);
        let mut c = Candidate::default();
        c.set_port(ServiceId::Web, "8444".parse().expect("port"));
        let text = render(&c, &c.matrix.resolve(&f));
        let chain: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("chain input"))
            .skip(2)
            .take(7)
            .collect();
        assert!(
            chain[..6].iter().all(|l| l.contains("saddr @banned_v")),
            "{chain:?}"
        );
        assert!(
            chain[6].contains("ct state established"),
            "bans come before established"
        );
        assert!(
            text.contains(
                "ip saddr @banned_v4 tcp dport 8444 counter drop comment \"banned: web\""
            )
        );
        assert!(
            !text.contains("dport 22 drop") && !text.contains("dport 8443 drop"),
            "never ssh nor the console"
        );
        c.bans.enabled = false;
        let off = render(&c, &c.matrix.resolve(&f));
        assert!(!off.contains("@banned_v"), "no drop rule");
        assert!(
            off.contains("set banned_v4 {") && off.contains("set banned_v6 {"),
            "the sets stay"
        );
    }

    #[test]
    fn the_allowed_nics_read_back_from_a_rendering() {
        let f = facts(&[
            ("lan0", Some("192.0.2.1")),
            ("wan0", Some("198.51.100.1")),
            ("dmz0", None),
        ]);
        let mut c = Candidate::default();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        let matrix = c.matrix.resolve(&f);
        let text = render(&c, &matrix);
        for service in ServiceId::all() {
            let want: Vec<String> = matrix
                .nics_of(service)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(allowed_nics(&text, service), want, "{service}");
        }
        assert_eq!(allowed_nics(&text, ServiceId::Ssh), ["lan0"]);
        assert!(allowed_nics("", ServiceId::Ssh).is_empty());
    }

    #[test]
    fn the_marker_changes_with_any_cell() {
        let f = facts(&[("lan0", Some("192.0.2.1")), ("wan0", Some("198.51.100.1"))]);
        let mut c = Candidate::default();
        let a = render(&c, &c.matrix.resolve(&f));
        c.matrix
            .set(ServiceId::Rtp, &name("wan0"), false, &f)
            .expect("edit");
        let b = render(&c, &c.matrix.resolve(&f));
        assert_ne!(marker(&a), marker(&b));
        assert_eq!(
            marker(&a),
            marker(&render(
                &Candidate::default(),
                &Candidate::default().matrix.resolve(&f)
            ))
        );
    }

    #[test]
    fn sixty_four_nics() {
        let names: Vec<String> = (0..64).map(|i| format!("eth{i}")).collect();
        let addrs: Vec<String> = (0..64).map(|i| format!("192.0.2.{}", i + 1)).collect();
        let nics: Vec<(&str, Option<&str>)> = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| (n.as_str(), Some(a.as_str())))
            .collect();
        let f = facts(&nics);
        let mut c = Candidate::default();
        c.matrix = c
            .matrix
            .production(&name("eth0"), &name("eth1"), &f)
            .expect("preset");
        for nic in &names[2..] {
            c.matrix
                .set(ServiceId::Web, &name(nic), true, &f)
                .expect("edit");
            c.matrix
                .set(ServiceId::SipTls, &name(nic), true, &f)
                .expect("edit");
        }
        check(&c, &f, expect_file!["../test_data/64-nics.nft"]);
    }
}
