//! Errors of the realm store: each names the realm, file, line or key it is about.

use std::path::{Path, PathBuf};

/// Everything that can go wrong managing realms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{} does not exist; check the --root (or REALMS_ROOT) directory, or create it first",
        .0.display()
    )]
    NoRoot(PathBuf),
    #[error("realm '{0}' does not exist; `realms list` shows the realms there are")]
    NoSuchRealm(String),
    #[error("realm '{0}' already exists")]
    RealmExists(String),
    #[error("realm '{0}' is running; stop it first or pass --stop")]
    Running(String),
    #[error(
        "realm '{0}' is the default realm; make another realm the default first (`realms default OTHER`)"
    )]
    IsDefault(String),
    #[error(
        "application image '{image}' is used by realm(s) {realms}, which are overlays on it; remove them first"
    )]
    ImageInUse { image: String, realms: String },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    BadConfig {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("unknown config key '{key}'; the keys are {known}")]
    UnknownKey { key: String, known: String },
    #[error("bad value '{value}' for '{key}': {allowed}")]
    BadValue {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("no default realm is set; set one with `realms default NAME`")]
    NoDefault,
    #[error("realm '{name}' failed to start: {reason}{}", log_tail(log))]
    StartFailed {
        name: String,
        reason: String,
        log: String,
    },
    #[error("realm '{name}': {message}")]
    Realm { name: String, message: String },
    #[error("realm '{name}': {command}: command not found in the realm")]
    CommandNotFound { name: String, command: String },
    #[error("realm '{name}': {command}: cannot execute: {reason}")]
    NotExecutable {
        name: String,
        command: String,
        reason: String,
    },
    #[error("network zone '{zone}': {message}")]
    Zone { zone: String, message: String },
    #[error(
        "network zone '{zone}' is used by realm(s) {realms}; move them to another zone \
         (`realms config NAME network-zone OTHER`) or remove them first"
    )]
    ZoneInUse { zone: String, realms: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] realms_image::Error),
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

    pub(crate) fn realm(name: &str, message: impl Into<String>) -> Error {
        Error::Realm {
            name: name.to_string(),
            message: message.into(),
        }
    }
}

impl Error {
    /// The exit status a shell gives this error: 127 for a missing command, 126 for one that
    /// cannot be executed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CommandNotFound { .. } => 127,
            Error::NotExecutable { .. } => 126,
            _ => 1,
        }
    }
}

/// A TOML parse error as a config error naming the file and line.
pub(crate) fn bad_file(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let line = err.span().map(|span| line_of(text, span.start));
    Error::BadConfig {
        path: path.to_path_buf(),
        line,
        message: err.message().trim().to_string(),
    }
}

/// The 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn log_tail(log: &str) -> String {
    if log.trim().is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "\n  {}",
        lines[lines.len().saturating_sub(15)..].join("\n  ")
    )
}
