//! Crash-safe replacement of files and symlinks, and atomic renames (exchange, no-replace).
//!
//! Temporary files are named `.#NAME.SUFFIX` in the target's directory; [`is_temp_name`] lets a
//! cleaner recognise the leftovers of an interrupted write.

use crate::error::Invalidity;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::util::{open_dir, open_parent, random_suffix};

/// The prefix of every temporary name this module creates.
pub const TEMP_PREFIX: &str = ".#";

/// Whether `name` (a single file name) is a temporary name left by this module.
pub fn is_temp_name(name: &OsStr) -> bool {
    // `.#NAME.` and the 10 hex digits of `random_suffix`: never systemd's image lock files
    // (`.#rootfs.lck`, held by a running nspawn), which share the prefix.
    let b = name.as_bytes();
    b.starts_with(TEMP_PREFIX.as_bytes())
        && b.len() > TEMP_PREFIX.len() + 11
        && b[b.len() - 11] == b'.'
        && b[b.len() - 10..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Builds a temporary name `.#NAME.SUFFIX`, shortening NAME so the result stays under NAME_MAX.
fn temp_name(name: &OsStr) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    let keep = &bytes[..bytes.len().min(200)];
    let mut out = Vec::with_capacity(keep.len() + 16);
    out.extend_from_slice(TEMP_PREFIX.as_bytes());
    out.extend_from_slice(keep);
    out.push(b'.');
    out.extend_from_slice(random_suffix().as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// Replaces `path` with `bytes` atomically: temp file in the same dir, fsync, rename, fsync dir.
///
/// The file gets exactly `mode` (the umask does not apply). Readers see the old or new content,
/// never a mix; after a crash the old file is intact (a `.#` temp file may be left behind).
pub fn write_file(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
    let path = path.as_ref();
    let (dir, name) = open_parent(path, "writing")?;
    write_file_at(dir.as_fd(), name, bytes, mode, path)
}

/// Creates `path` with `bytes` atomically, failing if it exists: temp file in the same dir,
/// fsync, `renameat2(RENAME_NOREPLACE)`, fsync dir. After a crash `path` is absent or whole.
pub fn write_new(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
    let path = path.as_ref();
    let (dir, name) = open_parent(path, "writing")?;
    stage_and_rename(dir.as_fd(), name, bytes, mode, path, RenameFlags::NOREPLACE)?;
    crate::failpoint::hit("atomic-renamed");
    rustix::fs::fsync(&dir).ctx("syncing the directory of", path)
}

/// [`write_file`] relative to an open directory; `shown` is the path used in errors.
pub(crate) fn write_file_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    shown: &Path,
) -> Result<()> {
    stage_and_rename(dir, name, bytes, mode, shown, RenameFlags::empty())?;
    rustix::fs::fsync(dir).ctx("syncing the directory of", shown)
}

/// Writes `bytes` with `mode` to a temporary file beside `name` in `dir`, syncs it and renames
/// it to `name` with `flags`; the temporary file is removed when anything fails.
fn stage_and_rename(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    shown: &Path,
    flags: RenameFlags,
) -> Result<()> {
    let (tmp, fd) = create_temp(dir, name, shown)?;
    let result = (|| {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).ctx("setting the mode of", shown)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).ctx("writing", shown)?;
        file.sync_all().ctx("syncing", shown)?;
        drop(file);
        crate::failpoint::hit("atomic-write-staged");
        let action = if flags.contains(RenameFlags::NOREPLACE) {
            "creating"
        } else {
            "renaming a temporary file over"
        };
        rustix::fs::renameat_with(dir, &*tmp, dir, name, flags).ctx(action, shown)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &*tmp, AtFlags::empty());
    }
    result
}

fn create_temp(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<(std::ffi::OsString, rustix::fd::OwnedFd)> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    for _ in 0..100 {
        let tmp = temp_name(name);
        match rustix::fs::openat(dir, &*tmp, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((tmp, fd)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(Error::io("creating a temporary file for", shown, e)),
        }
    }
    Err(Error::invalid(
        "creating a temporary file for",
        shown,
        Invalidity::NoTempName,
    ))
}

/// Makes `link` a symlink to `target`, atomically replacing whatever `link` was (not a directory).
pub fn replace_symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) -> Result<()> {
    let link = link.as_ref();
    let (dir, name) = open_parent(link, "replacing symlink")?;
    replace_symlink_at(dir.as_fd(), name, target.as_ref(), link)
}

