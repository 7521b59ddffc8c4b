//! What an operation changed on disk, as portablectl reports it: `(type, path, source)` records
//! printed as "Created directory P.", "Written P.", "Created symlink P → S.", "Copied S → P.",
//! "Removed P.".

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A file was copied from `source`.
    Copy,
    /// A directory was created.
    Mkdir,
    /// A symlink to `source` was created.
    Symlink,
    /// A file or symlink was removed.
    Unlink,
    /// A file was written with generated contents.
    Write,
}

/// One change: what happened to `path` (from `source`, for copies and symlinks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    /// The host path it happened to.
    pub path: PathBuf,
    /// Where a copy or symlink comes from.
    pub source: Option<PathBuf>,
}

impl Change {
    /// A change of `kind` to `path`, from `source` for copies and symlinks.
    pub fn new(kind: ChangeKind, path: impl Into<PathBuf>, source: Option<PathBuf>) -> Change {
        Change {
            kind,
            path: path.into(),
            source,
        }
    }

    /// Whether this change put a unit file in place that systemd can enable and start.
    pub fn is_managed_unit(&self) -> bool {
        matches!(self.kind, ChangeKind::Copy | ChangeKind::Symlink) && self.unit_name().is_some()
    }

    /// The unit name of the changed path, if it is a portable-managed unit file.
    pub fn unit_name(&self) -> Option<String> {
        let name = self.path.file_name()?.to_str()?;
        crate::name::PORTABLE_SUFFIXES
            .iter()
            .any(|s| name.ends_with(s))
            .then(|| name.to_owned())
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match (self.kind, &self.source) {
            (ChangeKind::Symlink, Some(s)) => {
                write!(f, "Created symlink {p} \u{2192} {}.", s.display())
            }
            (ChangeKind::Symlink, None) => write!(f, "Created symlink {p}."),
            (ChangeKind::Copy, Some(s)) => write!(f, "Copied {} \u{2192} {p}.", s.display()),
            (ChangeKind::Copy, None) => write!(f, "Copied {p}."),
            (ChangeKind::Unlink, _) => write!(f, "Removed {p}."),
            (ChangeKind::Write, _) => write!(f, "Written {p}."),
            (ChangeKind::Mkdir, _) => write!(f, "Created directory {p}."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_portablectl_prints_them() {
        let c = Change::new(
            ChangeKind::Symlink,
            "/etc/portables/foo-test",
            Some("/var/lib/portables/foo-test".into()),
        );
        assert_eq!(
            c.to_string(),
            "Created symlink /etc/portables/foo-test → /var/lib/portables/foo-test."
        );
        let raw = Change::new(
            ChangeKind::Copy,
            "/run/systemd/system.attached/foo-test.service",
            None,
        );
        assert_eq!(
            raw.to_string(),
            "Copied /run/systemd/system.attached/foo-test.service."
        );
        assert!(raw.is_managed_unit());
        let w = Change::new(ChangeKind::Write, "/x/foo.service.d/20-portable.conf", None);
        assert!(!w.is_managed_unit());
        assert_eq!(
            Change::new(ChangeKind::Mkdir, "/d", None).to_string(),
            "Created directory /d."
        );
        assert_eq!(
            Change::new(ChangeKind::Unlink, "/d", None).to_string(),
            "Removed /d."
        );
    }
}
