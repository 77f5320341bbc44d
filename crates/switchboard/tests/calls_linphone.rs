//! A call between two real softphones (needs root, kamailio,
//! rtpengine-daemon, linphone-cli, tcpdump): Debian's `linphonec`, headless
//! (`soundcard use files`), configured with the Linphone document each
//! account's activation link serves (its `<section>`/`<entry>` pairs
//! written as linphonerc, plus the test CA and the transports), one in the
//! LAN neighbour's namespace and one in the WAN neighbour's. Alice calls
//! Bob, who answers by himself; `calls` shows the call with SRTP through
//! both NICs and packets relayed; the media on both links is SRTP
//! (captured: RTP headers, PCMU with the suite's tag, a payload that looks
//! random — the phones play a square wave, which in clear PCMU is two
//! byte values);
//! Alice hangs up and `calls` is empty again.

mod common;

#[path = "common/capture.rs"]
mod capture;

use std::io::Write as _;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use capture::Capture;
use common::Daemon;
use common::phone::{HOST, activation_document};
use serde_json::Value;
use switchboard_system::testlab::{Lab, Netns, is_root, require_or_skip};

/// The account's Linphone document, fetched through its activation link.
fn linphone_document(d: &Daemon, lab: &Lab, ca: &str, phone: &str, name: &str) -> (String, String) {
    let (user, body, meta) = activation_document(d, lab, ca, phone, name, Some("linphone"));
    assert!(meta.contains("xml"), "{meta}");
    (user, body)
}

/// The document's sections as linphonerc, with what a headless phone in a
/// test needs besides: the test CA, TLS only, PCMU only (the codecs
/// Debian's linphone enables by default are disabled), no sound card.
fn linphonerc(xml: &str, ca: &str, dir: &std::path::Path) -> String {
    let doc = roxmltree::Document::parse(xml).expect("the document is XML");
    let mut out = String::new();
    let mut sip_extra = false;
    for section in doc.descendants().filter(|n| n.has_tag_name("section")) {
        let name = section.attribute("name").expect("name");
        out.push_str(&format!("[{name}]\n"));
        for e in section.children().filter(|n| n.has_tag_name("entry")) {
            out.push_str(&format!(
                "{}={}\n",
                e.attribute("name").expect("name"),
                e.text().unwrap_or_default()
            ));
        }
        if name == "sip" {
            sip_extra = true;
            out.push_str(&format!(
                "root_ca={ca}\nsip_port=0\nsip_tcp_port=0\nsip_tls_port=-1\nguess_hostname=1\n"
            ));
        }
    }
    assert!(sip_extra, "the document has a sip section");
    out.push_str(&format!(
        "[rtp]\naudio_rtp_port=40000-40999\naudio_jitt_comp=60\n[sound]\nplayback_dev_id=\ncapture_dev_id=\n\
         [audio_codec_0]\nmime=PCMU\nrate=8000\nchannels=1\nenabled=1\n\
         [audio_codec_1]\nmime=opus\nrate=48000\nchannels=2\nenabled=0\n\
         [audio_codec_2]\nmime=speex\nrate=16000\nchannels=1\nenabled=0\n\
         [audio_codec_3]\nmime=speex\nrate=8000\nchannels=1\nenabled=0\n\
         [audio_codec_4]\nmime=PCMA\nrate=8000\nchannels=1\nenabled=0\n\
         [audio_codec_5]\nmime=G729\nrate=8000\nchannels=1\nenabled=0\n\
         [misc]\nuuid=0\n[storage]\nuri={}\n",
        dir.join("lp.db").display()
    ));
    out
}

struct Linphone {
    child: Child,
    stdin: ChildStdin,
}

