//! btrfs subvolumes through the kernel ioctls: create, snapshot, delete (recursively), read-only flag.
//!
//! No `btrfs` CLI is needed at run time. The ioctl numbers and argument structs are defined
//! here from the kernel's `include/uapi/linux/btrfs.h`, with their sizes checked at compile time.

use crate::error::Invalidity;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::util::{IOC_READ, IOC_WRITE, ioc, ioctl, open_parent};

/// `BTRFS_SUPER_MAGIC`, the `f_type` that `statfs` reports for btrfs.
pub const SUPER_MAGIC: i64 = 0x9123_683e;
/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const SUBVOL_ROOT_INO: u64 = 256;
/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;
const IOCTL_MAGIC: u8 = 0x94;

/// `struct btrfs_ioctl_vol_args`: an fd and a NUL-terminated name, 4096 bytes in all.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2`: fd, transid, flags, a 32-byte union, then a 4040-byte name.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

const _: () = assert!(size_of::<VolArgs>() == 4096);
const _: () = assert!(size_of::<VolArgsV2>() == 4096);
const _: () = assert!(std::mem::offset_of!(VolArgsV2, name) == 56);

const IOC_SUBVOL_CREATE: libc::c_ulong = ioc(IOC_WRITE, IOCTL_MAGIC, 14, size_of::<VolArgs>());
const IOC_SNAP_DESTROY: libc::c_ulong = ioc(IOC_WRITE, IOCTL_MAGIC, 15, size_of::<VolArgs>());
const IOC_SNAP_CREATE_V2: libc::c_ulong = ioc(IOC_WRITE, IOCTL_MAGIC, 23, size_of::<VolArgsV2>());
const IOC_SUBVOL_GETFLAGS: libc::c_ulong = ioc(IOC_READ, IOCTL_MAGIC, 25, size_of::<u64>());
const IOC_SUBVOL_SETFLAGS: libc::c_ulong = ioc(IOC_WRITE, IOCTL_MAGIC, 26, size_of::<u64>());

impl VolArgs {
    fn new(name: &OsStr) -> Option<Box<VolArgs>> {
        let mut args = Box::new(VolArgs {
            fd: 0,
            name: [0; 4088],
        });
        copy_name(&mut args.name, name)?;
        Some(args)
    }
}

