//! Mounts: an RAII guard, bind/fs/tmpfs/overlay/image mounts, propagation, and mountinfo queries.
//!
//! Every function that mounts returns a [`MountGuard`] that unmounts on drop (falling back to a
//! lazy detach when busy). Mount targets are canonicalised first, so the guard, `mountinfo` and
//! [`is_mountpoint`] all talk about the same path.

use crate::error::Invalidity;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;
use rustix::mount::{MountPropagationFlags, UnmountFlags};

pub use rustix::mount::MountFlags;

mod mountinfo;
pub use mountinfo::{MountInfo, mounts_under, parse_mountinfo};

use crate::error::{Error, IoContext, Result};
use crate::loopdev::{LoopDevice, LoopOptions};

/// The most a classic `mount(2)` data string may hold (one page, with its NUL).
const MAX_DATA: usize = 4095;

/// A mount that is unmounted when this guard is dropped (or by [`MountGuard::unmount`]).
#[derive(Debug)]
#[must_use = "dropping a MountGuard unmounts it; call .leak() to keep the mount"]
pub struct MountGuard {
    target: PathBuf,
    armed: bool,
}

impl MountGuard {
    /// Takes responsibility for unmounting an existing mount at `target`.
    pub fn adopt(target: impl Into<PathBuf>) -> MountGuard {
        MountGuard {
            target: target.into(),
            armed: true,
        }
    }

    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Keeps the mount after the guard is gone; returns its target.
    pub fn leak(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.target)
    }

    /// Unmounts now, reporting failure (a mount that stays busy is an error, not detached lazily).
    pub fn unmount(mut self) -> Result<()> {
        self.armed = false;
        umount(&self.target, false)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match rustix::mount::unmount(&self.target, UnmountFlags::NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::BUSY) => {
                tracing::warn!(target = %self.target.display(), "mount busy; detaching it lazily");
                if let Err(e) = rustix::mount::unmount(
                    &self.target,
                    UnmountFlags::NOFOLLOW | UnmountFlags::DETACH,
                ) {
                    tracing::warn!(
                        "{}",
                        crate::error::chain(&Error::io("detaching", &self.target, e))
                    );
                }
            }
            Err(e) => tracing::warn!(
                "{}",
                crate::error::chain(&Error::io("unmounting", &self.target, e))
            ),
        }
    }
}

fn real_target(target: &Path, action: &str) -> Result<PathBuf> {
    std::fs::canonicalize(target).ctx(action, target)
}

fn cstring(bytes: &[u8], action: &str, path: &Path) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::invalid(action, path, Invalidity::NulInOptions))
}

/// Mounts a filesystem: `mount(source, target, fstype, flags, data)`; `data` may be empty.
pub fn mount_fs(
    source: impl AsRef<OsStr>,
    target: impl AsRef<Path>,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<MountGuard> {
    let target = target.as_ref();
    let action = format!("mounting {fstype} on");
    let real = real_target(target, &action)?;
    let data = if data.is_empty() {
        None
    } else {
        Some(cstring(data.as_bytes(), &action, target)?)
    };
    rustix::mount::mount(source.as_ref(), &real, fstype, flags, data.as_deref())
        .ctx(&action, target)?;
    Ok(MountGuard::adopt(real))
}

/// Mounts a tmpfs with `options` (e.g. `"mode=0755,size=64m"`; may be empty).
pub fn tmpfs(target: impl AsRef<Path>, options: &str) -> Result<MountGuard> {
    mount_fs("tmpfs", target, "tmpfs", MountFlags::empty(), options)
}

/// Bind-mounts `src` on `dst` (with `recursive`, the mounts below `src` too), optionally read-only.
///
/// Read-only is applied with `mount_setattr`, which leaves the other mount flags alone.
pub fn bind(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    read_only: bool,
    recursive: bool,
) -> Result<MountGuard> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let action = format!("bind-mounting {} on", src.display());
    let real = real_target(dst, &action)?;
    let flags = if recursive {
        MountFlags::BIND | MountFlags::REC
    } else {
        MountFlags::BIND
    };
    rustix::mount::mount(src, &real, "", flags, None).ctx(&action, dst)?;
    let guard = MountGuard::adopt(real);
    if read_only {
        set_readonly(guard.target(), recursive).ctx("making read-only", dst)?;
    }
    Ok(guard)
}

/// Makes an existing mount read-only (with `recursive`, the mounts below it too).
pub fn remount_readonly(target: impl AsRef<Path>, recursive: bool) -> Result<()> {
    let target = target.as_ref();
    set_readonly(target, recursive).ctx("making read-only", target)
}

