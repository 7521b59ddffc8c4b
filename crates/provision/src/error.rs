//! Errors of provisioning: each names the file, package, url or key it is about and what to do.

use std::path::PathBuf;

/// Everything that can go wrong while provisioning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest that does not parse or breaks the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A manifest whose values parse but are not valid.
    #[error("{}: package '{package}': {message}", file.display())]
    ManifestValue {
        /// The manifest file.
        file: PathBuf,
        /// The package entry.
        package: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An index that does not parse.
    #[error("repository index {url}: {message}")]
    BadIndex {
        /// Where the index came from.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An index without a signature file.
    #[error(
        "repository index {url} is not signed ({url}.sig is missing); publish it with `realms provision publish --key KEY`"
    )]
    Unsigned {
        /// Where the index came from.
        url: String,
    },
    /// An index whose signature does not verify.
    #[error("repository index {url} has a bad signature: {reason}")]
    BadSignature {
        /// Where the index came from.
        url: String,
        /// Why.
        reason: String,
    },
    /// An index with a serial lower than one already seen.
    #[error(
        "repository index {url} has serial {serial}, lower than serial {seen} seen before: refusing a replayed index; publish a new one"
    )]
    OlderIndex {
        /// Where the index came from.
        url: String,
        /// Its serial.
        serial: u64,
        /// The highest serial seen before.
        seen: u64,
    },
    /// An index past its expiry.
    #[error(
        "repository index {url} expired at {expires} (unix time; now {now}): refusing a stale index; publish it again"
    )]
    Expired {
        /// Where the index came from.
        url: String,
        /// Its expiry, seconds since the epoch.
        expires: u64,
        /// Now.
        now: u64,
    },
    /// A package or version the index does not list.
    #[error(
        "package '{package}' version '{version}' is not listed in {url} (stream {stream}); listed: {listed}"
    )]
    NotListed {
        /// The package.
        package: String,
        /// The version asked for.
        version: String,
        /// The index.
        url: String,
        /// The stream.
        stream: String,
        /// What the index lists for it.
        listed: String,
    },
    /// A package whose bytes are not what the index says.
    #[error("package {file} from {url}: {reason}; the download was discarded")]
    Integrity {
        /// The package file.
        file: String,
        /// Where it came from.
        url: String,
        /// Wrong hash, wrong size.
        reason: String,
    },
    /// A tarball with an entry that could hurt the host.
    #[error("package {file} refused: entry '{entry}' {reason}; nothing was installed")]
    Hostile {
        /// The package file.
        file: String,
        /// The offending entry.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A transport failure.
    #[error("fetching {url}: {message}")]
    Fetch {
        /// The url.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A url with an unsupported scheme.
    #[error("unsupported repository url '{url}': use file:// or http(s)://")]
    Scheme {
        /// The url.
        url: String,
    },
    /// A failure of the image store's keys.
    #[error("key {key}: {source}")]
    Key {
        /// The key name or path.
        key: String,
        /// The cause.
        source: Box<realms_image::Error>,
    },
    /// A failure of the portable-service layer.
    #[error("package '{package}': {source}")]
    Portable {
        /// The package.
        package: String,
        /// The cause.
        source: Box<realms_portable::Error>,
    },
    /// A state file that cannot be read.
    #[error("state file {}: {message}; move it away to start afresh", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// A system call on a path.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A failure of realms-sys.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The result of provisioning operations.
pub type Result<T> = std::result::Result<T, Error>;
