//! The realm's colour on its published icons: a filled circle in the bottom-right corner, drawn
//! over the icon. PNG icons get it in their pixels (with a 1 px ring in black or white, whichever
//! contrasts with the colour); SVG icons get a `<circle>` appended to the document, so the
//! original drawing is kept as it was. An icon that cannot be read is published unchanged.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Mutex;

/// The badge's diameter as a fraction of the icon's smaller side (`3/8`).
const DIAMETER: (u32, u32) = (3, 8);

/// The largest PNG (in pixels) that gets a badge; bigger ones are published as they are.
pub const MAX_PIXELS: u64 = 1024 * 1024;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// Parses `#rrggbb`.
    pub fn parse(text: &str) -> Option<Rgb> {
        let hex = text.strip_prefix('#')?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Rgb([byte(0)?, byte(2)?, byte(4)?]))
    }

    /// Black or white, whichever stands out against this colour.
    pub fn contrast(self) -> Rgb {
        let [r, g, b] = self.0.map(u32::from);
        if r * 299 + g * 587 + b * 114 > 128_000 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    }

    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

/// The icon with a badge in `color`, or `None` when it is not one this can draw on (then the
/// original is published).
pub fn apply(ext: &str, bytes: &[u8], color: Rgb) -> Option<Vec<u8>> {
    match ext {
        "png" => png(bytes, color),
        "svg" => svg(bytes, color).map(String::into_bytes),
        _ => None,
    }
}

/// Badged icons this process made, by a hash of (extension, colour, original): the watcher
/// publishes the same icons again on every change, and redrawing them all would slow a switch.
static CACHE: Mutex<Cache> = Mutex::new(Cache {
    map: BTreeMap::new(),
    held: 0,
});

struct Cache {
    map: BTreeMap<u128, Option<Vec<u8>>>,
    /// The bytes held.
    held: usize,
}

/// The most bytes the cache holds; past that it starts over.
const CACHE_BYTES: usize = 64 << 20;

/// [`apply`], remembering the results.
pub fn apply_cached(ext: &str, bytes: &[u8], color: Rgb) -> Option<Vec<u8>> {
    use siphasher::sip128::Hasher128;
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher13::new();
    h.write(ext.as_bytes());
    h.write_u8(0);
    h.write(&color.0);
    h.write(bytes);
    let key = h.finish128().as_u128();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = cache.map.get(&key) {
        return hit.clone();
    }
    let out = apply(ext, bytes, color);
    let len = out.as_ref().map_or(0, Vec::len);
    if cache.held + len > CACHE_BYTES {
        cache.map.clear();
        cache.held = 0;
    }
    cache.map.insert(key, out.clone());
    cache.held += len;
    out
}

/// Where a pixel falls: in the badge's fill, on its ring, or outside it.
#[derive(Debug, PartialEq, Eq)]
pub enum Spot {
    /// Inside the badge.
    Fill,
    /// On its 1 px ring.
    Ring,
    /// Not covered by the badge.
    Outside,
}

/// Where pixel (`x`, `y`) of a `width` x `height` icon falls.
pub fn spot(width: u32, height: u32, x: u32, y: u32) -> Spot {
    let diameter = u64::from(width.min(height)) * u64::from(DIAMETER.0) / u64::from(DIAMETER.1);
    let radius = (diameter as f64).max(3.0) / 2.0;
    let (cx, cy) = (f64::from(width) - radius, f64::from(height) - radius);
    let (px, py) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
    let d = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt();
    if d <= radius - 1.0 {
        Spot::Fill
    } else if d <= radius {
        Spot::Ring
    } else {
        Spot::Outside
    }
}

