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
        /// What is wrong: the desktop entry parser's own text for the line.
        message: String,
    },
    /// A desktop entry that is valid but not published (hidden, not an application, ...).
    #[error("{}: {reason}", path.display())]
    Skipped {
        /// The entry's path inside the realm.
        path: PathBuf,
        /// Why it is not published.
        reason: SkipReason,
    },
    /// A realm operation failed.
    #[error(transparent)]
    Realm(#[from] realms_realm::Error),
    /// A system call or file operation failed.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
    /// The watcher's inotify instance failed.
    #[error("watching {} with inotify", path.display())]
    Watch {
        /// What was being watched.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Why a valid desktop entry is not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// `Type=` is not `Application`.
    #[error("not an application (Type is not Application)")]
    NotApplication,
    /// `Hidden=true`: the entry counts as deleted.
    #[error("Hidden=true (the entry is deleted)")]
    Hidden,
    /// The program named by `TryExec=` is not installed in the realm.
    #[error("TryExec={0} is not installed in the realm")]
    TryExecMissing(String),
    /// No `Exec=`: a D-Bus activated entry, which cannot run in a realm.
    #[error("no Exec= (D-Bus activated entries cannot run in a realm)")]
    NoExec,
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    #[test]
    fn every_variant_names_its_file_and_prints_each_cause_once() {
        let skipped = |reason| Error::Skipped {
            path: "/usr/share/applications/s.desktop".into(),
            reason,
        };
        let cases = vec![
            (
                Error::BadEntry {
                    path: "/usr/share/applications/b.desktop".into(),
                    line: 3,
                    message: "expected KEY=VALUE, a [Group] or a # comment".into(),
                },
                "/usr/share/applications/b.desktop: line 3: expected KEY=VALUE",
            ),
            (
                skipped(SkipReason::NotApplication),
                "s.desktop: not an application",
            ),
            (skipped(SkipReason::Hidden), "s.desktop: Hidden=true"),
            (
                skipped(SkipReason::TryExecMissing("gimp".into())),
                "s.desktop: TryExec=gimp is not installed in the realm",
            ),
            (skipped(SkipReason::NoExec), "s.desktop: no Exec="),
            (
                Error::Realm(realms_realm::Error::NoSuchRealm("w".into())),
                "'w'",
            ),
            (
                Error::Sys(realms_sys::Error::io(
                    "removing",
                    "/run/x",
                    std::io::Error::other("eacces"),
                )),
                "removing /run/x: eacces",
            ),
            (
                Error::Watch {
                    path: "/run/realms".into(),
                    source: std::io::Error::other("enospc"),
                },
                "watching /run/realms with inotify: enospc",
            ),
        ];
        for (err, expected) in cases {
            let text = chain(&err);
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let inner = cause.to_string();
                assert!(
                    !level.to_string().contains(&inner),
                    "{text:?}: {inner:?} prints twice"
                );
                level = cause;
            }
        }
    }
}
