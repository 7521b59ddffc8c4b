//! Device-mapper through its ioctls (no dmsetup or veritysetup at run time): dm-verity devices
//! for sealed images, removed by the kernel once their last user (a mount) is gone.

use crate::error::Invalidity;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fd::AsFd;

use crate::error::{Error, IoContext, Result};
use crate::util::{IOC_READ, IOC_WRITE, ioc, ioctl};

const CONTROL: &str = "/dev/mapper/control";
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const DM_IOCTL_TYPE: u8 = 0xfd;

const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;

const DM_READONLY_FLAG: u32 = 1 << 0;
const DM_DEFERRED_REMOVE: u32 = 1 << 17;

/// `struct dm_ioctl` from `include/uapi/linux/dm-ioctl.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; DM_NAME_LEN],
    uuid: [u8; DM_UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`, followed in the buffer by the target's parameter string.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const _: () = assert!(size_of::<DmIoctl>() == 312);
const _: () = assert!(size_of::<DmTargetSpec>() == 40);

/// True when the kernel has device-mapper: its control device opens (a stale node left by
/// libdevmapper on a kernel without it does not count; see [`crate::caps`]).
pub fn available() -> bool {
    crate::caps::device_mapper()
}

/// The parameters of a dm-verity table (`Documentation/admin-guide/device-mapper/verity.rst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTable {
    /// The device holding the data.
    pub data_device: PathBuf,
    /// The device holding the hash tree (may be the data device).
    pub hash_device: PathBuf,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Where the hash tree starts in the hash device, in hash blocks.
    pub hash_start_block: u64,
    /// The kernel's name of the hash algorithm (`sha256`).
    pub algorithm: String,
    /// The root hash, hex.
    pub root_hash_hex: String,
    /// Hex, or `-` for none.
    pub salt_hex: String,
    /// Forward error correction, if the image carries it.
    pub fec: Option<VerityFec>,
}

/// The FEC parameters of a dm-verity table (`use_fec_from_device` and the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityFec {
    /// The device holding the parity.
    pub device: PathBuf,
    /// Parity bytes per codeword (2 to 24).
    pub roots: u32,
    /// Blocks covered: data and hash (`fec_blocks`).
    pub blocks: u64,
    /// Where the parity starts in the FEC device, in blocks (`fec_start`).
    pub start_block: u64,
}

/// Creates a read-only dm-verity device `name` and returns the path of a block-device node for
/// it (under `node_dir`, which need not be /dev). Mount it, then call [`remove_deferred`].
pub fn create_verity(name: &str, table: &VerityTable, node_dir: &Path) -> Result<PathBuf> {
    let action = "creating the dm-verity device";
    let data = dev_number(&table.data_device)?;
    let hash = dev_number(&table.hash_device)?;
    let mut params = format!(
        "1 {}:{} {}:{} {} {} {} {} {} {} {}",
        major(data),
        minor(data),
        major(hash),
        minor(hash),
        table.data_block_size,
        table.hash_block_size,
        table.data_blocks,
        table.hash_start_block,
        table.algorithm,
        table.root_hash_hex,
        table.salt_hex
    );
    if let Some(fec) = &table.fec {
        let dev = dev_number(&fec.device)?;
        params.push_str(&format!(
            " 8 use_fec_from_device {}:{} fec_roots {} fec_blocks {} fec_start {}",
            major(dev),
            minor(dev),
            fec.roots,
            fec.blocks,
            fec.start_block
        ));
    }
    let sectors = table.data_blocks * u64::from(table.data_block_size) / 512;
    let control = std::fs::File::open(CONTROL).ctx("opening", Path::new(CONTROL))?;

    let created = call(&control, DM_DEV_CREATE, name, DM_READONLY_FLAG, &[])
        .map_err(|e| Error::io(action, Path::new(name), e))?;
    let result = (|| {
        let spec = target_spec(sectors, "verity", &params);
        call(&control, DM_TABLE_LOAD, name, DM_READONLY_FLAG, &spec)?;
        call(&control, DM_DEV_SUSPEND, name, 0, &[])?; // without the suspend flag: resume
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = result {
        let _ = call(&control, DM_DEV_REMOVE, name, 0, &[]);
        return Err(Error::io(
            format!("loading the dm-verity table ({params}) of"),
            Path::new(name),
            e,
        ));
    }
    std::fs::create_dir_all(node_dir).ctx("creating", node_dir)?;
    let node = node_dir.join(name);
    let _ = std::fs::remove_file(&node);
    let dev = created.dev;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &node,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o400),
        rustix::fs::makedev(dev_major(dev), dev_minor(dev)),
    )
    .map_err(|e| Error::io("creating the device node", &node, e))?;
    Ok(node)
}

/// Asks the kernel to remove device `name` as soon as nothing holds it open any more.
pub fn remove_deferred(name: &str) -> Result<()> {
    let control = std::fs::File::open(CONTROL).ctx("opening", Path::new(CONTROL))?;
    call(&control, DM_DEV_REMOVE, name, DM_DEFERRED_REMOVE, &[])
        .map(|_| ())
        .map_err(|e| Error::io("removing the device-mapper device", Path::new(name), e))
}