/// Decodes a PNG of any colour type and depth into 8-bit RGBA: (width, height, pixels).
pub fn decode_rgba(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let mut decoder = ::png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(::png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().ok()?;
    let (w, h) = reader.info().size();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return None;
    }
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let data = &buf[..info.buffer_size()];
    let pixels = usize::try_from(u64::from(info.width) * u64::from(info.height)).ok()?;
    use ::png::ColorType::*;
    let rgba: Vec<u8> = match info.color_type {
        Rgba => data.to_vec(),
        Rgb => data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        GrayscaleAlpha => data
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        Grayscale => data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        Indexed => return None,
    };
    (rgba.len() == pixels.checked_mul(4)?).then_some((info.width, info.height, rgba))
}

fn png(bytes: &[u8], color: Rgb) -> Option<Vec<u8>> {
    let (w, h, mut rgba) = decode_rgba(bytes)?;
    let ring = color.contrast();
    for (i, px) in rgba.chunks_exact_mut(4).enumerate() {
        let i = u32::try_from(i).ok()?;
        let c = match spot(w, h, i % w, i / w) {
            Spot::Fill => color,
            Spot::Ring => ring,
            Spot::Outside => continue,
        };
        px.copy_from_slice(&[c.0[0], c.0[1], c.0[2], 255]);
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, w, h);
    encoder.set_color(::png::ColorType::Rgba);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Fast);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&rgba).ok()?;
    writer.finish().ok()?;
    Some(out)
}

/// The SVG with a badge `<circle>` as the last child of its root element (drawn last, so on
/// top), placed in the root's own coordinates (its `viewBox`, else its `width` and `height`).
fn svg(bytes: &[u8], color: Rgb) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = skip_prolog(text)?;
    let tag = start_tag(&text[start..])?;
    let attrs = attributes(tag.strip_prefix("<svg")?.trim_end_matches('>'))?;
    if tag.ends_with("/>") {
        return None;
    }
    let (x, y, w, h) = view_box(&attrs)?;
    let close = root_close(text)?;
    let size = w.min(h);
    let stroke = size / 48.0;
    let r = size * f64::from(DIAMETER.0) / f64::from(DIAMETER.1) / 2.0;
    let badge = format!(
        "<circle class=\"realms-badge\" cx=\"{}\" cy=\"{}\" r=\"{}\" style=\"fill:{};stroke:{};stroke-width:{};opacity:1;display:inline\"/>",
        num(x + w - r),
        num(y + h - r),
        num(r - stroke / 2.0),
        color.hex(),
        color.contrast().hex(),
        num(stroke)
    );
    Some(format!("{}{badge}{}", &text[..close], &text[close..]))
}

fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The offset of the root element, past the XML declaration, comments, processing
/// instructions and the doctype.
fn skip_prolog(text: &str) -> Option<usize> {
    let mut i = 0;
    loop {
        let rest = &text[i..];
        let trimmed = rest.trim_start();
        i += rest.len() - trimmed.len();
        if trimmed.starts_with("<?") {
            i += trimmed.find("?>")? + 2;
        } else if trimmed.starts_with("<!--") {
            i += trimmed.find("-->")? + 3;
        } else if trimmed.starts_with("<!DOCTYPE") {
            i += doctype_len(trimmed)?;
        } else if trimmed.starts_with("<svg") {
            return Some(i);
        } else {
            return None;
        }
    }
}

/// The length of `<!DOCTYPE ...>`, an internal subset `[...]` included.
fn doctype_len(text: &str) -> Option<usize> {
    let mut depth = 0u32;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.checked_sub(1)?,
            (None, '>') if depth == 0 => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The start tag at the beginning of `text` (`<svg ...>`), quoted `>` allowed.
fn start_tag(text: &str) -> Option<&str> {
    let after = text.strip_prefix("<svg")?;
    if !after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/') {
        return None;
    }
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(&text[..=i]),
            _ => {}
        }
    }
    None
}

/// The attributes of a start tag's body: (name, value) pairs.
fn attributes(mut body: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    loop {
        body = body.trim_start();
        if body.is_empty() || body == "/" {
            return Some(out);
        }
        let (name, rest) = body.split_once('=')?;
        let rest = rest.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = rest[1..].find(quote)? + 1;
        out.push((name.trim(), &rest[1..end]));
        body = &rest[end + 1..];
    }
}

