//! Filesystem helpers: the type of a filesystem, removing a tree without crossing mounts, copying a tree.

use crate::error::Invalidity;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use crate::error::{Error, IoContext, Result};

/// A filesystem type, from `statfs`'s magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// btrfs
    Btrfs,
    /// ext2/3/4
    Ext4,
    /// xfs
    Xfs,
    /// tmpfs
    Tmpfs,
    /// overlayfs
    Overlay,
    /// erofs
    Erofs,
    /// squashfs
    Squashfs,
    /// procfs
    Proc,
    /// sysfs
    Sysfs,
    /// anything else, with its magic number
    Other(u64),
}

impl FsType {
    /// Maps a `statfs` `f_type` to a type.
    pub fn from_magic(magic: u64) -> FsType {
        match magic {
            0x9123_683e => FsType::Btrfs,
            0xef53 => FsType::Ext4,
            0x5846_5342 => FsType::Xfs,
            0x0102_1994 => FsType::Tmpfs,
            0x794c_7630 => FsType::Overlay,
            0xe0f5_e1e2 => FsType::Erofs,
            0x7371_7368 => FsType::Squashfs,
            0x9fa0 => FsType::Proc,
            0x6265_6572 => FsType::Sysfs,
            other => FsType::Other(other),
        }
    }
}

/// The type of the filesystem `path` is on (a final symlink is followed).
pub fn fs_type(path: impl AsRef<Path>) -> Result<FsType> {
    let path = path.as_ref();
    let st = rustix::fs::statfs(path).ctx("checking the filesystem of", path)?;
    Ok(FsType::from_magic(st.f_type as u64))
}

/// Removes `path` and everything below it, refusing to cross into other mounts.
///
/// Nothing is removed when `path` itself is a mount point or anything is mounted below it (the
/// error names the mount); a mount appearing while we work stops removal there. btrfs
/// subvolumes inside are deleted with the subvolume ioctl (also read-only ones). A symlink at
/// `path` is removed, not followed. A missing `path` is not an error.
pub fn remove_dir_all_one_fs(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let action = "removing";
    let want = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID;
    let st = match rustix::fs::statx(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW, want) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::io(action, path, e)),
    };
    if FileType::from_raw_mode(st.stx_mode.into()) != FileType::Directory {
        return std::fs::remove_file(path).ctx(action, path);
    }
    if crate::mount::is_mountpoint(path)? {
        return Err(Error::invalid(action, path, Invalidity::MountPoint));
    }
    crate::mount::refuse_mounts_inside(path, action)?;
    if st.stx_ino == 256 && crate::btrfs::is_btrfs(path)? {
        return crate::btrfs::delete_subvolume_recursive(path);
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let top = rustix::fs::open(path, flags, Mode::empty()).ctx(action, path)?;
    let on_btrfs = crate::btrfs::is_btrfs(path)?;
    remove_contents(top, path, st.stx_mnt_id, on_btrfs)?;
    std::fs::remove_dir(path).ctx(action, path)
}

/// One directory being emptied: its fd, its path (for messages), and the names still to remove.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    names: Vec<OsString>,
}

impl Frame {
    fn new(fd: OwnedFd, path: PathBuf) -> Result<Frame> {
        let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 0).ctx("listing", &path)?;
        let mut names: Vec<OsString> = crate::root::read_dir_fd(dup, &path)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.reverse(); // pop() then yields them in name order
        Ok(Frame { fd, path, names })
    }
}

