//! Loop devices: attach a file with `LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE`, resize, detach on drop.
//!
//! With `autoclear`, the kernel detaches the device by itself once the last user (our descriptor,
//! then any mount) is gone: attach, mount, drop the [`LoopDevice`], and the unmount releases it.

use crate::error::Invalidity;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::util::ioctl;

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_SET_DIRECT_IO: libc::c_ulong = 0x4C08;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` from `include/uapi/linux/loop.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; LO_NAME_SIZE],
    crypt_name: [u8; LO_NAME_SIZE],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config`: the backing fd, a block size, the info, and reserved space.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(size_of::<LoopInfo64>() == 232);
const _: () = assert!(size_of::<LoopConfig>() == 304);

/// How to attach a loop device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopOptions {
    /// Attach read-only (the backing file is opened read-only too).
    pub read_only: bool,
    /// Let the kernel detach the device when its last user closes it (after the last unmount).
    pub autoclear: bool,
    /// Byte offset into the backing file.
    pub offset: u64,
    /// Size limit in bytes (0: up to the end of the file).
    pub size_limit: u64,
    /// Bypass the page cache of the backing file.
    pub direct_io: bool,
    /// Logical block size (0: the kernel's default, 512).
    pub block_size: u32,
}

/// An attached loop device; detached on drop unless it is autoclear or leaked.
#[derive(Debug)]
pub struct LoopDevice {
    fd: Option<OwnedFd>,
    path: PathBuf,
    number: u32,
    autoclear: bool,
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device.
    pub fn attach(backing: impl AsRef<Path>, opts: &LoopOptions) -> Result<LoopDevice> {
        let backing = backing.as_ref();
        let action = "attaching a loop device to";
        let access = if opts.read_only {
            OFlags::RDONLY
        } else {
            OFlags::RDWR
        };
        let file = rustix::fs::open(backing, access | OFlags::CLOEXEC, Mode::empty())
            .ctx(action, backing)?;
        let ctl_path = Path::new("/dev/loop-control");
        let ctl = rustix::fs::open(ctl_path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .ctx(action, backing)?;
        let config = loop_config(&file, backing, opts);
        for _ in 0..64 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
            let number = unsafe { ioctl(ctl.as_fd(), LOOP_CTL_GET_FREE, std::ptr::null_mut()) }
                .map_err(|e| Error::io("finding a free loop device for", backing, e))?;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let dev = match rustix::fs::open(&path, access | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                // Another process may have just removed it again; ask for another.
                Err(Errno::NOENT | Errno::NXIO) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("opening {} for", path.display()),
                        backing,
                        e,
                    ));
                }
            };
            let mut cfg = config;
            // SAFETY: LOOP_CONFIGURE reads a struct loop_config, which `cfg` is; the backing fd in
            // it stays open until the call returns.
            match unsafe { ioctl(dev.as_fd(), LOOP_CONFIGURE, (&raw mut cfg).cast()) } {
                Ok(_) => {
                    tracing::debug!(device = %path.display(), backing = %backing.display(), "loop device attached");
                    let number = number as u32;
                    return Ok(LoopDevice {
                        fd: Some(dev),
                        path,
                        number,
                        autoclear: opts.autoclear,
                    });
                }
                // Someone configured it between GET_FREE and CONFIGURE; try the next free one.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("configuring {} for", path.display()),
                        backing,
                        e,
                    ));
                }
            }
        }
        Err(Error::invalid(
            action,
            backing,
            Invalidity::LoopDevicesTaken,
        ))
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device number N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The backing file as the kernel reports it.
    pub fn backing_file(&self) -> Result<PathBuf> {
        let p = PathBuf::from(format!("/sys/block/loop{}/loop/backing_file", self.number));
        let text = std::fs::read_to_string(&p).ctx("reading", &p)?;
        Ok(PathBuf::from(text.trim_end_matches('\n')))
    }

    /// Makes the device pick up a changed size of its backing file (`LOOP_SET_CAPACITY`).
    pub fn set_capacity(&self) -> Result<()> {
        let fd = self.fd.as_ref().expect("a live LoopDevice has its fd");
        // SAFETY: LOOP_SET_CAPACITY takes no argument.
        unsafe { ioctl(fd.as_fd(), LOOP_SET_CAPACITY, std::ptr::null_mut()) }
            .ctx("updating the capacity of", &self.path)?;
        Ok(())
    }

    /// Detaches the device now (if it is still in use, the kernel detaches it after the last user).
    pub fn detach(mut self) -> Result<()> {
        let fd = self.fd.take().expect("a live LoopDevice has its fd");
        clear_fd(&fd, &self.path)
    }

    /// Keeps the device attached after this handle is gone; returns its path.
    ///
    /// An autoclear device still goes away once nothing uses it.
    pub fn leak(mut self) -> PathBuf {
        self.fd = None;
        std::mem::take(&mut self.path)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        if self.autoclear {
            return; // closing our descriptor lets the kernel detach it once unused
        }
        if let Err(e) = clear_fd(&fd, &self.path) {
            tracing::warn!("{}", crate::error::chain(&e));
        }
    }
}

fn loop_config(file: &OwnedFd, backing: &Path, opts: &LoopOptions) -> LoopConfig {
    let mut flags = 0;
    if opts.read_only {
        flags |= LO_FLAGS_READ_ONLY;
    }
    if opts.autoclear {
        flags |= LO_FLAGS_AUTOCLEAR;
    }
    if opts.direct_io {
        flags |= LO_FLAGS_DIRECT_IO;
    }
    let mut file_name = [0u8; LO_NAME_SIZE];
    let name = std::os::unix::ffi::OsStrExt::as_bytes(backing.as_os_str());
    let n = name.len().min(LO_NAME_SIZE - 1);
    file_name[..n].copy_from_slice(&name[..n]);
    LoopConfig {
        fd: file.as_raw_fd() as u32,
        block_size: opts.block_size,
        info: LoopInfo64 {
            device: 0,
            inode: 0,
            rdevice: 0,
            offset: opts.offset,
            sizelimit: opts.size_limit,
            number: 0,
            encrypt_type: 0,
            encrypt_key_size: 0,
            flags,
            file_name,
            crypt_name: [0; LO_NAME_SIZE],
            encrypt_key: [0; 32],
            init: [0; 2],
        },
        reserved: [0; 8],
    }
}

fn clear_fd(fd: &OwnedFd, path: &Path) -> Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    match unsafe { ioctl(fd.as_fd(), LOOP_CLR_FD, std::ptr::null_mut()) } {
        Ok(_) => Ok(()),
        // Not bound (already detached, e.g. by autoclear): nothing to do.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(Error::io("detaching loop device", path, e)),
    }
}

/// Detaches the loop device at `device` (e.g. a leftover found with [`find_by_backing_file`]).
pub fn detach_device(device: impl AsRef<Path>) -> Result<()> {
    let device = device.as_ref();
    let fd = rustix::fs::open(device, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening loop device", device)?;
    clear_fd(&fd, device)
}

/// Makes the loop device at `device` (attached by anyone) pick up a changed size of its backing
/// file (`LOOP_SET_CAPACITY`).
pub fn set_capacity_of(device: impl AsRef<Path>) -> Result<()> {
    let device = device.as_ref();
    let fd = rustix::fs::open(device, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening loop device", device)?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    unsafe { ioctl(fd.as_fd(), LOOP_SET_CAPACITY, std::ptr::null_mut()) }
        .ctx("updating the capacity of", device)?;
    Ok(())
}

/// Switches the loop device at `device` (attached by anyone, also in use) to direct I/O on its
/// backing file, or back (`LOOP_SET_DIRECT_IO`): with it the file's data is not cached a second
/// time in the page cache under what the device's own users cache.
pub fn set_direct_io_of(device: impl AsRef<Path>, on: bool) -> Result<()> {
    let device = device.as_ref();
    let fd = rustix::fs::open(device, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ctx("opening loop device", device)?;
    // SAFETY: LOOP_SET_DIRECT_IO takes its argument by value (0 or 1), not a pointer.
    unsafe {
        ioctl(
            fd.as_fd(),
            LOOP_SET_DIRECT_IO,
            usize::from(on) as *mut libc::c_void,
        )
    }
    .ctx("switching direct I/O of", device)?;
    Ok(())
}

/// The loop devices (`/dev/loopN`) whose backing file is `backing`, for cleaning up leftovers.
pub fn find_by_backing_file(backing: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let backing = backing.as_ref();
    let wanted = std::fs::canonicalize(backing).unwrap_or_else(|_| backing.to_owned());
    let sys = Path::new("/sys/block");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(sys).ctx("listing", sys)? {
        let entry = entry.ctx("listing", sys)?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix("loop"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if backing_matches(&text, &wanted) {
            out.push((number, PathBuf::from(format!("/dev/loop{number}"))));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Whether a sysfs `backing_file` line names `wanted` (also once the file was deleted).
fn backing_matches(sysfs_text: &str, wanted: &Path) -> bool {
    let text = sysfs_text.trim_end_matches('\n');
    let text = text.strip_suffix(" (deleted)").unwrap_or(text);
    Path::new(text) == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_carries_options() {
        let file =
            rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let long = "/x".repeat(100);
        let opts = LoopOptions {
            read_only: true,
            autoclear: true,
            offset: 4096,
            size_limit: 1 << 20,
            direct_io: true,
            block_size: 4096,
        };
        let cfg = loop_config(&file, Path::new(&long), &opts);
        assert_eq!(
            cfg.info.flags,
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO
        );
        assert_eq!(
            (cfg.info.offset, cfg.info.sizelimit, cfg.block_size),
            (4096, 1 << 20, 4096)
        );
        assert_eq!(
            cfg.info.file_name[LO_NAME_SIZE - 1],
            0,
            "name stays NUL-terminated"
        );
        assert_eq!(cfg.fd as i32, file.as_raw_fd());
    }

    #[test]
    fn backing_file_lines_match() {
        assert!(backing_matches("/a/b.img\n", Path::new("/a/b.img")));
        assert!(backing_matches(
            "/a/b.img (deleted)\n",
            Path::new("/a/b.img")
        ));
        assert!(!backing_matches("/a/b.img2\n", Path::new("/a/b.img")));
    }
}