/// Copies a single-component name into a NUL-terminated buffer; `None` if it does not fit or is no name.
fn copy_name(buf: &mut [u8], name: &OsStr) -> Option<()> {
    let bytes = name.as_bytes();
    let bad = bytes.is_empty()
        || bytes == b"."
        || bytes == b".."
        || bytes.contains(&b'/')
        || bytes.contains(&0);
    if bad || bytes.len() >= buf.len() {
        return None;
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(())
}

/// Whether `path` is on a btrfs filesystem.
pub fn is_btrfs(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let st = rustix::fs::statfs(path).ctx("checking the filesystem of", path)?;
    Ok(st.f_type as i64 == SUPER_MAGIC)
}

/// Whether `path` is the root directory of a btrfs subvolume (a symlink is not followed).
pub fn is_subvolume(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let st = rustix::fs::lstat(path).ctx("checking", path)?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    Ok(is_dir && st.st_ino == SUBVOL_ROOT_INO && is_btrfs(path)?)
}

/// Creates an empty subvolume at `path` (its parent must exist on btrfs).
pub fn create_subvolume(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let action = "creating subvolume";
    let (parent, name) = open_parent(path, action)?;
    let mut args = VolArgs::new(name)
        .ok_or_else(|| Error::invalid(action, path, Invalidity::BadSubvolumeName))?;
    // SAFETY: SUBVOL_CREATE takes a pointer to a btrfs_ioctl_vol_args, which `args` is.
    unsafe { ioctl(parent.as_fd(), IOC_SUBVOL_CREATE, (&raw mut *args).cast()) }
        .ctx(action, path)?;
    Ok(())
}

/// Snapshots subvolume `src` to a new subvolume `dst` (optionally read-only).
pub fn snapshot(src: impl AsRef<Path>, dst: impl AsRef<Path>, read_only: bool) -> Result<()> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let action = format!("snapshotting {} to", src.display());
    if !is_subvolume(src)? {
        return Err(Error::invalid(
            action,
            dst,
            Invalidity::SourceNotASubvolume(src.to_path_buf()),
        ));
    }
    let src_fd = rustix::fs::open(
        src,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("opening subvolume", src)?;
    let (parent, name) = open_parent(dst, &action)?;
    let mut args = Box::new(VolArgsV2 {
        fd: i64::from(std::os::fd::AsRawFd::as_raw_fd(&src_fd)),
        transid: 0,
        flags: if read_only { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    });
    copy_name(&mut args.name, name)
        .ok_or_else(|| Error::invalid(&*action, dst, Invalidity::BadSnapshotName))?;
    // SAFETY: SNAP_CREATE_V2 takes a pointer to a btrfs_ioctl_vol_args_v2, which `args` is; the
    // source fd in it stays open until the call returns.
    unsafe { ioctl(parent.as_fd(), IOC_SNAP_CREATE_V2, (&raw mut *args).cast()) }
        .ctx(&action, dst)?;
    Ok(())
}

/// Deletes subvolume `path`, also when it is a read-only snapshot. Fails if it holds nested
/// subvolumes, and refuses if anything is mounted inside it (the kernel would detach it silently).
pub fn delete_subvolume(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    check_subvolume(path, "deleting subvolume")?;
    crate::mount::refuse_mounts_inside(path, "deleting subvolume")?;
    let (parent, name) = open_parent(path, "deleting subvolume")?;
    destroy_at(parent.as_fd(), name, path, false)
}

/// Deletes subvolume `path` and every subvolume nested inside it (deepest first).
///
/// This is what a debootstrap tree needs, where systemd-tmpfiles made `var/lib/machines` a
/// subvolume. Refuses (without deleting anything) if anything is mounted inside.
pub fn delete_subvolume_recursive(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    check_subvolume(path, "deleting subvolume")?;
    crate::mount::refuse_mounts_inside(path, "deleting subvolume")?;
    let (parent, name) = open_parent(path, "deleting subvolume")?;
    destroy_at(parent.as_fd(), name, path, true)
}

/// Whether subvolume `path` is read-only.
pub fn is_readonly(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    check_subvolume(path, "checking the flags of")?;
    let fd = open_subvol(path)?;
    Ok(get_flags(fd.as_fd(), path)? & SUBVOL_RDONLY != 0)
}

/// Makes subvolume `path` read-only or writable.
pub fn set_readonly(path: impl AsRef<Path>, read_only: bool) -> Result<()> {
    let path = path.as_ref();
    check_subvolume(path, "setting the flags of")?;
    let fd = open_subvol(path)?;
    set_readonly_fd(fd.as_fd(), read_only, path)
}

fn check_subvolume(path: &Path, action: &str) -> Result<()> {
    if is_subvolume(path)? {
        Ok(())
    } else {
        Err(Error::invalid(action, path, Invalidity::NotASubvolume))
    }
}

fn open_subvol(path: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).ctx("opening subvolume", path)
}

fn get_flags(fd: BorrowedFd<'_>, shown: &Path) -> Result<u64> {
    let mut flags: u64 = 0;
    // SAFETY: SUBVOL_GETFLAGS writes one u64 through the pointer.
    unsafe { ioctl(fd, IOC_SUBVOL_GETFLAGS, (&raw mut flags).cast()) }
        .ctx("reading the flags of", shown)?;
    Ok(flags)
}

fn set_readonly_fd(fd: BorrowedFd<'_>, read_only: bool, shown: &Path) -> Result<()> {
    let old = get_flags(fd, shown)?;
    let mut new = if read_only {
        old | SUBVOL_RDONLY
    } else {
        old & !SUBVOL_RDONLY
    };
    if new == old {
        return Ok(());
    }
    // SAFETY: SUBVOL_SETFLAGS reads one u64 through the pointer.
    unsafe { ioctl(fd, IOC_SUBVOL_SETFLAGS, (&raw mut new).cast()) }
        .ctx("setting the flags of", shown)?;
    Ok(())
}

/// Destroys subvolume `name` in `parent`; with `recursive`, nested subvolumes are destroyed first.
pub(crate) fn destroy_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    recursive: bool,
) -> Result<()> {
    let action = "deleting subvolume";
    let mut args = VolArgs::new(name)
        .ok_or_else(|| Error::invalid(action, shown, Invalidity::BadSubvolumeName))?;
    let mut cleared_ro = false;
    let mut emptied = false;
    loop {
        // SAFETY: SNAP_DESTROY takes a pointer to a btrfs_ioctl_vol_args, which `args` is.
        let err = match unsafe { ioctl(parent, IOC_SNAP_DESTROY, (&raw mut *args).cast()) } {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let errno = err.raw_os_error().map(Errno::from_raw_os_error);
        let need_rw = matches!(errno, Some(Errno::PERM | Errno::ROFS | Errno::ACCESS))
            || (recursive && !emptied && errno == Some(Errno::NOTEMPTY));
        if need_rw && !cleared_ro {
            // Root may delete read-only snapshots; if the kernel refused, or we must delete
            // nested subvolumes inside, make it writable and try again.
            cleared_ro = true;
            let fd = open_child_dir(parent, name).ctx(action, shown)?;
            if get_flags(fd.as_fd(), shown)? & SUBVOL_RDONLY != 0 {
                set_readonly_fd(fd.as_fd(), false, shown)?;
                continue;
            }
        }
        if errno == Some(Errno::NOTEMPTY) && recursive && !emptied {
            emptied = true;
            let fd = open_child_dir(parent, name).ctx(action, shown)?;
            for nested in find_nested(fd, shown)? {
                let (nparent, nname) = open_parent(&nested, action)?;
                destroy_at(nparent.as_fd(), nname, &nested, true)?;
            }
            continue;
        }
        if errno == Some(Errno::NOTEMPTY) {
            return Err(Error::invalid(action, shown, Invalidity::NestedSubvolumes));
        }
        return Err(Error::io(action, shown, err));
    }
}

fn open_child_dir(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, Mode::empty())
}