/// Empties the directory open as `top`, iteratively (no recursion, so deep trees cannot overflow the stack).
fn remove_contents(top: OwnedFd, top_path: &Path, mnt_id: u64, on_btrfs: bool) -> Result<()> {
    let want = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID;
    let mut stack = vec![Frame::new(top, top_path.to_owned())?];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            // Finished this directory: remove it from its parent (the top one is removed by the caller).
            let done = stack.pop().expect("frame exists");
            if let Some(parent) = stack.last() {
                let name = done
                    .path
                    .file_name()
                    .expect("child frames have names")
                    .to_owned();
                rustix::fs::unlinkat(&parent.fd, &*name, AtFlags::REMOVEDIR)
                    .ctx("removing", &done.path)?;
            }
            continue;
        };
        let child = frame.path.join(&name);
        let st = rustix::fs::statx(&frame.fd, &*name, AtFlags::SYMLINK_NOFOLLOW, want)
            .ctx("removing", &child)?;
        if FileType::from_raw_mode(st.stx_mode.into()) != FileType::Directory {
            rustix::fs::unlinkat(&frame.fd, &*name, AtFlags::empty()).ctx("removing", &child)?;
            continue;
        }
        if st.stx_mnt_id != mnt_id {
            let reason = Invalidity::MountPointBelow(child.clone());
            return Err(Error::invalid("removing", top_path, reason));
        }
        if on_btrfs && st.stx_ino == 256 {
            crate::btrfs::destroy_at(frame.fd.as_fd(), &name, &child, true)?;
            continue;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(&frame.fd, &*name, flags, Mode::empty()).ctx("removing", &child)?;
        stack.push(Frame::new(fd, child)?);
    }
    Ok(())
}

/// Copies the tree `src` into `dst` like `cp -a src/. dst`: modes, owners, timestamps, symlinks,
/// hard links, device nodes, fifos and extended attributes are preserved; sockets are skipped.
///
/// `dst` is created if missing; files already in it are replaced. Owners and xattrs the caller
/// may not set (when not root) are left as they come out.
pub fn copy_tree(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<()> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let meta = std::fs::symlink_metadata(src).ctx("copying", src)?;
    if !meta.is_dir() {
        return Err(Error::invalid("copying", src, Invalidity::NotADirectory));
    }
    let mut links = HashMap::new();
    copy_dir(src, dst, &meta, &mut links, 0)
}

const MAX_COPY_DEPTH: usize = 512;

fn copy_dir(
    src: &Path,
    dst: &Path,
    meta: &std::fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_COPY_DEPTH {
        return Err(Error::invalid("copying", src, Invalidity::TooDeep));
    }
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => std::fs::remove_file(dst).ctx("replacing", dst)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("copying to", dst, e)),
    }
    if !dst.is_dir() {
        std::fs::create_dir(dst).ctx("creating directory", dst)?;
    }
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .ctx("listing", src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx("listing", src)?;
    entries.sort();
    for name in entries {
        let (s, d) = (src.join(&name), dst.join(&name));
        let m = std::fs::symlink_metadata(&s).ctx("copying", &s)?;
        if m.is_dir() {
            copy_dir(&s, &d, &m, links, depth + 1)?;
        } else {
            copy_leaf(&s, &d, &m, links)?;
        }
    }
    copy_metadata(src, dst, meta)
}

fn copy_leaf(
    src: &Path,
    dst: &Path,
    meta: &std::fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(
                "copying to",
                dst,
                Invalidity::DirectoryInTheWay,
            ));
        }
        Ok(_) => std::fs::remove_file(dst).ctx("replacing", dst)?,
        Err(_) => {}
    }
    let ft = meta.file_type();
    if meta.nlink() > 1 && !ft.is_symlink() {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return std::fs::hard_link(first, dst).ctx("linking", dst);
        }
        links.insert((meta.dev(), meta.ino()), dst.to_owned());
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(src).ctx("reading symlink", src)?;
        std::os::unix::fs::symlink(&target, dst).ctx("creating symlink", dst)?;
    } else if ft.is_file() {
        copy_file_data(src, dst)?;
    } else if ft.is_socket() {
        tracing::debug!(path = %src.display(), "not copying a socket");
        return Ok(());
    } else {
        let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
        let kind = FileType::from_raw_mode(meta.mode());
        rustix::fs::mknodat(rustix::fs::CWD, dst, kind, mode, meta.rdev())
            .ctx("creating node", dst)?;
    }
    copy_metadata(src, dst, meta)
}

