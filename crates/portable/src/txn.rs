//! Crash-safe attach, detach and reattach: every change to the attach directories is planned
//! first, the plan is committed as a journal next to the attach directory
//! (`/etc|/run/systemd/.realms-portable.journal`), carried out, and the journal removed. A process
//! killed at any step leaves either nothing (no journal: the old state) or a journal, which the
//! next attach, detach or reattach carries out to the end (the new state) before doing its own work.
//! Every step is idempotent, so a replay after a kill in the middle of a step finishes it.

use std::path::{Path, PathBuf};

use realms_sys::IoContext;
use realms_sys::failpoint;
use realms_sys::root::FileType;
use serde::{Deserialize, Serialize};

use crate::changes::Change;
use crate::error::{Error, Result};
use crate::layout::Host;

/// The journal of attachments below `/etc` (persistent) or `/run` (runtime).
pub fn journal_path(runtime: bool) -> &'static str {
    if runtime {
        "/run/systemd/.realms-portable.journal"
    } else {
        "/etc/systemd/.realms-portable.journal"
    }
}

/// One idempotent step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Op {
    /// Create the directory (mode 0755) if it is missing.
    Mkdir {
        /// The in-root path.
        path: PathBuf,
    },
    /// Replace the file atomically with these bytes.
    Write {
        /// The in-root path.
        path: PathBuf,
        /// The contents.
        bytes: Vec<u8>,
        /// The file mode.
        mode: u32,
    },
    /// Replace whatever non-directory is there with a symlink.
    Symlink {
        /// The in-root path.
        path: PathBuf,
        /// The link's target.
        target: PathBuf,
    },
    /// Copy an image (a tree or a file) to `path` through a staging name, unless `path` exists.
    CopyImage {
        /// The in-root path of the copy.
        path: PathBuf,
        /// The in-root path of the image.
        source: PathBuf,
    },
    /// Remove the file or symlink if it is there.
    Remove {
        /// The in-root path.
        path: PathBuf,
    },
    /// Remove the leftovers of interrupted atomic writes (`.#NAME...`) in a directory.
    RemoveTemps {
        /// The in-root directory.
        dir: PathBuf,
    },
    /// Remove the directory if it is there and empty.
    RemoveDir {
        /// The in-root path.
        path: PathBuf,
    },
    /// Remove a copied image (a tree or a file) if it is there.
    RemoveImage {
        /// The in-root path.
        path: PathBuf,
    },
}

/// A planned step: what it does, what portablectl reports for it, and the unit it belongs to
/// (for error messages).
#[derive(Debug, Clone)]
pub struct Step {
    /// The step.
    pub op: Op,
    /// The change reported once it is done, if any.
    pub change: Option<Change>,
    /// The unit whose files the step writes, if any.
    pub unit: Option<String>,
}

/// The steps of one attach, detach or reattach, in order.
#[derive(Debug, Default)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Adds a step.
    pub fn push(&mut self, op: Op, change: Option<Change>, unit: Option<&str>) {
        self.steps.push(Step {
            op,
            change,
            unit: unit.map(str::to_owned),
        });
    }

    /// Commits the plan: journal, steps, journal removed. On a failing step of a plan that only
    /// creates (an attach), what was created is removed again and the journal dropped, so the
    /// old state stays; otherwise the journal stays for the next command to finish.
    pub fn commit(self, host: &Host, runtime: bool) -> Result<Vec<Change>> {
        if self.steps.is_empty() {
            return Ok(Vec::new());
        }
        let journal = Path::new(journal_path(runtime));
        let ops: Vec<&Op> = self.steps.iter().map(|s| &s.op).collect();
        let text = serde_json::to_vec(&ops).expect("a plan serializes");
        host.dir()
            .create_dir_all(journal.parent().expect("named"), 0o755)?;
        failpoint::hit("portable-journal-begin");
        host.dir().write_atomic(journal, &text, 0o600)?;
        failpoint::hit("portable-journal-committed");
        let mut changes = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            if let Err(e) = apply(host, &step.op) {
                let e = match &step.unit {
                    Some(unit) => Error::AttachUnit {
                        unit: unit.clone(),
                        source: Box::new(e),
                    },
                    None => e,
                };
                if self.steps.iter().all(|s| s.op.creates()) {
                    undo(host, &self.steps[..=i]);
                    remove_journal(host, journal);
                }
                return Err(e);
            }
            failpoint::hit("portable-journal-step");
            changes.extend(step.change.clone());
        }
        remove_journal(host, journal);
        failpoint::hit("portable-journal-done");
        Ok(changes)
    }
}

impl Op {
    /// Whether the step only adds (an attach), so undoing it restores the old state.
    fn creates(&self) -> bool {
        matches!(
            self,
            Op::Mkdir { .. } | Op::Write { .. } | Op::Symlink { .. } | Op::CopyImage { .. }
        )
    }
}

fn remove_journal(host: &Host, journal: &Path) {
    if let Err(e) = host.dir().remove_file(journal)
        && !e.is_not_found()
    {
        tracing::warn!("could not remove {}: {e}", journal.display());
    }
}

/// Undoes created steps in reverse order (best effort; what cannot be removed is logged).
fn undo(host: &Host, steps: &[Step]) {
    for step in steps.iter().rev() {
        let result = match &step.op {
            Op::Mkdir { path } => host.dir().remove_dir(path).map_err(Error::from),
            Op::Write { path, .. } | Op::Symlink { path, .. } => {
                host.dir().remove_file(path).map_err(Error::from)
            }
            Op::CopyImage { path, .. } => remove_image(host, path),
            _ => Ok(()),
        };
        if let Err(e) = result
            && !e.is_not_found()
        {
            tracing::warn!("rolling back attach: {e}");
        }
    }
}

