//! Errors of state storage: each names the disk, file, entry or unit it is about.

use std::path::PathBuf;

/// Everything that can go wrong in state storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk has no GPT, or one this code does not understand.
    #[error("{}: {problem}; realms only adds a state partition to a GPT disk it fully understands", disk.display())]
    BadGpt {
        /// The disk or image file.
        disk: PathBuf,
        /// What is wrong with its partition table.
        problem: GptProblem,
    },
    /// The disk already has a state partition.
    #[error("{} already has a state partition (partition {number}); `realms state status` shows it", disk.display())]
    AlreadyHasState {
        /// The disk or image file.
        disk: PathBuf,
        /// Its partition number.
        number: u32,
    },
    /// No free area of the disk is large enough.
    #[error("{} has no free area of {wanted} bytes (the largest is {largest} bytes)", disk.display())]
    NoSpace {
        /// The disk or image file.
        disk: PathBuf,
        /// The size asked for.
        wanted: u64,
        /// The largest free area.
        largest: u64,
    },
    /// The disk is in use: a partition of it is mounted, or the image is attached to a loop device.
    #[error("{} is in use: {what}; unmount or detach it first", disk.display())]
    InUse {
        /// The disk or image file.
        disk: PathBuf,
        /// What uses it.
        what: InUseBy,
    },
    /// The disk has no state partition.
    #[error("{} has no state partition (type {}); `realms state setup --disk` adds one", disk.display(), crate::STATE_PARTITION_TYPE)]
    NoStatePartition {
        /// The disk or image file.
        disk: PathBuf,
    },
    /// A new partition does not lie inside a free area of the disk.
    #[error("{}: partition at sectors {first_lba}-{last_lba}: it is not inside a free area of the disk", disk.display())]
    NotFree {
        /// The disk or image file.
        disk: PathBuf,
        /// The partition's first sector.
        first_lba: u64,
        /// The partition's last sector.
        last_lba: u64,
    },
    /// `btrfs filesystem show` did not say how large the file system's device is.
    #[error("the file system at {}: `btrfs filesystem show` gave no device size", mount.display())]
    NoDeviceSize {
        /// The file system's mount point.
        mount: PathBuf,
    },
    /// The encrypted file system does not sit on a loop device.
    #[error("the device under {}: {device} is not a loop device", mount.display())]
    NotOnLoop {
        /// The file system's mount point.
        mount: PathBuf,
        /// The block device found under it.
        device: String,
    },
    /// A block device's size in sysfs is not a sector count.
    #[error("{}: '{value}' is not a sector count", path.display())]
    BadSectorCount {
        /// The sysfs `size` file.
        path: PathBuf,
        /// What it holds.
        value: String,
    },
    /// The encrypted file system lives on another file than the state's encrypted image.
    #[error("the file system at {}: it lives on {}, not on {}", mount.display(), backing.display(), image.display())]
    WrongBacking {
        /// The file system's mount point.
        mount: PathBuf,
        /// The loop device's backing file.
        backing: PathBuf,
        /// The encrypted image expected.
        image: PathBuf,
    },
    /// The encrypted image to create exists already.
    #[error("{}: it exists already", image.display())]
    ImageExists {
        /// The encrypted image.
        image: PathBuf,
    },
    /// systemd-cryptenroll did not enroll a recovery key (its output is never shown: it may hold the key).
    #[error("enrolling a recovery key for {}: systemd-cryptenroll failed ({status})", image.display())]
    Enroll {
        /// The encrypted image.
        image: PathBuf,
        /// How systemd-cryptenroll exited.
        status: std::process::ExitStatus,
    },
    /// The encrypted image is not mounted where resize and status expect it.
    #[error("{} is not mounted; unlock the encrypted image first (`realms state unlock`)", path.display())]
    NotMounted {
        /// The mount point.
        path: PathBuf,
    },
    /// What the operation needs is missing on this machine.
    #[error("{what} is not available on this machine: {hint}")]
    Unsupported {
        /// The missing thing.
        what: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// A key file (recovery key or passphrase) is empty.
    #[error("{}: the key is empty; put the recovery key or passphrase in it (a trailing newline is ignored)", path.display())]
    EmptyKey {
        /// The file (`-`: standard input).
        path: PathBuf,
    },
    /// A system call or external command failed.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

/// What uses a disk that `setup` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InUseBy {
    /// The image file is attached to a loop device.
    #[error("it is attached to {}", .0.display())]
    LoopDevice(PathBuf),
    /// A block device (the disk or a partition of it, by its kernel name) is mounted.
    #[error("/dev/{0} is mounted")]
    Mounted(String),
    /// A block device is held by another device (device-mapper, md).
    #[error("/dev/{device} is held by {holder}")]
    Held {
        /// The kernel name of the held device.
        device: String,
        /// The kernel name of its holder.
        holder: String,
    },
}

