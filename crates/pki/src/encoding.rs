//! Just enough PEM (RFC 7468) and DER framing to read what administrators
//! upload and to write what the store keeps. PEM: any label, text around
//! and between blocks, RFC 1421 headers (which mark a legacy encrypted key).
//! DER: the outer tag-length-value of a structure, to tell a truncated file
//! from garbage before handing it to a real parser.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::ImportError;

/// One `-----BEGIN label-----` … `-----END label-----` block.
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
    /// `Proc-Type: 4,ENCRYPTED`: OpenSSL's pre-PKCS#8 key encryption.
    pub legacy_encrypted: bool,
}

/// The UTF-8 encoding of U+FEFF, the byte-order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn is_pem(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
}

pub(crate) fn parse_pem(input: &[u8]) -> Result<Vec<PemBlock>, ImportError> {
    let malformed = |detail: &str| ImportError::Malformed {
        detail: detail.to_owned(),
    };
    let mut blocks = Vec::new();
    let mut open: Option<PemBlock> = None;
    let mut base64 = Zeroizing::new(Vec::new());
    let mut lines = input.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_ascii();
        let Some(block) = &mut open else {
            // Editors on Windows start a UTF-8 file with a byte-order mark,
            // and `cat` of such files puts one at the start of a line.
            let line = line.strip_prefix(UTF8_BOM).unwrap_or(line).trim_ascii();
            if !line.starts_with(b"-----BEGIN ") && line.windows(11).any(|w| w == b"-----BEGIN ") {
                // Skipping the line would silently drop the block.
                return Err(malformed(
                    "a PEM BEGIN line has something before -----BEGIN on the same line",
                ));
            }
            if let Some(rest) = line.strip_prefix(b"-----BEGIN ") {
                let Some(label) = rest.strip_suffix(b"-----") else {
                    return Err(match lines.peek() {
                        None => ImportError::Truncated {
                            inside: "a PEM BEGIN line",
                        },
                        Some(_) => malformed("a PEM BEGIN line does not end with -----"),
                    });
                };
                open = Some(PemBlock {
                    label: String::from_utf8_lossy(label).into_owned(),
                    der: Zeroizing::new(Vec::new()),
                    legacy_encrypted: false,
                });
            }
            continue;
        };
        if let Some(rest) = line.strip_prefix(b"-----END ") {
            if rest.strip_suffix(b"-----") != Some(block.label.as_bytes()) {
                return Err(malformed(&format!(
                    "the PEM block {:?} has a mismatched END line",
                    block.label
                )));
            }
            block.der = Zeroizing::new(STANDARD.decode(base64.as_slice()).map_err(|_| {
                malformed(&format!(
                    "the PEM block {:?} is not valid base64",
                    block.label
                ))
            })?);
            base64.clear();
            blocks.extend(open.take());
        } else if line.contains(&b':') {
            block.legacy_encrypted |=
                line.starts_with(b"Proc-Type:") && line.ends_with(b"ENCRYPTED");
        } else {
            base64.extend_from_slice(line);
        }
    }
    match open {
        Some(_) => Err(ImportError::Truncated {
            inside: "a PEM block (no END line)",
        }),
        None => Ok(blocks),
    }
}

/// Appends `der` to `out` as a PEM block with 64-character lines.
pub(crate) fn write_pem(out: &mut String, label: &str, der: &[u8]) {
    let base64 = Zeroizing::new(STANDARD.encode(der));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

/// How the outer DER value of an input relates to the input's length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// One SEQUENCE exactly as long as the input.
    Whole,
    /// A SEQUENCE header that promises more bytes than there are.
    Truncated,
    /// A SEQUENCE followed by more bytes.
    Trailing,
    /// Not a DER SEQUENCE at all.
    NotDer,
}

