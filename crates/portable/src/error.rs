//! The crate's error type: every variant names the image, unit, file (and line) it is about.
//!
//! Where portablectl has a message of its own for a refusal (an active unit, a unit that exists on
//! the host, an image that lacks os-release data, ...), the variant prints exactly that text, so
//! scripts written against portablectl keep working; everything else follows the workspace style.

use std::path::PathBuf;

/// Everything that can go wrong with portable services.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No image of that name in the search path (portablectl's words).
    #[error("No image '{0}' found.")]
    NoSuchImage(String),
    /// The path is neither a directory, a block device nor a `.raw` file.
    #[error(
        "Type of image '{0}' not recognized; supported image types are directories/btrfs subvolumes, block devices, and raw disk image files with suffix '.raw'."
    )]
    BadImageType(String),
    /// The image argument is neither a valid name nor a path.
    #[error("Image name '{0}' is not valid or not a valid path.")]
    BadImageName(String),
    /// No unit prefix can be derived from the image argument.
    #[error("Failed to extract prefix of image name '{0}': Invalid argument")]
    BadPrefix(String),
    /// The image path does not exist.
    #[error("Cannot normalize specified image path '{0}': No such file or directory")]
    NoSuchPath(String),
    /// `-` (all units) given to attach, which must name its units.
    #[error("Refusing all unit file match.")]
    MatchAll,
    /// A profile name that cannot name a profile directory.
    #[error("Unit profile name not valid: {0}")]
    BadProfileName(String),
    /// A `--copy=` mode that is not auto, copy, symlink or mixed.
    #[error("Failed to parse --copy= argument: {0}")]
    BadCopyMode(String),
    /// A boolean argument (of `read-only`) that is not yes/no, true/false, on/off, 1/0.
    #[error("Failed to parse boolean argument: {0}")]
    BadBool(String),
    /// The image has no os-release (or an extension no extension-release).
    #[error("Image '{image}' lacks {what} data, refusing.")]
    NoRelease {
        /// The image path.
        image: String,
        /// `os-release` or `extension-release`.
        what: &'static str,
    },
    /// The image's os-release has no `ID=`.
    #[error("Image {0} os-release metadata lacks the ID field")]
    NoOsId(String),
    /// An extension's extension-release does not match the base image's os-release.
    #[error("Image {image} extension-release metadata does not match the root's: {reason}")]
    ExtensionMismatch {
        /// The extension image path.
        image: String,
        /// Which field differs, with the values.
        reason: realms_unit::Mismatch,
    },
    /// The prefixes given match none of the image's units (portablectl's words).
    #[error(
        "Selected matches '{matches}' are not compatible with portable service image '{image}{exts}', refusing. (Acceptable prefix matches are: {valid})"
    )]
    IncompatiblePrefixes {
        /// The prefixes given.
        matches: String,
        /// The image.
        image: String,
        /// The extensions (portablectl's suffix, see `ext_suffix`).
        exts: String,
        /// The prefixes the image's units have.
        valid: String,
    },
    /// No unit file of the image matches the prefixes.
    #[error("Couldn't find any matching unit files in image '{image}{exts}', refusing.")]
    NoUnits {
        /// The image.
        image: String,
        /// The extensions (portablectl's suffix).
        exts: String,
    },
    /// A unit of that name is installed on the host already.
    #[error("Unit file '{0}' exists on the host already, refusing.")]
    UnitExists(String),
    /// A unit to attach is running already.
    #[error("Unit file '{0}' is active already, refusing.")]
    UnitActiveOnAttach(String),
    /// A unit to detach is still running (use `--now`).
    #[error("Unit file '{0}' is active, can't detach.")]
    UnitActive(String),
    /// No unit attached from the image was found.
    #[error(
        "No unit files associated with '{image}{exts}' found attached to the system. Image not attached?"
    )]
    NotAttached {
        /// The image.
        image: String,
        /// The extensions (portablectl's suffix).
        exts: String,
    },
    /// The image to remove is still attached.
    #[error("Image '{0}' is not detached, refusing.")]
    NotDetached(String),
    /// A `set-limit` value that is not a size.
    #[error("Failed to parse size: {0}")]
    BadLimit(String),
    /// The image (or pool) is not on btrfs as a subvolume, so it has no quota.
    #[error("Quota is only supported on btrfs subvolumes; '{0}' is not one.")]
    NoQuota(String),
    /// The image lies below `/usr` and cannot be changed.
    #[error("Image '{0}' is a vendor image below /usr and cannot be changed.")]
    VendorImage(String),
    /// A unit file in the image is a symlink leading outside the image.
    #[error(
        "unit file '{unit}' in image '{image}' is a symlink leading outside the image (to '{target}'), refusing"
    )]
    UnitEscapes {
        /// The unit.
        unit: String,
        /// The image.
        image: String,
        /// Where the symlink points.
        target: String,
    },
    /// A release file in the image has a syntax error; the cause says which.
    #[error("{}: line {line}", path.display())]
    BadRelease {
        /// The release file (host path).
        path: PathBuf,
        /// The 1-based line (0 when not about a line).
        line: usize,
        /// What is wrong on it.
        #[source]
        source: realms_unit::Error,
    },
    /// The image cannot be used as a portable image.
    #[error("image {}: {problem}", path.display())]
    BadImage {
        /// The image.
        path: PathBuf,
        /// What is wrong with it.
        problem: ImageProblem,
    },
    /// The partition table of a raw image is damaged.
    #[error("{}", path.display())]
    Partition {
        /// The image.
        path: PathBuf,
        /// What is damaged.
        #[source]
        source: crate::gpt::GptError,
    },
    /// Attaching one unit failed (portablectl's words); the cause says why.
    #[error("Failed to attach unit '{unit}'")]
    AttachUnit {
        /// The unit.
        unit: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The D-Bus connection to the service manager failed (the message is the OS's).
    #[error(transparent)]
    Bus(std::io::Error),
    /// `systemctl daemon-reload` (or its D-Bus call) failed.
    #[error("Failed to reload daemon")]
    Reload {
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Enabling or disabling a unit with the portable flag failed.
    #[error("Failed to {verb} the portable service {unit}")]
    Enable {
        /// `enable` or `disable`.
        verb: &'static str,
        /// The unit.
        unit: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Queueing a start, stop or restart job for a unit failed.
    #[error("Failed to call {method} on the portable service {unit}")]
    Queue {
        /// `StartUnit`, `StopUnit` or `RestartUnit`.
        method: &'static str,
        /// The unit.
        unit: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The service manager accepted a job request but named no job.
    #[error("{method} of {unit} returned no job")]
    NoJob {
        /// The method called.
        method: &'static str,
        /// The unit.
        unit: String,
    },
    /// The queued jobs did not finish within ten minutes.
    #[error("timed out waiting for jobs")]
    JobTimeout {
        /// The units whose jobs were still pending.
        units: Vec<String>,
    },
    /// Start jobs queued by `--now` failed: the files are in place but the units did not start.
    #[error("the start job of {} failed; see \"systemctl status\" and \"journalctl -xeu\" for it", units.join(", "))]
    JobsFailed {
        /// The units whose jobs failed.
        units: Vec<String>,
    },
    /// The journal a killed command left cannot be read.
    #[error("{}: not a journal Realms wrote ({reason}); remove it after checking the attach directories", path.display())]
    BadJournal {
        /// The journal.
        path: std::path::PathBuf,
        /// Why it cannot be parsed: serde_json's own text, with its line and column (shown
        /// inline, in parentheses, before what to do).
        reason: String,
    },
    /// A step of the journal a killed command left cannot be carried out.
    #[error("finishing the change a killed command left in {}; remove it after checking the attach directories", path.display())]
    JournalReplay {
        /// The journal.
        path: std::path::PathBuf,
        /// Why the step failed.
        #[source]
        source: Box<Error>,
    },
    /// A profile could not be installed in any of the profile directories.
    #[error("could not install profile '{name}'")]
    ProfileInstall {
        /// The profile.
        name: String,
    },
    /// A unit file, unit name or os-release error.
    #[error(transparent)]
    Unit(#[from] realms_unit::Error),
    /// A system call or command failed.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
    /// A raw image failed its verity check.
    #[error(transparent)]
    Verity(#[from] realms_verity::Error),
    /// The `.roothash.p7s` beside a raw image does not verify against the keyring.
    #[error(transparent)]
    Signature(#[from] realms_verity::SignatureError),
}

/// Why an image cannot be used as a portable image ([`Error::BadImage`]); the raw-image
/// wordings are systemd's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageProblem {
    /// A raw image with neither a GPT nor a known filesystem.
    NoPartitionTable,
    /// A GPT without a root partition for this architecture.
    NoRootPartition,
    /// A GPT with more than one root partition for this architecture.
    SeveralRootPartitions,
    /// A root partition whose filesystem is not known.
    NoFilesystem,
    /// A root hash (sidecar or option) that is not hex.
    RootHashNotHex(String),
    /// A path in the image that resolves outside its root directory.
    OutsideRoot,
}

impl std::fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageProblem::NoPartitionTable => {
                f.write_str("Couldn't identify a suitable partition table or file system")
            }
            ImageProblem::NoRootPartition => f.write_str("No suitable root partition found"),
            ImageProblem::SeveralRootPartitions => {
                f.write_str("Multiple suitable root partitions found")
            }
            ImageProblem::NoFilesystem => {
                f.write_str("the root partition holds no known file system")
            }
            ImageProblem::RootHashNotHex(hash) => write!(f, "the root hash '{hash}' is not hex"),
            ImageProblem::OutsideRoot => {
                f.write_str("it resolves to a path outside the root directory")
            }
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`: realms_sys's, like every crate's (`realms_sys::IoContext`).
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Sys(realms_sys::Error::io(action, path, source))
    }

    pub(crate) fn image(path: impl Into<PathBuf>, problem: ImageProblem) -> Error {
        Error::BadImage {
            path: path.into(),
            problem,
        }
    }

    /// The error on one line as portablectl shows it inline (in a validate check, or after a
    /// queued job): the message, plus the cause where the cause is systemd's or the parser's
    /// own words (a failed D-Bus call, a bad line of os-release).
    pub fn summary(&self) -> String {
        match self {
            Error::BadRelease { .. }
            | Error::Partition { .. }
            | Error::Reload { .. }
            | Error::Enable { .. }
            | Error::Queue { .. } => chain_text(self),
            _ => self.to_string(),
        }
    }

    /// Whether this is a "does not exist" error from the OS.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Sys(e) => e.is_not_found(),
            _ => false,
        }
    }
}

/// The error and its causes on one line, `: `-separated, as the CLI prints a failure and as
/// portablectl prints systemd's messages.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `' or any of its extensions 'A, B` when there are extensions, else nothing (portablectl's wording).
pub(crate) fn ext_suffix(extensions: &[String]) -> String {
    if extensions.is_empty() {
        String::new()
    } else {
        format!("' or any of its extensions '{}", extensions.join(", "))
    }
}

#[cfg(test)]
mod tests;
