//! A call between two real softphones (needs root, kamailio,
//! rtpengine-daemon, linphone-cli, tcpdump): Debian's `linphonec`, headless
//! (`soundcard use files`), configured with the Linphone document each
//! account's activation link serves (its `<section>`/`<entry>` pairs
//! written as linphonerc, plus the test CA and the transports), one in the
//! LAN neighbour's namespace and one in the WAN neighbour's. Alice calls
//! Bob, who answers by himself; `calls` shows the call with SRTP through
//! both NICs and packets relayed; media packets cross both links; Alice
//! hangs up and `calls` is empty again.

mod common;

use std::io::Write as _;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use common::phone::{HOST, fetch, link_in};
use serde_json::Value;
use switchboard_system::testlab::{Lab, Netns, is_root, require_or_skip};

/// The account's Linphone document, fetched through its activation link.
fn linphone_document(d: &Daemon, lab: &Lab, ca: &str, phone: &str, name: &str) -> (String, String) {
    let user = d.json(&[
        "account", "add", "--phone", phone, "--name", name, "--profile", "linphone",
    ])["username"]
        .as_str()
        .expect("user")
        .to_owned();
    d.ok(&["activate", &user]);
    let sms = d.json(&["sms", "list"]);
    let text = sms
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["username"] == user.as_str())
        .and_then(|m| m["text"].as_str())
        .expect("the SMS");
    let (body, meta) = fetch(lab, ca, &link_in(text));
    assert!(meta.contains("xml"), "{meta}");
    (user, body)
}

/// The document's sections as linphonerc, with what a headless phone in a
/// test needs besides: the test CA, TLS only, PCMU only, no sound card.
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
    let registered = |user: &str| {
        d.json(&["account", "show", user])["registrations"]["registered"] == true
    };
    let both = wait_for("both phones to register", 20, || registered(&alice) && registered(&bob));
    let logs = || {
        let mut out = String::new();
        for who in ["alice", "bob"] {
            let text = std::fs::read_to_string(dir.path().join(who).join("log.txt")).unwrap_or_default();
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
    phones[1].say("autoanswer enable");
    std::thread::sleep(Duration::from_millis(300));
    phones[0].say(&format!("call sip:{bob}@{HOST}"));
    let mut call = Value::Null;
    let up = wait_for("the call to be up with media", 20, || {
        let calls = d.json(&["calls"]);
        match calls.as_array().and_then(|c| c.first()) {
            Some(c) if c["state"] == "confirmed" && c["packets"].as_u64().unwrap_or(0) > 50 => {
                call = c.clone();
                true
            }
            _ => false,
        }
    });
    assert!(up, "{}\n{}", d.json(&["calls"]), logs());
    assert_eq!(call["caller"], alice.as_str(), "{call}");
    assert_eq!(call["callee"], bob.as_str(), "{call}");
    assert_eq!(call["srtp"], true, "{call}");
    assert_eq!(call["media_nics"], serde_json::json!(["lan0", "wan0"]), "{call}");
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
