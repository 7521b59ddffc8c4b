//! Hostile-input-safe unpacking of a package stream into a staging directory.
//!
//! The `tar` crate reads the archive; every entry is checked here before anything is written:
//! no absolute paths or `..`, nothing written through a symlink (including one an earlier entry
//! made), no symlink with an absolute target or one leading outside the image, hardlinks only to
//! regular files unpacked before, no device nodes, FIFOs or sockets, no setuid/setgid files
//! unless allowed, and no more file bytes than the index states. Owners are kept numerically.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::index::Ext;
use crate::{Error, Result};

/// What an unpack may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes of regular files (the index's `installed-size`).
    pub installed_size: u64,
    /// Whether setuid/setgid files are allowed (the `trusted` profile).
    pub allow_setuid: bool,
}

/// A decompressing reader over `r` for a package of kind `ext` (`.raw` and `.tar` pass through).
pub fn decoder<'a>(ext: Ext, r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match ext {
        Ext::Tar | Ext::Raw => Box::new(r),
        Ext::TarGz => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Ext::TarZst => Box::new(zstd::stream::read::Decoder::new(r)?),
        Ext::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
    })
}

/// A path inside the image: relative, with no `..`, `.` components dropped.
fn clean(file: &str, raw: &Path) -> Result<PathBuf> {
    let hostile = |reason: &str| Error::Hostile {
        file: file.to_string(),
        entry: raw.display().to_string(),
        reason: reason.to_string(),
    };
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile("has an absolute path"));
            }
            Component::ParentDir => return Err(hostile("has '..' in its path")),
        }
    }
    Ok(out)
}

/// Unpacks the tar stream `r` of package `file` into the empty directory `dest`; returns the
/// bytes of regular files written.
pub fn unpack_tar(file: &str, r: impl Read, dest: &Path, limits: &Limits) -> Result<u64> {
    let mut archive = tar::Archive::new(r);
    let mut u = Unpacker {
        file,
        dest,
        limits,
        written: 0,
        dirs: Vec::new(),
    };
    let bad_tar = |e: io::Error| Error::Integrity {
        file: file.to_string(),
        url: String::new(),
        reason: format!("not a valid tar archive: {e}"),
    };
    for entry in archive.entries().map_err(bad_tar)? {
        let entry = entry.map_err(bad_tar)?;
        u.entry(entry)?;
    }
    // Directory modes last, deepest first, so a read-only directory does not stop its entries.
    for (path, mode) in u.dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            .map_err(|e| Error::io("setting the mode of", path, e))?;
    }
    Ok(u.written)
}

struct Unpacker<'a> {
    file: &'a str,
    dest: &'a Path,
    limits: &'a Limits,
    written: u64,
    dirs: Vec<(PathBuf, u32)>,
}

