//! The one tar unpacker for archives from other people: `realms appimg import` of a tarball and
//! provisioning's packages. The `tar` crate reads the archive; every entry is checked here
//! before anything is written: no absolute paths or `..`, nothing written through a symlink
//! (including one an earlier entry made), no symlink leading outside the tree, hardlinks only to
//! regular files unpacked before, device nodes and FIFOs only as the [`Policy`] says, setuid and
//! setgid bits kept, refused or dropped as it says, and no more file bytes than its budget (a
//! huge sparse entry is refused from its header, before a byte of it is read). Files are written
//! sparse (runs of zeros become holes), names are kept as bytes (UTF-8 or not), owners are kept
//! numerically, and the archive's `.` entry never changes the mode of the tree's root. A
//! truncated or corrupt archive is an error naming the entry it was in (or the last good one).

use realms_sys::IoContext;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::{Error, Hostility, Result};

/// What to do with an entry of a kind the tree may not need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Refuse the archive.
    Refuse,
    /// Leave the entry out and say so in [`Unpacked::skipped`].
    Skip,
    /// Unpack it.
    Keep,
}

/// What an unpack may do.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The most bytes of regular files (apparent sizes, holes included).
    pub max_bytes: u64,
    /// Setuid and setgid files.
    pub setuid: Allow,
    /// Character and block device nodes (an OS tree for nspawn needs none: it gets its own /dev).
    pub devices: Allow,
    /// FIFOs.
    pub fifos: Allow,
    /// Symlinks with an absolute target (inside an OS tree they mean the tree's own root).
    pub absolute_symlinks: bool,
    /// Extended attributes from PAX headers (`SCHILY.xattr.*`, file capabilities among them).
    pub xattrs: bool,
}

impl Policy {
    /// For an OS tree (`realms appimg import`): setuid kept (the store is reachable by root
    /// only), device nodes left out, FIFOs kept, absolute symlinks and xattrs kept.
    pub fn os_tree(max_bytes: u64) -> Policy {
        Policy {
            max_bytes,
            setuid: Allow::Keep,
            devices: Allow::Skip,
            fifos: Allow::Keep,
            absolute_symlinks: true,
            xattrs: true,
        }
    }
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    /// Bytes of regular files (apparent sizes).
    pub bytes: u64,
    /// Entries left out by the policy, with why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// A decompressing reader for the archive `path`, chosen by its name (`.tar`, `.tar.gz`/`.tgz`,
/// `.tar.zst`, `.tar.xz`).
pub fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let file = fs::File::open(path).ctx("opening", path)?;
    let r = io::BufReader::new(file);
    let lower = path.as_os_str().as_bytes().to_ascii_lowercase();
    let ends = |s: &str| lower.ends_with(s.as_bytes());
    Ok(if ends(".gz") || ends(".tgz") {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if ends(".zst") {
        Box::new(zstd::stream::read::Decoder::new(r).ctx("decompressing", path)?)
    } else if ends(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(r))
    } else {
        Box::new(r)
    })
}

/// Unpacks the tar stream `r` (named `archive` in errors) into the existing directory `dest`.
pub fn unpack_tar(archive: &str, r: impl Read, dest: &Path, policy: &Policy) -> Result<Unpacked> {
    let mut tar = tar::Archive::new(r);
    let mut u = Unpacker {
        archive,
        dest,
        policy,
        out: Unpacked::default(),
        dirs: Vec::new(),
        last: None,
    };
    let entries = tar.entries().map_err(|e| u.corrupt(None, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| match &u.last {
            Some(last) => Error::BadArchive {
                archive: archive.to_string(),
                entry: None,
                reason: format!("after entry '{}': {e}", last.display()),
            },
            None => u.corrupt(None, &e),
        })?;
        u.entry(entry)?;
    }
    // Directory modes last, deepest first, so a read-only directory does not stop its entries.
    for (path, mode) in u.dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            .ctx("setting the mode of", path)?;
    }
    Ok(u.out)
}