/// The root's coordinate system: its `viewBox`, else `0 0 width height` (plain or `px`).
fn view_box(attrs: &[(&str, &str)]) -> Option<(f64, f64, f64, f64)> {
    let get = |name: &str| attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let positive = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
    if let Some(vb) = get("viewBox") {
        let n: Vec<f64> = vb
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [x, y, w, h] = n[..] else { return None };
        return (x.is_finite() && y.is_finite()).then_some((x, y, positive(w)?, positive(h)?));
    }
    let length = |name: &str| -> Option<f64> {
        let v = get(name)?.trim();
        positive(v.strip_suffix("px").unwrap_or(v).trim().parse().ok()?)
    };
    Some((0.0, 0.0, length("width")?, length("height")?))
}

/// The offset of the root's end tag `</svg>`: only whitespace and comments may follow it.
fn root_close(text: &str) -> Option<usize> {
    let at = text.rfind("</svg")?;
    let mut rest = text[at + 5..].trim_start().strip_prefix('>')?.trim_start();
    while let Some(comment) = rest.strip_prefix("<!--") {
        rest = comment[comment.find("-->")? + 3..].trim_start();
    }
    rest.is_empty().then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb = Rgb([0xd0, 0x20, 0x30]);

    /// A PNG of the given colour type and depth whose pixels differ everywhere.
    fn sample(w: u32, h: u32, color: ::png::ColorType, depth: ::png::BitDepth) -> Vec<u8> {
        let samples = match color {
            ::png::ColorType::Grayscale | ::png::ColorType::Indexed => 1,
            ::png::ColorType::GrayscaleAlpha => 2,
            ::png::ColorType::Rgb => 3,
            ::png::ColorType::Rgba => 4,
        };
        let bytes_per = if depth == ::png::BitDepth::Sixteen {
            2
        } else {
            1
        };
        let len = (w * h) as usize * samples * bytes_per;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        let mut enc = ::png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == ::png::ColorType::Indexed {
            enc.set_palette(
                (0..=255u8)
                    .flat_map(|i| [i, 255 - i, i / 2])
                    .collect::<Vec<_>>(),
            );
        }
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn png_badge_has_the_colour_and_the_rest_is_unchanged() {
        use ::png::{BitDepth::*, ColorType::*};
        for (w, h, color, depth) in [
            (48, 48, Rgba, Eight),
            (64, 64, Rgb, Eight),
            (32, 32, Grayscale, Eight),
            (24, 24, GrayscaleAlpha, Eight),
            (16, 16, Indexed, Eight),
            (22, 22, Rgba, Sixteen),
            (40, 30, Rgb, Eight),
        ] {
            let original = sample(w, h, color, depth);
            let badged = apply("png", &original, RED).unwrap();
            assert_eq!(&badged[..8], b"\x89PNG\r\n\x1a\n");
            // A valid PNG of the same size (decoded by the png crate to its last chunk).
            let (bw, bh, after) = decode_rgba(&badged).expect("the output decodes");
            assert_eq!((bw, bh), (w, h));
            let (_, _, before) = decode_rgba(&original).unwrap();
            let (mut fill, mut ring) = (0, 0);
            for (i, (a, b)) in after.chunks(4).zip(before.chunks(4)).enumerate() {
                let (x, y) = (i as u32 % w, i as u32 / w);
                match spot(w, h, x, y) {
                    Spot::Fill => {
                        fill += 1;
                        assert_eq!(a, [0xd0, 0x20, 0x30, 255], "({x},{y}) of {color:?}");
                    }
                    Spot::Ring => {
                        ring += 1;
                        assert_eq!(a, [255, 255, 255, 255], "({x},{y}) of {color:?}");
                    }
                    Spot::Outside => assert_eq!(a, b, "({x},{y}) of {color:?} changed"),
                }
            }
            assert!(fill > 0 && ring > 0, "{w}x{h}: {fill} fill, {ring} ring");
            // The badge sits in the bottom-right corner; the top-left quarter is untouched.
            let inset = 1 + w.min(h) * 3 / 16;
            assert_eq!(spot(w, h, w - inset, h - inset), Spot::Fill);
            assert!((0..w / 2).all(|x| (0..h / 2).all(|y| spot(w, h, x, y) == Spot::Outside)));
        }
    }

    #[test]
    fn the_ring_contrasts_with_the_colour() {
        assert_eq!(Rgb([250, 240, 100]).contrast(), Rgb([0, 0, 0]));
        assert_eq!(Rgb([20, 40, 120]).contrast(), Rgb([255, 255, 255]));
        let badged = apply(
            "png",
            &sample(32, 32, ::png::ColorType::Rgb, ::png::BitDepth::Eight),
            Rgb([250, 240, 100]),
        )
        .unwrap();
        let (_, _, px) = decode_rgba(&badged).unwrap();
        let ring = (0..32 * 32)
            .find(|i| spot(32, 32, i % 32, i / 32) == Spot::Ring)
            .unwrap() as usize;
        assert_eq!(px[ring * 4..ring * 4 + 4], [0, 0, 0, 255]);
    }

    #[test]
    fn icons_it_cannot_read_are_left_alone() {
        // Only a header (the IHDR of a 48x48 icon), a truncated file, a huge image, an XPM.
        let mut header = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        header.extend(48u32.to_be_bytes());
        header.extend(48u32.to_be_bytes());
        header.extend([8, 6, 0, 0, 0]);
        assert_eq!(apply("png", &header, RED), None);
        let whole = sample(48, 48, ::png::ColorType::Rgba, ::png::BitDepth::Eight);
        assert_eq!(apply("png", &whole[..whole.len() / 2], RED), None);
        // Images above MAX_PIXELS are not decoded (1-bit ones: small files, huge buffers).
        let bitmap = |w: u32, h: u32| {
            let mut out = Vec::new();
            let mut enc = ::png::Encoder::new(&mut out, w, h);
            enc.set_color(::png::ColorType::Grayscale);
            enc.set_depth(::png::BitDepth::One);
            let mut writer = enc.write_header().unwrap();
            writer
                .write_image_data(&vec![0x55; w.div_ceil(8) as usize * h as usize])
                .unwrap();
            writer.finish().unwrap();
            out
        };
        assert!(apply("png", &bitmap(1024, 1024), RED).is_some());
        assert_eq!(apply("png", &bitmap(1025, 1024), RED), None);
        assert_eq!(apply("xpm", b"/* XPM */", RED), None);
    }

    #[test]
    fn the_cache_keys_on_colour_and_content() {
        let a = sample(24, 24, ::png::ColorType::Rgb, ::png::BitDepth::Eight);
        let b = sample(24, 24, ::png::ColorType::Rgba, ::png::BitDepth::Eight);
        let blue = Rgb([0, 0, 200]);
        for _ in 0..2 {
            assert_eq!(apply_cached("png", &a, RED), apply("png", &a, RED));
            assert_eq!(apply_cached("png", &a, blue), apply("png", &a, blue));
            assert_eq!(apply_cached("png", &b, RED), apply("png", &b, RED));
            assert_eq!(apply_cached("svg", &a, RED), None);
        }
        assert_ne!(apply_cached("png", &a, RED), apply_cached("png", &a, blue));
    }

    #[test]
    fn colours_parse_as_hash_rrggbb_only() {
        assert_eq!(Rgb::parse("#d02030"), Some(RED));
        assert_eq!(Rgb::parse("#D02030"), Some(RED));
        for bad in ["d02030", "#d0203", "#d020300", "#g02030", "", "#+1+2+3"] {
            assert_eq!(Rgb::parse(bad), None, "{bad}");
        }
    }

    /// The badge element of an output, after checking that the rest is the original.
    fn added(original: &str, badged: &str) -> String {
        let at = badged
            .find("<circle class=\"realms-badge\"")
            .expect("a badge");
        let len = badged[at..].find("/>").unwrap() + 2;
        assert_eq!(
            format!("{}{}", &badged[..at], &badged[at + len..]),
            original,
            "the original is kept byte for byte"
        );
        assert!(badged[at + len..].trim_start().starts_with("</svg>"));
        badged[at..at + len].to_string()
    }

    #[test]
    fn svg_badge_is_a_circle_drawn_over_the_whole_original() {
        let original = r##"<?xml version="1.0" encoding="UTF-8"?>
<!-- an icon -->
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd" [
  <!ENTITY accent "#33aa55">
]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64" viewBox="-8,-8 32 32" data-note="a > b">
  <style>circle { fill: blue; }</style>
  <rect x="-8" y="-8" width="32" height="32" fill="&accent;"/>
  <circle cx="8" cy="8" r="6"/>
  <g><path d="M0 0 L4 4"/></g>
</svg>
<!-- trailing -->
"##;
        let badged = String::from_utf8(apply("svg", original.as_bytes(), RED).unwrap()).unwrap();
        let badge = added(original, &badged);
        let doc = roxmltree::Document::parse_with_options(
            &badged,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("the output is well-formed XML");
        let before = roxmltree::Document::parse_with_options(
            original,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .unwrap();
        let names = |d: &roxmltree::Document| -> Vec<String> {
            d.root_element()
                .children()
                .filter(|n| n.is_element())
                .map(|n| n.tag_name().name().to_string())
                .collect()
        };
        // The original's elements, in order, then the badge (last: drawn on top).
        assert_eq!(
            names(&doc),
            [names(&before), vec!["circle".to_string()]].concat()
        );
        let circle = doc.root_element().last_element_child().unwrap();
        assert_eq!(circle.attribute("class"), Some("realms-badge"));
        assert!(
            badge.starts_with("<circle class=\"realms-badge\""),
            "{badge}"
        );
        // Inline style: the document's `circle { fill: blue }` does not repaint it.
        let style = circle.attribute("style").unwrap();
        assert!(
            style.contains("fill:#d02030;") && style.contains("stroke:#ffffff;"),
            "{style}"
        );
        // In the bottom-right corner of the viewBox (-8 -8 32 32), inside it.
        let f = |a: &str| circle.attribute(a).unwrap().parse::<f64>().unwrap();
        let (cx, cy, r) = (f("cx"), f("cy"), f("r"));
        assert!(cx > 8.0 && cy > 8.0 && r > 4.0, "{badge}");
        assert!(cx + r <= 24.0 && cy + r <= 24.0, "{badge}");
    }

    #[test]
    fn svg_without_a_view_box_uses_its_size() {
        let original = "<svg xmlns='http://www.w3.org/2000/svg' width='48px' height='48'><rect width='48' height='48'/></svg>";
        let badged = String::from_utf8(apply("svg", original.as_bytes(), RED).unwrap()).unwrap();
        let badge = added(original, &badged);
        assert!(badge.contains("cx=\"39\" cy=\"39\""), "{badge}");
        roxmltree::Document::parse(&badged).expect("well-formed");
    }

    #[test]
    fn svgs_it_cannot_place_a_badge_on_are_left_alone() {
        for doc in [
            "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'/>",
            "<svg xmlns='http://www.w3.org/2000/svg' width='100%' height='100%'><rect/></svg>",
            "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 0 16'><rect/></svg>",
            "<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>",
            "<svg:svg xmlns:svg='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><svg:rect/></svg:svg>",
            "<html><svg viewBox='0 0 16 16'></svg></html>",
            "<svg viewBox='0 0 16 16'><rect/></svg><rect/>",
            "<svgx viewBox='0 0 16 16'></svgx>",
            "<svg viewBox='0 0 16 16'><rect/>",
        ] {
            assert_eq!(apply("svg", doc.as_bytes(), RED), None, "{doc}");
        }
        assert_eq!(
            apply("svg", b"<svg viewBox='0 0 16 16'>\xff</svg>", RED),
            None
        );
    }
}