/// `struct mount_attr` for `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

fn set_readonly(target: &Path, recursive: bool) -> std::io::Result<()> {
    let path = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads a NUL-terminated path and a struct mount_attr of the size given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &raw mut attr,
            size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Mounts an overlay of `lowers` (top first); with `upper_work`, writable into that upper dir.
pub fn overlay(
    lowers: &[&Path],
    upper_work: Option<(&Path, &Path)>,
    target: impl AsRef<Path>,
) -> Result<MountGuard> {
    overlay_with(lowers, upper_work, target, &[])
}

/// [`overlay`] with extra overlayfs options (e.g. `"userxattr"`, `"index=off"`).
pub fn overlay_with(
    lowers: &[&Path],
    upper_work: Option<(&Path, &Path)>,
    target: impl AsRef<Path>,
    extra_options: &[&str],
) -> Result<MountGuard> {
    let target = target.as_ref();
    let action = "mounting overlay on";
    if lowers.is_empty() {
        return Err(Error::invalid(action, target, Invalidity::NoLowerDir));
    }
    let data = overlay_options(lowers, upper_work, extra_options);
    if data.len() > MAX_DATA {
        let reason = Invalidity::OptionsTooLong { len: data.len() };
        return Err(Error::invalid(action, target, reason));
    }
    let data = cstring(&data, action, target)?;
    let real = real_target(target, action)?;
    rustix::mount::mount(
        "overlay",
        &real,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .ctx(action, target)?;
    Ok(MountGuard::adopt(real))
}

/// Builds the overlayfs data string, escaping `\`, `:` and `,` in paths.
fn overlay_options(
    lowers: &[&Path],
    upper_work: Option<(&Path, &Path)>,
    extra: &[&str],
) -> Vec<u8> {
    let mut out = b"lowerdir=".to_vec();
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        escape_into(&mut out, l);
    }
    if let Some((upper, work)) = upper_work {
        out.extend_from_slice(b",upperdir=");
        escape_into(&mut out, upper);
        out.extend_from_slice(b",workdir=");
        escape_into(&mut out, work);
    }
    for opt in extra {
        out.push(b',');
        out.extend_from_slice(opt.as_bytes());
    }
    out
}

fn escape_into(out: &mut Vec<u8>, path: &Path) {
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Mounts the filesystem image `file` on `target`.
///
/// erofs images are mounted straight from the file (the kernel supports file-backed erofs);
/// everything else (and erofs if that fails) goes through an autoclear loop device, which the
/// kernel releases after the unmount.
pub fn mount_image(
    file: impl AsRef<Path>,
    target: impl AsRef<Path>,
    fstype: &str,
    read_only: bool,
) -> Result<MountGuard> {
    let (file, target) = (file.as_ref(), target.as_ref());
    let flags = if read_only {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    let action = format!("mounting {} on", file.display());
    let real = real_target(target, &action)?;
    if fstype == "erofs" {
        match rustix::mount::mount(file, &real, fstype, flags | MountFlags::RDONLY, None) {
            Ok(()) => return Ok(MountGuard::adopt(real)),
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "file-backed erofs mount failed; using a loop device")
            }
        }
    }
    let opts = LoopOptions {
        read_only,
        autoclear: true,
        ..LoopOptions::default()
    };
    let dev = LoopDevice::attach(file, &opts)?;
    rustix::mount::mount(dev.path(), &real, fstype, flags, None).map_err(|e| {
        Error::io(
            format!("mounting {} ({}) on", file.display(), dev.path().display()),
            target,
            e,
        )
    })?;
    // The mount now holds the device open; dropping our handle lets autoclear free it on unmount.
    drop(dev);
    Ok(MountGuard::adopt(real))
}

/// Unmounts `target`; with `lazy`, detaches it even while busy (`MNT_DETACH`).
///
/// Without `lazy`, a busy mount is retried for about half a second before it is an error: a
/// process forked by another thread holds copies of our descriptors until it calls exec.
pub fn umount(target: impl AsRef<Path>, lazy: bool) -> Result<()> {
    let target = target.as_ref();
    if lazy {
        let flags = UnmountFlags::NOFOLLOW | UnmountFlags::DETACH;
        return rustix::mount::unmount(target, flags).ctx("unmounting", target);
    }
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
            Err(Errno::BUSY) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other.ctx("unmounting", target),
        }
    }
}

