//! The crate's error type: every variant names the path or command line it is about.
//!
//! `Display` says what was being done ("mounting overlay on /x"); the OS error that caused it is
//! the [`std::error::Error::source`], so printing the chain (anyhow's `{:#}`) reads
//! "mounting overlay on /x: Invalid argument (os error 22)".

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// An error from a system call or an external command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on `path` failed; `action` says what was being done ("mounting overlay on").
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, written to precede the path.
        action: String,
        /// The path the call was about.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The request cannot be carried out on `path` (wrong kind of object, a bad name, a mount in the way).
    #[error("{action} {}: {reason}", path.display())]
    Invalid {
        /// What was being done, written to precede the path.
        action: String,
        /// The path the request was about.
        path: PathBuf,
        /// Why it cannot be done.
        reason: String,
    },

    /// The program of a command is not installed (or not in `PATH`).
    #[error("could not run `{program}`: not found; {hint}")]
    NotFound {
        /// The program as given.
        program: String,
        /// The whole command line.
        argv: String,
        /// What to install.
        hint: String,
    },

    /// A command could not be started for another reason.
    #[error("could not run `{argv}`")]
    Spawn {
        /// The whole command line.
        argv: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A command exited unsuccessfully; `stderr` holds the tail of what it wrote.
    #[error("`{argv}` failed ({status}){}", format_tail(stderr))]
    Failed {
        /// The whole command line.
        argv: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its stderr (or stdout when stderr was empty).
        stderr: String,
    },

    /// A command's output was not the JSON expected.
    #[error("parsing the json output of `{argv}`")]
    Json {
        /// The whole command line.
        argv: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// A command's output was not UTF-8.
    #[error("the output of `{argv}` is not valid utf-8")]
    Utf8 {
        /// The whole command line.
        argv: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            source: source.into(),
        }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            action: action.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The OS error behind this error, if it came from a system call.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The errno behind this error, if it came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// Whether this error means that a file (or a program) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
            || self
                .io_error()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
    }

    /// The path this error is about, if it is about a path.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. } | Error::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn format_tail(tail: &str) -> String {
    let tail = tail.trim_end();
    if tail.is_empty() {
        String::new()
    } else if !tail.contains('\n') {
        format!(": {tail}")
    } else {
        let mut out = String::from(":");
        for line in tail.lines() {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out
    }
}

/// Attaches "what was being done" and the path to an OS error: `File::open(p).ctx("opening", p)?`.
pub trait IoContext<T> {
    /// Maps the error to [`Error::Io`] with `action` and `path`.
    fn ctx(self, action: &str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T, E: Into<io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx(self, action: &str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path.as_ref(), e))
    }
}

/// Renders an error with its whole source chain, for log lines written in `Drop`.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_reads_as_action_path_cause() {
        let e = Error::io(
            "mounting overlay on",
            "/x",
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(e.to_string(), "mounting overlay on /x");
        assert!(chain(&e).starts_with("mounting overlay on /x: Invalid argument"));
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(e.path(), Some(Path::new("/x")));
    }

    #[test]
    fn tails_are_inlined_or_indented() {
        assert_eq!(format_tail(""), "");
        assert_eq!(format_tail("oops\n"), ": oops");
        assert_eq!(format_tail("a\nb\n"), ":\n  a\n  b");
    }

    #[test]
    fn not_found_is_recognised() {
        let e = Error::io(
            "reading",
            "/nope",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(e.is_not_found());
        assert!(!Error::invalid("deleting", "/x", "not a subvolume").is_not_found());
    }

    #[test]
    fn every_variant_renders_each_cause_once_and_names_its_subject() {
        use std::os::unix::process::ExitStatusExt;
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::io("opening", "/a/1", io::Error::other("eio")),
                "/a/1",
            ),
            (
                Error::invalid("deleting", "/a/2", "not a subvolume"),
                "/a/2",
            ),
            (
                Error::NotFound {
                    program: "mkfs.erofs".into(),
                    argv: "mkfs.erofs x".into(),
                    hint: "apt-get install erofs-utils".into(),
                },
                "mkfs.erofs",
            ),
            (
                Error::Spawn {
                    argv: "true --x".into(),
                    source: io::Error::other("e2big"),
                },
                "true --x",
            ),
            (
                Error::Failed {
                    argv: "false -y".into(),
                    status: ExitStatus::from_raw(256),
                    stderr: "bad\n".into(),
                },
                "false -y",
            ),
            (
                Error::Json {
                    argv: "lsblk --json".into(),
                    source: json,
                },
                "lsblk --json",
            ),
            (
                Error::Utf8 {
                    argv: "cat bin".into(),
                },
                "cat bin",
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
    }
}
