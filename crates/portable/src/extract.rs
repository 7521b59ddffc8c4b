//! Reading an image: its os-release (or an extension's extension-release) and the unit files that
//! match the requested prefixes, found in systemd's unit search path inside the image. Every path
//! resolves inside the image; a unit symlink that leads out of it is refused.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use realms_sys::root::{FileType, RootDir};
use realms_unit::OsRelease;
use realms_unit::os_release::{ExtensionKind, extension_release_path, strip_image_version};

use crate::error::{Error, Result};
use crate::image::Image;
use crate::layout::{Host, UNIT_SEARCH_PATH};
use crate::name::unit_matches;
use crate::raw::Mounted;

/// An image opened for reading: a directory in place, or a raw image mounted read-only.
#[derive(Debug)]
pub enum Opened {
    /// A directory or subvolume, read in place.
    Tree(RootDir),
    /// A raw image, mounted read-only.
    Raw(Mounted),
}

impl Opened {
    /// Opens `image` (raw images are mounted until this is dropped).
    pub fn open(host: &Host, image: &Image) -> Result<Opened> {
        let real = host.host_path(&image.path)?;
        if image.kind.is_tree() {
            Ok(Opened::Tree(RootDir::open(real)?))
        } else {
            Ok(Opened::Raw(Mounted::mount(&real)?))
        }
    }

    /// The image's tree.
    pub fn root(&self) -> &RootDir {
        match self {
            Opened::Tree(r) => r,
            Opened::Raw(m) => m.root(),
        }
    }
}

/// One unit file found in an image.
#[derive(Debug, Clone)]
pub struct UnitSource {
    /// The unit's file name.
    pub name: String,
    /// The unit file's bytes.
    pub contents: Vec<u8>,
    /// Its host-visible in-root path (directory images only; raw images are mounted privately).
    pub source: Option<PathBuf>,
    /// The image it came from (the base or an extension).
    pub image: PathBuf,
}

/// What an image holds for attaching.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Where the release file was found (`/etc/os-release`, ...), and its text.
    pub release_path: String,
    /// The release file's text.
    pub release_text: String,
    /// The release file, parsed.
    pub release: OsRelease,
    /// The matching units, by name.
    pub units: BTreeMap<String, UnitSource>,
}

fn read_opt(root: &RootDir, path: &str) -> Result<Option<String>> {
    match root.read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn parse_release(image: &Image, path: &str, text: &str) -> Result<OsRelease> {
    OsRelease::parse(text).map_err(|source| {
        let line = match &source {
            realms_unit::Error::Syntax { line, .. } => *line,
            _ => 0,
        };
        Error::BadRelease {
            path: image.path.join(path.trim_start_matches('/')),
            line,
            source,
        }
    })
}

/// Reads os-release of a base image: `/etc/os-release`, else `/usr/lib/os-release`.
fn os_release(root: &RootDir, image: &Image) -> Result<(String, String)> {
    for path in realms_unit::os_release::OS_RELEASE_PATHS {
        if let Some(text) = read_opt(root, path)? {
            return Ok((path.to_owned(), text));
        }
    }
    Err(Error::NoRelease {
        image: image.path.display().to_string(),
        what: "os-release",
    })
}

/// Reads `extension-release.NAME` of an extension (sysext, then confext), falling back to the
/// name without its `_version`, and (with `relax`) to the only `extension-release.*` there is.
fn extension_release(root: &RootDir, image: &Image, relax: bool) -> Result<(String, String)> {
    let stem = strip_image_version(&image.name);
    for kind in [ExtensionKind::Sysext, ExtensionKind::Confext] {
        for name in [image.name.as_str(), stem] {
            let path = extension_release_path(kind, name)?;
            if let Some(text) = read_opt(root, &path)? {
                return Ok((path, text));
            }
        }
        if relax && let Ok(entries) = root.read_dir(kind.release_dir()) {
            let found: Vec<_> = entries
                .into_iter()
                .filter(|(n, t)| {
                    *t == FileType::RegularFile
                        && n.to_string_lossy().starts_with("extension-release.")
                })
                .collect();
            if let [(n, _)] = found.as_slice() {
                let path = format!("{}/{}", kind.release_dir(), n.to_string_lossy());
                if let Some(text) = read_opt(root, &path)? {
                    return Ok((path, text));
                }
            }
        }
    }
    Err(Error::NoRelease {
        image: image.path.display().to_string(),
        what: "extension-release",
    })
}

/// Follows the symlink chain of a unit file lexically; errors if it leads out of the image.
fn check_symlink(root: &RootDir, dir: &Path, name: &str, image: &Image) -> Result<()> {
    let mut current = dir.join(name);
    for _ in 0..32 {
        let target = match root.read_link(&current) {
            Ok(t) => t,
            Err(_) => return Ok(()),
        };
        let escapes = || Error::UnitEscapes {
            unit: name.to_owned(),
            image: image.path.display().to_string(),
            target: target.display().to_string(),
        };
        if target.is_absolute() {
            return Err(escapes());
        }
        let mut next = current.parent().unwrap_or(Path::new("/")).to_owned();
        for c in target.components() {
            match c {
                Component::ParentDir if !next.pop() => return Err(escapes()),
                Component::ParentDir => {}
                Component::Normal(n) => next.push(n),
                _ => {}
            }
        }
        current = next;
    }
    Ok(())
}

/// The unit files of `root` that `matches` selects, first occurrence in the search path first.
fn units(
    root: &RootDir,
    image: &Image,
    canonical_image: Option<&Path>,
    matches: &[String],
) -> Result<BTreeMap<String, UnitSource>> {
    let mut out = BTreeMap::new();
    for dir in UNIT_SEARCH_PATH {
        let Ok(entries) = root.read_dir(dir) else {
            continue;
        };
        // The directory as it resolved inside the image (it may be reached through symlinks).
        let resolved = canonical_image.and_then(|img| {
            let real = root.host_path(dir).ok()?;
            let rel = real.strip_prefix(img).ok()?;
            Some(image.path.join(rel))
        });
        for (entry, ty) in entries {
            let Some(name) = entry.to_str() else { continue };
            if !realms_unit::name::is_valid(name)
                || !unit_matches(name, matches)
                || out.contains_key(name)
                || !matches!(ty, FileType::RegularFile | FileType::Symlink)
            {
                continue;
            }
            let path = Path::new(dir).join(name);
            if ty == FileType::Symlink {
                check_symlink(root, Path::new(dir), name, image)?;
            }
            let contents = match root.read(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("skipping unit {}: {e}", path.display());
                    continue;
                }
            };
            if contents.is_empty() {
                continue;
            }
            out.insert(
                name.to_owned(),
                UnitSource {
                    name: name.to_owned(),
                    contents,
                    source: resolved.as_ref().map(|d| d.join(name)),
                    image: image.path.clone(),
                },
            );
        }
    }
    Ok(out)
}

/// Reads an image: its release file and the units `matches` selects.
pub fn extract(
    host: &Host,
    image: &Image,
    matches: &[String],
    extension: bool,
    relax: bool,
) -> Result<Metadata> {
    let opened = Opened::open(host, image)?;
    let root = opened.root();
    let (release_path, release_text) = if extension {
        extension_release(root, image, relax)?
    } else {
        os_release(root, image)?
    };
    let release = parse_release(image, &release_path, &release_text)?;
    let canonical = match &opened {
        Opened::Tree(_) => Some(host.host_path(&image.path)?),
        Opened::Raw(_) => None,
    };
    let units = units(root, image, canonical.as_deref(), matches)?;
    Ok(Metadata {
        release_path,
        release_text,
        release,
        units,
    })
}
