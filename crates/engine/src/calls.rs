//! The calls in progress: Kamailio's dialogs (who calls whom, since when,
//! over which sockets) joined by Call-ID with the media relay's view of
//! them (the NICs the media goes through, SRTP or not, packets relayed).
//!
//! Only what an administrator may see: parties and addresses, never a key
//! (the SDES keys stay in rtpengine; only the suite's name is shown).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use switchboard_system::kamailio::{self, Dialog};
use switchboard_system::rtpengine::{self, CallMedia};
use tracing::warn;

use crate::Result;

/// At most this many calls are listed (the relay is asked about each).
pub const MAX_CALLS: usize = 200;

/// One call in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallView {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The caller's account (the From URI's user), and its URI.
    pub caller: String,
    pub from_uri: String,
    /// The callee's account (the To URI's user), and its URI.
    pub callee: String,
    pub to_uri: String,
    /// `calling`, `ringing`, `answered` (not yet acknowledged),
    /// `confirmed`; `media-only` for a call the relay has and Kamailio
    /// does not (ending).
    pub state: String,
    /// When the INVITE came; when it was answered.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub started_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub answered_at: Option<Timestamp>,
    /// The appliance's SIP sockets of the caller's and the callee's legs.
    pub caller_socket: String,
    pub callee_socket: String,
    /// The NICs the media goes through (the relay's interfaces), sorted.
    pub media_nics: Vec<String>,
    /// The relay's addresses the media uses.
    pub media_addresses: Vec<String>,
    /// Every stream is SRTP with an encrypting suite; `None` when the relay
    /// does not know the call.
    pub srtp: Option<bool>,
    /// The SRTP suites in use (names only).
    pub crypto_suites: Vec<String>,
    /// RTP and RTCP packets the relay forwarded.
    pub packets: u64,
}

fn user_of(uri: &str) -> String {
    uri.split_once(':')
        .map_or(uri, |(_, r)| r)
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn state_name(state: u8) -> &'static str {
    match state {
        1 => "calling",
        2 => "ringing",
        3 => "answered",
        4 => "confirmed",
        _ => "ending",
    }
}

fn at(ts: i64) -> Option<Timestamp> {
    (ts > 0).then(|| Timestamp::from_second(ts).ok()).flatten()
}

/// Join dialogs and the relay's calls by Call-ID; `nic_of` names the NIC
/// of a relay address.
pub(crate) fn join(
    dialogs: Vec<Dialog>,
    media: Vec<CallMedia>,
    nic_of: impl Fn(&std::net::IpAddr) -> Option<String>,
) -> Vec<CallView> {
    let mut media = media;
    let mut out: Vec<CallView> = Vec::new();
    let with_media = |v: &mut CallView, m: CallMedia| {
        let mut nics: Vec<String> = m.local_addresses.iter().filter_map(&nic_of).collect();
        nics.sort();
        nics.dedup();
        v.media_nics = nics;
        v.media_addresses = m.local_addresses.iter().map(ToString::to_string).collect();
        v.srtp = Some(m.srtp);
        v.crypto_suites = m.crypto_suites;
        v.packets = m.packets;
    };
    for d in dialogs.into_iter().filter(|d| d.state < 5) {
        let mut v = CallView {
            caller: user_of(&d.from_uri),
            callee: user_of(&d.to_uri),
            call_id: d.call_id,
            from_uri: d.from_uri,
            to_uri: d.to_uri,
            state: state_name(d.state).into(),
            started_at: at(d.init_ts),
            answered_at: at(d.start_ts),
            caller_socket: d.caller_socket,
            callee_socket: d.callee_socket,
            media_nics: Vec::new(),
            media_addresses: Vec::new(),
            srtp: None,
            crypto_suites: Vec::new(),
            packets: 0,
        };
        if let Some(i) = media.iter().position(|m| m.call_id == v.call_id) {
            with_media(&mut v, media.remove(i));
        }
        out.push(v);
    }
    for m in media {
        let mut v = CallView {
            call_id: m.call_id.clone(),
            caller: String::new(),
            from_uri: String::new(),
            callee: String::new(),
            to_uri: String::new(),
            state: "media-only".into(),
            started_at: at(m.created),
            answered_at: None,
            caller_socket: String::new(),
            callee_socket: String::new(),
            media_nics: Vec::new(),
            media_addresses: Vec::new(),
            srtp: None,
            crypto_suites: Vec::new(),
            packets: 0,
        };
        with_media(&mut v, m);
        out.push(v);
    }
    out.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.call_id.cmp(&b.call_id))
    });
    out
}

impl crate::Engine {
    /// The calls in progress (at most [`MAX_CALLS`]): Kamailio's dialogs
    /// and the relay's media. A component that does not answer is logged
    /// and left out, so the list shows what the other one knows.
    pub async fn calls(&self) -> Result<Vec<CallView>> {
        let dialogs = match self.kamailio_ctl() {
            Some(ctl) => kamailio::dialogs(&ctl).await.unwrap_or_else(|e| {
                warn!(error = %e, "reading Kamailio's dialogs failed");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let relay = match &self.media {
            Some(m) => m.lock().await.running().cloned(),
            None => None,
        };
        let media = match &relay {
            Some(r) => rtpengine::calls(r.ng, MAX_CALLS).await.unwrap_or_else(|e| {
                warn!(error = %e, "asking the media relay for its calls failed");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut calls = join(dialogs, media, |addr| {
            relay.as_ref().and_then(|r| {
                r.interfaces
                    .iter()
                    .find(|i| &i.address == addr)
                    .map(|i| i.nic.to_string())
            })
        });
        calls.truncate(MAX_CALLS);
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogs_and_media_join_by_call_id() {
        let d = |id: &str, state: u8| Dialog {
            call_id: id.into(),
            from_uri: "sip:1000@voip.example.test".into(),
            to_uri: "sip:1001@voip.example.test".into(),
            state,
            start_ts: 1_700_000_010,
            init_ts: 1_700_000_000,
            caller_socket: "tls:198.51.100.1:5061".into(),
            callee_socket: "tls:192.0.2.1:5061".into(),
        };
        let m = |id: &str| CallMedia {
            call_id: id.into(),
            local_addresses: vec![
                "198.51.100.1".parse().expect("ip"),
                "192.0.2.1".parse().expect("ip"),
            ],
            crypto_suites: vec!["AES_CM_128_HMAC_SHA1_80".into()],
            srtp: true,
            packets: 42,
            created: 1_700_000_005,
        };
        let nic_of = |a: &std::net::IpAddr| {
            Some(
                if a.to_string().starts_with("192.") {
                    "lan0"
                } else {
                    "wan0"
                }
                .to_owned(),
            )
        };
        let calls = join(
            vec![d("a", 4), d("gone", 5), d("b", 2)],
            vec![m("a"), m("orphan")],
            nic_of,
        );
        assert_eq!(calls.len(), 3, "{calls:?}");
        let a = calls.iter().find(|c| c.call_id == "a").expect("a");
        assert_eq!(
            (a.caller.as_str(), a.callee.as_str(), a.state.as_str()),
            ("1000", "1001", "confirmed")
        );
        assert_eq!(a.media_nics, ["lan0", "wan0"]);
        assert_eq!((a.srtp, a.packets), (Some(true), 42));
        let b = calls.iter().find(|c| c.call_id == "b").expect("b");
        assert_eq!((b.state.as_str(), b.srtp), ("ringing", None));
        let o = calls
            .iter()
            .find(|c| c.call_id == "orphan")
            .expect("orphan");
        assert_eq!(o.state, "media-only");
    }
}
