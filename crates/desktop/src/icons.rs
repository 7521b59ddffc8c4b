//! Icons of a realm's entries: theme names and absolute paths resolved inside the realm's root
//! (never following a symlink out of it), copied into the published `icons/hicolor` tree under
//! a name that carries the realm's, with a badge in the realm's colour (crate::badge).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use realms_sys::root::RootDir;

use crate::badge::{self, Rgb};

/// Where a realm keeps hicolor icons (the system's, the user's, Flatpak's exports).
pub const THEME_DIRS: &[&str] = &[
    "/usr/share/icons/hicolor",
    "/usr/local/share/icons/hicolor",
    "/home/user/.local/share/icons/hicolor",
    "/var/lib/flatpak/exports/share/icons/hicolor",
    "/home/user/.local/share/flatpak/exports/share/icons/hicolor",
];

/// The largest icon copied out.
pub const MAX_ICON_BYTES: usize = 4 << 20;

const EXTENSIONS: &[&str] = &["png", "svg", "xpm"];

/// Square sizes the hicolor theme has directories for.
const SIZES: &[u32] = &[16, 22, 24, 32, 48, 64, 96, 128, 256, 512];

/// Finds icons in one realm and collects the copies to publish.
#[derive(Debug)]
pub struct Icons<'a> {
    root: &'a RootDir,
    prefix: String,
    color: Option<Rgb>,
    /// Published path (relative to the published directory) -> bytes.
    pub files: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
}

impl<'a> Icons<'a> {
    /// Icons of the realm whose root is `root`, published with names starting `prefix` and a
    /// badge in `color` (`#rrggbb`; none if it is not one).
    pub fn new(root: &'a RootDir, prefix: &str, color: &str) -> Icons<'a> {
        Icons {
            root,
            prefix: prefix.to_string(),
            color: Rgb::parse(color),
            files: RefCell::new(BTreeMap::new()),
        }
    }

    /// The published `Icon=` value for `icon`, after copying its files; `None` when the realm
    /// has no such icon (the name is kept: the host's theme may have it).
    pub fn publish(&self, icon: &str) -> Option<String> {
        if icon.starts_with('/') {
            let path = Path::new(icon);
            let ext = path.extension()?.to_str()?;
            let stem = path.file_stem()?.to_str()?;
            if !EXTENSIONS.contains(&ext) || !valid_name(stem) {
                return None;
            }
            let bytes = self.read(path)?;
            let name = format!("{}{stem}", self.prefix);
            let size = size_dir(ext, &bytes);
            self.add(&size, &name, ext, bytes);
            return Some(name);
        }
        if !valid_name(icon) {
            return None;
        }
        let name = format!("{}{icon}", self.prefix);
        let mut found = false;
        for base in THEME_DIRS {
            let Ok(sizes) = self.root.read_dir(base) else {
                continue;
            };
            for (size, kind) in sizes {
                let Some(size) = size.to_str() else { continue };
                if !kind.is_dir() || !valid_size(size) {
                    continue;
                }
                for ext in EXTENSIONS {
                    let file = format!("{base}/{size}/apps/{icon}.{ext}");
                    if let Some(bytes) = self.read(Path::new(&file)) {
                        self.add(size, &name, ext, bytes);
                        found = true;
                    }
                }
            }
        }
        if !found {
            for ext in EXTENSIONS {
                let file = format!("/usr/share/pixmaps/{icon}.{ext}");
                if let Some(bytes) = self.read(Path::new(&file)) {
                    self.add(&size_dir(ext, &bytes), &name, ext, bytes);
                    found = true;
                    break;
                }
            }
        }
        found.then_some(name)
    }

    fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let meta = self.root.metadata(path).ok()??;
        if !meta.is_file() || meta.len() > MAX_ICON_BYTES as u64 {
            return None;
        }
        self.root.read(path).ok()
    }

    fn add(&self, size: &str, name: &str, ext: &str, bytes: Vec<u8>) {
        // Symbolic icons are recoloured by the theme: a badge would not keep its colour.
        let badged = match self.color {
            Some(color) if size != "symbolic" => badge::apply_cached(ext, &bytes, color),
            _ => None,
        };
        let bytes = badged.unwrap_or(bytes);
        let path = PathBuf::from(format!("icons/hicolor/{size}/apps/{name}.{ext}"));
        self.files.borrow_mut().insert(path, bytes);
    }
}

/// An icon name: letters, digits, `.`, `_`, `-`, `+` (no path separators).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// A hicolor size directory: `48x48`, `256x256@2`, `scalable`, `symbolic`.
fn valid_size(dir: &str) -> bool {
    dir == "scalable"
        || dir == "symbolic"
        || (!dir.is_empty()
            && dir
                .chars()
                .all(|c| c.is_ascii_digit() || c == 'x' || c == '@'))
}

