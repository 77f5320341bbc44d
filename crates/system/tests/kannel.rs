//! System test of the SMS adapter with a real Kannel on 127.0.0.1:
//! bearerbox, smsbox and Kannel's fake SMS centre (`fakesmsc`, from
//! `kannel-extras`), started by `testlab::Kannel` from a configuration of its
//! own (free loopback ports, a temporary directory). No root needed; skipped
//! loudly when Kannel is not installed, unless
//! `SWITCHBOARD_REQUIRE_SYSTEM_TESTS=1` (CI, which installs it).
//!
//! One story, in order: a GSM-7 text full of URL-special characters, a UCS-2
//! text with a sender and an SMSC id, a concatenated message, a wrong
//! password, the SMS centre gone (Kannel queues, delivers when it is back),
//! Kannel gone (transient error) and back (sent again) — how the daemon's
//! retry queue recovers from an outage.

use std::time::{Duration, Instant};

use switchboard_provision::{SmsEncoding, sms_length};
use switchboard_system::sms::{self, Gateway, Secret, SendOutcome, Sms};
use switchboard_system::testlab::{Kannel, kannel_installed, reassemble, require_or_skip};

const TO: &str = "+4915112345678";
/// `send`'s timeout.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a message may take from `send` to the fake SMS centre.
const DELIVERY: Duration = Duration::from_secs(10);

fn kannel_gateway(
    kannel: &Kannel,
    password: &str,
    from: Option<&str>,
    smsc: Option<&str>,
) -> Gateway {
    Gateway::Kannel {
        url: kannel.sendsms_url(),
        username: Kannel::USERNAME.to_owned(),
        password: Secret::new(password),
        from: from.map(str::to_owned),
        smsc: smsc.map(str::to_owned),
    }
}

#[test]
fn kannel_delivers_queues_and_recovers() {
    if !require_or_skip(
        "kannel::kannel_delivers_queues_and_recovers",
        kannel_installed(),
        "needs Kannel: apt-get install kannel kannel-extras",
    ) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let send = |gateway: &Gateway, text: &str| {
        let sms = Sms {
            to: TO.to_owned(),
            text: text.to_owned(),
        };
        rt.block_on(sms::send(gateway, &sms, TIMEOUT))
    };
    let sent = Ok(SendOutcome::Sent { gateway_id: None });
    let mut timings = Vec::new();
    let mut lap = {
        let mut last = Instant::now();
        move |what: &str, timings: &mut Vec<String>| {
            timings.push(format!("{what}: {:?}", last.elapsed()));
            last = Instant::now();
        }
    };

    let mut kannel = Kannel::start(None).expect("start Kannel");
    lap("start Kannel", &mut timings);
    let gateway = kannel_gateway(&kannel, Kannel::PASSWORD, None, None);

    // 1. GSM-7, with what URL-encoding must get right; Kannel's global sender.
    let text = "Your account: https://voip.example.test/p/Zq8_k-3xT?a=1&b=2+3 [72 h] 100% €5 ok";
    assert_eq!(sms_length(text).encoding, SmsEncoding::Gsm7);
    assert_eq!(send(&gateway, text), sent);
    let got = kannel.wait_received(1, DELIVERY).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (
            got[0].from.as_str(),
            got[0].to.as_str(),
            got[0].kind.as_str()
        ),
        (Kannel::GLOBAL_SENDER, TO, "text")
    );
    assert_eq!(got[0].text(), text);
    lap("GSM-7 message delivered", &mut timings);

    // 2. Not GSM-7: UCS-2 (coding=2), with a sender and an SMSC id.
    let text = "Grüße, привет 😀 https://voip.example.test/p/Zq8";
    assert_eq!(sms_length(text).encoding, SmsEncoding::Ucs2);
    let named = kannel_gateway(
        &kannel,
        Kannel::PASSWORD,
        Some("Switchboard"),
        Some(Kannel::SMSC_ID),
    );
    assert_eq!(send(&named, text), sent);
    let got = kannel.wait_received(2, DELIVERY).unwrap();
    assert_eq!(
        (
            got[1].from.as_str(),
            got[1].to.as_str(),
            got[1].kind.as_str()
        ),
        ("Switchboard", TO, "ucs-2")
    );
    assert_eq!(got[1].text(), text);
    lap("UCS-2 message delivered", &mut timings);

    // 3. Longer than one SMS: two concatenated parts, put together again.
    let text = format!(
        "Activate: https://voip.example.test/p/{} & enjoy",
        "k".repeat(160)
    );
    assert_eq!(sms_length(&text).parts, 2);
    assert_eq!(send(&gateway, &text), sent);
    let got = kannel.wait_received(4, DELIVERY).unwrap();
    assert!(got[2..].iter().all(|p| p.kind == "udh"), "{got:?}");
    let whole = reassemble(&got);
    assert_eq!(whole.len(), 3, "{whole:?}");
    assert_eq!(whole[2].text(), text);
    lap("concatenated message delivered", &mut timings);

    // 4. A wrong password: permanent, and nothing goes out.
    let wrong = kannel_gateway(&kannel, "not-the-password", None, None);
    let err = send(&wrong, "never").unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("username or password"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    // 5. The SMS centre is gone: Kannel answers "3: Queued for later
    //    delivery", which is sent — it delivers once the centre is back.
    kannel.stop_smsc();
    let text = "Queued while the SMSC was away";
    assert_eq!(send(&gateway, text), sent);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(kannel.received().len(), 4, "{:?}", kannel.received());
    kannel.start_smsc().expect("SMSC back");
    let got = kannel.wait_received(5, DELIVERY).unwrap();
    assert_eq!(got[4].text(), text);
    assert_eq!(got.len(), 5, "{got:?}");
    lap(
        "SMSC outage: queued by Kannel, delivered on reconnect",
        &mut timings,
    );

    // 6. Kannel is gone: transient. Back: the retry goes out.
    kannel.stop();
    let text = "Sent after Kannel came back";
    let err = send(&gateway, text).unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains(text), "{err}");
    lap("Kannel down: transient error", &mut timings);
    kannel.start_again().expect("Kannel back");
    lap("restart Kannel", &mut timings);
    assert_eq!(send(&gateway, text), sent);
    let got = kannel.wait_received(6, DELIVERY).unwrap();
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!((got[5].to.as_str(), got[5].text()), (TO, text.to_owned()));
    lap("retry after the outage delivered", &mut timings);

    eprintln!("kannel timings:\n  {}", timings.join("\n  "));
}