/// Unmounts every mount at or below `path`, children first (busy ones are detached lazily).
///
/// Used to clean up leftovers after a crash. Continues past failures and returns the first.
pub fn umount_recursive(path: impl AsRef<Path>) -> Result<()> {
    let mut first_err = None;
    for m in mounts_under(path)? {
        let target = &m.mount_point;
        let result = match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
            Err(Errno::BUSY) => {
                rustix::mount::unmount(target, UnmountFlags::NOFOLLOW | UnmountFlags::DETACH)
            }
            // Already gone (e.g. taken along by propagation).
            Err(Errno::INVAL | Errno::NOENT) => Ok(()),
            other => other,
        };
        if let Err(e) = result {
            first_err.get_or_insert(Error::io("unmounting", target, e));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Fails with an error naming the first mount found strictly below `path` (`action` says why we looked).
pub(crate) fn refuse_mounts_inside(path: &Path, action: &str) -> Result<()> {
    let real = real_target(path, action)?;
    match mounts_under(&real)?
        .into_iter()
        .find(|m| m.mount_point != real)
    {
        Some(m) => {
            let reason = Invalidity::MountedInside(m.mount_point.clone());
            Err(Error::invalid(action, path, reason))
        }
        None => Ok(()),
    }
}

/// Whether `path` is the root of a mount (a symlink at `path` is not followed, so it never is).
pub fn is_mountpoint(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .ctx("checking for a mount point at", path)?;
    if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    let real = real_target(path, "checking for a mount point at")?;
    Ok(mounts_under(&real)?.iter().any(|m| m.mount_point == real))
}

/// Makes the mount at `path` private (no propagation in or out).
pub fn make_private(path: impl AsRef<Path>, recursive: bool) -> Result<()> {
    change_propagation(
        path.as_ref(),
        MountPropagationFlags::PRIVATE,
        recursive,
        "making private",
    )
}

/// Makes the mount at `path` a slave (receives propagation, sends none).
pub fn make_slave(path: impl AsRef<Path>, recursive: bool) -> Result<()> {
    change_propagation(
        path.as_ref(),
        MountPropagationFlags::DOWNSTREAM,
        recursive,
        "making slave",
    )
}

/// Makes the mount at `path` shared.
pub fn make_shared(path: impl AsRef<Path>, recursive: bool) -> Result<()> {
    change_propagation(
        path.as_ref(),
        MountPropagationFlags::SHARED,
        recursive,
        "making shared",
    )
}

fn change_propagation(
    path: &Path,
    flags: MountPropagationFlags,
    recursive: bool,
    action: &str,
) -> Result<()> {
    let flags = if recursive {
        flags | MountPropagationFlags::REC
    } else {
        flags
    };
    rustix::mount::mount_change(path, flags).ctx(action, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_escape_separators() {
        let opts = overlay_options(
            &[Path::new("/a:b"), Path::new("/c,d")],
            Some((Path::new(r"/u\p"), Path::new("/w"))),
            &["index=off"],
        );
        assert_eq!(
            opts,
            br"lowerdir=/a\:b:/c\,d,upperdir=/u\\p,workdir=/w,index=off".to_vec()
        );
        assert_eq!(
            overlay_options(&[Path::new("/l")], None, &[]),
            b"lowerdir=/l".to_vec()
        );
    }

    #[test]
    fn overlay_rejects_bad_input_before_mounting() {
        let t = tempfile::tempdir().unwrap();
        assert!(overlay(&[], None, t.path()).is_err());
        let long = PathBuf::from("/".to_owned() + &"x".repeat(5000));
        let err = overlay(&[&long], None, t.path()).unwrap_err();
        assert!(
            err.to_string().contains("more than mount(2) takes"),
            "{err}"
        );
    }

    #[test]
    fn mountpoints_are_detected() {
        assert!(is_mountpoint("/proc").unwrap());
        assert!(is_mountpoint("/").unwrap());
        let t = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(t.path()).unwrap());
        assert!(is_mountpoint(t.path().join("missing")).is_err());
    }

    #[test]
    fn leaked_guard_does_not_unmount() {
        let g = MountGuard::adopt("/nonexistent-realms-test");
        assert_eq!(g.target(), Path::new("/nonexistent-realms-test"));
        assert_eq!(g.leak(), PathBuf::from("/nonexistent-realms-test"));
    }

    #[test]
    fn proc_is_listed_under_itself() {
        let m = mounts_under("/proc").unwrap();
        assert!(
            m.iter()
                .any(|m| m.mount_point == Path::new("/proc") && m.fs_type == "proc")
        );
        assert!(m.iter().all(|m| m.mount_point.starts_with("/proc")));
    }
}
