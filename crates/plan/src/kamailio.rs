//! The Kamailio renderer: `kamailio.cfg` and `tls.cfg` for the SIP
//! services of a plan.
//!
//! Kamailio listens exactly where the matrix says: `listen=tls:ADDR:PORT`
//! for every address of every NIC where `sip-tls` is enabled,
//! `listen=udp:ADDR:PORT` likewise for `sip-udp`. `tls.cfg` has one server
//! profile per TLS listen address, carrying the certificate bound to
//! `sip-tls` on that NIC, plus a default; every profile carries the
//! appliance's TLS policy (`TLS_POLICY`: `method = TLSv1.2+` and the TLS 1.2
//! AEAD suites as `cipher_list`, in OpenSSL syntax; OpenSSL's own TLS 1.3
//! suites are the policy's). The routing script is a registrar
//! with digest authentication against the subscriber table (HA1 only, no
//! clear passwords).
//!
//! Everything named in the files comes from validated newtypes (addresses,
//! ports, host names, certificate names), so nothing can inject
//! configuration syntax. File locations are parameters ([`Paths`]): the
//! renderer stays pure.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchboard_domain::{
    Candidate, CertName, Facts, Hostname, ResolvedMatrix, ServiceId, TLS_POLICY,
};

use crate::{Server, Socket, TlsAssignment};

/// Where the files Kamailio reads live (the system adapter decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Directory holding `certs/NAME.pem` and `keys/NAME.key`.
    pub tls_dir: PathBuf,
    /// The `tls.cfg` Kamailio loads.
    pub tls_cfg: PathBuf,
    /// The subscriber database (SQLite).
    pub subscriber_db: PathBuf,
    /// The control socket for `kamcmd` (binrpc).
    pub ctl_socket: PathBuf,
    /// Kamailio's module directory.
    pub modules: PathBuf,
}

/// What the daemon's Kamailio is like: where its files live and the
/// digest realm of the accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub paths: Paths,
    /// The digest realm the accounts' HA1 were computed for (letters,
    /// digits, `.`, `_`, `-`: the caller's newtype guarantees it).
    pub realm: String,
}

/// The rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KamailioConfig {
    /// `kamailio.cfg`.
    pub cfg: String,
    /// `tls.cfg`.
    pub tls_cfg: String,
    /// The listen sockets: when they change Kamailio must restart; when
    /// only certificates change, `tls.reload` is enough.
    pub sockets: Vec<Socket>,
    /// The certificates `tls.cfg` names, to be written where it says.
    pub certificates: Vec<CertName>,
}