/// A path inside the tree: relative, with no `..`, `.` components dropped.
fn clean(raw: &Path) -> std::result::Result<PathBuf, Hostility> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(Hostility::AbsolutePath),
            Component::ParentDir => return Err(Hostility::ParentDir),
        }
    }
    Ok(out)
}

struct Unpacker<'a> {
    archive: &'a str,
    dest: &'a Path,
    policy: &'a Policy,
    out: Unpacked,
    dirs: Vec<(PathBuf, u32)>,
    last: Option<PathBuf>,
}

impl Unpacker<'_> {
    fn hostile(&self, entry: &Path, reason: Hostility) -> Error {
        Error::HostileEntry {
            archive: self.archive.to_string(),
            entry: entry.display().to_string(),
            reason,
        }
    }

    fn corrupt(&self, entry: Option<String>, e: &io::Error) -> Error {
        Error::BadArchive {
            archive: self.archive.to_string(),
            entry,
            reason: e.to_string(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
        self.last = Some(raw.clone());
        let rel = clean(&raw).map_err(|r| self.hostile(&raw, r))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            // The archive's "./" is the tree's root, whose mode and owner are not the archive's.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.hostile(&raw, Hostility::ReplacesRoot)),
            };
        }
        let xattrs = if self.policy.xattrs {
            pax_xattrs(&mut entry)
        } else {
            Vec::new()
        };
        match kind {
            EntryType::Directory => {
                let target = self.prepare(&raw, &rel, true)?;
                if !target.is_dir() {
                    fs::create_dir(&target).ctx("creating", &target)?;
                }
                self.dirs.push((target.clone(), mode));
                self.finish(&target, uid, gid, None, &xattrs)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut mode = mode;
                if mode & 0o6000 != 0 {
                    match self.policy.setuid {
                        Allow::Keep => {}
                        Allow::Skip => mode &= !0o6000,
                        Allow::Refuse => {
                            return Err(self.hostile(&raw, Hostility::Setuid));
                        }
                    }
                }
                let size = entry.size();
                let left = self.policy.max_bytes.saturating_sub(self.out.bytes);
                if size > left {
                    return Err(self.too_big(&raw));
                }
                let target = self.prepare(&raw, &rel, false)?;
                self.regular(&raw, &target, &mut entry, left)?;
                self.finish(&target, uid, gid, Some(mode), &xattrs)
            }
            EntryType::Symlink => {
                let link = self.link_name(&entry, &raw, "symlink")?;
                self.check_symlink(&raw, &rel, &link)?;
                let target = self.prepare(&raw, &rel, false)?;
                std::os::unix::fs::symlink(&link, &target).ctx("creating the symlink", &target)?;
                std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32))
                    .ctx("setting the owner of", &target)?;
                Ok(())
            }
            EntryType::Link => {
                let link = self.link_name(&entry, &raw, "hardlink")?;
                let source = self.dest.join(
                    clean(&link).map_err(|_| self.hostile(&raw, Hostility::HardlinkOutside))?,
                );
                self.check_parents(&raw, &source, false)?;
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.file_type().is_file() => {}
                    _ => {
                        return Err(self.hostile(&raw, Hostility::HardlinkNotFile));
                    }
                }
                let target = self.prepare(&raw, &rel, false)?;
                fs::hard_link(&source, &target).ctx("creating the hardlink", &target)?;
                Ok(())
            }
            EntryType::Char | EntryType::Block => self.special(
                &raw,
                &rel,
                kind,
                mode,
                uid,
                gid,
                &entry,
                self.policy.devices,
            ),
            EntryType::Fifo => {
                self.special(&raw, &rel, kind, mode, uid, gid, &entry, self.policy.fifos)
            }
            other => Err(self.hostile(&raw, Hostility::UnsupportedType(format!("{other:?}")))),
        }
    }

    fn too_big(&self, raw: &Path) -> Error {
        self.hostile(raw, Hostility::TooBig(self.policy.max_bytes))
    }

    fn link_name<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &Path,
        what: &'static str,
    ) -> Result<PathBuf> {
        entry
            .link_name_bytes()
            .map(|b| PathBuf::from(OsStr::from_bytes(&b)))
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| self.hostile(raw, Hostility::NoTarget(what)))
    }

    /// Owner, then mode (chown clears setuid bits), then xattrs of a file or directory.
    fn finish(
        &mut self,
        target: &Path,
        uid: u64,
        gid: u64,
        mode: Option<u32>,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        std::os::unix::fs::lchown(target, Some(uid as u32), Some(gid as u32))
            .ctx("setting the owner of", target)?;
        if let Some(mode) = mode {
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
                .ctx("setting the mode of", target)?;
        }
        for (name, value) in xattrs {
            // An attribute this kernel or filesystem does not take (an SELinux label on a host
            // without SELinux) is left out, as GNU tar does, not a failed import.
            if let Err(e) = realms_sys::fs::set_xattr(target, name, value) {
                tracing::debug!("{e}");
                let rel = target.strip_prefix(self.dest).unwrap_or(target);
                self.out
                    .skipped
                    .push((rel.join(format!("[xattr {name}]")), "could not be set here"));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn special<R: Read>(
        &mut self,
        raw: &Path,
        rel: &Path,
        kind: EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        entry: &tar::Entry<'_, R>,
        allow: Allow,
    ) -> Result<()> {
        let what = if kind == EntryType::Fifo {
            "is a FIFO"
        } else {
            "is a device node"
        };
        match allow {
            Allow::Refuse => {
                let reason = if kind == EntryType::Fifo {
                    Hostility::Fifo
                } else {
                    Hostility::DeviceNode
                };
                return Err(self.hostile(raw, reason));
            }
            Allow::Skip => {
                self.out.skipped.push((raw.to_path_buf(), what));
                return Ok(());
            }
            Allow::Keep => {}
        }
        let target = self.prepare(raw, rel, false)?;
        let (file_type, dev) = match kind {
            EntryType::Fifo => (rustix::fs::FileType::Fifo, 0),
            _ => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let t = if kind == EntryType::Char {
                    rustix::fs::FileType::CharacterDevice
                } else {
                    rustix::fs::FileType::BlockDevice
                };
                (t, rustix::fs::makedev(major, minor))
            }
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &target,
            file_type,
            rustix::fs::Mode::from_raw_mode(0o600),
            dev,
        )
        .ctx("creating", &target)?;
        self.finish(&target, uid, gid, Some(mode & 0o777), &[])
    }

    /// Checks that every parent of `target` is a real directory inside the tree, creating
    /// missing ones when `create`.
    fn check_parents(&self, raw: &Path, target: &Path, create: bool) -> Result<()> {
        let rel = target.strip_prefix(self.dest).unwrap_or(target);
        let mut at = self.dest.to_path_buf();
        let parents: Vec<_> = rel.components().collect();
        for c in &parents[..parents.len().saturating_sub(1)] {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.hostile(
                        raw,
                        Hostility::ThroughSymlink(at.strip_prefix(self.dest).unwrap_or(&at).into()),
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(self.hostile(raw, Hostility::BelowFile)),
                Err(_) if create => fs::create_dir(&at).ctx("creating", &at)?,
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// The host path of `rel`, its parents checked and whatever was there before removed.
    fn prepare(&self, raw: &Path, rel: &Path, is_dir: bool) -> Result<PathBuf> {
        let target = self.dest.join(rel);
        self.check_parents(raw, &target, true)?;
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && is_dir => {}
            Ok(m) if m.is_dir() => return Err(self.hostile(raw, Hostility::ReplacesDirectory)),
            Ok(_) => fs::remove_file(&target).ctx("replacing", &target)?,
            Err(_) => {}
        }
        Ok(target)
    }

    fn check_symlink(&self, raw: &Path, rel: &Path, link: &Path) -> Result<()> {
        if link.is_absolute() {
            if self.policy.absolute_symlinks {
                return Ok(());
            }
            return Err(self.hostile(raw, Hostility::AbsoluteSymlink(link.to_path_buf())));
        }
        let mut depth: i64 = rel.components().count() as i64 - 1;
        for c in link.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(self.hostile(raw, Hostility::SymlinkOutside(link.to_path_buf())));
            }
        }
        Ok(())
    }

    /// Writes a regular file: holes for runs of zeros, at most `left` bytes.
    fn regular(&mut self, raw: &Path, target: &Path, r: &mut impl Read, left: u64) -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(0o600)
            .open(target)
            .ctx("creating", target)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut n: u64 = 0;
        loop {
            let got = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(Some(raw.display().to_string()), &e)),
            };
            n += got as u64;
            if n > left {
                return Err(self.too_big(raw));
            }
            let chunk = &buf[..got];
            if chunk.iter().all(|b| *b == 0) {
                f.seek(SeekFrom::Current(got as i64))
                    .ctx("writing", target)?;
            } else {
                f.write_all(chunk).ctx("writing", target)?;
            }
        }
        // A file ending in a hole gets its length.
        f.set_len(n).ctx("writing", target)?;
        self.out.bytes += n;
        Ok(())
    }
}