/// [`replace_symlink`] relative to an open directory; `shown` is the path used in errors.
pub(crate) fn replace_symlink_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    target: &Path,
    shown: &Path,
) -> Result<()> {
    let mut tmp = temp_name(name);
    let mut tries = 0;
    loop {
        match rustix::fs::symlinkat(target, dir, &*tmp) {
            Ok(()) => break,
            Err(Errno::EXIST) if tries < 100 => {
                tries += 1;
                tmp = temp_name(name);
            }
            Err(e) => return Err(Error::io("creating a temporary symlink for", shown, e)),
        }
    }
    crate::failpoint::hit("atomic-symlink-staged");
    if let Err(e) = rustix::fs::renameat(dir, &*tmp, dir, name) {
        let _ = rustix::fs::unlinkat(dir, &*tmp, AtFlags::empty());
        return Err(Error::io("renaming a temporary symlink over", shown, e));
    }
    rustix::fs::fsync(dir).ctx("syncing the directory of", shown)
}

/// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`); both must exist.
pub fn exchange(a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
    let (a, b) = (a.as_ref(), b.as_ref());
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        RenameFlags::EXCHANGE,
    )
    .map_err(|e| Error::io(format!("exchanging {} with", a.display()), b, e))?;
    crate::failpoint::hit("atomic-exchanged");
    sync_parents(a, b)
}

/// Renames `a` to `b`, failing if `b` exists (`renameat2(RENAME_NOREPLACE)`).
pub fn rename_noreplace(a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
    let (a, b) = (a.as_ref(), b.as_ref());
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        RenameFlags::NOREPLACE,
    )
    .map_err(|e| Error::io(format!("renaming {} to", a.display()), b, e))?;
    crate::failpoint::hit("atomic-renamed");
    sync_parents(a, b)
}

/// Renames `a` to `b` (replacing a file or an empty directory) and syncs both directories.
pub fn rename(a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
    let (a, b) = (a.as_ref(), b.as_ref());
    std::fs::rename(a, b).map_err(|e| Error::io(format!("renaming {} to", a.display()), b, e))?;
    crate::failpoint::hit("atomic-renamed");
    sync_parents(a, b)
}

/// Flushes a directory's entries to disk (after creating, renaming or removing in it).
pub fn fsync_dir(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let fd = open_dir(path, "opening directory")?;
    rustix::fs::fsync(&fd).ctx("syncing directory", path)
}

fn sync_parents(a: &Path, b: &Path) -> Result<()> {
    let pa = parent_or_dot(a);
    let pb = parent_or_dot(b);
    fsync_dir(pa)?;
    if pa != pb {
        fsync_dir(pb)?;
    }
    Ok(())
}

fn parent_or_dot(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_file_replaces_with_exact_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_file(&p, b"one", 0o640).unwrap();
        write_file(&p, b"two", 0o604).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o604
        );
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn write_new_creates_with_exact_mode_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_new(&p, b"one", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_new(&p, b"two", 0o600).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary file was left");
    }

    #[test]
    fn write_file_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_file(&link, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn write_file_in_missing_dir_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_file(dir.path().join("no/f"), b"x", 0o644).unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("no"), "{err}");
    }

    #[test]
    fn replace_symlink_swaps_target() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("default.realm");
        replace_symlink("realm-main", &link).unwrap();
        replace_symlink("realm-project", &link).unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("realm-project")
        );
        assert_eq!(names(dir.path()), ["default.realm"]);
    }

    #[test]
    fn exchange_and_noreplace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "A").unwrap();
        std::fs::create_dir(&b).unwrap();
        exchange(&a, &b).unwrap();
        assert!(a.is_dir());
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "A");
        let err = rename_noreplace(&b, &a).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        let c = dir.path().join("c");
        rename_noreplace(&b, &c).unwrap();
        assert_eq!(names(dir.path()), ["a", "c"]);
        rename(&c, dir.path().join("d")).unwrap();
        fsync_dir(dir.path()).unwrap();
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(OsStr::new(".#f.0123456789")));
        assert!(!is_temp_name(OsStr::new("f")));
    }

    #[test]
    fn temp_names_are_recognisable_and_bounded() {
        let long = "x".repeat(255);
        let t = temp_name(OsStr::new(&long));
        assert!(t.len() <= 255);
        assert!(is_temp_name(&t));
        assert_ne!(temp_name(OsStr::new("a")), temp_name(OsStr::new("a")));
    }

    /// Regression: the cleanup of killed commands' temporary files removed nspawn's lock file
    /// `.#rootfs.lck` beside the root of a running realm.
    #[test]
    fn nspawn_lock_files_are_not_temporary_files() {
        let ours = temp_name(OsStr::new("config"));
        assert!(is_temp_name(&ours), "{ours:?}");
        assert!(!is_temp_name(OsStr::new(".#rootfs.lck")));
        assert!(!is_temp_name(OsStr::new(".#x.lck")));
        assert!(!is_temp_name(OsStr::new("config")));
    }
}