pub(crate) fn frame(input: &[u8]) -> Frame {
    match header(input) {
        Some(Ok((0x30, header_len, len))) => match input.len().cmp(&(header_len + len)) {
            std::cmp::Ordering::Less => Frame::Truncated,
            std::cmp::Ordering::Equal => Frame::Whole,
            std::cmp::Ordering::Greater => Frame::Trailing,
        },
        Some(Err(())) if input.first() == Some(&0x30) => Frame::Truncated,
        _ => Frame::NotDer,
    }
}

/// Splits the first DER value off `input`: `(tag, contents, rest)`.
pub(crate) fn split_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, header_len, len) = header(input)?.ok()?;
    let value = input.get(header_len..header_len.checked_add(len)?)?;
    Some((tag, value, &input[header_len + len..]))
}

/// The tags of the values inside the outer value of `der`.
pub(crate) fn child_tags(der: &[u8]) -> Vec<u8> {
    let mut rest = split_tlv(der).map_or(&[][..], |(_, value, _)| value);
    std::iter::from_fn(|| {
        let (tag, _, next) = split_tlv(rest)?;
        rest = next;
        Some(tag)
    })
    .collect()
}

/// `(tag, header length, content length)`; `Some(Err)` when the header
/// itself is cut; `None` when it is not a definite-length DER header.
fn header(input: &[u8]) -> Option<Result<(u8, usize, usize), ()>> {
    let (&tag, rest) = input.split_first()?;
    let Some(&first) = rest.first() else {
        return Some(Err(()));
    };
    if first < 0x80 {
        return Some(Ok((tag, 2, usize::from(first))));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let Some(bytes) = rest.get(1..=count) else {
        return Some(Err(()));
    };
    let len = bytes.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
    Some(Ok((tag, 2 + count, len)))
}

/// A DER tag-length-value with `tag` around the concatenation of `parts`.
pub(crate) fn tlv(tag: u8, parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 6));
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_found_among_other_text_with_headers_noted() {
        let mut text = String::from("Bag Attributes\n    friendlyName: x\nsubject=CN = x\n");
        write_pem(&mut text, "CERTIFICATE", &[0x30, 0x00]);
        text.push_str("junk between\r\n");
        text.push_str("-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,00\r\n\r\nMAA=\r\n-----END RSA PRIVATE KEY-----\r\n");
        let blocks = parse_pem(text.as_bytes()).expect("valid PEM");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der.as_slice(), &[0x30, 0x00]);
        assert!(!blocks[0].legacy_encrypted);
        assert_eq!(blocks[1].label, "RSA PRIVATE KEY");
        assert!(blocks[1].legacy_encrypted);
    }

    #[test]
    fn a_pem_block_without_end_is_truncated_and_a_wrong_end_is_malformed() {
        let cut = parse_pem(b"-----BEGIN CERTIFICATE-----\nMAA=\n").err();
        assert_eq!(cut.map(|e| e.code()), Some("truncated"));
        let cut_begin = parse_pem(b"-----BEGIN CERTIF").err();
        assert_eq!(cut_begin.map(|e| e.code()), Some("truncated"));
        let wrong =
            parse_pem(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END PRIVATE KEY-----\n").err();
        assert_eq!(wrong.map(|e| e.code()), Some("malformed"));
    }

    #[test]
    fn der_frames_tell_truncated_from_trailing_from_garbage() {
        let long = tlv(0x30, &[&[0u8; 300]]);
        assert_eq!(frame(&long), Frame::Whole);
        assert_eq!(frame(&long[..200]), Frame::Truncated);
        assert_eq!(frame(&long[..3]), Frame::Truncated);
        assert_eq!(frame(&[0x30]), Frame::Truncated);
        let mut trailing = long.to_vec();
        trailing.push(0);
        assert_eq!(frame(&trailing), Frame::Trailing);
        assert_eq!(frame(b"hello"), Frame::NotDer);
        assert_eq!(
            split_tlv(&long).map(|(tag, value, rest)| (tag, value.len(), rest.len())),
            Some((0x30, 300, 0))
        );
    }
}