/// The hicolor directory for a file of its own: `scalable` for SVG, the PNG's size when it is
/// square and one of the theme's, else `48x48`.
fn size_dir(ext: &str, bytes: &[u8]) -> String {
    if ext == "svg" {
        return "scalable".into();
    }
    match png_size(bytes) {
        Some((w, h)) if w == h && SIZES.contains(&w) => format!("{w}x{w}"),
        _ => "48x48".into(),
    }
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A PNG header of the given size (enough for [`png_size`]).
    fn png(size: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend(size.to_be_bytes());
        b.extend(size.to_be_bytes());
        b
    }

    #[test]
    fn theme_names_and_absolute_paths_are_copied_out_under_the_realm_name() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for (p, bytes) in [
            ("usr/share/icons/hicolor/48x48/apps/editor.png", png(48)),
            (
                "usr/share/icons/hicolor/scalable/apps/editor.svg",
                b"<svg/>".to_vec(),
            ),
            ("usr/share/pixmaps/old.xpm", b"/* XPM */".to_vec()),
            ("opt/app/logo.png", png(64)),
        ] {
            fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            fs::write(r.join(p), bytes).unwrap();
        }
        // A symlink that leads out of the realm is resolved inside it: no host file is read.
        fs::create_dir_all(r.join("opt/evil")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", r.join("opt/evil/x.png")).unwrap();
        let root = RootDir::open(r).unwrap();
        let icons = Icons::new(&root, "realms-work-", "not a colour");
        assert_eq!(
            icons.publish("editor").as_deref(),
            Some("realms-work-editor")
        );
        assert_eq!(icons.publish("old").as_deref(), Some("realms-work-old"));
        assert_eq!(
            icons.publish("/opt/app/logo.png").as_deref(),
            Some("realms-work-logo")
        );
        assert_eq!(icons.publish("/opt/evil/x.png"), None);
        assert_eq!(
            icons.publish("firefox"),
            None,
            "not in the realm: kept as a theme name"
        );
        assert_eq!(icons.publish("../x"), None);
        let files: Vec<String> = icons
            .files
            .borrow()
            .keys()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            files,
            [
                "icons/hicolor/48x48/apps/realms-work-editor.png",
                "icons/hicolor/48x48/apps/realms-work-old.xpm",
                "icons/hicolor/64x64/apps/realms-work-logo.png",
                "icons/hicolor/scalable/apps/realms-work-editor.svg",
            ]
        );
    }

    #[test]
    fn copies_carry_a_badge_in_the_realm_colour_except_symbolic_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let mut real = Vec::new();
        let mut enc = png::Encoder::new(&mut real, 32, 32);
        enc.set_color(png::ColorType::Rgba);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[40; 32 * 32 * 4]).unwrap();
        w.finish().unwrap();
        let svg = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect/></svg>";
        for (p, bytes) in [
            ("usr/share/icons/hicolor/32x32/apps/term.png", real.clone()),
            ("usr/share/icons/hicolor/scalable/apps/term.svg", svg.into()),
            ("usr/share/icons/hicolor/symbolic/apps/term.svg", svg.into()),
        ] {
            fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            fs::write(r.join(p), bytes).unwrap();
        }
        let root = RootDir::open(r).unwrap();
        let icons = Icons::new(&root, "realms-w-", "#2060c0");
        assert_eq!(icons.publish("term").as_deref(), Some("realms-w-term"));
        let files = icons.files.borrow();
        let file = |p: &str| &files[Path::new(p)];
        let (_, _, px) =
            badge::decode_rgba(file("icons/hicolor/32x32/apps/realms-w-term.png")).unwrap();
        let centre = (32 * (32 - 7) + 32 - 7) * 4;
        assert_eq!(px[centre..centre + 4], [0x20, 0x60, 0xc0, 255]);
        assert_eq!(px[..4], [40, 40, 40, 40]);
        let scalable = file("icons/hicolor/scalable/apps/realms-w-term.svg");
        assert!(String::from_utf8_lossy(scalable).contains("fill:#2060c0;"));
        let symbolic = file("icons/hicolor/symbolic/apps/realms-w-term.svg");
        assert_eq!(symbolic, svg.as_bytes());
    }

    #[test]
    fn png_sizes() {
        assert_eq!(png_size(&png(32)), Some((32, 32)));
        assert_eq!(png_size(b"\x89PNG"), None);
        assert_eq!(size_dir("png", &png(33)), "48x48");
        assert_eq!(size_dir("png", &png(256)), "256x256");
    }
}
