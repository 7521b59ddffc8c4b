//! The layout of the state tree: which directories are entries, the mount point each serves
//! (its name unescaped with systemd-escape's path rules), and how it is mounted.
//!
//! ```text
//! /state/home                  -> /home            (unencrypted: directly in the partition)
//! /state/encrypted.img         the LUKS2 image; unlocked and mounted at /state/encrypted
//! /state/encrypted.entries     the names of the encrypted entries, for the generator
//! /state/encrypted/var         -> /var
//! /state/encrypted/etc/{upper,work}  -> overlay on /etc (the base's /etc stays the lower layer)
//! /state/encrypted/my-fancy-dir      -> /my/fancy/dir
//! /state/encrypted/fancy\x2ddir      -> /fancy-dir
//! ```

use std::path::{Path, PathBuf};

use crate::error::Result;
use realms_sys::IoContext;

/// The encrypted image, in the state partition.
pub const IMAGE: &str = "encrypted.img";
/// Where the encrypted image's file system is mounted, in the state partition.
pub const ENCRYPTED: &str = "encrypted";
/// The list of encrypted entries, kept beside the image for the generator (which runs before
/// the image is unlocked and so cannot look inside it).
pub const ENCRYPTED_LIST: &str = "encrypted.entries";
/// The entries a new state partition gets, encrypted.
pub const DEFAULT_ENCRYPTED: &[&str] = &["var", "etc", "usr-local", "opt", "srv"];
/// The entries a new state partition gets, unencrypted.
pub const DEFAULT_PLAIN: &[&str] = &["home"];

/// How an entry is mounted on its mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A bind mount of the entry directory.
    Bind,
    /// An overlay: the mount point's own contents below, `upper/` of the entry above (`/etc`).
    Overlay,
}

/// One directory of the state tree and the mount point it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The directory name, the escaped mount point (`my-fancy-dir`).
    pub name: String,
    /// The mount point (`/my/fancy/dir`).
    pub mount_point: String,
    /// Inside the encrypted image, or directly in the partition.
    pub encrypted: bool,
    /// Bind or overlay.
    pub kind: Kind,
}

impl Entry {
    /// Checks `name` and gives the entry; the error says which rule the name breaks.
    pub fn parse(name: &str, encrypted: bool) -> std::result::Result<Entry, String> {
        let path = realms_unit::escape::unescape_path(name).map_err(|e| e.to_string())?;
        let mount_point = String::from_utf8(path).map_err(|_| "it is not UTF-8".to_string())?;
        let canonical =
            realms_unit::escape::escape_path(&mount_point).map_err(|e| e.to_string())?;
        if canonical != name {
            return Err(format!(
                "it is not the canonical escaping of {mount_point} (that is '{canonical}')"
            ));
        }
        const FORBIDDEN: &[&str] = &["/proc", "/sys", "/dev", "/run", "/state", "/boot", "/efi"];
        let under = |p: &str| mount_point == p || mount_point.starts_with(&format!("{p}/"));
        if mount_point == "/" || mount_point == "/usr" || FORBIDDEN.iter().any(|p| under(p)) {
            return Err(format!(
                "{mount_point} cannot be served from the state partition"
            ));
        }
        let kind = if mount_point == "/etc" {
            Kind::Overlay
        } else {
            Kind::Bind
        };
        Ok(Entry {
            name: name.to_string(),
            mount_point,
            encrypted,
            kind,
        })
    }

    /// The entry's directory below the state mount point `state` (`/state`).
    pub fn source(&self, state: &Path) -> PathBuf {
        let base = if self.encrypted {
            state.join(ENCRYPTED)
        } else {
            state.to_path_buf()
        };
        base.join(&self.name)
    }
}

/// A name that was skipped and why (logged by the generator, shown by `status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The directory name.
    pub name: String,
    /// Why it is not an entry.
    pub reason: String,
}

/// The entries of a state tree, and the names that are not entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// The entries, unencrypted first, each side sorted by name.
    pub entries: Vec<Entry>,
    /// Names skipped, with the reason.
    pub skipped: Vec<Skipped>,
    /// Whether the tree has an encrypted image.
    pub has_image: bool,
}

/// Sorts names into entries and skipped ones.
fn classify(names: Vec<String>, encrypted: bool, layout: &mut Layout) {
    for name in names {
        match Entry::parse(&name, encrypted) {
            Ok(e) => layout.entries.push(e),
            Err(reason) => layout.skipped.push(Skipped { name, reason }),
        }
    }
}

