//! Small internal helpers shared by the modules: random suffixes, parent/name splitting, dir fds,
//! ioctl numbers. It imports no other module of the crate but `error`, so nothing cycles through it.

use crate::error::Invalidity;
use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};

/// A short random hex string for temporary names (collisions are handled with `O_EXCL`/retries).
pub(crate) fn random_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{:010x}", h.finish() & 0xff_ffff_ffff)
}

/// Splits `path` into its parent directory (`.` for a bare name) and final name.
pub(crate) fn split_parent<'a>(path: &'a Path, action: &str) -> Result<(&'a Path, &'a OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(action, path, Invalidity::NoFinalName))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// Opens the parent of `path` as a directory that can be fsynced, returning it with the name.
pub(crate) fn open_parent<'a>(path: &'a Path, action: &str) -> Result<(OwnedFd, &'a OsStr)> {
    let (parent, name) = split_parent(path, action)?;
    Ok((open_dir(parent, action)?, name))
}

/// Opens a directory (`O_RDONLY`, so it can be fsynced and read).
pub(crate) fn open_dir(path: &Path, action: &str) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(action, path)
}

/// Direction bits of an ioctl request number (`_IOC_WRITE`, `_IOC_READ`).
pub(crate) const IOC_WRITE: u32 = 1;
pub(crate) const IOC_READ: u32 = 2;

/// Builds an ioctl request number like the kernel's `_IOC(dir, type, nr, size)`.
pub(crate) const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    assert!(size < (1 << 14), "ioctl argument too large");
    ((dir as libc::c_ulong) << 30)
        | ((size as libc::c_ulong) << 16)
        | ((ty as libc::c_ulong) << 8)
        | (nr as libc::c_ulong)
}

/// Calls `ioctl(fd, request, arg)` and maps -1 to the OS error.
///
/// # Safety
/// `arg` must be what the driver expects for `request`: a pointer to a live, correctly laid out
/// value of the right size (or an integer argument passed as a pointer-sized value).
pub(crate) unsafe fn ioctl(
    fd: rustix::fd::BorrowedFd<'_>,
    request: libc::c_ulong,
    arg: *mut libc::c_void,
) -> std::io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    // SAFETY: the caller guarantees `arg` matches `request`; `fd` is a live descriptor.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parent_and_name() {
        let (p, n) = split_parent(Path::new("a/b/c"), "x").unwrap();
        assert_eq!((p, n), (Path::new("a/b"), OsStr::new("c")));
        let (p, n) = split_parent(Path::new("c"), "x").unwrap();
        assert_eq!((p, n), (Path::new("."), OsStr::new("c")));
        let (p, n) = split_parent(Path::new("/c"), "x").unwrap();
        assert_eq!((p, n), (Path::new("/"), OsStr::new("c")));
        assert!(split_parent(Path::new("/"), "x").is_err());
        assert!(split_parent(Path::new("a/.."), "x").is_err());
    }
}
