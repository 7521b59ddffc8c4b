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
        reason: Invalidity,
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

/// Why a request cannot be carried out on a path ([`Error::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalidity {
    /// Text that is not UTF-8.
    #[error("not valid UTF-8 text")]
    NotUtf8,
    /// A file in a root that is not UTF-8.
    #[error("the file is not valid utf-8")]
    FileNotUtf8,
    /// Not a regular file (what it is instead).
    #[error("not a regular file ({0})")]
    NotRegularFile(&'static str),
    /// Longer than is read of such a file.
    #[error("longer than {cap} bytes, the most that is read of such a file")]
    TooLong {
        /// The most that is read.
        cap: u64,
    },
    /// Not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// Not a symlink.
    #[error("not a symlink")]
    NotASymlink,
    /// Not a block device.
    #[error("not a block device")]
    NotABlockDevice,
    /// A pid out of range.
    #[error("invalid pid")]
    BadPid,
    /// A process that is gone.
    #[error("no such process")]
    NoSuchProcess,
    /// Mount options with a NUL byte.
    #[error("the mount options contain a NUL byte")]
    NulInOptions,
    /// A path with a NUL byte.
    #[error("the path contains a NUL byte")]
    NulInPath,
    /// An overlay without a lower directory.
    #[error("no lower directory given")]
    NoLowerDir,
    /// Mount options longer than mount(2) takes.
    #[error("the options are {len} bytes, more than mount(2) takes; use shorter paths")]
    OptionsTooLong {
        /// Their length.
        len: usize,
    },
    /// The path is a mount point.
    #[error("it is a mount point; unmount it first")]
    MountPoint,
    /// A mount point below the path.
    #[error("{} is a mount point; unmount it first", .0.display())]
    MountPointBelow(PathBuf),
    /// Something mounted inside the path.
    #[error("{} is mounted inside; unmount it first", .0.display())]
    MountedInside(PathBuf),
    /// A tree deeper than is copied.
    #[error("the tree is nested too deeply")]
    TooDeep,
    /// A directory where a file is to go.
    #[error("a directory is in the way")]
    DirectoryInTheWay,
    /// No cgroup hierarchy to use.
    #[error("neither cgroup2 nor the name=systemd hierarchy is mounted")]
    NoCgroupHierarchy,
    /// A path without a final name (`/`, `..`).
    #[error("the path has no final name")]
    NoFinalName,
    /// Every temporary name taken.
    #[error("no free temporary name")]
    NoTempName,
    /// Every free loop device taken by others meanwhile.
    #[error("every free loop device was taken by others; try again")]
    LoopDevicesTaken,
    /// A subvolume name btrfs does not take.
    #[error("invalid subvolume name")]
    BadSubvolumeName,
    /// A snapshot name btrfs does not take.
    #[error("invalid snapshot name")]
    BadSnapshotName,
    /// Not a btrfs subvolume.
    #[error("not a btrfs subvolume")]
    NotASubvolume,
    /// The source of a snapshot is not a btrfs subvolume.
    #[error("{} is not a btrfs subvolume", .0.display())]
    SourceNotASubvolume(PathBuf),
    /// Nested subvolumes in the way.
    #[error("it contains nested subvolumes; delete them first")]
    NestedSubvolumes,
    /// A line of a kernel table that does not parse.
    #[error("malformed line {number}: {line}")]
    MalformedLine {
        /// 1-based.
        number: usize,
        /// The line.
        line: String,
    },
}

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
        reason: Invalidity,
    ) -> Self {
        Error::Invalid {
            action: action.into(),
            path: path.into(),
            reason,
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
        assert!(!Error::invalid("deleting", "/x", Invalidity::NotASubvolume).is_not_found());
    }

    /// Each reason reads as it did when it was free text; a new one must be added here (the
    /// match has no wildcard).
    #[test]
    fn every_invalidity_reads_as_the_free_text_did() {
        use Invalidity as I;
        let all = [
            (I::NotUtf8, "not valid UTF-8 text"),
            (I::FileNotUtf8, "the file is not valid utf-8"),
            (I::NotRegularFile("a FIFO"), "not a regular file (a FIFO)"),
            (
                I::TooLong { cap: 4 },
                "longer than 4 bytes, the most that is read of such a file",
            ),
            (I::NotADirectory, "not a directory"),
            (I::NotASymlink, "not a symlink"),
            (I::NotABlockDevice, "not a block device"),
            (I::BadPid, "invalid pid"),
            (I::NoSuchProcess, "no such process"),
            (I::NulInOptions, "the mount options contain a NUL byte"),
            (I::NulInPath, "the path contains a NUL byte"),
            (I::NoLowerDir, "no lower directory given"),
            (
                I::OptionsTooLong { len: 5000 },
                "the options are 5000 bytes, more than mount(2) takes; use shorter paths",
            ),
            (I::MountPoint, "it is a mount point; unmount it first"),
            (
                I::MountPointBelow("/a/b".into()),
                "/a/b is a mount point; unmount it first",
            ),
            (
                I::MountedInside("/a/c".into()),
                "/a/c is mounted inside; unmount it first",
            ),
            (I::TooDeep, "the tree is nested too deeply"),
            (I::DirectoryInTheWay, "a directory is in the way"),
            (
                I::NoCgroupHierarchy,
                "neither cgroup2 nor the name=systemd hierarchy is mounted",
            ),
            (I::NoFinalName, "the path has no final name"),
            (I::NoTempName, "no free temporary name"),
            (
                I::LoopDevicesTaken,
                "every free loop device was taken by others; try again",
            ),
            (I::BadSubvolumeName, "invalid subvolume name"),
            (I::BadSnapshotName, "invalid snapshot name"),
            (I::NotASubvolume, "not a btrfs subvolume"),
            (
                I::SourceNotASubvolume("/s".into()),
                "/s is not a btrfs subvolume",
            ),
            (
                I::NestedSubvolumes,
                "it contains nested subvolumes; delete them first",
            ),
            (
                I::MalformedLine {
                    number: 3,
                    line: "x y".into(),
                },
                "malformed line 3: x y",
            ),
        ];
        for (reason, text) in &all {
            match reason {
                I::NotUtf8
                | I::FileNotUtf8
                | I::NotRegularFile(_)
                | I::TooLong { .. }
                | I::NotADirectory
                | I::NotASymlink
                | I::NotABlockDevice
                | I::BadPid
                | I::NoSuchProcess
                | I::NulInOptions
                | I::NulInPath
                | I::NoLowerDir
                | I::OptionsTooLong { .. }
                | I::MountPoint
                | I::MountPointBelow(_)
                | I::MountedInside(_)
                | I::TooDeep
                | I::DirectoryInTheWay
                | I::NoCgroupHierarchy
                | I::NoFinalName
                | I::NoTempName
                | I::LoopDevicesTaken
                | I::BadSubvolumeName
                | I::BadSnapshotName
                | I::NotASubvolume
                | I::SourceNotASubvolume(_)
                | I::NestedSubvolumes
                | I::MalformedLine { .. } => assert_eq!(reason.to_string(), *text),
            }
            let err = Error::invalid("using", "/p", reason.clone());
            assert_eq!(err.to_string(), format!("using /p: {text}"));
        }
        assert_eq!(all.len(), 28, "every variant once");
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
                Error::invalid("deleting", "/a/2", Invalidity::NotASubvolume),
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
