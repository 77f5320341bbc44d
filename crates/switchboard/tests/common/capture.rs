//! Packet captures on a lab host's link for the call tests: tcpdump
//! writing a pcap, read back as the UDP datagrams it holds.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_system::testlab::Netns;

/// tcpdump on `eth0` of `ns`, writing raw packets to `file`.
pub struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, file: std::path::PathBuf) -> Capture {
        let child = ns
            .command("tcpdump")
            .args(["-i", "eth0", "-n", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg("udp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on" once it captures.
        let start = Instant::now();
        while !file.exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Capture { child, file }
    }

    /// Stop and return the UDP payloads captured (the pcap's packets,
    /// Ethernet + IPv4 + UDP headers cut off), with their ports.
    pub fn stop(mut self) -> Vec<(u16, u16, Vec<u8>)> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let raw = std::fs::read(&self.file).expect("pcap");
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= raw.len() {
            let caplen = u32::from_le_bytes(raw[at + 8..at + 12].try_into().expect("len")) as usize;
            let frame = &raw[at + 16..(at + 16 + caplen).min(raw.len())];
            at += 16 + caplen;
            // Ethernet (14), IPv4 with its IHL, UDP (8).
            if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
                continue;
            }
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let udp = &frame[14 + ihl..];
            if udp.len() < 8 {
                continue;
            }
            let sport = u16::from_be_bytes([udp[0], udp[1]]);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            out.push((sport, dport, udp[8..].to_vec()));
        }
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
