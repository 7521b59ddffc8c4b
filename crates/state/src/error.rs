//! Errors of state storage: each names the disk, file, entry or unit it is about.

use std::path::PathBuf;

/// Everything that can go wrong in state storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk has no GPT, or one this code does not understand.
    #[error("{}: {reason}; realms only adds a state partition to a GPT disk it fully understands", disk.display())]
    BadGpt {
        /// The disk or image file.
        disk: PathBuf,
        /// What is wrong with its partition table.
        reason: String,
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
        what: String,
    },
    /// The disk has no state partition.
    #[error("{} has no state partition (type {}); `realms state setup --disk` adds one", disk.display(), crate::STATE_PARTITION_TYPE)]
    NoStatePartition {
        /// The disk or image file.
        disk: PathBuf,
    },
    /// A size on the command line or on disk is not possible.
    #[error("{what}: {reason}")]
    BadSize {
        /// Which size.
        what: String,
        /// Why it is not possible.
        reason: String,
    },
    /// A directory in the state tree is not a valid entry name.
    #[error("{}: '{name}' is not a valid entry name: {reason}", dir.display())]
    BadEntry {
        /// The directory holding it.
        dir: PathBuf,
        /// The name.
        name: String,
        /// Why (systemd-escape's path rules).
        reason: String,
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

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
