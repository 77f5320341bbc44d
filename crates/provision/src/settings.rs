//! Provisioning settings: the SIP/TLS host name that goes into every
//! configuration document and the web services base URI that every
//! activation link starts with; and what is wrong with them.

pub use switchboard_domain::provisioning::{InvalidWebUri, ProvisioningSettings, WebUri};
use switchboard_domain::{Diagnostic, DiagnosticCode, Host, ServiceId};

/// What is wrong with `settings`, errors first. `sip_tls_covers` and
/// `web_covers` say whether the certificate each service presents (where
/// phones reach it) covers a host: the engine builds them from the bound
/// certificates with the RFC 6125 matching of `switchboard-pki`, so the
/// rule lives in one place. A phone checks exactly that before it sends
/// its credentials, so an uncovered name is an error: every phone
/// activated with it would fail.
pub fn check_settings(
    settings: &ProvisioningSettings,
    sip_tls_covers: impl Fn(&Host) -> bool,
    web_covers: impl Fn(&Host) -> bool,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match &settings.sip_tls_hostname {
        None => out.push(Diagnostic::new(
            DiagnosticCode::SipTlsHostnameUnset,
            Some(ServiceId::SipTls),
            None,
            "no SIP/TLS host name is set: accounts cannot be activated",
            "set the name phones reach SIP/TLS by: `switchboard provisioning set --sip-tls-hostname HOST`",
        )),
        Some(name) if !sip_tls_covers(&Host::Name(name.clone())) => out.push(Diagnostic::new(
            DiagnosticCode::SipTlsHostnameNotCovered,
            Some(ServiceId::SipTls),
            None,
            format!("the certificate sip-tls presents does not cover {name}: phones would refuse to connect"),
            format!("bind a certificate that covers {name} to sip-tls (`switchboard cert bind sip-tls CERT`), or set the SIP/TLS host name to a name the certificate covers"),
        )),
        Some(_) => {}
    }
    match &settings.web_uri {
        None => out.push(Diagnostic::new(
            DiagnosticCode::WebUriUnset,
            Some(ServiceId::Web),
            None,
            "no web services URI is set: activation links cannot be made",
            "set the address phones reach the web service by: `switchboard provisioning set --web-uri https://HOST`",
        )),
        Some(uri) if !web_covers(uri.host()) => out.push(Diagnostic::new(
            DiagnosticCode::WebUriNotCovered,
            Some(ServiceId::Web),
            None,
            format!("the certificate web presents does not cover {}: phones would refuse activation links to {uri}", uri.host()),
            format!("bind a certificate that covers {} to web (`switchboard cert bind web CERT`), or change the web services URI", uri.host()),
        )),
        Some(_) => {}
    }
    out.sort_by_key(|f| f.severity);
    out
}

#[cfg(test)]
mod tests {
    use switchboard_domain::Severity;

    use super::*;
    use crate::text::tests::Noise;

    fn uri(s: &str) -> WebUri {
        s.parse().expect("a valid web URI")
    }

