//! A picture of the appliance for the console: an SVG map of the NICs,
//! the services exposed on each, and the padlock of each TLS binding — the
//! matrix at a glance.
//!
//! The appliance is a box with one card per NIC (in the order given): its
//! name, its addresses (or a visible "no address" mark), `new`/`gone`
//! badges, then one row per service the NIC exposes, with its transport and
//! port. A TLS service has a padlock: closed (green) when the padlock check
//! found no error, open (red) otherwise, a grey question mark when it was
//! not checked; its `<title>` (the tooltip) names the certificate, the host
//! checked and the first finding. A cell that an Update would change is
//! dashed and marked "pending Update": `+` enabled in the candidate but not
//! applied (everything, on an appliance where nothing was applied yet), `−`
//! applied but removed from the candidate (struck through: still reachable
//! until the Update).
//!
//! **Output.** One self-contained `<svg>` element to embed in a page under
//! a strict CSP: no script, no `style`, no external reference, no event
//! handler; presentation attributes only. `role="img"` with an `aria-label`
//! summing the picture up. Every text that comes from the input is
//! XML-escaped (control characters, which XML cannot carry, become U+FFFD).
//!
//! **Limits.** A pure function of the views (no I/O): widths are estimated
//! from character counts, so long names and addresses are clipped with `…`
//! (the full text in a `<title>`), and a NIC shows at most
//! [`MAX_ADDRESSES`] addresses. The width grows with the NIC count: a page
//! with many NICs scrolls or scales it (the `viewBox` allows either).

use std::fmt::Write as _;

use switchboard_engine::views::{NicState, NicView, PadlockView, ServiceView};

/// Addresses listed per NIC; the others are counted ("+2 more").
pub const MAX_ADDRESSES: usize = 4;

const MARGIN: u32 = 8;
const PAD: u32 = 16;
const TITLE_H: u32 = 40;
const CARD_W: u32 = 300;
const GAP: u32 = 16;
const NAME_H: u32 = 34;
const LINE_H: u32 = 16;
const ROW_H: u32 = 24;
const LEGEND_H: u32 = 34;

const INK: &str = "#1f2328";
const MUTED: &str = "#656d76";
const FRAME: &str = "#8c959f";
const CLOSED: &str = "#1a7f37";
const OPEN: &str = "#cf222e";
const PENDING: &str = "#9a6700";

/// Text for an XML attribute or element: escaped, and without the control
/// characters XML 1.0 cannot carry.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters, with `…` when cut.
fn clip(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        (text.to_owned(), false)
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        (s, true)
    }
}

/// A `<text>` element of input text, clipped to `max` characters; a
/// clipped text gets its whole value as a `<title>`.
fn text_el(out: &mut String, attrs: &str, text: &str, max: usize) {
    let (shown, clipped) = clip(text, max);
    if clipped {
        let _ = write!(
            out,
            "<g><title>{}</title><text {attrs}>{}</text></g>",
            esc(text),
            esc(&shown)
        );
    } else {
        let _ = write!(out, "<text {attrs}>{}</text>", esc(&shown));
    }
}

/// Whether a cell is on, and whether an Update would change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exposure {
    /// In the candidate and in the applied revision.
    Applied,
    /// In the candidate, not applied yet.
    Adding,
    /// Applied, removed from the candidate.
    Removing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    Closed,
    Open,
    Unchecked,
}

struct Row<'a> {
    service: &'a ServiceView,
    exposure: Exposure,
    /// For a TLS service enabled in the candidate.
    padlock: Option<(Lock, Option<&'a PadlockView>)>,
}

