//! The crate's one error type: every variant names the input (and line) it is about.

use std::path::PathBuf;

/// Errors from escaping, unit names, os-release and unit-file parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Empty, 4096 bytes or longer, or with a component longer than 255 bytes.
    #[error("'{input}' is not a valid file system path")]
    InvalidPath {
        /// The path as given (lossy UTF-8).
        input: String,
    },
    /// A relative path that cannot be escaped (such as `.` or `a/..`).
    #[error("'{input}' is not an absolute file system path")]
    RelativePath {
        /// The path as given (lossy UTF-8).
        input: String,
    },
    /// A path with `..` components.
    #[error("'{input}' is not a normalized file system path")]
    NotNormalizedPath {
        /// The path as given (lossy UTF-8).
        input: String,
    },
    /// A `\` not followed by `x` and two hex digits.
    #[error(
        "'{input}' has an invalid escape at byte {offset}: '\\' must be followed by 'x' and two hex digits"
    )]
    BadEscape {
        /// The escaped string (lossy UTF-8).
        input: String,
        /// Byte offset of the offending `\`.
        offset: usize,
    },
    /// An escaped string that does not unescape to an absolute, normalized path.
    #[error("'{input}' does not unescape to a normalized absolute path: {reason}")]
    BadEscapedPath {
        /// The escaped string (lossy UTF-8).
        input: String,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The unescaped bytes are not UTF-8 (only from the `&str` conveniences).
    #[error("'{input}' unescapes to bytes that are not valid UTF-8")]
    NotUtf8 {
        /// The escaped string.
        input: String,
    },
    /// Not a valid unit name of the kind needed.
    #[error("'{name}' is not a valid unit name: {reason}")]
    InvalidUnitName {
        /// The name as given.
        name: String,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A suffix that is not one of systemd's unit types.
    #[error("'{suffix}' is not a unit type (expected one of service, socket, target, ...)")]
    UnknownUnitType {
        /// The suffix as given (without the dot).
        suffix: String,
    },
    /// A hashed unit name (from a path too long for a unit name) cannot be turned back into a path.
    #[error("'{name}' is a hashed unit name, the path it came from cannot be recovered")]
    HashedUnitName {
        /// The unit name.
        name: String,
    },
    /// `mangle` could not make a valid unit name.
    #[error("'{input}' cannot be turned into a valid unit name")]
    Mangle {
        /// The input as given.
        input: String,
    },
    /// A syntax error in an os-release or unit file, at a 1-based line.
    #[error("{}line {line}: {problem}", where_prefix(path))]
    Syntax {
        /// The file, when known (see [`Error::in_file`]).
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: Problem,
    },
    /// A value, key or section name that cannot be written so that systemd reads it back unchanged.
    #[error("cannot write {what} '{text}': {reason}")]
    Unwritable {
        /// "key", "value", "comment" or "section name".
        what: &'static str,
        /// The offending text.
        text: String,
        /// Why.
        reason: &'static str,
    },
    /// A reader passed to a loader failed. The OS error is part of the message (not a
    /// `source`), so a chain printed with `{:#}` shows it once.
    #[error("reading {path}: {error}")]
    Read {
        /// The root-relative path being read.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Neither `/etc/os-release` nor `/usr/lib/os-release` exists.
    #[error("no os-release found: neither /etc/os-release nor /usr/lib/os-release exists")]
    OsReleaseMissing,
    /// The extension-release file of an extension image is missing.
    #[error("extension '{name}' has no extension-release file ({path})")]
    ExtensionReleaseMissing {
        /// The extension image name.
        name: String,
        /// The root-relative path that was looked at.
        path: String,
    },
    /// An extension image name that cannot be used in a file name.
    #[error("'{name}' is not a valid extension image name")]
    InvalidExtensionName {
        /// The name as given.
        name: String,
    },
    /// An extension does not match the host (or base image) it is meant for.
    #[error("extension '{name}' does not match the host: {reason}")]
    ExtensionMismatch {
        /// The extension image name.
        name: String,
        /// Which rule failed, with the values compared.
        reason: Mismatch,
    },
}

/// Which of systemd's extension-matching rules an extension breaks, with the values compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The extension-release file is empty.
    #[error("its extension-release file is empty")]
    Empty,
    /// The scope list (`SYSEXT_SCOPE=`/`CONFEXT_SCOPE=`) does not include the scope asked for.
    #[error("{key}='{scopes}' does not include '{scope}'")]
    Scope {
        /// The scope key.
        key: &'static str,
        /// The scopes the extension lists.
        scopes: String,
        /// The scope asked for.
        scope: &'static str,
    },
    /// `ARCHITECTURE=` is not the host's.
    #[error("ARCHITECTURE={architecture} but the host is {host}")]
    Architecture {
        /// The extension's architecture.
        architecture: String,
        /// The host's.
        host: String,
    },
    /// The extension-release has no `ID=`.
    #[error("its extension-release has no ID=")]
    NoId,
    /// `ID=` is neither the host's `ID=` nor in its `ID_LIKE=`.
    #[error("ID={id} but the host has ID={host}")]
    Id {
        /// The extension's ID.
        id: String,
        /// The host's.
        host: String,
    },
    /// The extension level (`SYSEXT_LEVEL=`/`CONFEXT_LEVEL=`) differs from the host's.
    #[error("{key}={level} but the host has {key}={host}")]
    Level {
        /// The level key.
        key: &'static str,
        /// The extension's level.
        level: String,
        /// The host's.
        host: String,
    },
    /// The host has a `VERSION_ID=` and the extension none.
    #[error("it has no VERSION_ID= (the host has VERSION_ID={host})")]
    NoVersion {
        /// The host's version.
        host: String,
    },
    /// `VERSION_ID=` differs from the host's.
    #[error("VERSION_ID={version} but the host has VERSION_ID={host}")]
    Version {
        /// The extension's version.
        version: String,
        /// The host's.
        host: String,
    },
}

/// What is wrong on a line of an os-release or unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// `[Foo` without the closing `]` (or text after it).
    #[error("section header '{0}' does not end with ']'")]
    UnterminatedSection(String),
    /// `[]` or a name with control characters, quotes or backslashes.
    #[error("section header '{0}' has an empty name or bad characters")]
    BadSectionName(String),
    /// A `key=value` line before the first section header.
    #[error("assignment '{0}' is outside of any section")]
    OutsideSection(String),
    /// A line that is neither a comment, a section header nor an assignment.
    #[error("'{0}' is not an assignment (missing '=')")]
    MissingEquals(String),
    /// `=value` without a key.
    #[error("'{0}' has no key before '='")]
    MissingKey(String),
    /// An os-release key that is not a shell variable name.
    #[error("'{0}' is not a valid variable name")]
    BadKey(String),
    /// An opening quote without its closing quote.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
}