fn copy_file_data(src: &Path, dst: &Path) -> Result<()> {
    let mut from = std::fs::File::open(src).ctx("opening", src)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dst, flags, Mode::from_raw_mode(0o600)).ctx("creating", dst)?;
    let mut to = std::fs::File::from(fd);
    // std uses copy_file_range here, which shares extents on filesystems that can (btrfs).
    std::io::copy(&mut from, &mut to)
        .map_err(|e| Error::io(format!("copying {} to", src.display()), dst, e))?;
    Ok(())
}

/// Owner, mode, xattrs, then timestamps (last, since the others would change them).
fn copy_metadata(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let is_link = meta.file_type().is_symlink();
    let uid = rustix::fs::Uid::from_raw(meta.uid());
    let gid = rustix::fs::Gid::from_raw(meta.gid());
    match rustix::fs::chownat(
        rustix::fs::CWD,
        dst,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {}
        Err(e) => return Err(Error::io("setting the owner of", dst, e)),
    }
    if !is_link {
        let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
        rustix::fs::chmod(dst, mode).ctx("setting the mode of", dst)?;
    }
    copy_xattrs(src, dst)?;
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(meta.atime(), meta.atime_nsec()),
        last_modification: ts(meta.mtime(), meta.mtime_nsec()),
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .ctx("setting the times of", dst)
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    use rustix::io::Errno;
    let names = match list_xattrs(src) {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(Error::io("listing the xattrs of", src, e)),
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let value = match get_xattr(src, name) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(Error::io("reading the xattrs of", src, e)),
        };
        match rustix::fs::lsetxattr(dst, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::OPNOTSUPP | Errno::PERM) => {
                tracing::debug!(path = %dst.display(), name = ?name, "xattr not copied");
            }
            Err(e) => return Err(Error::io("setting the xattrs of", dst, e)),
        }
    }
    Ok(())
}

use std::os::unix::ffi::OsStrExt;

fn list_xattrs(path: &Path) -> rustix::io::Result<Vec<u8>> {
    loop {
        let size = rustix::fs::llistxattr_query(path)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(rustix::io::Errno::RANGE) => continue, // grew in between
            Err(e) => return Err(e),
        }
    }
}

