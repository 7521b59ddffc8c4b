//! Errors of the desktop integration: each names the file, line or realm it is about.

use std::path::PathBuf;

/// Everything that can go wrong publishing desktop entries or launching an app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A desktop entry that does not follow the Desktop Entry Specification.
    #[error("{}: line {line}: {problem}", path.display())]
    BadEntry {
        /// The entry's path inside the realm.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: EntryProblem,
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
    /// `xauth generate` made a cookie but did not say its authorization id, so it could not be
    /// revoked when the realm stops.
    #[error("xauth generate on :{display} did not print the cookie's authorization id: {output:?}")]
    NoAuthorizationId {
        /// The X display.
        display: u32,
        /// What xauth printed.
        output: String,
    },
    /// The X display `realms desktop titles` follows cannot be used.
    #[error("X display '{display}': {reason}")]
    X11Display {
        /// The display (`DISPLAY`).
        display: String,
        /// What went wrong.
        reason: String,
    },
}

/// What breaks the Desktop Entry Specification in an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// Larger than the 1 MiB an entry may have.
    #[error("the file is larger than 1 MiB")]
    TooLarge,
    /// Not UTF-8.
    #[error("the file is not UTF-8")]
    NotUtf8,
    /// `[Group` without `]`.
    #[error("a group header must end with ']'")]
    UnclosedGroup,
    /// An empty group name or one with brackets or control characters.
    #[error("a group name may not be empty or contain '[', ']' or control characters")]
    BadGroupName,
    /// A group that appears twice.
    #[error("group [{0}] appears twice")]
    DuplicateGroup(String),
    /// The first group is not `[Desktop Entry]`.
    #[error("the first group must be [Desktop Entry]")]
    FirstGroup,
    /// A key before any group.
    #[error("a key before the [Desktop Entry] group")]
    KeyBeforeGroup,
    /// A line that is neither a key, a group nor a comment.
    #[error("expected KEY=VALUE, a [Group] or a # comment")]
    NotALine,
    /// A `Key[locale]` with a bad locale.
    #[error("bad locale in key '{0}'")]
    BadLocale(String),
    /// A key with characters outside `A-Za-z0-9-`.
    #[error("'{0}' is not a key (A-Za-z0-9-)")]
    BadKey(String),
    /// A value with control characters.
    #[error("the value of '{0}' has control characters")]
    ControlCharacters(String),
    /// A key that appears twice in one group.
    #[error("key '{key}' appears twice in [{group}]")]
    DuplicateKey {
        /// The key.
        key: String,
        /// The group.
        group: String,
    },
    /// No `[Desktop Entry]` group at all.
    #[error("there is no [Desktop Entry] group")]
    NoMainGroup,
    /// An `Exec=` line that breaks the quoting or field code rules.
    #[error("{0}")]
    Exec(ExecProblem),
}

/// What breaks the `Exec=` rules (quoting, field codes) of the specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecProblem {
    /// A `"` without its closing one.
    #[error("a quoted argument is not closed")]
    Unclosed,
    /// A backslash escaping something the specification does not allow.
    #[error("inside quotes, '\\' may only escape '\"', '`', '$' or '\\'")]
    BadEscape,
    /// A closing quote followed by something other than a space.
    #[error("a quoted argument must be followed by a space")]
    NoSpaceAfterQuote,
    /// A reserved character outside quotes.
    #[error("'{0}' must be inside a quoted argument")]
    Reserved(char),
    /// Nothing to run.
    #[error("the command is empty")]
    Empty,
    /// A `%` that ends an argument.
    #[error("a '%' at the end of an argument")]
    TrailingPercent,
    /// A field code the specification does not define.
    #[error("unknown field code '{0}'")]
    UnknownCode(String),
    /// Only field codes, no program.
    #[error("the command is only field codes")]
    OnlyCodes,
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
                    problem: EntryProblem::NotALine,
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