/// The `SCHILY.xattr.NAME` records of an entry's PAX header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(ext)) = entry.pax_extensions() else {
        return Vec::new();
    };
    ext.flatten()
        .filter_map(|e| {
            let key = e.key().ok()?;
            let name = key.strip_prefix("SCHILY.xattr.")?;
            Some((name.to_string(), e.value_bytes().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Expect, cases};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hostile_tarball_corpus_as_an_os_tree() {
        for case in cases() {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("tree");
            fs::create_dir(&dest).unwrap();
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
            let started = std::time::Instant::now();
            let result = unpack_tar(
                "corpus.tar",
                &case.tar[..],
                &dest,
                &Policy::os_tree(1 << 30),
            );
            assert!(
                started.elapsed().as_secs() < 10,
                "{}: took {:?}",
                case.name,
                started.elapsed()
            );
            let outside: Vec<_> = fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(outside, ["tree"], "{}: wrote outside its target", case.name);
            match (case.expect, result) {
                (Expect::Refused(needle), Err(e)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(needle) && e.contains("corpus.tar"),
                        "{}: {e}",
                        case.name
                    );
                    assert!(e.len() < 400, "{}: {e}", case.name);
                }
                (Expect::Unpacked, Ok(done)) => check_unpacked(case.name, &dest, &done),
                (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.name),
            }
        }
    }

    fn check_unpacked(name: &str, dest: &Path, done: &Unpacked) {
        assert_eq!(
            fs::metadata(dest).unwrap().mode() & 0o7777,
            0o755,
            "{name}: the archive changed the root's mode"
        );
        let meta = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
        match name {
            "device-nodes-left-out" => {
                assert!(!dest.join("dev/mem").exists() && !dest.join("dev/sda").exists());
                assert_eq!(done.skipped.len(), 2, "{:?}", done.skipped);
            }
            "setuid-kept-in-the-private-store" => {
                assert_eq!(meta("usr/bin-su").mode() & 0o7777, 0o4755)
            }
            "fifo-kept" => assert!(meta("run-initctl").file_type().is_fifo_like()),
            "non-utf8-name" => {
                assert!(dest.join(OsStr::from_bytes(b"usr/caf\xe9")).is_file())
            }
            "sparse-small-keeps-holes" => {
                let m = meta("usr/sparse");
                assert_eq!(m.len(), 64 << 20);
                assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
            }
            _ => {}
        }
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for fs::FileType {
        fn is_fifo_like(&self) -> bool {
            use std::os::unix::fs::FileTypeExt;
            self.is_fifo()
        }
    }

    #[test]
    fn provisioning_policy_refuses_what_an_os_tree_may_keep() {
        let policy = Policy {
            max_bytes: 1 << 20,
            setuid: Allow::Refuse,
            devices: Allow::Refuse,
            fifos: Allow::Refuse,
            absolute_symlinks: false,
            xattrs: false,
        };
        for (name, needle) in [
            ("device-nodes-left-out", "device node"),
            ("setuid-kept-in-the-private-store", "setuid"),
            ("fifo-kept", "FIFO"),
            ("absolute-symlink-means-the-tree", "absolute path"),
        ] {
            let case = cases().into_iter().find(|c| c.name == name).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let e = unpack_tar("p.tar", &case.tar[..], tmp.path(), &policy)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
}
