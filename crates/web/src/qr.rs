//! The QR code of an activation link, as inline SVG for the console: the
//! administrator holds the phone up to the screen instead of sending an SMS.
//!
//! Black modules on a white square with the standard quiet zone of four
//! modules, drawn as one `<path>` (a run of dark modules per row segment)
//! in a `viewBox` counted in modules, so it scales without blurring. Error
//! correction level M (15 % of the symbol may be damaged or glared).
//!
//! **Limits.** Text only, encoded as bytes (a link is ASCII); at most
//! [`MAX_BYTES`] bytes (version 40 at level M), longer is [`QrError::TooLong`].
//! No logo, no colours: the contrast is what phone cameras read best.

use qrcode::types::QrError as EncodeError;
use qrcode::{Color, EcLevel, QrCode};

/// Modules of white around the symbol, as the standard requires.
pub const QUIET_ZONE: usize = 4;
/// The longest text a code holds at error correction level M (binary mode).
pub const MAX_BYTES: usize = 2331;
/// Display size of one module, in CSS pixels.
const MODULE_PX: usize = 4;

/// Why no QR code could be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("the text is {len} bytes long; a QR code holds at most {MAX_BYTES}")]
    TooLong { len: usize },
    #[error("the text cannot be encoded as a QR code: {0}")]
    Unencodable(String),
}

/// The modules of the code of `text`, dark = `true`, without quiet zone;
/// rows of `width` modules.
fn modules(text: &str) -> Result<(usize, Vec<bool>), QrError> {
    let code =
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| match e {
            EncodeError::DataTooLong => QrError::TooLong { len: text.len() },
            other => QrError::Unencodable(other.to_string()),
        })?;
    let width = code.width();
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Ok((width, dark))
}

/// `text` as a QR code: a self-contained `<svg>` element (no script, no
/// style, no external reference) with `role="img"` and an accessible name.
pub fn svg(text: &str) -> Result<String, QrError> {
    let (width, dark) = modules(text)?;
    let side = width + 2 * QUIET_ZONE;
    let px = side * MODULE_PX;
    let mut d = String::new();
    for (y, row) in dark.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] {
                x += 1;
            }
            d.push_str(&format!(
                "M{} {}h{}v1h-{}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE,
                x - start,
                x - start
            ));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{px}\" height=\"{px}\" \
         viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\" role=\"img\" \
         aria-label=\"QR code of the activation link\">\
         <rect width=\"{side}\" height=\"{side}\" fill=\"#ffffff\"/>\
         <path fill=\"#000000\" d=\"{d}\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode what [`svg`] draws: the module matrix, with its quiet zone,
    /// scaled up to pixels as a camera would see it.
    fn decode(text: &str) -> String {
        let (width, dark) = modules(text).unwrap();
        let scale = 4;
        let side = (width + 2 * QUIET_ZONE) * scale;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            let inside = (QUIET_ZONE..QUIET_ZONE + width).contains(&mx)
                && (QUIET_ZONE..QUIET_ZONE + width).contains(&my);
            if inside && dark[(my - QUIET_ZONE) * width + (mx - QUIET_ZONE)] {
                0
            } else {
                255
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the picture");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_code_decodes_to_the_link() {
        for link in [
            "https://voip.example.test/a/3q2-7VfXkKp0_cZ9rT4wYg",
            "https://203.0.113.10:8443/a/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?x=1&y=2",
            "x",
        ] {
            assert_eq!(decode(link), link);
        }
    }

    #[test]
    fn the_svg_is_black_on_white_with_a_quiet_zone() {
        let link = "https://voip.example.test/a/token";
        let svg = svg(link).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("role"), Some("img"));
        assert_eq!(
            root.attribute("aria-label"),
            Some("QR code of the activation link")
        );
        let (width, dark) = modules(link).unwrap();
        let side = width + 2 * QUIET_ZONE;
        assert_eq!(
            root.attribute("viewBox"),
            Some(format!("0 0 {side} {side}").as_str())
        );
        let rect = root.children().find(|n| n.has_tag_name("rect")).unwrap();
        assert_eq!(rect.attribute("fill"), Some("#ffffff"));
        let path = root.children().find(|n| n.has_tag_name("path")).unwrap();
        assert_eq!(path.attribute("fill"), Some("#000000"));
        // Every dark module is drawn once: the runs' lengths add up.
        let d = path.attribute("d").unwrap();
        let drawn: usize = d
            .split('h')
            .skip(1)
            .filter(|s| !s.starts_with('-'))
            .map(|s| s.split('v').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(drawn, dark.iter().filter(|&&b| b).count());
        // The top-left finder pattern starts right after the quiet zone.
        assert!(d.starts_with(&format!("M{QUIET_ZONE} {QUIET_ZONE}h7v1h-7z")));
        for node in doc.descendants().filter(|n| n.is_element()) {
            assert_ne!(node.tag_name().name(), "script");
            for a in node.attributes() {
                let name = a.name();
                assert!(
                    !name.starts_with("on") && name != "style" && name != "href",
                    "{name} in {svg}"
                );
            }
        }
    }

    #[test]
    fn too_long_a_text_is_refused() {
        let longest = "a".repeat(MAX_BYTES);
        assert_eq!(decode(&longest), longest);
        let long = "a".repeat(MAX_BYTES + 1);
        assert_eq!(svg(&long), Err(QrError::TooLong { len: MAX_BYTES + 1 }));
    }
}