impl Unpacker<'_> {
    fn hostile(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::Hostile {
            file: self.file.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| self.hostile(Path::new("?"), format!("has an unreadable path: {e}")))?
            .into_owned();
        let rel = clean(self.file, &raw)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let uid = entry.header().uid().unwrap_or(0);
        let gid = entry.header().gid().unwrap_or(0);
        if rel.as_os_str().is_empty() {
            // The archive's "./": the image root itself.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.hostile(&raw, "replaces the image root")),
            };
        }
        let target = self.prepare(&raw, &rel, kind == EntryType::Directory)?;
        let mut chmod = None;
        match kind {
            EntryType::Directory => {
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(|e| Error::io("creating", &target, e))?;
                }
                self.dirs.push((target.clone(), mode & 0o7777));
            }
            EntryType::Regular | EntryType::Continuous => {
                if mode & 0o6000 != 0 && !self.limits.allow_setuid {
                    return Err(self.hostile(
                        &raw,
                        "is setuid or setgid, which only the trusted profile allows",
                    ));
                }
                self.regular(&raw, &target, &mut entry)?;
                chmod = Some(mode);
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| self.hostile(&raw, "is a symlink without a target"))?
                    .into_owned();
                self.check_symlink(&raw, &rel, &link)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| Error::io("creating the symlink", &target, e))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| self.hostile(&raw, "is a hardlink without a target"))?
                    .into_owned();
                let source =
                    self.dest.join(clean(self.file, &link).map_err(|_| {
                        self.hostile(&raw, "is a hardlink leading outside the image")
                    })?);
                self.check_parents(&raw, &source)?;
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.file_type().is_file() => {}
                    _ => {
                        return Err(self.hostile(
                            &raw,
                            "is a hardlink to something that is not a file unpacked before it",
                        ));
                    }
                }
                fs::hard_link(&source, &target)
                    .map_err(|e| Error::io("creating the hardlink", &target, e))?;
                return Ok(());
            }
            EntryType::Char | EntryType::Block => {
                return Err(self.hostile(&raw, "is a device node"));
            }
            EntryType::Fifo => return Err(self.hostile(&raw, "is a FIFO")),
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            other => {
                return Err(self.hostile(&raw, format!("has an unsupported type {other:?}")));
            }
        }
        std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32))
            .map_err(|e| Error::io("setting the owner of", &target, e))?;
        // After the owner: chown clears setuid/setgid bits.
        if let Some(mode) = chmod {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("setting the mode of", &target, e))?;
        }
        Ok(())
    }

    /// Checks that every parent of `target` is a real directory inside the staging directory,
    /// creating missing ones.
    fn check_parents(&self, raw: &Path, target: &Path) -> Result<()> {
        let rel = target.strip_prefix(self.dest).unwrap_or(target);
        let mut at = self.dest.to_path_buf();
        let parents: Vec<_> = rel.components().collect();
        for c in &parents[..parents.len().saturating_sub(1)] {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.hostile(
                        raw,
                        format!(
                            "is written through the symlink '{}' an earlier entry made",
                            at.strip_prefix(self.dest).unwrap_or(&at).display()
                        ),
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(self.hostile(raw, "lies below a file")),
                Err(_) => fs::create_dir(&at).map_err(|e| Error::io("creating", &at, e))?,
            }
        }
        Ok(())
    }

    /// The host path of `rel`, its parents checked and whatever was there before removed.
    fn prepare(&self, raw: &Path, rel: &Path, is_dir: bool) -> Result<PathBuf> {
        let target = self.dest.join(rel);
        self.check_parents(raw, &target)?;
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && is_dir => {}
            Ok(m) if m.is_dir() => return Err(self.hostile(raw, "replaces a directory")),
            Ok(_) => fs::remove_file(&target).map_err(|e| Error::io("replacing", &target, e))?,
            Err(_) => {}
        }
        Ok(target)
    }

    fn check_symlink(&self, raw: &Path, rel: &Path, link: &Path) -> Result<()> {
        if link.is_absolute() {
            return Err(self.hostile(
                raw,
                format!(
                    "is a symlink to the absolute path {} (`realms provision pack` makes such links relative)",
                    link.display()
                ),
            ));
        }
        let mut depth: i64 = rel.components().count() as i64 - 1;
        for c in link.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(self.hostile(
                    raw,
                    format!("is a symlink to {} outside the image", link.display()),
                ));
            }
        }
        Ok(())
    }

    fn regular(&mut self, raw: &Path, target: &Path, r: &mut impl Read) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc_o_nofollow())
            .mode(0o600)
            .open(target)
            .map_err(|e| Error::io("creating", target, e))?;
        let left = self.limits.installed_size.saturating_sub(self.written);
        let n = io::copy(&mut r.take(left + 1), &mut f).map_err(|e| Error::Integrity {
            file: self.file.to_string(),
            url: String::new(),
            reason: format!("reading entry {}: {e}", raw.display()),
        })?;
        if n > left {
            return Err(self.hostile(
                raw,
                format!(
                    "makes the unpacked files larger than the {} bytes the index states",
                    self.limits.installed_size
                ),
            ));
        }
        self.written += n;
        f.flush().map_err(|e| Error::io("writing", target, e))
    }
}

/// `O_NOFOLLOW` (the same value on every Linux architecture Realms builds for but alpha/sparc).
fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// The bytes of regular files in a tar stream (what `publish` records as `installed-size`).
pub fn installed_size(r: impl Read) -> io::Result<u64> {
    let mut archive = tar::Archive::new(r);
    let mut total = 0u64;
    for e in archive.entries()? {
        let e = e?;
        if matches!(
            e.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            total += e.header().size()?;
        }
    }
    Ok(total)
}
