//! The `20-portable.conf` drop-in: its text (byte-identical to portablectl 252's) and its first
//! line, the marker naming the images a unit was attached from — the only ownership record.

use std::path::Path;

use crate::image::ImageKind;

const MARKER_BEGIN: &str = "# Drop-in created for image '";
const MARKER_END: &str = "', do not edit.";

/// One image as the drop-in names it: its in-root path and kind.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// The image's in-root path.
    pub path: &'a Path,
    /// What the image is (it decides between `RootDirectory=` and `RootImage=`).
    pub kind: ImageKind,
}

/// What the drop-in of one unit says.
#[derive(Debug, Clone)]
pub struct DropIn<'a> {
    /// The base image.
    pub root: Layer<'a>,
    /// Extension images, in command-line order.
    pub extensions: &'a [Layer<'a>],
    /// The unit's file name.
    pub unit: &'a str,
    /// The image the unit file came from (the root or an extension).
    pub from: &'a Path,
    /// Whether the host has `/etc/os-release` (else `/usr/lib/os-release` is bound).
    pub host_etc_os_release: bool,
    /// `--force`: extension images get `:x-systemd.relax-extension-release-check`.
    pub force: bool,
}

/// Escapes `:`, `\` and non-printable bytes as `\xNN`, as the marker's path list needs.
pub fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if !(0x20..0x7f).contains(&b) || b == b'\\' || b == b':' {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Undoes [`escape_path`] (leaves anything that is not a valid `\xNN` as it is).
pub fn unescape_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(v) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The marker line (with its newline) for a root image and its extensions.
pub fn marker_line(root: &Path, extensions: &[Layer<'_>]) -> String {
    let mut text = format!("{MARKER_BEGIN}{}", escape_path(root));
    for ext in extensions {
        text.push(':');
        text.push_str(&escape_path(ext.path));
    }
    text.push_str(MARKER_END);
    text.push('\n');
    text
}

fn is_tree(kind: ImageKind) -> bool {
    matches!(kind, ImageKind::Directory | ImageKind::Subvolume)
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl DropIn<'_> {
    /// The whole `20-portable.conf`.
    pub fn text(&self) -> String {
        let mut text = marker_line(self.root.path, self.extensions);
        if !self.unit.ends_with(".service") {
            return text;
        }
        let setting = if is_tree(self.root.kind) {
            "RootDirectory"
        } else {
            "RootImage"
        };
        let os_release = if self.host_etc_os_release {
            "/etc/os-release"
        } else {
            "/usr/lib/os-release"
        };
        let base = base_name(self.from);
        text.push_str(&format!(
            "\n[Service]\n{setting}={}\nEnvironment=PORTABLE={base}\nBindReadOnlyPaths={os_release}:/run/host/os-release\nLogExtraFields=PORTABLE={base}\n",
            self.root.path.display()
        ));
        if self.from != self.root.path {
            for ext in self.extensions {
                let key = if is_tree(ext.kind) {
                    "ExtensionDirectories"
                } else {
                    "ExtensionImages"
                };
                // portablectl 252 decides the decoration by the type of the base image; a raw
                // extension over a directory gets it too, or PID 1 refuses an extension whose
                // release file --force accepted under another name.
                let relax = if self.force && !(is_tree(self.root.kind) && is_tree(ext.kind)) {
                    ":x-systemd.relax-extension-release-check"
                } else {
                    ""
                };
                text.push_str(&format!("{key}={}{relax}\n", ext.path.display()));
            }
        }
        text
    }
}

/// The images named by a drop-in's first line (escaped as written), or `None` if the line is
/// not a portable marker.
pub fn parse_marker(first_line: &str) -> Option<Vec<String>> {
    let inner = first_line
        .trim_end_matches('\n')
        .strip_prefix(MARKER_BEGIN)?
        .strip_suffix(MARKER_END)?;
    Some(inner.split(':').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = "# Drop-in created for image '/var/lib/portables/foo-test', do not edit.\n\n[Service]\nRootDirectory=/var/lib/portables/foo-test\nEnvironment=PORTABLE=foo-test\nBindReadOnlyPaths=/etc/os-release:/run/host/os-release\nLogExtraFields=PORTABLE=foo-test\n";

    fn dir(path: &Path) -> Layer<'_> {
        Layer {
            path,
            kind: ImageKind::Directory,
        }
    }

    #[test]
    fn matches_the_captured_drop_in() {
        let p = Path::new("/var/lib/portables/foo-test");
        let d = DropIn {
            root: dir(p),
            extensions: &[],
            unit: "foo-test.service",
            from: p,
            host_etc_os_release: true,
            force: false,
        };
        assert_eq!(d.text(), CAPTURED);
        assert_eq!(d.text().len(), 243);
        let raw = Path::new("/var/lib/portables/foo-test_1.raw");
        let r = DropIn {
            root: Layer {
                path: raw,
                kind: ImageKind::Raw,
            },
            from: raw,
            ..d.clone()
        };
        assert!(r.text().contains(
            "RootImage=/var/lib/portables/foo-test_1.raw\nEnvironment=PORTABLE=foo-test_1.raw\n"
        ));
        let sock = DropIn {
            unit: "foo-test.socket",
            ..d
        };
        assert_eq!(
            sock.text(),
            "# Drop-in created for image '/var/lib/portables/foo-test', do not edit.\n"
        );
    }

    #[test]
    fn extensions_are_listed_for_units_from_them() {
        let root = Path::new("/r/base.raw");
        let ext = Path::new("/e/app0");
        let exts = [dir(ext)];
        let d = DropIn {
            root: Layer {
                path: root,
                kind: ImageKind::Raw,
            },
            extensions: &exts,
            unit: "app0.service",
            from: ext,
            host_etc_os_release: false,
            force: true,
        };
        let text = d.text();
        assert!(
            text.starts_with("# Drop-in created for image '/r/base.raw:/e/app0', do not edit.\n")
        );
        assert!(text.contains("Environment=PORTABLE=app0\n"));
        assert!(text.contains("BindReadOnlyPaths=/usr/lib/os-release:/run/host/os-release\n"));
        assert!(
            text.ends_with(
                "ExtensionDirectories=/e/app0:x-systemd.relax-extension-release-check\n"
            )
        );
    }

    #[test]
    fn forced_raw_extension_over_a_directory_gets_the_relax_flag() {
        // Without the flag PID 1 fails: "Failed to set up mount namespacing:
        // /run/systemd/unit-extensions/0" while attach reported success.
        let root = Path::new("/srv/minimal_0");
        let ext = Path::new("/srv/app0_1.0.raw");
        let exts = [Layer {
            path: ext,
            kind: ImageKind::Raw,
        }];
        let d = DropIn {
            root: dir(root),
            extensions: &exts,
            unit: "app0.service",
            from: ext,
            host_etc_os_release: true,
            force: true,
        };
        assert!(d.text().ends_with(
            "ExtensionImages=/srv/app0_1.0.raw:x-systemd.relax-extension-release-check\n"
        ));
        // Directory over directory: 252 writes no flag (ExtensionDirectories= takes none).
        let dir_exts = [dir(ext)];
        let d = DropIn {
            extensions: &dir_exts,
            ..d
        };
        assert!(
            d.text()
                .ends_with("ExtensionDirectories=/srv/app0_1.0.raw\n")
        );
    }

    #[test]
    fn markers_round_trip() {
        let line = marker_line(Path::new("/a:b/x"), &[]);
        let parsed = parse_marker(&line).unwrap();
        assert_eq!(parsed, vec!["/a\\x3ab/x".to_string()]);
        assert_eq!(unescape_path(&parsed[0]), "/a:b/x");
        assert_eq!(parse_marker("[Unit]"), None);
        let newer = "# Drop-in created for image '/x/a.raw:/y/b.raw', do not edit.";
        assert_eq!(parse_marker(newer).unwrap().len(), 2);
    }
}