fn staging(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".#{name}.realms-staging"))
}

fn remove_image(host: &Host, path: &Path) -> Result<()> {
    match host.dir().symlink_metadata(path)? {
        None => Ok(()),
        Some(m) if m.is_dir() => Ok(realms_sys::fs::remove_dir_all_one_fs(
            host.host_path(path)?,
        )?),
        Some(_) => Ok(host.dir().remove_file(path)?),
    }
}

/// Carries out one step; doing it again after it (partly) happened is harmless.
fn apply(host: &Host, op: &Op) -> Result<()> {
    let dir = host.dir();
    match op {
        Op::Mkdir { path } => {
            if dir.symlink_metadata(path)?.is_none() {
                dir.create_dir_all(path, 0o755)?;
            }
        }
        Op::Write { path, bytes, mode } => {
            remove_temps_of(host, path);
            dir.write_atomic(path, bytes, *mode)?;
        }
        Op::Symlink { path, target } => {
            remove_temps_of(host, path);
            let ours = dir.read_link(path).is_ok_and(|t| &t == target);
            if !ours {
                dir.symlink(target, path)?;
            }
        }
        Op::CopyImage { path, source } => {
            if dir.symlink_metadata(path)?.is_none() {
                let stage = staging(path);
                remove_image(host, &stage)?;
                let parent = path.parent().expect("an image copy has a directory");
                dir.create_dir_all(parent, 0o755)?;
                let src = host.host_path(source)?;
                let dst = host
                    .host_path(parent)?
                    .join(stage.file_name().expect("named"));
                if src.is_dir() {
                    realms_sys::fs::copy_tree(&src, &dst)?;
                } else {
                    std::fs::copy(&src, &dst).ctx("copying", &src)?;
                }
                let final_ = host
                    .host_path(parent)?
                    .join(path.file_name().expect("named"));
                std::fs::rename(&dst, &final_).ctx("renaming", &dst)?;
            }
        }
        Op::Remove { path } => match dir.remove_file(path) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        },
        Op::RemoveTemps { dir: d } => {
            if let Ok(entries) = dir.read_dir(d) {
                for (name, ty) in entries {
                    if ty != FileType::Directory && realms_sys::atomic::is_temp_name(&name) {
                        let _ = dir.remove_file(d.join(name));
                    }
                }
            }
        }
        Op::RemoveDir { path } => match dir.remove_dir(path) {
            Err(e) if !e.is_not_found() && e.raw_os_error() != Some(ENOTEMPTY) => {
                return Err(e.into());
            }
            _ => {}
        },
        Op::RemoveImage { path } => remove_image(host, path)?,
    }
    Ok(())
}

const ENOTEMPTY: i32 = 39;

/// Removes the temporary files an atomic replace of `path` left when it was killed.
fn remove_temps_of(host: &Host, path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let bytes = name.as_encoded_bytes();
    let mut prefix = b".#".to_vec();
    prefix.extend_from_slice(&bytes[..bytes.len().min(200)]);
    prefix.push(b'.');
    if let Ok(entries) = host.dir().read_dir(parent) {
        for (entry, ty) in entries {
            if ty != FileType::Directory && entry.as_encoded_bytes().starts_with(&prefix) {
                let _ = host.dir().remove_file(parent.join(entry));
            }
        }
    }
}

/// An exclusive `flock` on the host's root directory, held by attach, detach and reattach from
/// the journal check to the commit, so two of them never share (or overwrite) a journal. It
/// creates no file.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] std::os::fd::OwnedFd);

/// Takes the attach lock, waiting for another attach, detach or reattach to finish.
pub fn lock(host: &Host) -> Result<Lock> {
    let root = host.root();
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::open(root, flags, rustix::fs::Mode::empty()).ctx("opening", root)?;
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive).ctx("locking", root)?;
    Ok(Lock(fd))
}

/// [`recover_locked`] under the attach lock.
pub fn recover(host: &Host) -> Result<()> {
    let _lock = lock(host)?;
    recover_locked(host)
}

/// Finishes what a killed attach, detach or reattach committed (below `/etc` and `/run`), and
/// removes the leftovers of a journal that was never committed. Attach, detach and reattach call
/// it first, holding [`lock`].
pub fn recover_locked(host: &Host) -> Result<()> {
    for runtime in [false, true] {
        let journal = Path::new(journal_path(runtime));
        let parent = journal.parent().expect("named");
        if let Ok(entries) = host.dir().read_dir(parent) {
            for (name, ty) in entries {
                let is_ours = name
                    .to_str()
                    .is_some_and(|n| n.starts_with(".#.realms-portable.journal"));
                if ty != FileType::Directory && is_ours {
                    host.dir().remove_file(parent.join(name))?;
                }
            }
        }
        let text = match host.dir().read(journal) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let ops: Vec<Op> = serde_json::from_slice(&text).map_err(|e| Error::BadJournal {
            path: host
                .root()
                .join(journal.strip_prefix("/").unwrap_or(journal)),
            reason: e.to_string(),
        })?;
        tracing::info!(
            "finishing the portable change a killed command left in {}",
            journal.display()
        );
        for op in &ops {
            apply(host, op).map_err(|e| Error::JournalReplay {
                path: host
                    .root()
                    .join(journal.strip_prefix("/").unwrap_or(journal)),
                source: Box::new(e),
            })?;
        }
        remove_journal(host, journal);
    }
    Ok(())
}

/// Whether `path` (in-root) is where a journal or its staging files live, which are no part
/// of the attachment state.
pub fn is_journal_name(name: &str) -> bool {
    name.starts_with(".realms-portable.journal") || name.starts_with(".#.realms-portable.journal")
}