fn rows<'a>(
    nic: &NicView,
    services: &'a [ServiceView],
    padlocks: &'a [PadlockView],
) -> Vec<Row<'a>> {
    services
        .iter()
        .filter_map(|s| {
            let candidate = s.nics.contains(&nic.name) || nic.services.contains(&s.id);
            let applied = s
                .applied_nics
                .as_ref()
                .is_some_and(|a| a.contains(&nic.name));
            let exposure = match (candidate, applied) {
                (true, true) => Exposure::Applied,
                (true, false) => Exposure::Adding,
                (false, true) => Exposure::Removing,
                (false, false) => return None,
            };
            let padlock = (s.tls && candidate).then(|| {
                let p = padlocks
                    .iter()
                    .find(|p| p.service == s.id && p.nic == nic.name);
                let lock = match p {
                    None => Lock::Unchecked,
                    Some(p) if p.ok => Lock::Closed,
                    Some(_) => Lock::Open,
                };
                (lock, p)
            });
            Some(Row {
                service: s,
                exposure,
                padlock,
            })
        })
        .collect()
}

/// The padlock's tooltip: the certificate, the host checked, the first finding.
fn padlock_title(service: &ServiceView, nic: &str, lock: Lock, p: Option<&PadlockView>) -> String {
    let state = match lock {
        Lock::Closed => "closed",
        Lock::Open => "open",
        Lock::Unchecked => "not checked",
    };
    let mut t = format!("Padlock {state}: {} on {nic}", service.id);
    if let Some(p) = p {
        match &p.cert {
            Some(cert) => {
                let _ = write!(t, "; certificate {cert}");
            }
            None => t.push_str("; no certificate bound"),
        }
        if let Some(host) = &p.host {
            let _ = write!(t, " for {host}");
        }
        match p.findings.first() {
            Some(f) => {
                let _ = write!(t, "; {}", f.message);
                if p.findings.len() > 1 {
                    let _ = write!(t, " (and {} more)", p.findings.len() - 1);
                }
            }
            None => t.push_str("; no finding"),
        }
    } else {
        t.push_str("; run the padlock check");
    }
    t
}

/// A padlock glyph, 14×16, at (`x`, `y`).
fn padlock_glyph(out: &mut String, x: u32, y: u32, lock: Lock, title: &str) {
    let (class, colour, shackle) = match lock {
        Lock::Closed => ("closed", CLOSED, "M3.5 7V4.5a3.5 3.5 0 0 1 7 0V7"),
        // The shackle lifted, its right leg out of the body.
        Lock::Open => ("open", OPEN, "M3.5 7V2.5a3.5 3.5 0 0 1 7 0V4"),
        Lock::Unchecked => ("unchecked", MUTED, "M3.5 7V4.5a3.5 3.5 0 0 1 7 0V7"),
    };
    let _ = write!(
        out,
        "<g class=\"padlock {class}\" transform=\"translate({x} {y})\"><title>{}</title>\
         <path d=\"{shackle}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\"/>\
         <rect x=\"1\" y=\"7\" width=\"12\" height=\"9\" rx=\"1.5\" fill=\"{colour}\"/>",
        esc(title)
    );
    if lock == Lock::Unchecked {
        out.push_str(
            "<text x=\"7\" y=\"14.5\" font-size=\"8\" font-weight=\"bold\" \
             text-anchor=\"middle\" fill=\"#ffffff\">?</text>",
        );
    }
    out.push_str("</g>");
}