impl Linphone {
    fn start(ns: &Netns, rc: &std::path::Path, log: &std::path::Path) -> Linphone {
        let mut child = ns
            .command("linphonec")
            .arg("-c")
            .arg(rc)
            .args(["-d", "6", "-l"])
            .arg(log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("linphonec");
        let stdin = child.stdin.take().expect("stdin");
        let mut l = Linphone { child, stdin };
        l.say("soundcard use files");
        l
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("linphonec reads");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(secs) {
            eprintln!("timed out waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    true
}

#[test]
fn two_linphone_phones_call_each_other_through_the_appliance() {
    if !require_or_skip(
        "calls_linphone::two_linphone_phones_call_each_other_through_the_appliance",
        is_root()
            && switchboard_system::kamailio::installed()
            && switchboard_system::rtpengine::installed()
            && std::path::Path::new("/usr/bin/linphonec").exists(),
        "needs root, kamailio, rtpengine-daemon and linphone-cli",
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
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, HOST)])
        .expect("LAN hosts");
    d.ok(&["matrix", "allow", "sip-tls", "lan0"]);
    d.ok(&["matrix", "allow", "rtp", "lan0"]);
    d.ok(&["update", "-m", "calls from the LAN too"]);
    // Linphone finds its own address by a route to the outside world: a
    // default route through the appliance in each phone's namespace.
    lab.wan
        .ip(["route", "add", "default", "via", Lab::WAN_APPLIANCE])
        .expect("route");
    lab.lan
        .ip(["route", "add", "default", "via", Lab::LAN_APPLIANCE])
        .expect("route");
    let (alice, alice_doc) = linphone_document(&d, &lab, &ca_file, "+15550100401", "Alice");
    let (bob, bob_doc) = linphone_document(&d, &lab, &ca_file, "+15550100402", "Bob");
    let mut phones = Vec::new();
    for (who, doc, ns) in [("alice", &alice_doc, &lab.wan), ("bob", &bob_doc, &lab.lan)] {
        let pdir = dir.path().join(who);
        std::fs::create_dir_all(&pdir).expect("dir");
        let rc = pdir.join("linphonerc");
        std::fs::write(&rc, linphonerc(doc, &ca_file, &pdir)).expect("rc");
        phones.push(Linphone::start(ns, &rc, &pdir.join("log.txt")));
    }
    let registered =
        |user: &str| d.json(&["account", "show", user])["registrations"]["registered"] == true;
    let both = wait_for("both phones to register", 20, || {
        registered(&alice) && registered(&bob)
    });
    let logs = || {
        let mut out = String::new();
        for who in ["alice", "bob"] {
            let text =
                std::fs::read_to_string(dir.path().join(who).join("log.txt")).unwrap_or_default();
            let errors: Vec<&str> = text
                .lines()
                .filter(|l| {
                    !l.contains("alsa")
                        && (l.contains("error")
                            || l.contains("warning")
                            || l.to_lowercase().contains("regist")
                            || l.contains("TLS")
                            || l.contains("tls"))
                })
                .collect();
            let tail = &errors[errors.len().saturating_sub(40)..];
            out.push_str(&format!("--- {who}\n{}\n", tail.join("\n")));
        }
        out
    };
    assert!(both, "{}", logs());
    // What the phones "say": a 100 Hz square wave (8 kHz 16-bit mono WAV,
    // 6 s), two sample values only: in clear PCMU, at most two distinct
    // bytes per packet.
    let tone = dir.path().join("tone.wav");
    let samples: Vec<i16> = (0..48_000)
        .map(|i| if (i / 40) % 2 == 0 { 8000 } else { -8000 })
        .collect();
    let mut wav = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    wav.extend(b"RIFF");
    wav.extend((36 + data_len).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(1u16.to_le_bytes());
    wav.extend(8000u32.to_le_bytes());
    wav.extend(16000u32.to_le_bytes());
    wav.extend(2u16.to_le_bytes());
    wav.extend(16u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend(data_len.to_le_bytes());
    for s in &samples {
        wav.extend(s.to_le_bytes());
    }
    std::fs::write(&tone, wav).expect("wav");
    let cap_wan = Capture::start(&lab.wan, dir.path().join("wan.pcap"));
    let cap_lan = Capture::start(&lab.lan, dir.path().join("lan.pcap"));
    phones[1].say("autoanswer enable");
    std::thread::sleep(Duration::from_millis(300));
    phones[0].say(&format!("call sip:{bob}@{HOST}"));
    let mut call = Value::Null;
    let up = wait_for("the call to be up with media", 20, || {
        let calls = d.json(&["calls"]);
        match calls.as_array().and_then(|c| c.first()) {
            Some(c) if c["state"] == "confirmed" && c["srtp"] == true => {
                call = c.clone();
                true
            }
            _ => false,
        }
    });
    assert!(up, "{}\n{}", d.json(&["calls"]), logs());
    // Both phones play the tone into the call for a few seconds.
    for p in &mut phones {
        p.say(&format!("play {}", tone.display()));
    }
    std::thread::sleep(Duration::from_secs(4));
    let call = d.json(&["calls"])[0].clone();
    assert!(call["packets"].as_u64().unwrap_or(0) > 200, "{call}");
    assert_eq!(call["caller"], alice.as_str(), "{call}");
    assert_eq!(call["callee"], bob.as_str(), "{call}");
    assert_eq!(call["srtp"], true, "{call}");
    assert_eq!(
        call["media_nics"],
        serde_json::json!(["lan0", "wan0"]),
        "{call}"
    );
    // SRTP on the wire on both sides: RTP version 2, PCMU's 160 bytes plus
    // the suite's authentication tag, and no payload that is mostly one
    // byte (silence in clear).
    let tag = match call["crypto_suites"][0].as_str() {
        Some(s) if s.ends_with("_80") => 10,
        Some(s) if s.ends_with("_32") => 4,
        Some(s) if s.starts_with("AEAD_") => 16,
        other => panic!("an unexpected suite {other:?}: {call}"),
    };
    for (side, cap) in [("WAN", cap_wan), ("LAN", cap_lan)] {
        let all = cap.stop();
        let kinds: std::collections::BTreeMap<(u16, u16, u8, usize), usize> =
            all.iter().fold(Default::default(), |mut m, (s, d, p)| {
                *m.entry((*s, *d, p.get(1).copied().unwrap_or(0) & 0x7f, p.len()))
                    .or_default() += 1;
                m
            });
        let media: Vec<Vec<u8>> = all
            .into_iter()
            .filter(|(s, d, _)| (10000..=20000).contains(s) || (10000..=20000).contains(d))
            .map(|(_, _, p)| p)
            .filter(|p| p.len() >= 12 && p[1] & 0x7f == 0)
            .collect();
        assert!(
            media.len() >= 50,
            "{side}: {} RTP packets captured: {kinds:?}",
            media.len()
        );
        for p in &media {
            assert_eq!(p[0] >> 6, 2, "{side}: not RTP");
            assert_eq!(p.len(), 12 + 160 + tag, "{side}: not SRTP with its tag");
            let payload = &p[12..12 + 160];
            // In clear, the square wave is at most two distinct bytes in
            // 160 (a codec's resampling or gain could add a few);
            // ciphertext about 119.
            let distinct = payload
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            assert!(
                distinct >= 80,
                "{side}: a payload in clear ({distinct} distinct bytes)"
            );
        }
    }
    phones[0].say("terminate");
    assert!(
        wait_for("the call to end", 10, || d
            .json(&["calls"])
            .as_array()
            .is_some_and(Vec::is_empty)),
        "{}",
        d.json(&["calls"])
    );
}