/// What is wrong with a disk's partition table (or why realms will not change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GptProblem {
    /// The disk is smaller than a GPT.
    #[error("it is too small to hold a GPT")]
    TooSmall,
    /// No GPT header at sector 1 (of 512 or 4096 bytes).
    #[error("it has no GPT (no 'EFI PART' header at sector 1)")]
    NoGpt,
    /// The partition entry array lies outside the disk.
    #[error("the partition entries lie outside the disk")]
    EntriesOutsideDisk,
    /// The partition entry array's CRC32 is wrong.
    #[error("the partition entries' checksum does not match")]
    EntriesChecksum,
    /// The backup header's LBA is past the end of the disk.
    #[error("the backup GPT header lies beyond the end of the disk")]
    BackupBeyondEnd,
    /// The backup header cannot be read.
    #[error("the backup GPT header cannot be read")]
    BackupUnreadable,
    /// The backup header fails the header checks.
    #[error("the backup GPT header is damaged")]
    BackupDamaged,
    /// The backup header describes another table than the primary one.
    #[error("the backup GPT does not match the primary one")]
    BackupMismatch,
    /// The usable area overlaps the partition table.
    #[error("the usable area overlaps the partition table")]
    UsableOverlapsTable,
    /// A partition lies outside the usable area.
    #[error("a partition lies outside the usable area")]
    PartitionOutsideUsable,
    /// Two partitions overlap.
    #[error("two partitions overlap")]
    PartitionsOverlap,
    /// The header lacks the 'EFI PART' signature.
    #[error("no 'EFI PART' signature")]
    NoSignature,
    /// The header's size field is not 92.
    #[error("the GPT header has an unusual size")]
    HeaderSize,
    /// The header's CRC32 is wrong.
    #[error("the GPT header's checksum does not match")]
    HeaderChecksum,
    /// The header's own LBA is not where it was read.
    #[error("the GPT header is not where it says it is")]
    HeaderMisplaced,
    /// The entry size or count is outside what this code accepts.
    #[error("the GPT has an unusual partition entry geometry")]
    EntryGeometry,
    /// Every partition entry is used.
    #[error("every partition entry is used")]
    Full,
    /// The path is neither a block device nor a regular file.
    #[error("it is neither a block device nor a disk image file")]
    NotADisk,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn every_variant_names_its_disk_or_file_and_prints_each_cause_once() {
        let cases = vec![
            (
                Error::BadGpt {
                    disk: "/dev/vdz".into(),
                    problem: GptProblem::EntriesChecksum,
                },
                "/dev/vdz: the partition entries' checksum does not match; realms only adds",
            ),
            (
                Error::AlreadyHasState {
                    disk: "/dev/vdz".into(),
                    number: 4,
                },
                "/dev/vdz already has a state partition (partition 4)",
            ),
            (
                Error::NoSpace {
                    disk: "/dev/vdz".into(),
                    wanted: 10,
                    largest: 5,
                },
                "/dev/vdz has no free area of 10 bytes",
            ),
            (
                Error::InUse {
                    disk: "/dev/vdz".into(),
                    what: InUseBy::Held {
                        device: "vdz1".into(),
                        holder: "dm-0".into(),
                    },
                },
                "/dev/vdz is in use: /dev/vdz1 is held by dm-0",
            ),
            (
                Error::NoStatePartition {
                    disk: "/dev/vdz".into(),
                },
                "/dev/vdz has no state partition",
            ),
            (
                Error::NotFree {
                    disk: "/dev/vdz".into(),
                    first_lba: 2048,
                    last_lba: 4095,
                },
                "/dev/vdz: partition at sectors 2048-4095: it is not inside a free area",
            ),
            (
                Error::NoDeviceSize {
                    mount: "/state/encrypted".into(),
                },
                "the file system at /state/encrypted: `btrfs filesystem show` gave no device size",
            ),
            (
                Error::NotOnLoop {
                    mount: "/state/encrypted".into(),
                    device: "sda".into(),
                },
                "the device under /state/encrypted: sda is not a loop device",
            ),
            (
                Error::BadSectorCount {
                    path: "/sys/class/block/loop0/size".into(),
                    value: "x".into(),
                },
                "/sys/class/block/loop0/size: 'x' is not a sector count",
            ),
            (
                Error::WrongBacking {
                    mount: "/state/encrypted".into(),
                    backing: "/a.img".into(),
                    image: "/state/encrypted.img".into(),
                },
                "the file system at /state/encrypted: it lives on /a.img, not on /state/encrypted.img",
            ),
            (
                Error::ImageExists {
                    image: "/state/encrypted.img".into(),
                },
                "/state/encrypted.img: it exists already",
            ),
            (
                Error::Enroll {
                    image: "/state/encrypted.img".into(),
                    status: std::process::ExitStatus::from_raw(256),
                },
                "enrolling a recovery key for /state/encrypted.img: systemd-cryptenroll failed (exit status: 1)",
            ),
            (
                Error::NotMounted {
                    path: "/state/encrypted".into(),
                },
                "/state/encrypted is not mounted",
            ),
            (
                Error::EmptyKey {
                    path: "/root/pass".into(),
                },
                "/root/pass: the key is empty",
            ),
            (
                Error::Unsupported {
                    what: "device-mapper",
                    hint: "load dm_crypt",
                },
                "device-mapper is not available on this machine: load dm_crypt",
            ),
            (
                Error::Sys(realms_sys::Error::io(
                    "reading",
                    "/dev/vdz",
                    std::io::Error::other("eio"),
                )),
                "reading /dev/vdz: eio",
            ),
        ];
        for (err, expected) in cases {
            let mut text = err.to_string();
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let inner = cause.to_string();
                assert!(
                    !level.to_string().contains(&inner),
                    "{text:?}: {inner:?} prints twice"
                );
                text = format!("{text}: {inner}");
                level = cause;
            }
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        }
    }
}
