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
    #[error("No image '{0}' found.")]
    NoSuchImage(String),
    #[error(
        "Type of image '{0}' not recognized; supported image types are directories/btrfs subvolumes, block devices, and raw disk image files with suffix '.raw'."
    )]
    BadImageType(String),
    #[error("Image name '{0}' is not valid or not a valid path.")]
    BadImageName(String),
    #[error("Failed to extract prefix of image name '{0}': Invalid argument")]
    BadPrefix(String),
    #[error("Cannot normalize specified image path '{0}': No such file or directory")]
    NoSuchPath(String),
    #[error("Refusing all unit file match.")]
    MatchAll,
    #[error("Unit profile name not valid: {0}")]
    BadProfileName(String),
    /// A `--copy=` mode that is not auto, copy, symlink or mixed.
    #[error("Failed to parse --copy= argument: {0}")]
    BadCopyMode(String),
    /// A boolean argument (of `read-only`) that is not yes/no, true/false, on/off, 1/0.
    #[error("Failed to parse boolean argument: {0}")]
    BadBool(String),
    #[error("Image '{image}' lacks {what} data, refusing.")]
    NoRelease { image: String, what: &'static str },
    #[error("Image {0} os-release metadata lacks the ID field")]
    NoOsId(String),
    #[error("Image {image} extension-release metadata does not match the root's: {reason}")]
    ExtensionMismatch { image: String, reason: String },
    #[error(
        "Selected matches '{matches}' are not compatible with portable service image '{image}{exts}', refusing. (Acceptable prefix matches are: {valid})"
    )]
    IncompatiblePrefixes {
        matches: String,
        image: String,
        exts: String,
        valid: String,
    },
    #[error("Couldn't find any matching unit files in image '{image}{exts}', refusing.")]
    NoUnits { image: String, exts: String },
    #[error("Unit file '{0}' exists on the host already, refusing.")]
    UnitExists(String),
    #[error("Unit file '{0}' is active already, refusing.")]
    UnitActiveOnAttach(String),
    #[error("Unit file '{0}' is active, can't detach.")]
    UnitActive(String),
    #[error(
        "No unit files associated with '{image}{exts}' found attached to the system. Image not attached?"
    )]
    NotAttached { image: String, exts: String },
    #[error("Image '{0}' is not detached, refusing.")]
    NotDetached(String),
    #[error("Image '{0}' is a vendor image below /usr and cannot be changed.")]
    VendorImage(String),
    #[error(
        "unit file '{unit}' in image '{image}' is a symlink leading outside the image (to '{target}'), refusing"
    )]
    UnitEscapes {
        unit: String,
        image: String,
        target: String,
    },
    #[error("unit file {}: {reason}", path.display())]
    BadUnitFile { path: PathBuf, reason: String },
    #[error("{}: line {line}", path.display())]
    BadRelease {
        path: PathBuf,
        line: usize,
        #[source]
        source: realms_unit::Error,
    },
    #[error("image {}: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Partition { path: PathBuf, reason: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to attach unit '{unit}'")]
    AttachUnit {
        unit: String,
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
    /// A profile could not be installed in any of the profile directories.
    #[error("could not install profile '{name}'")]
    ProfileInstall {
        /// The profile.
        name: String,
    },
    #[error(transparent)]
    Unit(#[from] realms_unit::Error),
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
    #[error(transparent)]
    Verity(#[from] realms_verity::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::BadImage {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The error on one line as portablectl shows it inline (in a validate check, or after a
    /// queued job): the message, plus the cause where the cause is systemd's or the parser's
    /// own words (a failed D-Bus call, a bad line of os-release).
    pub fn summary(&self) -> String {
        match self {
            Error::BadRelease { .. }
            | Error::Reload { .. }
            | Error::Enable { .. }
            | Error::Queue { .. } => chain_text(self),
            _ => self.to_string(),
        }
    }

    /// Whether this is a "does not exist" error from the OS.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
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