fn card(
    out: &mut String,
    nic: &NicView,
    rows: &[Row<'_>],
    x: u32,
    y: u32,
    height: u32,
    address_lines: u32,
) {
    let state = match nic.state {
        NicState::Present => "present",
        NicState::New => "new",
        NicState::Gone => "gone",
    };
    let _ = write!(
        out,
        "<g class=\"nic nic-{state}\" transform=\"translate({x} {y})\">"
    );
    let dash = if nic.state == NicState::Gone {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    };
    let _ = write!(
        out,
        "<rect class=\"card\" width=\"{CARD_W}\" height=\"{height}\" rx=\"6\" fill=\"#ffffff\" \
         stroke=\"{FRAME}\" stroke-width=\"1.5\"{dash}/>"
    );
    let name_fill = if nic.state == NicState::Gone {
        MUTED
    } else {
        INK
    };
    text_el(
        out,
        &format!(
            "class=\"nic-name\" x=\"12\" y=\"23\" font-size=\"15\" font-weight=\"bold\" fill=\"{name_fill}\""
        ),
        &nic.name,
        if nic.state == NicState::Present {
            28
        } else {
            22
        },
    );
    if nic.state != NicState::Present {
        let (fill, tip) = match nic.state {
            NicState::New => ("#0969da", "appeared after the last Update: no service yet"),
            _ => (MUTED, "in the matrix, no longer on the system"),
        };
        let _ = write!(
            out,
            "<g class=\"badge\"><title>{tip}</title>\
             <rect x=\"{}\" y=\"9\" width=\"46\" height=\"18\" rx=\"9\" fill=\"{fill}\"/>\
             <text x=\"{}\" y=\"22\" font-size=\"11\" font-weight=\"bold\" text-anchor=\"middle\" \
             fill=\"#ffffff\">{state}</text></g>",
            CARD_W - 58,
            CARD_W - 35
        );
    }
    let mut line_y = NAME_H + 12;
    if nic.addresses.is_empty() {
        let _ = write!(
            out,
            "<g class=\"no-address\"><title>No address: a service enabled here is reachable only \
             once the NIC is configured</title><text x=\"12\" y=\"{line_y}\" font-size=\"11\" \
             font-style=\"italic\" fill=\"{PENDING}\">⚠ no address</text></g>"
        );
    } else {
        let shown = if nic.addresses.len() > MAX_ADDRESSES {
            MAX_ADDRESSES - 1
        } else {
            nic.addresses.len()
        };
        for a in &nic.addresses[..shown] {
            text_el(
                out,
                &format!(
                    "class=\"address\" x=\"12\" y=\"{line_y}\" font-size=\"11\" \
                     font-family=\"monospace\" fill=\"{MUTED}\""
                ),
                a,
                39,
            );
            line_y += LINE_H;
        }
        if shown < nic.addresses.len() {
            let rest = nic.addresses[shown..].join(", ");
            let _ = write!(
                out,
                "<g><title>{}</title><text class=\"address\" x=\"12\" y=\"{line_y}\" \
                 font-size=\"11\" fill=\"{MUTED}\">+{} more</text></g>",
                esc(&rest),
                nic.addresses.len() - shown
            );
        }
    }
    let sep = NAME_H + address_lines * LINE_H + 4;
    let _ = write!(
        out,
        "<line x1=\"0\" y1=\"{sep}\" x2=\"{CARD_W}\" y2=\"{sep}\" stroke=\"#d0d7de\"/>"
    );
    let mut row_y = sep + 6;
    if rows.is_empty() {
        let _ = write!(
            out,
            "<text class=\"no-service\" x=\"12\" y=\"{}\" font-size=\"12\" font-style=\"italic\" \
             fill=\"{MUTED}\">no service exposed</text>",
            row_y + 15
        );
    }
    for row in rows {
        let s = row.service;
        let port = format!("{}/{}", s.transport, s.ports);
        let (class, tip) = match row.exposure {
            Exposure::Applied => ("service", "exposed"),
            Exposure::Adding => (
                "service pending adding",
                "enabled in the candidate, not applied yet: pending Update",
            ),
            Exposure::Removing => (
                "service pending removing",
                "removed from the candidate, still exposed until the next Update: pending Update",
            ),
        };
        let _ = write!(
            out,
            "<g class=\"{class}\" data-service=\"{}\"><title>{} — {port} on {}: {tip}</title>",
            esc(s.id.as_str()),
            esc(&s.label),
            esc(&nic.name)
        );
        let base = row_y + 16;
        if row.exposure != Exposure::Applied {
            let _ = write!(
                out,
                "<rect x=\"4\" y=\"{row_y}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"#fff8c5\" \
                 stroke=\"{PENDING}\" stroke-dasharray=\"4 3\"/>",
                CARD_W - 8,
                ROW_H - 2
            );
        }
        let fill = if row.exposure == Exposure::Removing {
            MUTED
        } else {
            INK
        };
        let _ = write!(
            out,
            "<text x=\"30\" y=\"{base}\" font-size=\"12\" font-weight=\"bold\" fill=\"{fill}\">{}</text>\
             <text class=\"port\" x=\"88\" y=\"{base}\" font-size=\"11\" fill=\"{fill}\">{}</text>",
            esc(s.id.as_str()),
            esc(&port)
        );
        if row.exposure == Exposure::Removing {
            let _ = write!(
                out,
                "<line x1=\"28\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"{MUTED}\"/>",
                base - 4,
                // The end of the port, estimated.
                90 + 6 * port.chars().count()
            );
        }
        if row.exposure != Exposure::Applied {
            let sign = if row.exposure == Exposure::Adding {
                "+"
            } else {
                "−"
            };
            let _ = write!(
                out,
                "<text class=\"pending-mark\" x=\"{}\" y=\"{base}\" font-size=\"10\" font-style=\"italic\" \
                 text-anchor=\"end\" fill=\"{PENDING}\">{sign} pending Update</text>",
                CARD_W - 10
            );
        }
        if let Some((lock, p)) = row.padlock {
            padlock_glyph(
                out,
                9,
                row_y + 3,
                lock,
                &padlock_title(s, &nic.name, lock, p),
            );
        }
        out.push_str("</g>");
        row_y += ROW_H;
    }
    out.push_str("</g>");
}

/// The map of the appliance: `nics` as cards, `services` (catalog order)
/// as rows where the candidate or the applied revision exposes them, and
/// the `padlocks` of the TLS bindings.
pub fn render(nics: &[NicView], services: &[ServiceView], padlocks: &[PadlockView]) -> String {
    let per_nic: Vec<Vec<Row<'_>>> = nics.iter().map(|n| rows(n, services, padlocks)).collect();
    let address_lines = nics
        .iter()
        .map(|n| n.addresses.len().clamp(1, MAX_ADDRESSES))
        .max()
        .unwrap_or(1) as u32;
    let max_rows = per_nic.iter().map(Vec::len).max().unwrap_or(0).max(1) as u32;
    let card_h = NAME_H + address_lines * LINE_H + 4 + 6 + max_rows * ROW_H + 6;
    let columns = nics.len().max(1) as u32;
    let inner_w = columns * CARD_W + (columns - 1) * GAP;
    let width = 2 * MARGIN + 2 * PAD + inner_w;
    let box_h = TITLE_H + card_h + PAD;
    let height = 2 * MARGIN + box_h + LEGEND_H;

    let all: Vec<&Row<'_>> = per_nic.iter().flatten().collect();
    let exposed = all
        .iter()
        .filter(|r| r.exposure != Exposure::Removing)
        .count();
    let pending = all
        .iter()
        .filter(|r| r.exposure != Exposure::Applied)
        .count();
    let count = |lock| {
        all.iter()
            .filter(|r| r.padlock.is_some_and(|(l, _)| l == lock))
            .count()
    };
    let (closed, open) = (count(Lock::Closed), count(Lock::Open));
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let label = format!(
        "Map of the appliance: {}; {} exposed, {} pending Update; {} closed, {} open",
        plural(nics.len(), "network interface", "network interfaces"),
        plural(exposed, "service", "services"),
        plural(pending, "change", "changes"),
        plural(closed, "padlock", "padlocks"),
        open
    );

    let mut out = String::with_capacity(4096 + 2048 * nics.len());
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{label}\" \
         font-family=\"system-ui, sans-serif\" fill=\"{INK}\"><title>{label}</title>"
    );
    let _ = write!(
        out,
        "<rect class=\"appliance\" x=\"{MARGIN}\" y=\"{MARGIN}\" width=\"{}\" height=\"{box_h}\" \
         rx=\"10\" fill=\"#f6f8fa\" stroke=\"#57606a\" stroke-width=\"2\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">switchboard appliance</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>",
        width - 2 * MARGIN,
        MARGIN + PAD,
        MARGIN + 26,
        width - MARGIN - PAD,
        MARGIN + 26,
        plural(nics.len(), "NIC", "NICs")
    );
    let top = MARGIN + TITLE_H;
    if nics.is_empty() {
        let _ = write!(
            out,
            "<text class=\"no-nic\" x=\"{}\" y=\"{}\" font-size=\"13\" font-style=\"italic\" \
             fill=\"{MUTED}\">No network interface detected</text>",
            MARGIN + PAD + 12,
            top + 30
        );
    }
    for (i, (nic, rows)) in nics.iter().zip(&per_nic).enumerate() {
        let x = MARGIN + PAD + i as u32 * (CARD_W + GAP);
        card(&mut out, nic, rows, x, top, card_h, address_lines);
    }

    // The legend.
    let ly = MARGIN + box_h + 12;
    let lx = MARGIN + 4;
    out.push_str("<g class=\"legend\" font-size=\"11\">");
    padlock_glyph(
        &mut out,
        lx,
        ly,
        Lock::Closed,
        "closed padlock: the certificate passes the check",
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" fill=\"{MUTED}\">certificate OK</text>",
        lx + 20,
        ly + 13
    );
    padlock_glyph(
        &mut out,
        lx + 120,
        ly,
        Lock::Open,
        "open padlock: see the padlock check",
    );
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" fill=\"{MUTED}\">padlock open</text>\
         <rect x=\"{}\" y=\"{}\" width=\"24\" height=\"14\" rx=\"3\" fill=\"#fff8c5\" stroke=\"{PENDING}\" \
         stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{}\" fill=\"{MUTED}\">pending Update</text></g>",
        lx + 140,
        ly + 13,
        lx + 232,
        ly + 2,
        lx + 262,
        ly + 13
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use roxmltree::{Document, Node};
    use switchboard_domain::{ServiceId, Severity};
    use switchboard_engine::views::PadlockFinding;

    fn nic(name: &str, addresses: &[&str], state: NicState) -> NicView {
        NicView {
            name: name.into(),
            index: Some(2),
            mac: None,
            up: true,
            running: true,
            configured: !addresses.is_empty(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            state,
            services: vec![],
        }
    }

    fn service(id: ServiceId, nics: &[&str], applied: Option<&[&str]>) -> ServiceView {
        let info = id.info();
        ServiceView {
            id,
            label: info.label.into(),
            transport: info.transport,
            ports: info.default_ports,
            default_ports: info.default_ports,
            tls: info.tls,
            served_by: info.served_by.into(),
            nics: nics.iter().map(|n| n.to_string()).collect(),
            applied_nics: applied.map(|a| a.iter().map(|n| n.to_string()).collect()),
        }
    }

    fn padlock(service: ServiceId, nic: &str, cert: &str, findings: &[&str]) -> PadlockView {
        PadlockView {
            service,
            nic: nic.into(),
            cert: Some(cert.into()),
            host: Some("voip.example.test".into()),
            addresses: vec![],
            ok: findings.is_empty(),
            findings: findings
                .iter()
                .map(|m| PadlockFinding {
                    code: "name-mismatch".into(),
                    severity: Severity::Error,
                    message: m.to_string(),
                    hint: "bind another certificate".into(),
                })
                .collect(),
        }
    }

    fn parse(svg: &str) -> Document<'_> {
        Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"))
    }

    fn class_is(n: &Node<'_, '_>, class: &str) -> bool {
        n.attribute("class")
            .is_some_and(|c| c.split(' ').any(|c| c == class))
    }

    fn with_class<'a, 'i>(doc: &'a Document<'i>, class: &str) -> Vec<Node<'a, 'i>> {
        doc.descendants().filter(|n| class_is(n, class)).collect()
    }

    /// All the text of a node and its descendants, titles included.
    fn texts(n: Node<'_, '_>) -> String {
        n.descendants()
            .filter_map(|d| d.text())
            .collect::<Vec<_>>()
            .join("|")
    }

    fn title(n: Node<'_, '_>) -> String {
        n.children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|t| t.text())
            .unwrap_or_default()
            .to_owned()
    }

    fn attr_u32(n: Node<'_, '_>, a: &str) -> u32 {
        n.attribute(a).unwrap().parse().unwrap()
    }

    /// Nothing a CSP would block: no script, style, link or handler.
    fn assert_inert(doc: &Document<'_>) {
        for n in doc.descendants().filter(Node::is_element) {
            let name = n.tag_name().name();
            assert!(
                !["script", "style", "foreignObject", "a", "image", "use"].contains(&name),
                "<{name}>"
            );
            for a in n.attributes() {
                assert!(
                    !a.name().starts_with("on") && !["style", "href"].contains(&a.name()),
                    "attribute {}",
                    a.name()
                );
            }
        }
        let root = doc.root_element();
        assert_eq!(root.attribute("role"), Some("img"));
        assert!(root.attribute("aria-label").is_some());
    }

    #[test]
    fn no_nic() {
        let svg = render(&[], &[service(ServiceId::Ssh, &[], None)], &[]);
        let doc = parse(&svg);
        assert_inert(&doc);
        assert!(texts(doc.root_element()).contains("No network interface detected"));
        assert!(with_class(&doc, "nic").is_empty());
        assert_eq!(
            doc.root_element().attribute("aria-label").unwrap(),
            "Map of the appliance: 0 network interfaces; 0 services exposed, 0 changes pending Update; 0 padlocks closed, 0 open"
        );
    }

    #[test]
    fn one_nic_with_applied_services_and_padlocks() {
        let nics = [nic(
            "eth0",
            &["192.0.2.10/24", "2001:db8::10/64"],
            NicState::Present,
        )];
        let services = [
            service(ServiceId::Ssh, &["eth0"], Some(&["eth0"])),
            service(ServiceId::SipTls, &["eth0"], Some(&["eth0"])),
            service(ServiceId::Console, &["eth0"], Some(&["eth0"])),
            service(ServiceId::Web, &["eth0"], Some(&["eth0"])),
            service(ServiceId::Sql, &[], Some(&[])),
        ];
        let padlocks = [
            padlock(ServiceId::SipTls, "eth0", "voip-2025", &[]),
            padlock(
                ServiceId::Console,
                "eth0",
                "old-cert",
                &["the certificate has expired", "second finding"],
            ),
        ];
        let svg = render(&nics, &services, &padlocks);
        let doc = parse(&svg);
        assert_inert(&doc);
        let cards = with_class(&doc, "nic");
        assert_eq!(cards.len(), 1);
        let card = cards[0];
        assert!(class_is(&card, "nic-present"));
        let all = texts(card);
        assert!(all.contains("eth0"));
        assert!(all.contains("192.0.2.10/24") && all.contains("2001:db8::10/64"));
        assert!(!all.contains("no address"));
        // ssh, sip-tls, console, web: not sql, disabled.
        let rows = with_class(&doc, "service");
        let ids: Vec<_> = rows
            .iter()
            .map(|r| r.attribute("data-service").unwrap())
            .collect();
        assert_eq!(ids, ["ssh", "sip-tls", "console", "web"]);
        assert!(texts(rows[0]).contains("tcp/22"));
        assert!(texts(rows[1]).contains("tcp/5061"));
        assert!(with_class(&doc, "pending").is_empty());
        // Padlocks: closed for sip-tls, open for console, unchecked for web, none for ssh.
        let lock = |row: Node<'_, '_>| {
            row.descendants()
                .find(|n| class_is(n, "padlock"))
                .map(|n| (n.attribute("class").unwrap().to_owned(), title(n)))
        };
        assert_eq!(lock(rows[0]), None);
        let (class, tip) = lock(rows[1]).unwrap();
        assert_eq!(class, "padlock closed");
        assert_eq!(
            tip,
            "Padlock closed: sip-tls on eth0; certificate voip-2025 for voip.example.test; no finding"
        );
        let (class, tip) = lock(rows[2]).unwrap();
        assert_eq!(class, "padlock open");
        assert!(tip.contains("certificate old-cert"), "{tip}");
        assert!(
            tip.contains("the certificate has expired (and 1 more)"),
            "{tip}"
        );
        assert_eq!(lock(rows[3]).unwrap().0, "padlock unchecked");
        assert!(
            doc.root_element()
                .attribute("aria-label")
                .unwrap()
                .contains("1 padlock closed, 1 open")
        );
    }

    #[test]
    fn six_nics_widen_the_map_and_mark_pending_cells() {
        let names = ["eth0", "eth1", "eth2", "eth3", "wan0", "lan9"];
        let mut nics: Vec<NicView> = names
            .iter()
            .map(|n| nic(n, &["10.0.0.1/8"], NicState::Present))
            .collect();
        nics[3] = nic("eth3", &[], NicState::New);
        nics[5] = nic("lan9", &["10.9.0.1/16"], NicState::Gone);
        let services = [
            // Added to eth1 in the candidate; removed from eth2.
            service(ServiceId::Ssh, &["eth0", "eth1"], Some(&["eth0", "eth2"])),
            service(ServiceId::Rtp, &["eth0", "eth3"], Some(&["eth0"])),
            service(ServiceId::SipTls, &["lan9"], Some(&["lan9"])),
        ];
        let svg = render(&nics, &services, &[]);
        let doc = parse(&svg);
        assert_inert(&doc);
        let cards = with_class(&doc, "nic");
        assert_eq!(cards.len(), 6);
        let one = render(&nics[..1], &services, &[]);
        let one = parse(&one);
        let w6 = attr_u32(doc.root_element(), "width");
        let w1 = attr_u32(one.root_element(), "width");
        assert_eq!(w6 - w1, 5 * (CARD_W + GAP));
        assert_eq!(
            doc.root_element().attribute("viewBox").unwrap(),
            format!("0 0 {w6} {}", attr_u32(doc.root_element(), "height"))
        );
        // Every card has the same height, and they do not overlap.
        let rect_h: Vec<_> = cards
            .iter()
            .map(|c| {
                let r = c.children().find(|n| class_is(n, "card")).unwrap();
                attr_u32(r, "height")
            })
            .collect();
        assert!(rect_h.windows(2).all(|w| w[0] == w[1]));

        let row = |card: usize, service: &str| {
            cards[card]
                .descendants()
                .find(|n| n.attribute("data-service") == Some(service))
        };
        let eth1_ssh = row(1, "ssh").unwrap();
        assert!(class_is(&eth1_ssh, "adding"));
        assert!(texts(eth1_ssh).contains("+ pending Update"));
        let dashed = eth1_ssh
            .children()
            .find(|n| n.has_tag_name("rect"))
            .unwrap();
        assert_eq!(dashed.attribute("stroke-dasharray"), Some("4 3"));
        let eth2_ssh = row(2, "ssh").unwrap();
        assert!(class_is(&eth2_ssh, "removing"));
        assert!(texts(eth2_ssh).contains("− pending Update"));
        assert!(title(eth2_ssh).contains("still exposed until the next Update"));
        let eth0_ssh = row(0, "ssh").unwrap();
        assert!(!class_is(&eth0_ssh, "pending"));
        assert!(!texts(eth0_ssh).contains("pending"));
        // The new NIC without address: a badge and a visible mark.
        assert!(class_is(&cards[3], "nic-new"));
        let eth3 = texts(cards[3]);
        assert!(
            eth3.contains("⚠ no address") && eth3.contains("new"),
            "{eth3}"
        );
        assert!(class_is(&row(3, "rtp").unwrap(), "adding"));
        assert!(texts(row(3, "rtp").unwrap()).contains("udp/10000-20000"));
        // The gone NIC: dashed, badge.
        assert!(class_is(&cards[5], "nic-gone"));
        let frame = cards[5].children().find(|n| class_is(n, "card")).unwrap();
        assert_eq!(frame.attribute("stroke-dasharray"), Some("6 4"));
        assert!(texts(cards[5]).contains("gone"));
        // A card with nothing exposed says so.
        assert!(texts(cards[4]).contains("no service exposed"));
        let label = doc.root_element().attribute("aria-label").unwrap();
        assert!(
            label.starts_with("Map of the appliance: 6 network interfaces; 5 services exposed, 3 changes pending Update"),
            "{label}"
        );
    }

    #[test]
    fn nothing_applied_yet_means_everything_is_pending() {
        let nics = [nic("eth0", &["192.0.2.1/24"], NicState::Present)];
        let services = [
            service(ServiceId::Ssh, &["eth0"], None),
            service(ServiceId::Web, &["eth0"], None),
        ];
        let svg = render(&nics, &services, &[]);
        let doc = parse(&svg);
        assert_eq!(with_class(&doc, "adding").len(), 2);
        assert_eq!(with_class(&doc, "pending").len(), 2);
    }

    #[test]
    fn hostile_names_come_out_inert() {
        let evil_nic = "<script>alert(1)</script>&\"'";
        let evil_cert = "</title><script>x</script>&amp;";
        let mut n = nic(
            evil_nic,
            &["<b>10.0.0.1</b>/8", "\u{1}\u{7f}bell"],
            NicState::Present,
        );
        n.services = vec![ServiceId::Console];
        let mut p = padlock(
            ServiceId::Console,
            evil_nic,
            evil_cert,
            &["<img src=x onerror=alert(1)>"],
        );
        p.host = Some("a&b".into());
        let mut s = service(ServiceId::Console, &[evil_nic], Some(&[evil_nic]));
        s.label = "<svg onload=alert(1)>".into();
        let svg = render(&[n], &[s], &[p]);
        let doc = parse(&svg);
        assert_inert(&doc);
        assert!(!svg.contains("<script") && !svg.contains("<img") && !svg.contains("<b>"));
        // The texts are there, as text.
        let all = texts(doc.root_element());
        assert!(all.contains("<script>alert(1)</script>&\"'"), "{all}");
        assert!(all.contains("<b>10.0.0.1</b>/8"));
        assert!(all.contains("\u{FFFD}\u{FFFD}bell"));
        let lock = with_class(&doc, "padlock")
            .into_iter()
            .find(|n| class_is(n, "open"))
            .unwrap();
        let tip = title(lock);
        assert!(
            tip.contains("certificate </title><script>x</script>&amp; for a&b"),
            "{tip}"
        );
        assert!(tip.contains("<img src=x onerror=alert(1)>"));
        let row = with_class(&doc, "service")[0];
        assert!(title(row).starts_with("<svg onload=alert(1)> — tcp/8443 on <script>"));
    }

    #[test]
    fn long_texts_are_clipped_with_the_whole_in_a_title() {
        let long = "veryveryveryverylongnicname0123456789";
        let mut n = nic(long, &[], NicState::Present);
        n.addresses = (1..=6)
            .map(|i| format!("2001:db8:1234:5678:9abc:def0:1234:{i}/128"))
            .collect();
        let svg = render(&[n], &[], &[]);
        let doc = parse(&svg);
        let name = doc.descendants().find(|n| class_is(n, "nic-name")).unwrap();
        let shown = name.text().unwrap();
        assert!(
            shown.ends_with('…') && shown.chars().count() == 28,
            "{shown}"
        );
        assert_eq!(title(name.parent().unwrap()), long);
        let addresses = with_class(&doc, "address");
        assert_eq!(addresses.len(), MAX_ADDRESSES);
        assert_eq!(addresses[3].text(), Some("+3 more"));
    }
}