fn get_xattr(path: &Path, name: &std::ffi::OsStr) -> rustix::io::Result<Vec<u8>> {
    loop {
        let size = rustix::fs::lgetxattr_query(path, name)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS` (`_IOR/_IOW('f', 1/2, long)`) and the immutable flag.
const FS_IOC_GETFLAGS: libc::c_ulong =
    crate::util::ioc(crate::util::IOC_READ, b'f', 1, size_of::<libc::c_long>());
const FS_IOC_SETFLAGS: libc::c_ulong =
    crate::util::ioc(crate::util::IOC_WRITE, b'f', 2, size_of::<libc::c_long>());
const FS_IMMUTABLE_FL: libc::c_int = 0x10;

fn inode_flags(fd: &OwnedFd, path: &Path) -> Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int (the kernel uses int despite the `long` in the name).
    unsafe { crate::util::ioctl(fd.as_fd(), FS_IOC_GETFLAGS, (&raw mut flags).cast()) }
        .ctx("reading the inode flags of", path)?;
    Ok(flags)
}

/// Whether the file or directory `path` has the immutable attribute (`chattr +i`).
pub fn is_immutable(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ctx("opening", path)?;
    Ok(inode_flags(&fd, path)? & FS_IMMUTABLE_FL != 0)
}

/// Sets or clears the immutable attribute of `path` (`chattr +i` / `-i`).
pub fn set_immutable(path: impl AsRef<Path>, immutable: bool) -> Result<()> {
    let path = path.as_ref();
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ctx("opening", path)?;
    let mut flags = inode_flags(&fd, path)?;
    if immutable {
        flags |= FS_IMMUTABLE_FL;
    } else {
        flags &= !FS_IMMUTABLE_FL;
    }
    // SAFETY: FS_IOC_SETFLAGS reads one int.
    unsafe { crate::util::ioctl(fd.as_fd(), FS_IOC_SETFLAGS, (&raw mut flags).cast()) }
        .ctx("setting the inode flags of", path)?;
    Ok(())
}

/// The value of extended attribute `name` of `path` (not following a final symlink), or `None`
/// when it has none (or the filesystem keeps no extended attributes).
pub fn xattr(path: impl AsRef<Path>, name: &str) -> Result<Option<Vec<u8>>> {
    let path = path.as_ref();
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(e) => Err(Error::io("reading an extended attribute of", path, e)),
    }
}

/// Sets extended attribute `name` of `path` (not following a final symlink) to `value`.
pub fn set_xattr(path: impl AsRef<Path>, name: &str, value: &[u8]) -> Result<()> {
    let path = path.as_ref();
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .ctx("setting an extended attribute of", path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fs_type_of_proc() {
        assert_eq!(fs_type("/proc").unwrap(), FsType::Proc);
        assert_eq!(FsType::from_magic(0x9123_683e), FsType::Btrfs);
        assert_eq!(FsType::from_magic(7), FsType::Other(7));
    }

    fn sample_tree(root: &Path) {
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/f"), "f").unwrap();
        std::fs::write(root.join("a/b/c/g"), "g").unwrap();
        std::fs::set_permissions(root.join("a/f"), std::fs::Permissions::from_mode(0o4751))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("a/abs")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/rel")).unwrap();
        std::fs::hard_link(root.join("a/f"), root.join("a/b/f-link")).unwrap();
        std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn remove_dir_all_one_fs_removes_tree_but_not_symlink_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        let t = tmp.path().join("t");
        sample_tree(&t);
        std::os::unix::fs::symlink(&outside, t.join("a/out")).unwrap();
        remove_dir_all_one_fs(&t).unwrap();
        assert!(!t.exists());
        assert!(outside.join("keep").exists());
        remove_dir_all_one_fs(&t).unwrap(); // missing is fine
        // A symlink at the top is removed itself.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_dir_all_one_fs(&link).unwrap();
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn remove_dir_all_one_fs_handles_deep_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = tmp.path().join("deep");
        for _ in 0..300 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        remove_dir_all_one_fs(tmp.path().join("deep")).unwrap();
        assert!(!tmp.path().join("deep").exists());
    }

    #[test]
    fn copy_tree_preserves_modes_links_and_times() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let dst = tmp.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(dst.join("old"), "old").unwrap();
        std::fs::create_dir_all(dst.join("a")).unwrap();
        std::fs::write(dst.join("a/f"), "replaced").unwrap();
        copy_tree(&src, &dst).unwrap();

        assert_eq!(std::fs::read_to_string(dst.join("a/f")).unwrap(), "f");
        assert_eq!(std::fs::read_to_string(dst.join("a/b/c/g")).unwrap(), "g");
        assert!(dst.join("old").exists(), "existing files are kept");
        let m = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(m("a/f").mode() & 0o7777, 0o4751);
        assert_eq!(m("a/b").mode() & 0o7777, 0o700);
        assert_eq!(
            std::fs::read_link(dst.join("a/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            std::fs::read_link(dst.join("a/rel")).unwrap(),
            Path::new("b")
        );
        assert_eq!(m("a/f").ino(), m("a/b/f-link").ino());
        let sm = std::fs::symlink_metadata(src.join("a/b/c/g")).unwrap();
        assert_eq!(m("a/b/c/g").mtime(), sm.mtime());
        assert_eq!(m("a/b/c/g").mtime_nsec(), sm.mtime_nsec());
        assert!(copy_tree(src.join("a/f"), &dst).is_err());
    }
}