    #[test]
    fn web_uris_are_https_host_and_port_in_canonical_form() {
        for (input, canonical, port) in [
            (
                "https://voip.example.test",
                "https://voip.example.test",
                443,
            ),
            (
                "HTTPS://VoIP.Example.Test/",
                "https://voip.example.test",
                443,
            ),
            (
                "https://voip.example.test:443",
                "https://voip.example.test",
                443,
            ),
            (
                "https://voip.example.test:8443",
                "https://voip.example.test:8443",
                8443,
            ),
            (" https://10.0.0.1:8443 ", "https://10.0.0.1:8443", 8443),
            ("https://[2001:DB8::1]", "https://[2001:db8::1]", 443),
            ("https://[::ffff:10.0.0.1]:9", "https://10.0.0.1:9", 9),
        ] {
            let u = uri(input);
            assert_eq!(u.to_string(), canonical, "{input}");
            assert_eq!(u.port(), port);
            assert_eq!(uri(canonical), u, "canonical form parses back");
        }
        let json = serde_json::to_string(&uri("https://voip.test:8443/")).expect("json");
        assert_eq!(json, r#""https://voip.test:8443""#);
    }

    #[test]
    fn anything_but_https_host_and_port_is_refused_with_a_reason() {
        for (bad, reason) in [
            ("", "empty or only white space"),
            (" \t ", "empty or only white space"),
            ("voip.example.test", "does not start with https"),
            ("http://voip.example.test", "must be https"),
            ("ftp://voip.example.test", "only https"),
            ("javascript://alert(1)", "only https"),
            ("https://", "no host"),
            ("https:///", "no host"),
            ("https://voip.example.test/p", "path"),
            ("https://voip.example.test//", "path"),
            ("https://voip.example.test?x=1", "query"),
            ("https://voip.example.test#top", "fragment"),
            ("https://admin:pw@voip.example.test", "user name"),
            ("https://voip.example.test:0", "port"),
            ("https://voip.example.test:65536", "port"),
            ("https://voip.example.test:", "port"),
            ("https://voip.example.test:+443", "port"),
            ("https://voip.example.test:00443x", "port"),
            ("https://2001:db8::1", "brackets"),
            ("https://[2001:db8::1", "closing"),
            ("https://[10.0.0.1]", "not an IPv6"),
            ("https://[::1]x", "only :PORT"),
            ("https://[fe80::1%eth0]", "not an IPv6"),
            ("https://voip_example.test", "host is not valid"),
            ("https://vo ip.test", "host is not valid"),
            ("https://bücher.test", "host is not valid"),
            ("https://%76oip.test", "host is not valid"),
            ("https://voip.test\n.evil", "host is not valid"),
            ("https://*.example.test", "host is not valid"),
        ] {
            let err = bad.parse::<WebUri>().expect_err(bad);
            assert_eq!(err.code(), "invalid-web-uri");
            assert!(err.to_string().contains(reason), "{bad:?}: {err}");
        }
        let long = format!("https://{}.test", "a".repeat(400));
        let err = long.parse::<WebUri>().expect_err("oversize");
        assert!(err.to_string().contains("longer than 300"));
        assert!(err.to_string().len() < 200, "not echoed whole");
    }

    #[test]
    fn settings_load_with_missing_fields_and_refuse_unknown_ones() {
        let s: ProvisioningSettings = serde_json::from_str("{}").expect("empty");
        assert_eq!(s, ProvisioningSettings::default());
        let s: ProvisioningSettings = serde_json::from_str(
            r#"{"sip_tls_hostname":"VoIP.Example.Test","web_uri":"https://voip.example.test/"}"#,
        )
        .expect("both");
        assert_eq!(
            serde_json::to_string(&s).expect("json"),
            r#"{"sip_tls_hostname":"voip.example.test","web_uri":"https://voip.example.test"}"#
        );
        assert!(
            serde_json::from_str::<ProvisioningSettings>(r#"{"web_uri":"http://x.test"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<ProvisioningSettings>(r#"{"sip_hostname":"x.test"}"#).is_err()
        );
    }

    #[test]
    fn unset_settings_are_warnings_and_uncovered_names_are_errors() {
        let codes = |s: &ProvisioningSettings, covers: &dyn Fn(&Host) -> bool| {
            check_settings(s, covers, covers)
                .iter()
                .map(|f| (f.code.as_str(), f.severity))
                .collect::<Vec<_>>()
        };
        let unset = ProvisioningSettings::default();
        assert_eq!(
            codes(&unset, &|_| true),
            [
                ("sip-tls-hostname-unset", Severity::Warning),
                ("web-uri-unset", Severity::Warning)
            ]
        );
        let set = ProvisioningSettings {
            sip_tls_hostname: Some("voip.example.test".parse().expect("host")),
            web_uri: Some(uri("https://10.0.0.1:8443")),
            ..Default::default()
        };
        assert_eq!(codes(&set, &|_| true), []);
        let only_names =
            |h: &Host| matches!(h, Host::Name(n) if n.as_str().ends_with(".example.test"));
        assert_eq!(
            codes(&set, &only_names),
            [("web-uri-not-covered", Severity::Error)]
        );
        // Each name is checked against its own service's certificate.
        assert_eq!(
            check_settings(&set, |_| false, |_| true)
                .iter()
                .map(|f| f.code)
                .collect::<Vec<_>>(),
            [DiagnosticCode::SipTlsHostnameNotCovered]
        );
        assert_eq!(
            check_settings(&set, |_| true, |_| false)
                .iter()
                .map(|f| f.code)
                .collect::<Vec<_>>(),
            [DiagnosticCode::WebUriNotCovered]
        );
        let half = ProvisioningSettings {
            web_uri: None,
            ..set.clone()
        };
        let findings = check_settings(&half, |_| false, |_| false);
        assert_eq!(findings[0].code, DiagnosticCode::SipTlsHostnameNotCovered);
        assert_eq!(findings[1].code, DiagnosticCode::WebUriUnset);
        assert_eq!(
            findings[0].to_string(),
            "error[sip-tls-hostname-not-covered]: the certificate sip-tls presents does not cover voip.example.test: phones would refuse to connect\n  = hint: bind a certificate that covers voip.example.test to sip-tls (`switchboard cert bind sip-tls CERT`), or set the SIP/TLS host name to a name the certificate covers"
        );
    }

    #[test]
    fn random_input_never_panics_the_uri_parser() {
        let mut noise = Noise::new(61);
        for _ in 0..20_000 {
            let tail = noise.string(40);
            for s in [format!("https://{tail}"), tail] {
                if let Ok(u) = s.parse::<WebUri>() {
                    assert_eq!(u.to_string().parse::<WebUri>().as_ref(), Ok(&u), "{s:?}");
                }
            }
        }
    }
}
