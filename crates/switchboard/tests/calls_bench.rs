//! A measurement, not a check, so the suite leaves it out (`#[ignore]`);
//! run it (as root, with kamailio, rtpengine-daemon) with
//! `cargo test -p switchboard --test calls_bench -- --ignored --nocapture`.
//!
//! In the same run, first through the generated configuration (the daemon
//! with `--sip kamailio --media rtpengine`), then through the same Kamailio
//! and rtpengine binaries with a minimal hand-written configuration (no ban
//! policy, no sanity checks, no dialogs, no SRTP policy, registrations in
//! memory), then the generated one again:
//!
//! 1. calls set up and torn down per second, one after the other, between
//!    a WAN phone and a LAN phone over SIP/TLS (INVITE, 407, INVITE, 200,
//!    ACK, BYE, 200; offer, answer and delete at the relay);
//! 2. SRTP packets per second the relay takes from one phone, decrypts,
//!    encrypts and hands to the other (bridged between the NICs), from the
//!    rounds that delivered every packet.
//!
//! FIXME: some rounds, with either configuration, deliver only part of the
//! packets: the callee's socket hears nothing for a second while the
//! caller still sends (the relay pausing, or starved on a shared machine?
//! not understood yet); those rounds are shown, not averaged.

mod common;

#[path = "common/softphone.rs"]
mod softphone;
#[path = "common/srtp.rs"]
mod srtp;

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Daemon;
use common::phone::HOST;
use softphone::{SoftPhone, activated, media_of, sdp};
use srtp::Srtp;
use switchboard_system::testlab::{Lab, is_root};

const CALLS: usize = 150;
const PACKETS: usize = 20_000;

/// Figures of one round.
#[derive(Debug, Clone, Copy)]
struct Figures {
    calls_per_sec: f64,
    packets_per_sec: f64,
    delivered: usize,
}

/// `CALLS` calls from `a` to `b`, then one call held while `PACKETS` SRTP
/// packets go from `a` to `b` through the relay.
fn measure(
    a: &mut SoftPhone,
    b: &mut SoftPhone,
    b_user: &str,
    a_ha1: &str,
    log: &(dyn Fn() -> String + Sync),
) -> Figures {
    let a_key = Srtp::new_inline(7);
    let b_key = Srtp::new_inline(9);
    let stop = AtomicBool::new(false);
    let uri = format!("sip:{b_user}@{HOST}");
    let offer = sdp(Lab::WAN_PHONE, a.media_port(), Some(&a_key));
    let answer = sdp(Lab::LAN_ADMIN, b.media_port(), Some(&b_key));
    // Bob answers everything until told to stop (also when this thread
    // panics: the scope waits for him); returns the last INVITE.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (calls_per_sec, held, invite_at_b) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let bob = s.spawn(|| {
            let mut last = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(m) = b.read() else { continue };
                match m.method() {
                    "INVITE" => {
                        b.respond(&m, 200, "OK", &answer);
                        last = Some(m);
                    }
                    "BYE" => {
                        b.respond(&m, 200, "OK", "");
                    }
                    _ => {}
                }
            }
            last.expect("an INVITE")
        });
        let start = Instant::now();
        for _ in 0..CALLS {
            let (ok, call) = a.invite(&uri, &offer, a_ha1);
            if ok.code() != 200 {
                let errors: Vec<String> = log()
                    .lines()
                    .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                    .map(str::to_owned)
                    .collect();
                panic!("{ok:?}\n{}", errors.join("\n"));
            }
            a.in_dialog(&call, "ACK", call.cseq);
            let bye = a.next_cseq();
            a.in_dialog(&call, "BYE", bye);
            let r = a.wait("200 to BYE", |m| {
                m.code() >= 200 && m.header("CSeq") == format!("{bye} BYE")
            });
            assert_eq!(r.code(), 200, "{r:?}");
        }
        let rate = CALLS as f64 / start.elapsed().as_secs_f64();
        // One more call, held for the media.
        let (ok, call) = a.invite(&uri, &offer, a_ha1);
        assert_eq!(ok.code(), 200);
        a.in_dialog(&call, "ACK", call.cseq);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let inv = bob.join().expect("bob");
        (rate, (ok, call), inv)
    });
    let (ok, _call) = held;
    let (relay, port, _) = media_of(&ok.body);
    let (_, _, key_at_b) = media_of(&invite_at_b.body);
    let rx = Srtp::from_inline(&key_at_b.expect("key"), 0);
    let mut tx = Srtp::from_inline(&a_key, 0xbe0c_0001);
    let packets: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            let mut p = format!("sample-{i:06}").into_bytes();
            p.resize(160, 0x55);
            tx.protect(&p)
        })
        .collect();
    b.media
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    // Closed loop: at most WINDOW packets in flight (sent, not yet
    // received), so what is measured is the relay's rate, not the loss of
    // an overrun socket buffer. Packets are counted by their size, and
    // every 64th is decrypted and checked.
    const WINDOW: usize = 64;
    let received = std::sync::atomic::AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let (delivered, elapsed) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut buf = [0u8; 2048];
            let mut last = Instant::now();
            let (mut all, mut sampled, mut bad) = (0usize, 0usize, 0usize);
            while let Ok(n) = b.media.recv(&mut buf) {
                all += 1;
                if all.is_multiple_of(64) {
                    sampled += 1;
                    if rx.unprotect(&buf[..n]).is_none() {
                        bad += 1;
                    }
                }
                if n == 12 + 160 + 10 {
                    received.fetch_add(1, Ordering::Relaxed);
                    last = Instant::now();
                }
            }
            done.store(true, Ordering::Relaxed);
            assert_eq!(bad, 0, "{bad} of {sampled} sampled packets did not decrypt");
            (received.load(Ordering::Relaxed), last)
        });
        let start = Instant::now();
        for (sent, p) in packets.iter().enumerate() {
            let waiting = Instant::now();
            // A packet lost does not stall the loop for more than 2 ms;
            // a receiver that gave up (1 s without a packet) ends it.
            while sent - received.load(Ordering::Relaxed).min(sent) >= WINDOW
                && waiting.elapsed() < Duration::from_millis(2)
            {
                std::thread::yield_now();
            }
            if done.load(Ordering::Relaxed) {
                break;
            }
            let _ = a.media.send_to(p, (relay.as_str(), port));
        }
        let (n, last) = receiver.join().expect("receiver");
        (n, last.duration_since(start))
    });
    Figures {
        calls_per_sec,
        packets_per_sec: delivered as f64 / elapsed.as_secs_f64(),
        delivered,
    }
}

