//! The generator at boot: find the state partition on the disk `/` is on (as
//! systemd-gpt-auto-generator finds its partitions), read its entries, write the units.

use std::path::{Path, PathBuf};

use realms_sys::mount::{self, MountFlags};

use crate::error::Result;
use crate::generator::{self, DEFAULT_CRYPT_OPTIONS, Plan, StateSource};
use crate::gpt::Gpt;
use crate::guid::STATE_PARTITION_TYPE;
use realms_sys::IoContext;

/// The state partition found at boot.
#[derive(Debug, Clone)]
pub struct Found {
    /// The whole disk (`/dev/vda`).
    pub disk: PathBuf,
    /// The partition's kernel node (`/dev/vda3`).
    pub node: PathBuf,
    /// The stable name the units use (`/dev/disk/by-partuuid/...`).
    pub by_uuid: String,
}

/// The kernel name of the whole disk holding the block device `M:m`.
fn disk_of(devnum: &str) -> Option<String> {
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{devnum}")).ok()?;
    let dir = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

/// The disk `/` is mounted from, by its mountinfo line.
fn root_disk() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some("/"))?;
    let devnum = line.split(' ').nth(2)?;
    if !devnum.starts_with("0:") {
        return disk_of(devnum);
    }
    // btrfs and the like report an anonymous device: go by the mount source instead.
    let source = line.split(" - ").nth(1)?.split(' ').nth(1)?;
    let name = std::fs::canonicalize(source).ok()?;
    let dev = std::fs::read_to_string(
        Path::new("/sys/class/block")
            .join(name.file_name()?)
            .join("dev"),
    )
    .ok()?;
    disk_of(dev.trim())
}

/// `realms.state_disk=DEV` on the kernel command line names the disk explicitly.
fn cmdline_disk() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    let dev = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("realms.state_disk="))?;
    let name = std::fs::canonicalize(dev).ok()?;
    Some(name.file_name()?.to_string_lossy().into_owned())
}

/// Looks for the state partition on `disk` (a kernel name like `vda`).
fn find_on(disk: &str) -> Result<Option<Found>> {
    let path = PathBuf::from("/dev").join(disk);
    let file = std::fs::File::open(&path).ctx("opening", &path)?;
    let size = {
        use std::io::Seek;
        let mut f = &file;
        f.seek(std::io::SeekFrom::End(0)).ctx("measuring", &path)?
    };
    let gpt = match Gpt::read(&file, &path, size) {
        Ok(g) => g,
        Err(crate::Error::BadGpt { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(part) = gpt
        .partitions()
        .into_iter()
        .find(|p| p.type_guid == STATE_PARTITION_TYPE)
    else {
        return Ok(None);
    };
    let sys = PathBuf::from("/sys/class/block").join(disk);
    let mut node = None;
    for item in std::fs::read_dir(&sys).ctx("listing", &sys)?.flatten() {
        let n = std::fs::read_to_string(item.path().join("partition")).unwrap_or_default();
        if n.trim() == part.number.to_string() {
            node = Some(PathBuf::from("/dev").join(item.file_name()));
        }
    }
    Ok(node.map(|node| Found {
        disk: path,
        node,
        by_uuid: format!("/dev/disk/by-partuuid/{}", part.uuid),
    }))
}

/// `$REALMS_STATE_DISK` names the disk too (for trying the generator by hand on a loop device).
fn env_disk() -> Option<String> {
    let dev = std::env::var_os("REALMS_STATE_DISK")?;
    let name = std::fs::canonicalize(dev).ok()?;
    Some(name.file_name()?.to_string_lossy().into_owned())
}

/// Finds the state partition: on the root disk, else on `realms.state_disk=` or
/// `$REALMS_STATE_DISK`.
pub fn find() -> Result<Option<Found>> {
    for disk in [root_disk(), cmdline_disk(), env_disk()]
        .into_iter()
        .flatten()
    {
        if let Some(found) = find_on(&disk)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Runs the generator: writes the units into `dir`, or nothing without a state partition.
/// Returns what it did, for the log.
pub fn generate(dir: &Path) -> Result<String> {
    let Some(found) = find()? else {
        return Ok("no state partition on the root disk; nothing to do".into());
    };
    // Read the entries from the partition, mounted read-only for a moment (/run is available).
    let probe = crate::scratch::tempdir_in_run("generator")?;
    let layout = mount::mount_fs(&found.node, &probe, "btrfs", MountFlags::RDONLY, "")
        .map_err(crate::Error::from)
        .and_then(|guard| {
            let layout = crate::entries::read(&probe);
            guard.unmount()?;
            layout
        });
    let _ = std::fs::remove_dir(&probe);
    let layout = layout?;
    let mut said = format!(
        "state partition {} on {}: {} entries",
        found.node.display(),
        found.disk.display(),
        layout.entries.len()
    );
    for s in &layout.skipped {
        said.push_str(&format!("; skipped '{}': {}", s.name, s.reason));
    }
    let plan = Plan {
        source: StateSource::Device(found.by_uuid),
        layout,
        crypt_options: DEFAULT_CRYPT_OPTIONS.into(),
    };
    generator::write(dir, &generator::units(&plan))?;
    Ok(said)
}