/// Finds the subvolumes nested directly or indirectly in the subvolume open as `top` (not
/// descending into them), refusing if a mount point is found. Paths are `shown` joined with names.
fn find_nested(top: OwnedFd, shown: &Path) -> Result<Vec<PathBuf>> {
    let want = StatxFlags::INO | StatxFlags::MNT_ID | StatxFlags::TYPE;
    let top_mnt = rustix::fs::statx(&top, "", AtFlags::EMPTY_PATH, want)
        .ctx("inspecting", shown)?
        .stx_mnt_id;
    let mut found = Vec::new();
    let mut stack = vec![(top, shown.to_owned())];
    while let Some((dir, dir_path)) = stack.pop() {
        let dup = rustix::io::fcntl_dupfd_cloexec(&dir, 0).ctx("listing", &dir_path)?;
        for (name, ty) in crate::root::read_dir_fd(dup, &dir_path)? {
            if ty != rustix::fs::FileType::Directory {
                continue;
            }
            let child = dir_path.join(&name);
            let st = rustix::fs::statx(&dir, &*name, AtFlags::SYMLINK_NOFOLLOW, want)
                .ctx("inspecting", &child)?;
            if st.stx_mnt_id != top_mnt {
                let reason = Invalidity::MountPointBelow(child.clone());
                return Err(Error::invalid("deleting subvolume", shown, reason));
            }
            if st.stx_ino == SUBVOL_ROOT_INO {
                found.push(child);
            } else {
                let fd = open_child_dir(dir.as_fd(), &name).ctx("opening", &child)?;
                stack.push((fd, child));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        assert_eq!(IOC_SUBVOL_CREATE, 0x5000_940e);
        assert_eq!(IOC_SNAP_DESTROY, 0x5000_940f);
        assert_eq!(IOC_SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(IOC_SUBVOL_GETFLAGS, 0x8008_9419);
        assert_eq!(IOC_SUBVOL_SETFLAGS, 0x4008_941a);
    }

    #[test]
    fn names_are_validated() {
        let mut buf = [0u8; 8];
        assert!(copy_name(&mut buf, OsStr::new("abc")).is_some());
        assert_eq!(&buf[..4], b"abc\0");
        for bad in ["", ".", "..", "a/b", "12345678"] {
            assert!(
                copy_name(&mut [0u8; 8], OsStr::new(bad)).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_btrfs_paths_are_not_subvolumes() {
        let dir = tempfile::tempdir().unwrap();
        if !is_btrfs(dir.path()).unwrap() {
            assert!(!is_subvolume(dir.path()).unwrap());
            let err = delete_subvolume(dir.path()).unwrap_err();
            assert!(err.to_string().contains("not a btrfs subvolume"), "{err}");
        }
        assert!(is_subvolume(dir.path().join("missing")).is_err());
    }
}
