//! Reading an image: its os-release (or an extension's extension-release) and the unit files that
//! match the requested prefixes, found in systemd's unit search path inside the image. Every path
//! resolves inside the image; a unit symlink that leads out of it is refused.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use realms_sys::IoContext;
use realms_sys::root::{FileType, RootDir};
use realms_sys::untrusted::{self, TEXT_CAP};
use realms_unit::OsRelease;
use realms_unit::os_release::{ExtensionKind, extension_release_path};
use rustix::fs::{FileType as RawFileType, Mode, OFlags};

use crate::error::{Error, Result};
use crate::image::Image;
use crate::layout::{Host, UNIT_SEARCH_PATH};
use crate::name::{is_valid_image_name, unit_matches};
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
            let keyring = host
                .host_path(Path::new(realms_verity::DEFAULT_KEYRING))
                .ok();
            Ok(Opened::Raw(Mounted::mount(&real, keyring.as_deref())?))
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
    /// What became of a raw image's root hash signature, if it has one.
    pub signature: Option<crate::raw::SignatureCheck>,
}

/// Opens the file `inner` of an image (symlinks resolved inside the image) for reading, without
/// blocking, if it is a regular file; `None` if it does not exist. A FIFO, a device or a
/// directory is an error naming the file (and is never opened for reading).
fn open_regular(root: &RootDir, inner: &Path) -> Result<Option<(std::fs::File, PathBuf)>> {
    let fd = match root.open_path(inner) {
        Ok(fd) => fd,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let shown = root.display_path(inner);
    let st = rustix::fs::fstat(&fd).ctx("inspecting", &shown)?;
    if RawFileType::from_raw_mode(st.st_mode) != RawFileType::RegularFile {
        // read_file refuses it by its kind, naming it, before reading anything.
        untrusted::read_file(std::fs::File::from(fd), &shown, 0)?;
        unreachable!("read_file accepts regular files only");
    }
    // Reopen the resolved object itself for reading, never blocking.
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = rustix::fs::open(proc.as_str(), flags, Mode::empty()).ctx("opening", &shown)?;
    Ok(Some((std::fs::File::from(file), shown)))
}

/// Reads the file `inner` of an image as untrusted input: only a regular file, at most
/// [`TEXT_CAP`] bytes; `None` if it does not exist. Anything else is an error naming the file.
pub fn read_image_file(root: &RootDir, inner: &Path) -> Result<Option<Vec<u8>>> {
    let Some((file, shown)) = open_regular(root, inner)? else {
        return Ok(None);
    };
    Ok(Some(untrusted::read_file(file, &shown, TEXT_CAP)?))
}

/// The first `max` bytes of the regular file `inner` of an image (for headers such as ELF's);
/// `None` if it does not exist.
pub fn read_image_head(root: &RootDir, inner: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let Some((file, shown)) = open_regular(root, inner)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    file.take(max)
        .read_to_end(&mut out)
        .ctx("reading", &shown)?;
    Ok(Some(out))
}

fn read_opt(root: &RootDir, path: &str) -> Result<Option<String>> {
    Ok(read_image_file(root, Path::new(path))?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
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

/// Whether the `user.extension-release.strict` xattr of the regular file `name` in `dir` says
/// `false` (absent, unreadable or not a boolean: strict), as systemd 252 reads it.
fn strict_is_false(root: &RootDir, dir: &str, name: &OsStr) -> bool {
    let Ok(real) = root.host_path(dir) else {
        return false;
    };
    let mut buf = [0u8; 64];
    match rustix::fs::lgetxattr(real.join(name), "user.extension-release.strict", &mut buf) {
        Ok(n) => matches!(
            crate::boolean::parse_bool(&String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()),
            Ok(false)
        ),
        Err(_) => false,
    }
}

/// Reads `extension-release.NAME` of an extension as portablectl 252 does: the exact name (for a
/// raw image, its file name without `.raw`; no version is stripped), else the one
/// `extension-release.*` file whose `user.extension-release.strict` xattr is `false` (with
/// `relax`, any one such file: `--force` on a raw image). Two candidates are refused.
fn extension_release(root: &RootDir, image: &Image, relax: bool) -> Result<(String, String)> {
    let missing = || Error::NoRelease {
        image: image.path.display().to_string(),
        what: "extension-release",
    };
    for kind in [ExtensionKind::Sysext, ExtensionKind::Confext] {
        let Ok(path) = extension_release_path(kind, &image.name) else {
            return Err(missing());
        };
        if let Some(text) = read_opt(root, &path)? {
            return Ok((path, text));
        }
        let Ok(entries) = root.read_dir(kind.release_dir()) else {
            continue;
        };
        let found: Vec<_> = entries
            .into_iter()
            .filter(|(n, t)| {
                *t == FileType::RegularFile
                    && n.to_str()
                        .and_then(|n| n.strip_prefix("extension-release."))
                        .is_some_and(is_valid_image_name)
                    && (relax || strict_is_false(root, kind.release_dir(), n))
            })
            .collect();
        match found.as_slice() {
            [] => {}
            [(n, _)] => {
                let path = format!("{}/{}", kind.release_dir(), n.to_string_lossy());
                if let Some(text) = read_opt(root, &path)? {
                    return Ok((path, text));
                }
            }
            _ => return Err(missing()),
        }
    }
    Err(missing())
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

/// The in-root path of what `inner` resolves to inside the tree image at host path `canonical`
/// (in-root path `image`), every symlink resolved by the kernel inside the image.
fn in_image_path(root: &RootDir, inner: &Path, canonical: &Path, image: &Path) -> Option<PathBuf> {
    let real = root.host_path(inner).ok()?;
    let rel = real.strip_prefix(canonical).ok()?;
    Some(image.join(rel))
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
        let resolved =
            canonical_image.and_then(|img| in_image_path(root, Path::new(dir), img, &image.path));
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
            let source = if ty == FileType::Symlink {
                check_symlink(root, Path::new(dir), name, image)?;
                // The host follows a link we write by its own lookup: point it at the file the
                // unit resolves to inside the image, never at a symlink in the image.
                canonical_image.and_then(|img| in_image_path(root, &path, img, &image.path))
            } else {
                resolved.as_ref().map(|d| d.join(name))
            };
            let Some(contents) = read_image_file(root, &path)? else {
                tracing::debug!("skipping dangling unit {}", path.display());
                continue;
            };
            if contents.is_empty() {
                continue;
            }
            out.insert(
                name.to_owned(),
                UnitSource {
                    name: name.to_owned(),
                    contents,
                    source,
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
        // portablectl 252 relaxes the name check (--force) for raw images only.
        extension_release(root, image, relax && !image.kind.is_tree())?
    } else {
        os_release(root, image)?
    };
    let release = parse_release(image, &release_path, &release_text)?;
    let (canonical, signature) = match &opened {
        Opened::Tree(_) => (Some(host.host_path(&image.path)?), None),
        Opened::Raw(m) => (None, m.signature.clone()),
    };
    let units = units(root, image, canonical.as_deref(), matches)?;
    Ok(Metadata {
        release_path,
        release_text,
        release,
        units,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::image::ImageKind;

    fn image(dir: &Path, name: &str) -> Image {
        Image {
            name: name.to_owned(),
            path: dir.to_owned(),
            kind: ImageKind::Directory,
        }
    }

    /// An extension tree whose only release file is `extension-release.<file>`.
    fn extension(file: &str, strict: Option<&str>) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("usr/lib/extension-release.d");
        fs::create_dir_all(&dir).unwrap();
        let release = dir.join(format!("extension-release.{file}"));
        fs::write(&release, "ID=foo\n").unwrap();
        if let Some(value) = strict {
            rustix::fs::setxattr(
                &release,
                "user.extension-release.strict",
                value.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        tmp
    }

    fn release_of(tmp: &tempfile::TempDir, name: &str, relax: bool) -> Result<(String, String)> {
        let root = RootDir::open(tmp.path()).unwrap();
        extension_release(&root, &image(tmp.path(), name), relax)
    }

    #[test]
    fn extension_release_strict_false_xattr_accepts_another_name() {
        let tmp = extension("app2", Some("false"));
        let (path, text) = release_of(&tmp, "app1", false).unwrap();
        assert_eq!(path, "/usr/lib/extension-release.d/extension-release.app2");
        assert_eq!(text, "ID=foo\n");
        // The versioned copy TEST-29 makes (app1_2) is accepted the same way.
        assert!(release_of(&tmp, "app1_2", false).is_ok());
    }

    #[test]
    fn extension_release_without_strict_false_xattr_is_refused() {
        for strict in [None, Some("true"), Some("bogus")] {
            let tmp = extension("app2", strict);
            let err = release_of(&tmp, "app1", false).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::NoRelease {
                        what: "extension-release",
                        ..
                    }
                ),
                "{strict:?}: {err}"
            );
        }
    }

    #[test]
    fn versioned_extension_name_is_refused_without_force_as_252() {
        // app0_1.0 has extension-release.app0 and no xattr: 252 strips no version.
        let tmp = extension("app0", None);
        assert!(release_of(&tmp, "app0_1.0", false).is_err());
        // --force relaxes the check for raw images (the caller passes relax only for them).
        let (path, _) = release_of(&tmp, "app0_1.0", true).unwrap();
        assert!(path.ends_with("extension-release.app0"), "{path}");
        // Two candidates are ambiguous even relaxed.
        let two = extension("app0", None);
        fs::write(
            two.path()
                .join("usr/lib/extension-release.d/extension-release.app9"),
            "ID=foo\n",
        )
        .unwrap();
        assert!(release_of(&two, "app0_1.0", true).is_err());
    }

    #[test]
    fn extension_relax_applies_to_raw_images_only() {
        let tmp = extension("app0", None);
        let host = Host::open("/").unwrap();
        let err = extract(&host, &image(tmp.path(), "app10"), &[], true, true).unwrap_err();
        assert!(matches!(err, Error::NoRelease { .. }), "{err}");
    }

    fn fifo(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    }

    /// A tree image at `tmp` with os-release and one unit, then `hostile` applied.
    fn read_hostile(hostile: impl Fn(&Path)) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::write(tmp.path().join("usr/lib/os-release"), "ID=foo\n").unwrap();
        fs::write(units.join("foo.service"), "[Service]\nExecStart=/x\n").unwrap();
        hostile(tmp.path());
        let host = Host::open("/").unwrap();
        let started = Instant::now();
        let err = extract(&host, &image(tmp.path(), "foo"), &[], false, false)
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(10));
        err
    }

    #[test]
    fn fifo_os_release_is_refused_not_waited_on() {
        let err = read_hostile(|r| {
            fs::create_dir_all(r.join("etc")).unwrap();
            fifo(&r.join("etc/os-release"));
        });
        assert!(
            err.contains("etc/os-release") && err.contains("FIFO"),
            "{err}"
        );
    }

    #[test]
    fn sparse_3gib_os_release_is_refused_unread() {
        let err = read_hostile(|r| {
            let f = fs::File::create(r.join("usr/lib/os-release")).unwrap();
            f.set_len(3 << 30).unwrap();
        });
        assert!(
            err.contains("os-release") && err.contains("longer than"),
            "{err}"
        );
        assert!(err.len() < 500, "{err}");
    }

    #[test]
    fn unit_symlink_to_fifo_or_huge_file_is_refused() {
        let err = read_hostile(|r| {
            let units = r.join("usr/lib/systemd/system");
            fifo(&r.join("srv/pipe"));
            fs::remove_file(units.join("foo.service")).unwrap();
            std::os::unix::fs::symlink("../../../../srv/pipe", units.join("foo.service")).unwrap();
        });
        assert!(err.contains("foo.service") && err.contains("FIFO"), "{err}");
        let err = read_hostile(|r| {
            let f = fs::File::create(r.join("usr/lib/systemd/system/foo.service")).unwrap();
            f.set_len(3 << 30).unwrap();
        });
        assert!(
            err.contains("foo.service") && err.contains("longer than"),
            "{err}"
        );
    }

    #[test]
    fn unit_symlink_through_an_in_image_root_link_resolves_inside_the_image() {
        // usr/lib/systemd/system/x -> / and esc3.service -> x/etc/host.service: the link must
        // name the image's own etc/host.service, fully resolved, never a symlink the host follows.
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&units).unwrap();
        fs::create_dir_all(tmp.path().join("etc")).unwrap();
        fs::write(tmp.path().join("usr/lib/os-release"), "ID=foo\n").unwrap();
        fs::write(
            tmp.path().join("etc/host.service"),
            "[Service]\nExecStart=/in-image\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/", units.join("x")).unwrap();
        std::os::unix::fs::symlink("x/etc/host.service", units.join("esc3.service")).unwrap();
        let host = Host::open("/").unwrap();
        let canonical = fs::canonicalize(tmp.path()).unwrap();
        let img = image(&canonical, "esc3");
        let meta = extract(&host, &img, &["esc3".into()], false, false).unwrap();
        let unit = &meta.units["esc3.service"];
        assert_eq!(unit.contents, b"[Service]\nExecStart=/in-image\n");
        assert_eq!(
            unit.source.as_deref(),
            Some(canonical.join("etc/host.service").as_path())
        );
    }
}
