//! Errors of the desktop integration: each names the file, line or realm it is about.

use std::path::PathBuf;

/// Everything that can go wrong publishing desktop entries or launching an app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A desktop entry that does not follow the Desktop Entry Specification.
    #[error("{}: line {line}: {message}", path.display())]
    BadEntry {
        /// The entry's path inside the realm.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A desktop entry that is valid but not published (hidden, not an application, ...).
    #[error("{}: {reason}", path.display())]
    Skipped {
        /// The entry's path inside the realm.
        path: PathBuf,
        /// Why it is not published.
        reason: String,
    },
    /// A realm operation failed.
    #[error(transparent)]
    Realm(#[from] realms_realm::Error),
    /// A system call or file operation failed.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
    /// The watcher's inotify instance failed.
    #[error("watching {} with inotify: {source}", path.display())]
    Watch {
        /// What was being watched.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `xauth generate` made a cookie but did not say its authorization id, so it could not be
    /// revoked when the realm stops.
    #[error("xauth generate on :{display} did not print the cookie's authorization id: {output:?}")]
    NoAuthorizationId {
        /// The X display.
        display: u32,
        /// What xauth printed.
        output: String,
    },
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
