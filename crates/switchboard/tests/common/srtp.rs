//! SRTP (RFC 3711) with the suite every SIP/TLS phone offers,
//! `AES_CM_128_HMAC_SHA1_80`, for the test phones: the keys are the SDES
//! `a=crypto` lines of the SDP (RFC 4568), the packets real SRTP, so the
//! relay authenticates and decrypts what one phone sends and encrypts what
//! the other receives.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The session keys of one direction of one stream.
pub struct Srtp {
    cipher: Aes128,
    auth: [u8; 20],
    salt: [u8; 14],
    ssrc: u32,
    seq: u16,
    roc: u32,
    timestamp: u32,
}

/// AES in counter mode from `iv`, XORed into `data`.
fn aes_cm(cipher: &Aes128, iv: [u8; 16], data: &mut [u8]) {
    let mut counter = u128::from_be_bytes(iv);
    for chunk in data.chunks_mut(16) {
        let mut block = counter.to_be_bytes().into();
        cipher.encrypt_block(&mut block);
        for (d, k) in chunk.iter_mut().zip(block.iter()) {
            *d ^= k;
        }
        counter = counter.wrapping_add(1);
    }
}

impl Srtp {
    /// The master key and salt of an `inline:` key (base64 of 30 bytes).
    pub fn from_inline(inline: &str, ssrc: u32) -> Srtp {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(inline.split('|').next().expect("key"))
            .expect("base64 key");
        assert_eq!(raw.len(), 30, "AES_CM_128 master key and salt");
        let master = Aes128::new_from_slice(&raw[..16]).expect("key");
        let master_salt: [u8; 14] = raw[16..].try_into().expect("salt");
        // RFC 3711 4.3.1 with a key derivation rate of 0: the label at
        // byte 7 of the salt, then AES-CM from salt * 2^16.
        let derive = |label: u8, out: &mut [u8]| {
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(&master_salt);
            iv[7] ^= label;
            out.fill(0);
            aes_cm(&master, iv, out);
        };
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(0, &mut key);
        derive(1, &mut auth);
        derive(2, &mut salt);
        Srtp {
            cipher: Aes128::new_from_slice(&key).expect("key"),
            auth,
            salt,
            ssrc,
            seq: 1000,
            roc: 0,
            timestamp: 0,
        }
    }

    /// A fresh key for an `a=crypto` line: `inline:BASE64`.
    pub fn new_inline(seed: u8) -> String {
        let raw: Vec<u8> = (0..30u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(seed))
            .collect();
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; 10] {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&self.auth).expect("key");
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        let full = mac.finalize().into_bytes();
        full[..10].try_into().expect("80 bits")
    }

    /// The next SRTP packet carrying `payload` (PCMU, payload type 0).
    pub fn protect(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len() + 10);
        p.extend([0x80, 0x00]);
        p.extend(self.seq.to_be_bytes());
        p.extend(self.timestamp.to_be_bytes());
        p.extend(self.ssrc.to_be_bytes());
        p.extend(payload);
        let index = (u64::from(self.roc) << 16) | u64::from(self.seq);
        aes_cm(&self.cipher, self.iv(self.ssrc, index), &mut p[12..]);
        let tag = self.tag(&p, self.roc);
        p.extend(tag);
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.roc += 1;
        }
        self.timestamp = self.timestamp.wrapping_add(160);
        p
    }

    /// The payload of an SRTP packet, if it authenticates (no extension,
    /// no CSRC, the first roll-over period: what a short test call sends).
    pub fn unprotect(&self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < 12 + 10 || packet[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(packet[0] & 0x0f);
        let header = 12 + 4 * cc;
        let (body, tag) = packet.split_at(packet.len() - 10);
        if body.len() < header || self.tag(body, 0) != tag {
            return None;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes(packet[8..12].try_into().ok()?);
        let mut payload = body[header..].to_vec();
        aes_cm(&self.cipher, self.iv(ssrc, u64::from(seq)), &mut payload);
        Some(payload)
    }
}

#[test]
fn rfc_3711_b2_key_derivation_and_a_round_trip() {
    // RFC 3711 appendix B.3: master key E1F97A0D3E018BE0D64FA32C06DE4139,
    // master salt 0EC675AD498AFEEBB6960B3AABE6, cipher key
    // C61E7A93744F39EE10734AFE3FF7A087.
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let mut raw = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    raw.extend(hex("0EC675AD498AFEEBB6960B3AABE6"));
    let inline = base64::engine::general_purpose::STANDARD.encode(&raw);
    let s = Srtp::from_inline(&inline, 7);
    assert_eq!(s.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        s.auth[..20].to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
    let mut tx = Srtp::from_inline(&inline, 7);
    let packet = tx.protect(b"hello");
    assert!(!packet.windows(5).any(|w| w == b"hello"), "encrypted");
    assert_eq!(s.unprotect(&packet).as_deref(), Some(&b"hello"[..]));
    let mut forged = packet.clone();
    forged[13] ^= 1;
    assert_eq!(s.unprotect(&forged), None, "authenticated");
}
