//! Control groups that own a whole process tree: created and joined before a supervisor execs
//! (so everything it ever forks stays inside, even re-parented to PID 1), asked whether anything
//! still runs in them, and killed as a whole (`cgroup.kill`, else SIGKILL to every member).
//!
//! A group lives at the same relative path in the cgroup2 hierarchy (`/sys/fs/cgroup` on a
//! unified host, `/sys/fs/cgroup/unified` on a hybrid one) and, where it is mounted, in the v1
//! `name=systemd` hierarchy (which systemd in a container expects beside cgroup2 on a hybrid host).

use crate::error::Invalidity;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};
use crate::proc::{self, Signal};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One control group, at the same relative path in every hierarchy this host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// The group in the cgroup2 hierarchy, if the host has one.
    unified: Option<PathBuf>,
    /// The group in the v1 `name=systemd` hierarchy, if the host has one.
    legacy: Option<PathBuf>,
}

/// Where the hierarchies are mounted: `(cgroup2, v1 name=systemd)`.
fn hierarchies(base: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let is_cgroup2 =
        |p: &Path| rustix::fs::statfs(p).is_ok_and(|s| s.f_type == CGROUP2_SUPER_MAGIC);
    if is_cgroup2(base) {
        return (Some(base.to_path_buf()), None);
    }
    let unified = base.join("unified");
    let legacy = base.join("systemd");
    (
        is_cgroup2(&unified).then_some(unified),
        legacy.join("cgroup.procs").exists().then_some(legacy),
    )
}

impl Cgroup {
    /// The group at `rel` (e.g. `realms/realm-work`) on this host. No hierarchy at all is an
    /// error: nothing could then own a process tree.
    pub fn new(rel: impl AsRef<Path>) -> Result<Cgroup> {
        Self::under(Path::new("/sys/fs/cgroup"), rel.as_ref())
    }

    fn under(base: &Path, rel: &Path) -> Result<Cgroup> {
        let (unified, legacy) = hierarchies(base);
        if unified.is_none() && legacy.is_none() {
            return Err(Error::invalid(
                "finding the cgroup hierarchies under",
                base,
                Invalidity::NoCgroupHierarchy,
            ));
        }
        Ok(Cgroup {
            unified: unified.map(|u| u.join(rel)),
            legacy: legacy.map(|l| l.join(rel)),
        })
    }

    /// The group's directories (cgroup2 first).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.unified
            .iter()
            .chain(self.legacy.iter())
            .map(|p| p.as_path())
    }

    /// A child group of this one.
    pub fn child(&self, name: &str) -> Cgroup {
        Cgroup {
            unified: self.unified.as_ref().map(|p| p.join(name)),
            legacy: self.legacy.as_ref().map(|p| p.join(name)),
        }
    }

    /// Creates the group (and its parents) in every hierarchy.
    pub fn create(&self) -> Result<()> {
        for dir in self.dirs() {
            fs::create_dir_all(dir).ctx("creating the control group", dir)?;
        }
        Ok(())
    }

    /// Moves the calling process into the group in every hierarchy (creating it first).
    pub fn join(&self) -> Result<()> {
        self.create()?;
        for dir in self.dirs() {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, b"0").ctx("joining the control group", &procs)?;
        }
        Ok(())
    }

    /// `cgroup.procs` of the cgroup2 group (else the v1 one), opened for writing, so that a
    /// forked child can join with one `write` before it execs (see [`join_fd`]).
    pub fn open_procs(&self) -> Result<OwnedFd> {
        let dir = self
            .dirs()
            .next()
            .expect("a group has at least one hierarchy");
        let procs = dir.join("cgroup.procs");
        rustix::fs::open(&procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .ctx("opening", &procs)
    }

    /// The PIDs in the group and every group below it.
    pub fn pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for dir in self.dirs() {
            collect_pids(dir, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether any process runs in the group or below it.
    pub fn is_populated(&self) -> bool {
        if let Some(dir) = &self.unified
            && let Ok(events) = fs::read_to_string(dir.join("cgroup.events"))
        {
            return events.lines().any(|l| l == "populated 1");
        }
        !self.pids().is_empty()
    }

    /// Kills every process in the group and below it, and waits (up to `timeout`) until none is
    /// left. Returns the PIDs still there after the timeout (empty when all are gone).
    pub fn kill_all(&self, timeout: Duration) -> Result<Vec<u32>> {
        let deadline = Instant::now() + timeout;
        let kill_file = self.unified.as_ref().map(|d| d.join("cgroup.kill"));
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(pids);
            }
            if Instant::now() > deadline {
                return Ok(pids);
            }
            match &kill_file {
                // One write kills the whole subtree, including processes forked meanwhile.
                Some(f) if f.exists() => fs::write(f, b"1").ctx("writing", f)?,
                _ => {
                    for pid in &pids {
                        let _ = proc::kill(*pid, Signal::KILL);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the group and every group below it (deepest first) in every hierarchy; a group
    /// that still has processes stays, and makes this an error.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

/// Joins the group of `procs` (from [`Cgroup::open_procs`]) with one `write(2)`: safe to call
/// in a forked child before exec.
pub fn join_fd(procs: &OwnedFd) -> std::io::Result<()> {
    rustix::io::write(procs, b"0")?;
    Ok(())
}

fn collect_pids(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<u32>().ok()),
        );
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out);
        }
    }
}

fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing the control group", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // A group that was just emptied can be busy for a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io("removing the control group", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hierarchy_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Cgroup::under(dir.path(), Path::new("realms/x")).unwrap_err();
        assert!(err.to_string().contains("cgroup"), "{err}");
    }

    #[test]
    fn legacy_only_paths_and_children() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("systemd")).unwrap();
        fs::write(dir.path().join("systemd/cgroup.procs"), "").unwrap();
        let g = Cgroup::under(dir.path(), Path::new("realms/x")).unwrap();
        let c = g.child("run");
        assert_eq!(
            c.dirs().collect::<Vec<_>>(),
            [dir.path().join("systemd/realms/x/run")]
        );
        // A plain directory stands in for the hierarchy: nothing runs there.
        g.create().unwrap();
        fs::write(dir.path().join("systemd/realms/x/cgroup.procs"), "12\n7\n").unwrap();
        c.create().unwrap();
        fs::write(
            dir.path().join("systemd/realms/x/run/cgroup.procs"),
            "7\n3\n",
        )
        .unwrap();
        assert_eq!(g.pids(), [3, 7, 12]);
        assert!(g.is_populated());
        assert!(
            !Cgroup::under(dir.path(), Path::new("realms/y"))
                .unwrap()
                .is_populated()
        );
    }
}
