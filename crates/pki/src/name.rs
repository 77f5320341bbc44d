//! The names a certificate covers (RFC 6125).

use switchboard_domain::host::Hostname;

/// Whether a DNS name from a certificate (possibly a wildcard) covers
/// `host`, per RFC 6125 §6.4 as browsers and phones apply it: compared
/// case-insensitively; a wildcard must be the whole left-most label, stands
/// for exactly one label, and needs at least two labels after it (so
/// `*.test` covers nothing); any other `*` matches nothing.
pub(crate) fn dns_name_covers(pattern: &str, host: &Hostname) -> bool {
    let pattern = pattern
        .strip_suffix('.')
        .unwrap_or(pattern)
        .to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            parent.contains('.')
                && !parent.contains('*')
                && host
                    .as_str()
                    .split_once('.')
                    .is_some_and(|(_, rest)| rest == parent)
        }
        None => !pattern.contains('*') && pattern == host.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Hostname {
        s.parse().expect("a valid host name")
    }

    #[test]
    fn exact_names_match_case_insensitively() {
        assert!(dns_name_covers(
            "VoIP.Example.Test",
            &host("voip.example.test")
        ));
        assert!(dns_name_covers(
            "voip.example.test.",
            &host("voip.example.test")
        ));
        assert!(!dns_name_covers("voip.example.test", &host("example.test")));
    }

    #[test]
    fn a_wildcard_covers_exactly_one_left_most_label() {
        let wild = "*.example.test";
        assert!(dns_name_covers(wild, &host("voip.example.test")));
        assert!(!dns_name_covers(wild, &host("example.test")));
        assert!(!dns_name_covers(wild, &host("a.voip.example.test")));
        assert!(!dns_name_covers(wild, &host("voip.other.test")));
    }

    #[test]
    fn partial_label_and_inner_wildcards_cover_nothing() {
        for pattern in [
            "v*.example.test",
            "*voip.example.test",
            "voip.*.test",
            "*.*.test",
            "**.example.test",
        ] {
            assert!(
                !dns_name_covers(pattern, &host("voip.example.test")),
                "{pattern}"
            );
        }
    }

    #[test]
    fn a_wildcard_directly_under_a_top_level_label_covers_nothing() {
        assert!(!dns_name_covers("*.test", &host("voip.test")));
        assert!(!dns_name_covers("*.test", &host("test")));
        assert!(!dns_name_covers("*", &host("test")));
    }
}
