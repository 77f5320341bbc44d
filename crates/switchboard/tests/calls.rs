//! Secure calls (needs root, kamailio and rtpengine-daemon, tcpdump): two
//! phones activated through their links, one on the LAN side and one on
//! the WAN side, call each other over SIP/TLS; the media goes through the
//! appliance's rtpengine, SRTP on the wire on both sides (captured, not
//! only logged); `calls` shows the call while it lasts; the call routing's
//! refusals (480, 404, another domain, no SRTP, a wrong digest); and once
//! `rtp` is denied on the LAN NIC, a call whose media would need it fails
//! cleanly and nothing of it reaches that NIC.
//!
//! The phones are this test's own SIP/TLS user agents
//! (`common/softphone.rs`) with real SRTP (`common/srtp.rs`, RFC 3711), so
//! that every step and every key is the test's to check;
//! `calls_linphone.rs` makes the same call with two linphonec.

mod common;

#[path = "common/capture.rs"]
mod capture;
#[path = "common/softphone.rs"]
mod softphone;
#[path = "common/srtp.rs"]
mod srtp;

use std::time::{Duration, Instant};

use capture::Capture;
use common::phone::HOST;
use serde_json::Value;
use softphone::{SoftPhone, activated, media_of, sdp};
use srtp::Srtp;
use switchboard_system::testlab::{Lab, is_root, require_or_skip};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

const MARKER: &[u8] = b"PLAIN-VOICE-SAMPLE";

