//! `realms state setup`: add the state partition over free space (as systemd-repart would: GPT
//! otherwise untouched, UUID derived from the machine id, label `state`), put btrfs on it and
//! create the layout.

use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use realms_sys::cmd::Cmd;
use realms_sys::event::{Event, Report};
use realms_sys::loopdev::{LoopDevice, LoopOptions};
use realms_sys::mount::{self, MountFlags};

use crate::entries;
use crate::error::{Error, GptProblem, InUseBy, Result};
use crate::gpt::{Gpt, NewPartition};
use crate::guid::{Guid, STATE_PARTITION_TYPE};
use realms_sys::IoContext;

/// The partition label, as systemd-repart would name a partition of this type.
pub const LABEL: &str = "state";
/// The smallest state partition: btrfs needs ~256 MiB, and the encrypted image as much again.
pub const MIN_SIZE: u64 = 512 << 20;

/// What `setup` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The disk: a block device or a disk image file.
    pub disk: PathBuf,
    /// The partition size (rounded down to the grain); `None`: the largest free area (`--fill`).
    pub size: Option<u64>,
    /// The root whose `/etc/machine-id` seeds the partition UUID.
    pub root: PathBuf,
    /// How the encrypted image is enrolled (it is made where device-mapper exists).
    pub enroll: crate::encrypt::EnrollOptions,
}

/// What `setup` will do (`--dry-run` prints this).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The disk.
    pub disk: PathBuf,
    /// Whether it is a block device (else an image file).
    pub block_device: bool,
    /// The partition number it gets.
    pub number: u32,
    /// The partition's type.
    pub type_uuid: Guid,
    /// The partition's UUID.
    pub uuid: Guid,
    /// Where the UUID came from.
    pub uuid_from: String,
    /// The label.
    pub label: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The entries the layout gets.
    pub entries: Vec<String>,
    /// The initial size of the encrypted image (sparse), if it is made now (device-mapper
    /// exists); otherwise `realms state setup` must run again on the target to make it.
    pub image_size: Option<u64>,
    /// How the image is enrolled.
    #[serde(skip)]
    pub enroll: crate::encrypt::EnrollOptions,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "add partition {} to {}: type {} ({}), uuid {} ({}), label '{}'",
            self.number,
            self.disk.display(),
            self.type_uuid,
            crate::guid::STATE_PARTITION_TYPE_NAME,
            self.uuid,
            self.uuid_from,
            self.label
        )?;
        writeln!(
            f,
            "  offset {} bytes, size {} bytes ({} MiB); btrfs",
            self.offset,
            self.size,
            self.size >> 20
        )?;
        writeln!(f, "  layout: {}", self.entries.join(" "))?;
        match self.image_size {
            Some(s) => write!(
                f,
                "  encrypted.img: LUKS2 + btrfs, {} MiB to start (sparse, grows and shrinks)",
                s >> 20
            ),
            None => write!(
                f,
                "  encrypted.img: not made here (no device-mapper); the entries are listed for it"
            ),
        }
    }
}