/// The sorted names of the subdirectories of `dir`, leaving out hidden ones and `skip`.
fn subdirs(dir: &Path, skip: &[&str]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).ctx("listing", dir)? {
        let item = item.ctx("listing", dir)?;
        let is_dir = item.file_type().ctx("listing", dir)?.is_dir();
        let name = item.file_name().to_string_lossy().into_owned();
        if is_dir && !name.starts_with('.') && !skip.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads the layout of the state tree at `state`: the unencrypted entries from its
/// subdirectories, the encrypted ones from `encrypted/` when it is open (a directory with
/// entries) or else from `encrypted.entries`.
pub fn read(state: &Path) -> Result<Layout> {
    let mut layout = Layout {
        has_image: state.join(IMAGE).is_file(),
        ..Layout::default()
    };
    classify(subdirs(state, &[ENCRYPTED])?, false, &mut layout);
    let open = state.join(ENCRYPTED);
    let inside = if open.is_dir() {
        subdirs(&open, &[])?
    } else {
        Vec::new()
    };
    let mut names = if inside.is_empty() {
        read_list(state)?
    } else {
        inside
    };
    names.sort();
    classify(names, true, &mut layout);
    Ok(layout)
}

/// The names in `encrypted.entries` (none if it does not exist).
pub fn read_list(state: &Path) -> Result<Vec<String>> {
    let path = state.join(ENCRYPTED_LIST);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(realms_sys::Error::io("reading", &path, e).into()),
    }
}

/// Rewrites `encrypted.entries` from the open encrypted tree, so that a directory the admin
/// added there is mounted from the next boot on.
pub fn refresh_list(state: &Path) -> Result<Vec<String>> {
    let names = subdirs(&state.join(ENCRYPTED), &[])?;
    write_list(state, &names)?;
    Ok(names)
}

/// Writes `encrypted.entries` (atomically).
pub fn write_list(state: &Path, names: &[String]) -> Result<()> {
    let mut text = String::from("# encrypted entries, for realms-state-generator\n");
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    realms_sys::atomic::write_file(state.join(ENCRYPTED_LIST), text.as_bytes(), 0o644)?;
    Ok(())
}

/// Creates the directories of an entry named `name` under `base` (for `/etc` also `upper/` and
/// `work/`).
pub fn create(base: &Path, name: &str) -> Result<()> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
    if name == "etc" {
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).ctx("creating", dir.join(sub))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unescape_with_systemd_escape_path_rules() {
        let cases = [
            ("home", "/home"),
            ("my-fancy-dir", "/my/fancy/dir"),
            ("fancy\\x2ddir", "/fancy-dir"),
            ("usr-local", "/usr/local"),
            ("var-lib-my\\x2dapp", "/var/lib/my-app"),
        ];
        for (name, mp) in cases {
            let e = Entry::parse(name, true).unwrap();
            assert_eq!(e.mount_point, mp);
            // Round trip through crates/unit's escape.
            assert_eq!(realms_unit::escape::escape_path(mp).unwrap(), name);
        }
        assert_eq!(Entry::parse("etc", true).unwrap().kind, Kind::Overlay);
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for name in [
            "-",
            "usr",
            "proc",
            "state-x",
            "fancy\\x2Ddir",
            "a--b",
            "\\x2e.",
            "x\\",
        ] {
            assert!(Entry::parse(name, false).is_err(), "{name} accepted");
        }
        let why = Entry::parse("fancy\\x2Ddir", false).unwrap_err();
        assert!(why.contains("fancy\\x2ddir"), "{why}");
    }

    #[test]
    fn read_takes_open_entries_or_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for d in ["home", "fancy\\x2ddir", "bad--name", ".hidden", "encrypted"] {
            std::fs::create_dir(s.join(d)).unwrap();
        }
        std::fs::write(s.join(IMAGE), b"").unwrap();
        write_list(s, &["var".into(), "my-fancy-dir".into()]).unwrap();
        let l = read(s).unwrap();
        let names: Vec<_> = l
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.encrypted))
            .collect();
        assert_eq!(
            names,
            [
                ("fancy\\x2ddir", false),
                ("home", false),
                ("my-fancy-dir", true),
                ("var", true)
            ]
        );
        assert_eq!(l.skipped.len(), 1);
        assert!(l.has_image);
        // Once open, the image's own directories count, and refresh writes them to the list.
        create(&s.join(ENCRYPTED), "etc").unwrap();
        let l = read(s).unwrap();
        assert_eq!(l.entries.iter().filter(|e| e.encrypted).count(), 1);
        assert_eq!(refresh_list(s).unwrap(), ["etc"]);
        assert_eq!(read_list(s).unwrap(), ["etc"]);
    }
}