impl KamailioConfig {
    /// No SIP service is enabled anywhere: Kamailio need not run.
    pub fn is_idle(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The listen sockets as `kamailio.cfg` writes them, `proto:addr:port`.
    pub fn listens(&self) -> Vec<String> {
        self.sockets.iter().map(Socket::to_string).collect()
    }
}

/// `ADDR:PORT`, an IPv6 address in brackets.
fn addr_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Render Kamailio's configuration for `matrix` on the NICs of `facts`.
/// `aliases` are the names the SIP/TLS service is known by.
pub fn render(
    candidate: &Candidate,
    matrix: &ResolvedMatrix,
    facts: &Facts,
    tls: &[TlsAssignment],
    aliases: &[Hostname],
    env: &Env,
) -> KamailioConfig {
    let (paths, realm) = (&env.paths, env.realm.as_str());
    let mut sockets = Vec::new();
    let mut profiles = Vec::new();
    for service in [ServiceId::SipTls, ServiceId::SipUdp] {
        let port = candidate.port(service).first();
        for nic in matrix.nics_of(service) {
            let Some(n) = facts.nic(nic) else { continue };
            let cert = tls
                .iter()
                .find(|a| a.service == ServiceId::SipTls && &a.nic == nic)
                .map(|a| &a.presented.cert);
            for addr in n.addrs.iter().filter(|a| !a.is_link_local()) {
                sockets.push(Socket {
                    service,
                    server: Server::Kamailio,
                    transport: service.info().transport,
                    address: Some(addr.addr),
                    port,
                });
                if let (ServiceId::SipTls, Some(cert)) = (service, cert) {
                    profiles.push((addr_port(addr.addr, port), cert.clone()));
                }
            }
        }
    }
    let listens: Vec<String> = sockets.iter().map(Socket::to_string).collect();
    let default_cert = candidate.bindings.defaults.get(&ServiceId::SipTls).cloned();
    let mut certificates: Vec<CertName> = profiles
        .iter()
        .map(|(_, c)| c.clone())
        .chain(default_cert.clone())
        .collect();
    certificates.sort();
    certificates.dedup();
    let has_tls = listens.iter().any(|l| l.starts_with("tls:"));

    let mut cfg = String::from(
        "#!KAMAILIO\n# Generated by switchboard from the services x NICs matrix. Do not edit:\n# every Update rewrites it.\n\n",
    );
    let _ = writeln!(
        cfg,
        "debug=2\nlog_stderror=yes\nfork=yes\nchildren=2\ntcp_children=2"
    );
    let _ = writeln!(cfg, "auto_aliases=no\ndns=no\nrev_dns=no");
    let _ = writeln!(cfg, "enable_tls={}", if has_tls { "yes" } else { "no" });
    for alias in aliases {
        let _ = writeln!(cfg, "alias=\"{alias}\"");
    }
    for l in &listens {
        let _ = writeln!(cfg, "listen={l}");
    }
    let _ = writeln!(cfg, "\nmpath=\"{}/\"", paths.modules.display());
    let mut modules = vec![
        "ctl",
        "kex",
        "corex",
        "tm",
        "sl",
        "pv",
        "maxfwd",
        "sanity",
        "textops",
        "siputils",
        "xlog",
        "usrloc",
        "registrar",
        "auth",
        "db_sqlite",
        "auth_db",
    ];
    if has_tls {
        modules.push("tls");
    }
    for m in modules {
        let _ = writeln!(cfg, "loadmodule \"{m}.so\"");
    }
    let _ = write!(
        cfg,
        "
modparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")
modparam(\"auth_db\", \"db_url\", \"sqlite://{db}\")
modparam(\"auth_db\", \"calculate_ha1\", 0)
modparam(\"auth_db\", \"password_column\", \"ha1\")
modparam(\"auth_db\", \"load_credentials\", \"\")
modparam(\"usrloc\", \"db_mode\", 0)
modparam(\"registrar\", \"max_expires\", 3600)
",
        ctl = paths.ctl_socket.display(),
        db = paths.subscriber_db.display(),
    );
    if has_tls {
        let _ = writeln!(
            cfg,
            "modparam(\"tls\", \"config\", \"{}\")",
            paths.tls_cfg.display()
        );
    }
    cfg.push_str(
        "
request_route {
\tif (!mf_process_maxfwd_header(\"10\")) {
\t\tsl_send_reply(\"483\", \"Too Many Hops\");
\t\texit;
\t}
\tif (!sanity_check(\"1511\", \"7\")) {
\t\texit;
\t}
\tif (is_method(\"REGISTER\")) {
\t\t# Digest authentication against the subscriber table (HA1 only).
\t\tif (!www_authenticate(\"REALM\", \"subscriber\")) {
\t\t\twww_challenge(\"REALM\", \"0\");
\t\t\texit;
\t\t}
\t\tif ($au != $tU) {
\t\t\tsl_send_reply(\"403\", \"Forbidden: authentication and To user differ\");
\t\t\texit;
\t\t}
\t\tconsume_credentials();
\t\tif (!save(\"location\")) {
\t\t\tsl_reply_error();
\t\t}
\t\texit;
\t}
\tif (is_method(\"OPTIONS\") && uri == myself) {
\t\tsl_send_reply(\"200\", \"OK\");
\t\texit;
\t}
\tsl_send_reply(\"405\", \"Method Not Allowed\");
\texit;
}
",
    );

    let cfg = cfg.replace("REALM", realm);
    let mut tls_cfg = String::from("# Generated by switchboard. Do not edit.\n");
    let cert_files = |c: &CertName| {
        (
            paths.tls_dir.join("certs").join(format!("{c}.pem")),
            paths.tls_dir.join("keys").join(format!("{c}.key")),
        )
    };
    let mut profile = |name: &str, cert: &CertName| {
        let (pem, key) = cert_files(cert);
        let _ = write!(
            tls_cfg,
            "\n[server:{name}]\nmethod = {method}\ncipher_list = {ciphers}\nverify_certificate = no\nrequire_certificate = no\ncertificate = {}\nprivate_key = {}\n",
            pem.display(),
            key.display(),
            method = TLS_POLICY.kamailio_method(),
            ciphers = TLS_POLICY.openssl_cipher_list(),
        );
    };
    if let Some(c) = &default_cert {
        profile("default", c);
    }
    for (addr, cert) in &profiles {
        profile(addr, cert);
    }

    KamailioConfig {
        cfg,
        tls_cfg,
        sockets,
        certificates,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use expect_test::expect_file;
    use switchboard_domain::testing::{candidate, cert, facts, name};

    use super::*;

    pub(crate) fn env() -> Env {
        Env {
            paths: paths(),
            realm: "switchboard".into(),
        }
    }

    fn paths() -> Paths {
        Paths {
            tls_dir: "/var/lib/switchboard/kamailio".into(),
            tls_cfg: "/var/lib/switchboard/kamailio/tls.cfg".into(),
            subscriber_db: "/var/lib/switchboard/kamailio/subscriber.db".into(),
            ctl_socket: "/run/switchboard/kamailio.ctl".into(),
            modules: "/usr/lib/x86_64-linux-gnu/kamailio/modules".into(),
        }
    }

    #[test]
    fn production_layout_listens_where_the_matrix_says() {
        let f = facts(&[
            ("lan0", Some("192.0.2.1")),
            ("wan0", Some("198.51.100.1")),
            ("dmz0", None),
        ]);
        let mut c = candidate();
        c.matrix = c
            .matrix
            .production(&name("lan0"), &name("wan0"), &f)
            .expect("preset");
        c.bindings
            .bind(ServiceId::SipTls, Some(&name("wan0")), cert("voip"))
            .expect("bind");
        let matrix = c.matrix.resolve(&f);
        let tls = vec![TlsAssignment {
            service: ServiceId::SipTls,
            nic: name("wan0"),
            presented: crate::Presented {
                cert: cert("voip"),
                fingerprint: "00".into(),
                subject: String::new(),
                not_after: String::new(),
                names: vec![],
            },
            addresses: vec!["198.51.100.1".parse().expect("ip")],
        }];
        let k = render(
            &c,
            &matrix,
            &f,
            &tls,
            &["voip.example.test".parse().expect("host")],
            &env(),
        );
        assert_eq!(k.listens(), ["tls:198.51.100.1:5061", "udp:192.0.2.1:5060"]);
        assert_eq!(k.certificates, [cert("test-cert"), cert("voip")]);
        expect_file!["../test_data/kamailio-production.cfg"].assert_eq(&k.cfg);
        expect_file!["../test_data/kamailio-production.tls.cfg"].assert_eq(&k.tls_cfg);
    }

    #[test]
    fn no_sip_anywhere_means_kamailio_is_idle_and_ipv6_is_bracketed() {
        let f = facts(&[("lan0", Some("2001:db8::1"))]);
        let mut c = candidate();
        for s in [ServiceId::SipTls, ServiceId::SipUdp] {
            c.matrix.set(s, &name("lan0"), false, &f).expect("deny");
        }
        let k = render(&c, &c.matrix.resolve(&f), &f, &[], &[], &env());
        assert!(k.is_idle());
        assert!(k.cfg.contains("enable_tls=no") && !k.cfg.contains("loadmodule \"tls.so\""));
        let c = candidate();
        let k = render(&c, &c.matrix.resolve(&f), &f, &[], &[], &env());
        assert_eq!(
            k.listens(),
            ["tls:[2001:db8::1]:5061", "udp:[2001:db8::1]:5060"]
        );
    }
}