fn where_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl Error {
    /// Attach the file a [`Error::Syntax`] came from; other errors are returned unchanged.
    pub fn in_file(self, file: impl Into<PathBuf>) -> Self {
        match self {
            Error::Syntax { line, problem, .. } => Error::Syntax {
                path: Some(file.into()),
                line,
                problem,
            },
            other => other,
        }
    }

    pub(crate) fn syntax(line: usize, problem: Problem) -> Self {
        Error::Syntax {
            path: None,
            line,
            problem,
        }
    }
}

/// Lossy text of bytes for error messages.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and each cause after `: `, as `{:#}` prints them.
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
    fn every_variant_renders_each_cause_once_and_names_its_subject() {
        let s = |t: &str| t.to_owned();
        let cases: Vec<(Error, &str)> = vec![
            (Error::InvalidPath { input: s("p1") }, "'p1'"),
            (Error::RelativePath { input: s("p2") }, "'p2'"),
            (
                Error::NotNormalizedPath {
                    input: s("/a/../p3"),
                },
                "/a/../p3",
            ),
            (
                Error::BadEscape {
                    input: s("e\\1"),
                    offset: 1,
                },
                "e\\1",
            ),
            (
                Error::BadEscapedPath {
                    input: s("e2"),
                    reason: "empty",
                },
                "'e2'",
            ),
            (Error::NotUtf8 { input: s("e3") }, "'e3'"),
            (
                Error::InvalidUnitName {
                    name: s("u1"),
                    reason: "no suffix",
                },
                "'u1'",
            ),
            (Error::UnknownUnitType { suffix: s("xyz") }, "'xyz'"),
            (Error::HashedUnitName { name: s("u2") }, "'u2'"),
            (Error::Mangle { input: s("m1") }, "'m1'"),
            (
                Error::syntax(3, Problem::BadKey(s("k-1"))).in_file("/etc/os-release"),
                "/etc/os-release",
            ),
            (
                Error::Unwritable {
                    what: "key",
                    text: s("a\nb"),
                    reason: "newline",
                },
                "key 'a\nb'",
            ),
            (
                Error::Read {
                    path: s("/usr/lib/os-release"),
                    error: std::io::Error::other("boom"),
                },
                "/usr/lib/os-release",
            ),
            (Error::OsReleaseMissing, "os-release"),
            (
                Error::ExtensionReleaseMissing {
                    name: s("ext1"),
                    path: s("/usr/lib/extension-release.d/extension-release.ext1"),
                },
                "'ext1'",
            ),
            (Error::InvalidExtensionName { name: s("ext2") }, "'ext2'"),
            (
                Error::ExtensionMismatch {
                    name: s("ext3"),
                    reason: Mismatch::NoId,
                },
                "'ext3'",
            ),
        ];
        for (err, subject) in cases {
            let text = chain(&err);
            assert!(text.contains(subject), "{text:?} does not name {subject:?}");
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let (outer, inner) = (level.to_string(), cause.to_string());
                assert!(!outer.contains(&inner), "{text:?}: {inner:?} prints twice");
                level = cause;
            }
        }
        // The OS error of a failed read shows once, not as message and cause both.
        let read = Error::Read {
            path: s("/etc/os-release"),
            error: std::io::Error::other("boom"),
        };
        assert_eq!(chain(&read).matches("boom").count(), 1);
    }
}
