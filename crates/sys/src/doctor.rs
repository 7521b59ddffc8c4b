//! What `realms doctor` reports, shared by the crates that check the store and the host: each
//! [`Finding`] names the path it is about, what is wrong there, and what `--fix` does about it.

use std::path::PathBuf;

use serde::Serialize;

/// The kinds of trouble a crash or a manual intervention can leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A staging or half-removed tree of a command that died (`.staging-*`, `.removing-*`,
    /// `.rootfs-new-*`, an unfinished rename's intent file).
    StaleStaging,
    /// `/realms/default.realm` points at a realm that does not exist.
    DanglingDefault,
    /// `/run/realms/current.realm` points at a realm that does not exist.
    DanglingCurrent,
    /// A realm directory without its root (`rootfs`, or `overlay` and `lower`).
    RealmWithoutRoot,
    /// A realm directory without its `config`.
    RealmWithoutConfig,
    /// An application image (or a kept older version) no realm uses.
    UnusedImage,
    /// An overlay realm whose `lower` link leads to a version that is gone.
    MissingLower,
    /// A pid or leader file under `/run/realms` whose process is gone.
    StalePidFile,
    /// An nspawn process of a realm that no pid file knows, or the remains of a killed one.
    OrphanedNspawn,
    /// A loop device on an image of the store that nothing uses.
    LeftoverLoop,
    /// A mount inside the store that no running realm uses.
    LeftoverMount,
    /// A zone's bridge and nftables table on the host that no realm uses.
    UnusedZone,
    /// A portable service attached from an image that is gone.
    OrphanedPortable,
}

/// What became of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "error")]
pub enum Outcome {
    /// Found; nothing was changed (no `--fix`).
    Found,
    /// `--fix` repaired it.
    Fixed,
    /// The fix deletes user data, so it waits for `--force`.
    NeedsForce,
    /// The fix was tried and failed (the error's text).
    Failed(String),
}

/// One thing `realms doctor` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// What kind of trouble it is.
    pub kind: Kind,
    /// The path (file, directory, device, mount point) it is about.
    pub path: PathBuf,
    /// What is wrong, in a sentence.
    pub problem: String,
    /// What `--fix` does about it.
    pub fix: String,
    /// True when the fix deletes user data (a home, an image), so `--fix` does it only with
    /// `--force`.
    pub needs_force: bool,
    /// What became of it.
    pub outcome: Outcome,
}

impl Finding {
    /// A finding, not acted on yet.
    pub fn new(
        kind: Kind,
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            kind,
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
            needs_force: false,
            outcome: Outcome::Found,
        }
    }

    /// Marks the fix as one that deletes user data (done only with `--force`).
    pub fn forced(mut self) -> Finding {
        self.needs_force = true;
        self
    }

    /// True when something is left to do about it (it was not fixed).
    pub fn is_open(&self) -> bool {
        self.outcome != Outcome::Fixed
    }
}

/// What `realms doctor` is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Repair what was found.
    pub fix: bool,
    /// Also apply the fixes that delete user data.
    pub force: bool,
}

impl Options {
    /// Whether a finding is to be fixed now; sets its outcome to [`Outcome::NeedsForce`] when
    /// it would be but for `--force`.
    pub fn should_fix(&self, finding: &mut Finding) -> bool {
        if !self.fix {
            return false;
        }
        if finding.needs_force && !self.force {
            finding.outcome = Outcome::NeedsForce;
            return false;
        }
        true
    }

    /// Records how a fix went.
    pub fn record<E: std::fmt::Display>(finding: &mut Finding, result: Result<(), E>) {
        finding.outcome = match result {
            Ok(()) => Outcome::Fixed,
            Err(e) => Outcome::Failed(e.to_string()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_fixes_wait_for_force() {
        let mut f = Finding::new(Kind::UnusedImage, "/x", "unused", "removes it").forced();
        let fix_only = Options {
            fix: true,
            force: false,
        };
        assert!(!fix_only.should_fix(&mut f));
        assert_eq!(f.outcome, Outcome::NeedsForce);
        assert!(f.is_open());
        let forced = Options {
            fix: true,
            force: true,
        };
        assert!(forced.should_fix(&mut f));
        Options::record::<String>(&mut f, Ok(()));
        assert!(!f.is_open());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["kind"], "unused-image");
        assert_eq!(json["outcome"]["state"], "fixed");
    }

    #[test]
    fn nothing_is_fixed_without_fix() {
        let mut f = Finding::new(Kind::StalePidFile, "/run/realms/realm-a.pid", "stale", "rm");
        assert!(!Options::default().should_fix(&mut f));
        assert_eq!(f.outcome, Outcome::Found);
    }
}
