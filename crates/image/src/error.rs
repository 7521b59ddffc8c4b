//! Errors of the image store: each names the image or path it is about and what to do.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name '{name}': {rule}")]
    InvalidName {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("application image '{name}' not found at {}; `realms appimg list` shows the images there are", path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("application image '{name}' already exists at {}; remove it first with `realms appimg remove {name}`", path.display())]
    Exists { name: String, path: PathBuf },
    #[error("application image '{name}' has no previous version to roll back to ({} is missing)", path.display())]
    NoPrevious { name: String, path: PathBuf },
    #[error(
        "application image '{name}' is already rolled back: its current version {current} is older than {name}.appimg.prev (version {newer}), and there is no older version to go back to; `realms update-appimg {name}` makes a new version"
    )]
    AlreadyRolledBack {
        name: String,
        current: String,
        newer: String,
    },
    #[error(
        "no application image or directory named '{name}' to build from; `realms appimg list` shows the images there are"
    )]
    NoBuildSource { name: String },
    #[error(
        "no private key named '{name}' at {}; `realms appimg key list` shows the keys there are, or pass the path of a key file",
        path.display()
    )]
    NoSuchKey { name: String, path: PathBuf },
    #[error("bad image source '{source_spec}': {reason}")]
    BadSource { source_spec: String, reason: String },
    #[error("{} is not an operating system tree: {reason}", path.display())]
    NotAnOsTree { path: PathBuf, reason: String },
    #[error("key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("application image '{name}' is not signed, so it cannot be trusted as a sealed image")]
    Unsigned { name: String },
    #[error(
        "application image '{name}' is signed by key {fingerprint}, which is not trusted; add its public key to /etc/realms/keys.d/"
    )]
    Untrusted { name: String, fingerprint: String },
    #[error("application image '{name}' has a bad signature: {reason}")]
    BadSignature { name: String, reason: String },
    #[error("application image '{name}' has been tampered with: {reason}")]
    Tampered { name: String, reason: String },
    #[error(
        "application image '{name}': version {new} is older than the installed {installed}; pass --allow-downgrade to install it anyway"
    )]
    Downgrade {
        name: String,
        installed: String,
        new: String,
    },
    #[error("{}: {message}", path.display())]
    BadMeta { path: PathBuf, message: String },
    #[error("building application image '{name}': {message}")]
    Build { name: String, message: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

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
}