/// Removes device `name` now.
pub fn remove(name: &str) -> Result<()> {
    let control = std::fs::File::open(CONTROL).ctx("opening", Path::new(CONTROL))?;
    call(&control, DM_DEV_REMOVE, name, 0, &[])
        .map(|_| ())
        .map_err(|e| Error::io("removing the device-mapper device", Path::new(name), e))
}

fn target_spec(sectors: u64, target: &str, params: &str) -> Vec<u8> {
    let mut spec = DmTargetSpec {
        sector_start: 0,
        length: sectors,
        status: 0,
        next: 0,
        target_type: [0; 16],
    };
    spec.target_type[..target.len()].copy_from_slice(target.as_bytes());
    let mut params = params.as_bytes().to_vec();
    params.push(0);
    let total = (size_of::<DmTargetSpec>() + params.len()).next_multiple_of(8);
    let mut out = vec![0u8; total];
    // SAFETY: DmTargetSpec is plain old data of the size checked above.
    let bytes: [u8; 40] = unsafe { std::mem::transmute(spec) };
    out[..40].copy_from_slice(&bytes);
    out[40..40 + params.len()].copy_from_slice(&params);
    out
}

/// One dm ioctl with `payload` after the header; returns the header the kernel wrote back.
fn call(
    control: &std::fs::File,
    cmd: u8,
    name: &str,
    flags: u32,
    payload: &[u8],
) -> std::io::Result<DmIoctl> {
    if name.is_empty() || name.len() >= DM_NAME_LEN || name.contains('/') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bad device-mapper name",
        ));
    }
    let header = size_of::<DmIoctl>();
    // Room for the kernel's answer too (it may write a table or status back).
    let size = (header + payload.len()).max(16 * 1024);
    let mut buf = vec![0u64; size.div_ceil(8)];
    let mut io = DmIoctl {
        version: [4, 0, 0],
        data_size: (buf.len() * 8) as u32,
        data_start: header as u32,
        target_count: u32::from(!payload.is_empty()),
        open_count: 0,
        flags,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; DM_NAME_LEN],
        uuid: [0; DM_UUID_LEN],
        data: [0; 7],
    };
    io.name[..name.len()].copy_from_slice(name.as_bytes());
    let base = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `buf` is large enough for the header and the payload, and 8-byte aligned.
    unsafe {
        std::ptr::write(base.cast::<DmIoctl>(), io);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(header), payload.len());
    }
    let request = ioc(IOC_READ | IOC_WRITE, DM_IOCTL_TYPE, cmd, header);
    // SAFETY: the buffer starts with a dm_ioctl whose data_size covers the whole buffer.
    unsafe { ioctl(control.as_fd(), request, base.cast())? };
    // SAFETY: the kernel wrote a dm_ioctl header back at the start of the buffer.
    Ok(unsafe { std::ptr::read(base.cast::<DmIoctl>()) })
}

/// The device number of a block device node.
fn dev_number(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).ctx("reading", path)?;
    if !meta.file_type().is_block_device() {
        return Err(Error::invalid("using", path, Invalidity::NotABlockDevice));
    }
    Ok(meta.rdev())
}

fn major(dev: u64) -> u32 {
    rustix::fs::major(dev)
}

fn minor(dev: u64) -> u32 {
    rustix::fs::minor(dev)
}

/// The kernel's `huge_encode_dev` in `dm_ioctl.dev`, decoded.
fn dev_major(dev: u64) -> u32 {
    ((dev >> 8) & 0xfff) as u32
}

fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a `/dev/mapper/control` node on a kernel without device-mapper counted as
    /// device-mapper, so a sealed realm failed to start ("opening /dev/mapper/control: No such
    /// device") instead of being verified in userspace.
    #[test]
    fn a_control_node_without_a_driver_is_not_device_mapper() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!crate::caps::control_device_answers(
            &dir.path().join("control")
        ));
        // A character device whose major has no driver (unnamed major 0 never has one); mknod
        // needs CAP_MKNOD and a filesystem that allows device nodes.
        let node = dir.path().join("nodriver");
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(0, 0),
        );
        if made.is_ok() {
            assert!(!crate::caps::control_device_answers(&node));
        }
        // /dev/null has a driver.
        assert!(crate::caps::control_device_answers(Path::new("/dev/null")));
    }

    #[test]
    fn target_spec_layout() {
        let spec = target_spec(8, "verity", "1 7:0 7:1");
        assert_eq!(spec.len() % 8, 0);
        assert_eq!(u64::from_ne_bytes(spec[8..16].try_into().unwrap()), 8);
        assert_eq!(&spec[24..30], b"verity");
        assert_eq!(&spec[40..50], b"1 7:0 7:1\0");
    }

    #[test]
    fn huge_encoded_device_numbers_decode() {
        // major 253, minor 3 and a minor above 255
        assert_eq!((dev_major(253 << 8 | 3), dev_minor(253 << 8 | 3)), (253, 3));
        let dev = (300u64 & 0xff) | (253 << 8) | ((300u64 & !0xff) << 12);
        assert_eq!((dev_major(dev), dev_minor(dev)), (253, 300));
    }
}