/// Opens `disk` for reading and writing and gives its size.
fn open_disk(disk: &Path, write: bool) -> Result<(File, u64, bool)> {
    let meta = std::fs::metadata(disk).ctx("opening", disk)?;
    let block = meta.file_type().is_block_device();
    if !block && !meta.is_file() {
        return Err(Error::BadGpt {
            disk: disk.into(),
            problem: GptProblem::NotADisk,
        });
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(disk)
        .ctx("opening", disk)?;
    let size = file.seek(SeekFrom::End(0)).ctx("measuring", disk)?;
    Ok((file, size, block))
}

/// The machine id under `root` (`None` when missing or uninitialized).
fn machine_id(root: &Path) -> Option<Guid> {
    let text = std::fs::read_to_string(root.join("etc/machine-id")).ok()?;
    Guid::parse_hex32(text.trim()).filter(|g| *g != Guid::NIL)
}

/// Works out where the partition goes, changing nothing.
pub fn plan(opts: &Options) -> Result<Plan> {
    let disk = &opts.disk;
    let (file, size, block) = open_disk(disk, false)?;
    check_unused(disk, block)?;
    let gpt = Gpt::read(&file, disk, size)?;
    if let Some(p) = gpt
        .partitions()
        .into_iter()
        .find(|p| p.type_guid == STATE_PARTITION_TYPE)
    {
        return Err(Error::AlreadyHasState {
            disk: disk.clone(),
            number: p.number,
        });
    }
    let number = gpt.next_number().ok_or_else(|| Error::BadGpt {
        disk: disk.clone(),
        problem: GptProblem::Full,
    })?;
    let sector = gpt.sector;
    let areas = gpt.free_areas();
    let len = |&(a, b): &(u64, u64)| (b - a + 1) * sector;
    let largest = areas.iter().map(len).max().unwrap_or(0);
    let wanted = match opts.size {
        Some(s) => s / crate::gpt::GRAIN * crate::gpt::GRAIN,
        None => largest,
    };
    if wanted < MIN_SIZE {
        return Err(Error::NoSpace {
            disk: disk.clone(),
            wanted: wanted.max(MIN_SIZE),
            largest,
        });
    }
    // As repart: the smallest free area that fits.
    let (first, _) = areas
        .iter()
        .filter(|a| len(a) >= wanted)
        .min_by_key(|a| len(a))
        .copied()
        .ok_or(Error::NoSpace {
            disk: disk.clone(),
            wanted,
            largest,
        })?;
    let (uuid, uuid_from) = match machine_id(&opts.root) {
        Some(id) => (
            Guid::app_specific(id, STATE_PARTITION_TYPE),
            format!(
                "derived from the machine id in {}",
                opts.root.join("etc/machine-id").display()
            ),
        ),
        None => (Guid::random()?, "random: no machine id".to_string()),
    };
    let mut entries: Vec<String> = entries::DEFAULT_PLAIN
        .iter()
        .map(|s| s.to_string())
        .collect();
    entries.extend(
        entries::DEFAULT_ENCRYPTED
            .iter()
            .map(|s| format!("encrypted/{s}")),
    );
    // A quarter of the partition to start with; it grows with need.
    let image_size = crate::encrypt::dm_usable().then(|| {
        (wanted / 4 / crate::resize::STEP * crate::resize::STEP).max(crate::resize::MIN_IMAGE)
    });
    Ok(Plan {
        image_size,
        enroll: opts.enroll.clone(),
        disk: disk.clone(),
        block_device: block,
        number,
        type_uuid: STATE_PARTITION_TYPE,
        uuid,
        uuid_from,
        label: LABEL.into(),
        offset: first * sector,
        size: wanted,
        entries,
    })
}

/// Refuses a disk that is in use: an image attached to a loop device, or a block device that is
/// mounted, has a mounted partition or is held by another device (device-mapper, md).
fn check_unused(disk: &Path, block: bool) -> Result<()> {
    let in_use = |what: InUseBy| Error::InUse {
        disk: disk.into(),
        what,
    };
    if !block {
        if let Some(loopdev) = realms_sys::loopdev::find_by_backing_file(disk)?.first() {
            return Err(in_use(InUseBy::LoopDevice(loopdev.clone())));
        }
        return Ok(());
    }
    let canon = std::fs::canonicalize(disk).ctx("resolving", disk)?;
    let name = canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    let mut devs = vec![(name.clone(), sys.clone())];
    for item in std::fs::read_dir(&sys).ctx("listing", &sys)?.flatten() {
        let n = item.file_name().to_string_lossy().into_owned();
        if n.starts_with(&name) {
            devs.push((n, item.path()));
        }
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("reading", "/proc/self/mountinfo")?;
    for (n, dir) in devs {
        let Ok(dev) = std::fs::read_to_string(dir.join("dev")) else {
            continue;
        };
        let dev = dev.trim();
        if mountinfo.lines().any(|l| l.split(' ').nth(2) == Some(dev)) {
            return Err(in_use(InUseBy::Mounted(n)));
        }
        let holder = std::fs::read_dir(dir.join("holders"))
            .ok()
            .and_then(|mut h| h.next())
            .and_then(|h| h.ok());
        if let Some(h) = holder {
            return Err(in_use(InUseBy::Held {
                device: n,
                holder: h.file_name().to_string_lossy().into_owned(),
            }));
        }
    }
    Ok(())
}

/// The result of `setup`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// What was done.
    pub plan: Plan,
    /// The encrypted image, if it was made (it needs device-mapper); holds the recovery key.
    pub encrypted: Option<crate::encrypt::Created>,
}

/// Carries out `plan`: makes btrfs and the layout in the free space the plan chose, then writes
/// the partition over it. The partition table, written last, is the commit: killed before it,
/// the disk is as it was (no partition names that space, and the next setup starts over);
/// after it, the state partition is complete. Mounts are made in a mount namespace of the
/// command's own and the loop device is autoclear, so a kill leaves nothing attached.
pub fn apply(plan: &Plan, report: &dyn Report) -> Result<Outcome> {
    let disk = &plan.disk;
    let (file, size, block) = open_disk(disk, true)?;
    // What a setup killed while its new image was open still holds, the disk among it.
    crate::encrypt::close_stale_setups();
    check_unused(disk, block)?;
    let mut gpt = Gpt::read(&file, disk, size)?;
    let sector = gpt.sector;
    let part = NewPartition {
        type_guid: plan.type_uuid,
        uuid: plan.uuid,
        first_lba: plan.offset / sector,
        last_lba: (plan.offset + plan.size) / sector - 1,
        label: plan.label.clone(),
    };
    // In memory only: checks the space is free and numbers the partition.
    let number = gpt.add(&part)?;
    let encrypted = make_state(plan, report)?;
    realms_sys::failpoint::hit("state-setup-made");
    gpt.write(&file)?;
    drop(file);
    realms_sys::failpoint::hit("state-setup-committed");
    report.report(Event::progress(format!(
        "added state partition {number} to {} ({} MiB)",
        disk.display(),
        plan.size >> 20
    )));
    if block {
        // Tell the kernel.
        if let Err(e) = Cmd::new("partx")
            .args(["-a", "--nr", &number.to_string()])
            .arg(disk)
            .run()
        {
            report.report(Event::warning(format!(
                "the kernel was not told of the new partition: {e}"
            )));
        }
    }
    Ok(Outcome {
        plan: plan.clone(),
        encrypted,
    })
}

/// Makes btrfs, the layout and (with device-mapper) the encrypted image in the plan's space,
/// through a loop device over it.
fn make_state(plan: &Plan, report: &dyn Report) -> Result<Option<crate::encrypt::Created>> {
    if let Err(e) = realms_sys::ns::unshare_mount_namespace() {
        tracing::debug!("no private mount namespace: {e}");
    }
    let loopdev = LoopDevice::attach(
        &plan.disk,
        &LoopOptions {
            offset: plan.offset,
            size_limit: plan.size,
            autoclear: true,
            ..LoopOptions::default()
        },
    )?;
    // A setup killed before its commit left a btrfs with this very UUID here, which mkfs.btrfs
    // would take for another file system's ("non-unique UUID").
    Cmd::new("wipefs")
        .args(["-q", "-a"])
        .arg(loopdev.path())
        .run()?;
    Cmd::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", LABEL, "-U"])
        .arg(plan.uuid.to_string())
        .arg(loopdev.path())
        .run()?;
    report.report(Event::progress("made a btrfs file system"));
    let mnt = crate::scratch::tempdir_in_run("setup")?;
    let guard = mount::mount_fs(loopdev.path(), &mnt, "btrfs", MountFlags::empty(), "")?;
    let layout = create_layout(&mnt).and_then(|()| match plan.image_size {
        Some(size) => crate::encrypt::create(&mnt, size, &plan.enroll, report).map(Some),
        None => Ok(None),
    });
    let unmounted = guard.unmount();
    let _ = std::fs::remove_dir(&mnt);
    loopdev.detach()?;
    let encrypted = layout?;
    unmounted?;
    report.report(Event::progress(format!(
        "created the layout: {}",
        plan.entries.join(" ")
    )));
    Ok(encrypted)
}

/// The unencrypted entries and the list of encrypted ones.
fn create_layout(state: &Path) -> Result<()> {
    for name in entries::DEFAULT_PLAIN {
        entries::create(state, name)?;
    }
    let names: Vec<String> = entries::DEFAULT_ENCRYPTED
        .iter()
        .map(|s| s.to_string())
        .collect();
    entries::write_list(state, &names)
}

/// Parses a size: a number of bytes with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("'{text}': unknown unit '{c}' (K, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a size"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