/// `count` SRTP packets from `from` (keyed by its own SDP's key) to the
/// relay's address in `answer_sdp`; what `to` receives, unprotected with
/// the key the relay gave it in `to_sdp`. Returns how many arrived intact.
fn send_media(
    from: &SoftPhone,
    from_key: &str,
    relay_sdp: &str,
    to: &SoftPhone,
    to_sdp: &str,
    count: usize,
) -> usize {
    let (relay, port, _) = media_of(relay_sdp);
    let (_, _, key_at_to) = media_of(to_sdp);
    let key_at_to = key_at_to.expect("the relay gives the callee an SRTP key");
    let mut tx = Srtp::from_inline(from_key, 0x1234_5678 + u32::from(from.media_port()));
    let rx = Srtp::from_inline(&key_at_to, 0);
    let mut intact = 0;
    for i in 0..count {
        let mut payload = MARKER.to_vec();
        payload.extend(format!("-{i:04}-").as_bytes());
        payload.resize(160, b'x');
        from.media
            .send_to(&tx.protect(&payload), (relay.as_str(), port))
            .expect("send media");
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; 2048];
        while let Ok(n) = {
            to.media.set_nonblocking(true).expect("nonblocking");
            let r = to.media.recv(&mut buf);
            to.media.set_nonblocking(false).expect("blocking");
            r
        } {
            if rx
                .unprotect(&buf[..n])
                .is_some_and(|p| p.starts_with(MARKER))
            {
                intact += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 2048];
    while let Ok(n) = to.media.recv(&mut buf) {
        if rx
            .unprotect(&buf[..n])
            .is_some_and(|p| p.starts_with(MARKER))
        {
            intact += 1;
        }
    }
    intact
}

#[test]
fn phones_on_both_sides_call_each_other_over_tls_with_srtp_through_the_relay() {
    if !require_or_skip(
        "calls::phones_on_both_sides_call_each_other_over_tls_with_srtp_through_the_relay",
        is_root()
            && switchboard_system::kamailio::installed()
            && switchboard_system::rtpengine::installed()
            && std::path::Path::new("/usr/bin/tcpdump").exists(),
        "needs root, kamailio, rtpengine-daemon and tcpdump",
    ) {
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, files, _p) = common::ready_appliance(
        &lab,
        dir.path(),
        &["--sip", "kamailio", "--media", "rtpengine"],
    );
    let ca_path = files.path().join("ca.pem");
    let ca_file = ca_path.display().to_string();
    let ca = std::fs::read(&ca_path).expect("ca");
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, HOST)])
        .expect("LAN hosts");
    // The production layout puts SIP/TLS and media on wan0; the office's
    // phones call too: SIP/TLS and rtp on lan0 as well.
    d.ok(&["matrix", "allow", "sip-tls", "lan0"]);
    d.ok(&["matrix", "allow", "rtp", "lan0"]);
    d.ok(&["update", "-m", "calls from the LAN too"]);
    let status = d.json(&["status"]);
    assert!(
        status["media"]
            .as_str()
            .is_some_and(|m| m.starts_with("media relay running (rtpengine, pid ")),
        "{status}"
    );

    let (alice, alice_ha1) = activated(&d, &lab, &ca_file, "+15550100201", "Alice");
    let (bob, bob_ha1) = activated(&d, &lab, &ca_file, "+15550100202", "Bob");
    let (carol, _) = activated(&d, &lab, &ca_file, "+15550100203", "Carol");

    // Alice on the WAN side, Bob on the LAN side, each over verified TLS.
    let (mut a, mut b) = SoftPhone::pair(&lab, &ca, (&alice, &alice_ha1), (&bob, &bob_ha1));

    let a_key = Srtp::new_inline(1);
    let b_key = Srtp::new_inline(2);
    let offer = sdp(Lab::WAN_PHONE, a.media_port(), Some(&a_key));
    let uri = |u: &str| format!("sip:{u}@{HOST}");

    // Refusals: an unregistered account, an unknown one, another domain,
    // an offer without SRTP, a wrong digest (challenged, then refused).
    let (r, _) = a.invite(&uri(&carol), &offer, &alice_ha1);
    assert_eq!(r.code(), 480, "{r:?}");
    let (r, _) = a.invite(&uri("nobody99"), &offer, &alice_ha1);
    assert_eq!(r.code(), 404, "{r:?}");
    let (r, _) = a.invite(&format!("sip:{bob}@elsewhere.example"), &offer, &alice_ha1);
    assert_eq!(r.code(), 403, "another domain: {r:?}");
    let (r, _) = a.invite(
        &uri(&bob),
        &sdp(Lab::WAN_PHONE, a.media_port(), None),
        &alice_ha1,
    );
    assert_eq!(r.code(), 488, "plain RTP: {r:?}");
    assert!(r.first.contains("SRTP"), "{r:?}");
    let (r, _) = a.invite(&uri(&bob), &offer, &"0".repeat(32));
    assert_eq!(r.code(), 403, "a wrong digest: {r:?}");
    // None of them reached Bob.
    assert!(b.read().is_none(), "Bob was not called");

    // Alice calls Bob; captures on both neighbours' links.
    let cap_wan = Capture::start(&lab.wan, dir.path().join("wan.pcap"));
    let cap_lan = Capture::start(&lab.lan, dir.path().join("lan.pcap"));
    let started = Instant::now();
    let bob_side = std::thread::scope(|s| {
        let ringing = s.spawn(|| {
            let inv = b.wait("INVITE", |m| m.method() == "INVITE");
            let answer = sdp(Lab::LAN_ADMIN, b.media_port(), Some(&b_key));
            b.respond(&inv, 200, "OK", &answer);
            inv
        });
        let (r, call) = a.invite(&uri(&bob), &offer, &alice_ha1);
        (ringing.join().expect("bob"), r, call)
    });
    let (invite_at_bob, ok, call) = bob_side;
    let setup = started.elapsed();
    assert_eq!(ok.code(), 200, "{ok:?}");
    a.in_dialog(&call, "ACK", call.cseq);
    b.wait("ACK", |m| m.method() == "ACK");
    // Each side sees the relay's address on its own NIC, SRTP.
    let (bob_sees, _, bob_key_from_relay) = media_of(&invite_at_bob.body);
    assert_eq!(bob_sees, Lab::LAN_APPLIANCE, "{}", invite_at_bob.body);
    assert!(invite_at_bob.body.contains("RTP/SAVP") && bob_key_from_relay.is_some());
    assert!(
        !invite_at_bob.body.contains("NULL_HMAC"),
        "{}",
        invite_at_bob.body
    );
    let (alice_sees, _, _) = media_of(&ok.body);
    assert_eq!(alice_sees, Lab::WAN_APPLIANCE, "{}", ok.body);
    assert!(
        !invite_at_bob.body.contains(Lab::WAN_PHONE) && !ok.body.contains(Lab::LAN_ADMIN),
        "the relay hides each side's address from the other"
    );
    assert!(
        invite_at_bob
            .header("Record-Route")
            .contains("transport=tls")
    );

    // Media both ways, SRTP end to end through the relay.
    let a_to_b = send_media(&a, &a_key, &ok.body, &b, &invite_at_bob.body, 50);
    let b_to_a = send_media(&b, &b_key, &invite_at_bob.body, &a, &ok.body, 50);
    assert!(
        a_to_b >= 45,
        "Alice -> Bob: {a_to_b} of 50 packets decrypted"
    );
    assert!(
        b_to_a >= 45,
        "Bob -> Alice: {b_to_a} of 50 packets decrypted"
    );

    // `calls` shows it, with its parties, the relay's interfaces and SRTP.
    let calls = d.json(&["calls"]);
    let list = calls.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{calls}");
    let c = &list[0];
    assert_eq!(c["caller"], alice.as_str(), "{c}");
    assert_eq!(c["callee"], bob.as_str(), "{c}");
    assert_eq!(c["srtp"], true, "{c}");
    assert_eq!(c["state"], "confirmed", "{c}");
    let nics: Vec<&str> = c["media_nics"]
        .as_array()
        .expect("nics")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(nics, ["lan0", "wan0"], "{c}");
    assert!(c["packets"].as_u64().expect("packets") >= 90, "{c}");
    let text = d.ok(&["calls"]);
    assert!(text.contains(&alice) && text.contains("SRTP"), "{text}");

    // A re-INVITE (a new offer within the call) goes through the relay
    // on the same sides, and media still flows.
    let reinvite = a.next_cseq();
    let offer2 = offer.replace("o=- 1 1 ", "o=- 1 2 ");
    a.in_dialog_with(&call, "INVITE", reinvite, &offer2);
    let re_at_bob = b.wait("re-INVITE", |m| m.method() == "INVITE");
    assert_eq!(
        media_of(&re_at_bob.body).0,
        Lab::LAN_APPLIANCE,
        "{}",
        re_at_bob.body
    );
    let answer2 = sdp(Lab::LAN_ADMIN, b.media_port(), Some(&b_key)).replace("o=- 1 1 ", "o=- 1 2 ");
    b.respond(&re_at_bob, 200, "OK", &answer2);
    let ok2 = a.final_response(reinvite);
    assert_eq!(ok2.code(), 200, "{ok2:?}");
    a.in_dialog(&call, "ACK", reinvite);
    b.wait("ACK of the re-INVITE", |m| m.method() == "ACK");
    let again = send_media(&a, &a_key, &ok2.body, &b, &re_at_bob.body, 20);
    assert!(again >= 18, "after the re-INVITE: {again} of 20");

    // Alice hangs up.
    let bye = a.next_cseq();
    a.in_dialog(&call, "BYE", bye);
    let bye_at_bob = b.wait("BYE", |m| m.method() == "BYE");
    b.respond(&bye_at_bob, 200, "OK", "");
    let r = a.wait("200 to BYE", |m| {
        m.code() == 200 && m.header("CSeq").ends_with("BYE")
    });
    assert_eq!(r.code(), 200);
    wait_for("the call to be gone from `calls`", || {
        d.json(&["calls"]).as_array().is_some_and(Vec::is_empty)
    });

    // On the wire: every media packet on both links is SRTP — the marker
    // never appears in clear — and there were media packets.
    for (side, cap) in [("WAN", cap_wan), ("LAN", cap_lan)] {
        let packets = cap.stop();
        let media: Vec<_> = packets
            .iter()
            .filter(|(s, d, _)| (10000..=20000).contains(s) || (10000..=20000).contains(d))
            .collect();
        assert!(
            media.len() >= 90,
            "{side}: {} media packets captured",
            media.len()
        );
        assert!(
            packets
                .iter()
                .all(|(_, _, p)| !p.windows(MARKER.len()).any(|w| w == MARKER)),
            "{side}: plain voice on the wire"
        );
        // RTP version 2 headers, and the 10-byte SRTP tag after 160 bytes.
        assert!(
            media
                .iter()
                .all(|(_, _, p)| p[0] >> 6 == 2 && p.len() == 12 + 160 + 10),
            "{side}: not SRTP packets"
        );
    }
    eprintln!("call set up in {setup:?}");

    // A call cancelled while it rings: Bob's phone gets the CANCEL, Alice
    // a 487, and nothing is left at the relay or in `calls`.
    let pending = a.invite_pending(&uri(&bob), &offer, &alice_ha1);
    let inv = b.wait("INVITE to cancel", |m| m.method() == "INVITE");
    b.respond(&inv, 180, "Ringing", "");
    a.wait("180", |m| m.code() == 180);
    let ringing = d.json(&["calls"]);
    assert_eq!(ringing[0]["state"], "ringing", "{ringing}");
    a.cancel(&pending);
    let cancel = b.wait("CANCEL", |m| m.method() == "CANCEL");
    b.respond(&cancel, 200, "OK", "");
    b.respond(&inv, 487, "Request Terminated", "");
    let r = a.wait("the INVITE's final response", |m| {
        m.code() >= 200 && m.header("CSeq") == format!("{} INVITE", pending.cseq)
    });
    assert_eq!(r.code(), 487, "{r:?}");
    a.ack_failure(&pending, &r);
    b.wait("ACK of the 487", |m| m.method() == "ACK");
    wait_for("the cancelled call to be gone", || {
        d.json(&["calls"]).as_array().is_some_and(Vec::is_empty)
    });

    // No key or digest in the daemon's log (nor in `calls`).
    let log = d.log_text();
    for secret in [&a_key, &b_key, &alice_ha1, &bob_ha1] {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
    }
    if let Some(k) = &bob_key_from_relay {
        assert!(!log.contains(k.as_str()), "the relay's key in the log");
    }

    // rtp denied on lan0: the relay drops its LAN interface, and a call
    // whose media would need it fails cleanly; nothing reaches the LAN.
    d.ok(&["matrix", "deny", "rtp", "lan0"]);
    d.ok(&["update", "-m", "no media on the LAN"]);
    let fw = d.json(&["firewall", "show"]);
    assert!(
        fw["ruleset"].as_str().is_some_and(|r| r
            .contains("set nics_rtp {\n\t\ttype ifname\n\t\telements = {\n\t\t\t\"wan0\",\n\t\t}")),
        "{fw}"
    );
    let conf =
        std::fs::read_to_string(d.data_dir.join("rtpengine").join("rtpengine.conf")).expect("conf");
    assert!(conf.contains("interface = wan0/198.51.100.1\n"), "{conf}");
    // Kamailio restarted with its new script: the phones connect again.
    drop((a, b));
    let (mut a, mut b) = SoftPhone::pair(&lab, &ca, (&alice, &alice_ha1), (&bob, &bob_ha1));
    let cap_lan = Capture::start(&lab.lan, dir.path().join("lan-denied.pcap"));
    let offer = sdp(Lab::WAN_PHONE, a.media_port(), Some(&a_key));
    let (r, _) = a.invite(&uri(&bob), &offer, &alice_ha1);
    assert_eq!(r.code(), 488, "{r:?}");
    assert!(r.first.contains("no media on this network"), "{r:?}");
    assert!(b.read().is_none(), "Bob's phone was not rung");
    let packets = cap_lan.stop();
    assert!(
        packets.is_empty(),
        "nothing of the call reached the LAN: {} packets",
        packets.len()
    );
    assert!(d.json(&["calls"]).as_array().is_some_and(Vec::is_empty));
}