/// The minimal hand-written configuration: Kamailio with the same
/// certificates and subscriber table, rtpengine with the same interfaces.
fn hand_written(lab: &Lab, dir: &std::path::Path, kam: &std::path::Path) -> (Child, Child) {
    let rtp = dir.join("min-rtpengine.conf");
    std::fs::write(
        &rtp,
        "[rtpengine]\ninterface = lan0/192.0.2.1;wan0/198.51.100.1\nlisten-ng = 127.0.0.1:2223\ntable = -1\nport-min = 10000\nport-max = 20000\n",
    )
    .expect("write");
    let tls = dir.join("min-tls.cfg");
    std::fs::write(
        &tls,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\ncertificate = {k}/certs/voip.pem\nprivate_key = {k}/keys/voip.key\n",
            k = kam.display()
        ),
    )
    .expect("write");
    let cfg = dir.join("min-kamailio.cfg");
    std::fs::write(
        &cfg,
        format!(
            r#"#!KAMAILIO
children=2
tcp_children=2
enable_tls=yes
alias="{HOST}"
listen=tls:198.51.100.1:5061
listen=tls:192.0.2.1:5061
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "db_sqlite.so"
loadmodule "auth_db.so"
loadmodule "rtpengine.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls}")
modparam("auth_db", "db_url", "sqlite://{db}")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("registrar", "received_avp", "$avp(received)")
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2223")

request_route {{
	if (!mf_process_maxfwd_header("10")) {{
		sl_send_reply("483", "Too Many Hops");
		exit;
	}}
	if (has_totag()) {{
		if (loose_route()) {{
			if (is_method("BYE")) {{
				rtpengine_delete();
			}}
			t_relay();
		}} else if (is_method("ACK") && t_check_trans()) {{
			t_relay();
		}}
		exit;
	}}
	if (is_method("REGISTER")) {{
		if (!www_authenticate("switchboard", "subscriber")) {{
			www_challenge("switchboard", "0");
			exit;
		}}
		$avp(received) = $su;
		save("location");
		exit;
	}}
	if (is_method("INVITE")) {{
		if (!proxy_authenticate("switchboard", "subscriber")) {{
			proxy_challenge("switchboard", "0");
			exit;
		}}
		consume_credentials();
		if (!lookup("location")) {{
			sl_send_reply("404", "Not Found");
			exit;
		}}
		record_route();
		if ($Ri == "198.51.100.1") {{ $var(in) = "wan0"; }} else {{ $var(in) = "lan0"; }}
		if ($fs == "tls:198.51.100.1:5061") {{ $var(out) = "wan0"; }} else {{ $var(out) = "lan0"; }}
		rtpengine_offer("direction=$var(in) direction=$var(out) RTP/SAVP ICE=remove");
		t_on_reply("MEDIA");
		t_relay();
		exit;
	}}
	if (is_method("ACK") && t_check_trans()) {{
		t_relay();
		exit;
	}}
	sl_send_reply("405", "Method Not Allowed");
}}

onreply_route[MEDIA] {{
	if (has_body("application/sdp")) {{
		rtpengine_answer("RTP/SAVP ICE=remove");
	}}
}}
"#,
            tls = tls.display(),
            db = kam.join("subscriber.db").display(),
        ),
    )
    .expect("write");
    let rtpengine = lab
        .appliance
        .command("rtpengine")
        .arg("--config-file")
        .arg(&rtp)
        .args(["--foreground", "--log-stderr", "--log-level", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtpengine");
    let kamailio = lab
        .appliance
        .command("kamailio")
        .args(["-DD", "-E", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kamailio");
    std::thread::sleep(Duration::from_secs(2));
    (rtpengine, kamailio)
}

fn stop(mut c: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture (root, kamailio, rtpengine-daemon)"]
fn calls_and_media_through_the_generated_configuration_and_a_minimal_one() {
    if !(is_root()
        && switchboard_system::kamailio::installed()
        && switchboard_system::rtpengine::installed())
    {
        eprintln!("SKIPPED: needs root, kamailio and rtpengine-daemon");
        return;
    }
    let lab = Lab::new().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = ["--sip", "kamailio", "--media", "rtpengine"];
    let (d, files, _p) = common::ready_appliance(&lab, dir.path(), &serve);
    let ca_path = files.path().join("ca.pem");
    let ca_file = ca_path.display().to_string();
    let ca = std::fs::read(&ca_path).expect("ca");
    lab.lan
        .set_hosts(&[(Lab::LAN_APPLIANCE, HOST)])
        .expect("LAN hosts");
    d.ok(&["matrix", "allow", "sip-tls", "lan0"]);
    d.ok(&["matrix", "allow", "rtp", "lan0"]);
    d.ok(&["update", "-m", "calls from the LAN too"]);
    let (alice, alice_ha1) = activated(&d, &lab, &ca_file, "+15550100301", "Alice");
    let (bob, bob_ha1) = activated(&d, &lab, &ca_file, "+15550100302", "Bob");
    let phones = || SoftPhone::pair(&lab, &ca, (&alice, &alice_ha1), (&bob, &bob_ha1));
    let kam_dir = d.data_dir.join("kamailio");
    let data_dir = d.data_dir.clone();
    let mut rounds: Vec<(&str, Figures)> = Vec::new();
    let mut d = Some(d);
    for round in [
        "generated",
        "minimal",
        "generated",
        "minimal",
        "generated",
        "minimal",
    ] {
        let figures = if round == "generated" {
            let daemon = d.get_or_insert_with(|| {
                Daemon::start(
                    Some(&lab.appliance),
                    dir.path(),
                    &[
                        "--firewall",
                        "enforce",
                        "--sip",
                        "kamailio",
                        "--media",
                        "rtpengine",
                    ],
                )
            });
            std::thread::sleep(Duration::from_secs(1));
            let (mut a, mut b) = phones();
            let f = measure(&mut a, &mut b, &bob, &alice_ha1, &|| daemon.log_text());
            drop((a, b));
            f
        } else {
            // The daemon stops its Kamailio and rtpengine.
            if let Some(mut old) = d.take() {
                old.sigterm();
            }
            let (r, k) = hand_written(&lab, dir.path(), &kam_dir);
            let (mut a, mut b) = phones();
            let f = measure(&mut a, &mut b, &bob, &alice_ha1, &String::new);
            drop((a, b));
            stop(k);
            stop(r);
            f
        };
        eprintln!(
            "{round:>9}: {:.1} calls/s, {:.0} SRTP packets/s relayed ({} of {PACKETS} delivered)",
            figures.calls_per_sec, figures.packets_per_sec, figures.delivered
        );
        rounds.push((round, figures));
    }
    // Packets per second only from rounds that delivered every packet (a
    // relay that paused for a second makes a round's rate meaningless).
    let mean = |name: &str, f: fn(&Figures) -> Option<f64>| {
        let v: Vec<f64> = rounds
            .iter()
            .filter(|(r, _)| *r == name)
            .filter_map(|(_, x)| f(x))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let calls: fn(&Figures) -> Option<f64> = |f| Some(f.calls_per_sec);
    let packets: fn(&Figures) -> Option<f64> =
        |f| (f.delivered == PACKETS).then_some(f.packets_per_sec);
    let (gc, mc) = (mean("generated", calls), mean("minimal", calls));
    let (gp, mp) = (mean("generated", packets), mean("minimal", packets));
    let packets_words = if gp.is_nan() || mp.is_nan() {
        "SRTP packets/s: no complete round on one side (see the rounds above)".to_owned()
    } else {
        format!(
            "SRTP packets/s: generated {gp:.0}, minimal {mp:.0} ({:.2}x)",
            gp / mp
        )
    };
    eprintln!(
        "calls/s: generated {gc:.1}, minimal {mc:.1} ({:.2}x); {packets_words}",
        gc / mc
    );
    let _ = data_dir;
}
