//! Journaled changes of the image store that take more than one rename (installing an update,
//! rolling back, removing an image with its kept versions): every step is written down first,
//! and the journal records how many are done, so a command killed half-way is finished by the
//! next one under the store lock ([`finish_all`]). After a crash the store is
//! the old state (nothing journaled yet) or, once recovered, the new one; never a mix.
//!
//! Steps are renames (done when the source is gone and the target is there), symlink
//! replacements (the `lower` links of overlay realms; idempotent) and deletions (idempotent).

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::{atomic, btrfs, failpoint};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The prefix of a journal file in the image store (`.journal-IMAGE`).
pub(crate) const JOURNAL_PREFIX: &str = ".journal-";

/// One step of a journaled change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub(crate) enum Step {
    /// Rename `from` to `to` (which must not exist).
    Rename { from: PathBuf, to: PathBuf },
    /// Make `link` a symlink to `target`, if the directory holding `link` still exists.
    Link { link: PathBuf, target: PathBuf },
    /// Delete the tree `path`, if it exists.
    Delete { path: PathBuf },
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// How many steps are done.
    done: usize,
    steps: Vec<Step>,
}

/// What runs once every step of a journal of image `name` is done, before the journal goes
/// (recording the seal of what is now installed): part of the change, so a kill before it is
/// finished by the next command too.
pub(crate) type AfterSteps<'a> = &'a dyn Fn(&str) -> Result<()>;

/// Writes the journal of a change of image `name` in the store directory `dir`, then runs every
/// step and `after`.
pub(crate) fn run(dir: &Path, name: &str, steps: Vec<Step>, after: AfterSteps) -> Result<()> {
    let path = dir.join(format!("{JOURNAL_PREFIX}{name}"));
    let journal = Journal { done: 0, steps };
    save(&path, &journal)?;
    failpoint::hit("image-journal-written");
    finish(&path, journal)?;
    after(name)?;
    close(&path)
}

/// Finishes the changes that killed commands journaled (call with the store lock held,
/// before staging trees of dead processes are removed: a journal may name one).
pub(crate) fn finish_all(dir: &Path, after: AfterSteps) -> Result<Vec<PathBuf>> {
    let mut finished = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(finished);
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.starts_with(JOURNAL_PREFIX) || atomic::is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let text = realms_sys::untrusted::read_to_string(&path, 1 << 20)?;
        let journal: Journal = toml::from_str(&text).map_err(|e| Error::BadMeta {
            line: crate::toml_line(&text, &e),
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        tracing::info!("finishing the interrupted change in {}", path.display());
        finish(&path, journal)?;
        after(&file[JOURNAL_PREFIX.len()..])?;
        close(&path)?;
        finished.push(path);
    }
    Ok(finished)
}

fn finish(path: &Path, mut journal: Journal) -> Result<()> {
    while journal.done < journal.steps.len() {
        failpoint::hit("image-journal-step");
        apply(&journal.steps[journal.done])?;
        failpoint::hit("image-journal-step-done");
        journal.done += 1;
        save(path, &journal)?;
    }
    Ok(())
}

/// Removes a finished journal.
fn close(path: &Path) -> Result<()> {
    failpoint::hit("image-journal-finished");
    fs::remove_file(path).ctx("removing", path)?;
    if let Some(dir) = path.parent() {
        atomic::fsync_dir(dir)?;
    }
    Ok(())
}

/// Deletes an image tree: a (possibly read-only) subvolume with nested ones, or a directory.
pub fn delete_tree(path: &Path) -> Result<()> {
    if btrfs::is_subvolume(path).unwrap_or(false) {
        btrfs::delete_subvolume_recursive(path)?;
    } else if path.exists() {
        realms_sys::fs::remove_dir_all_one_fs(path)?;
    }
    Ok(())
}

fn apply(step: &Step) -> Result<()> {
    match step {
        Step::Rename { from, to } => {
            // Done already (killed after the rename, before the journal said so).
            let done = fs::symlink_metadata(from).is_err() && fs::symlink_metadata(to).is_ok();
            if !done {
                atomic::rename_noreplace(from, to)?;
            }
        }
        Step::Link { link, target } => {
            if link.parent().is_some_and(Path::is_dir) {
                atomic::replace_symlink(target, link)?;
            }
        }
        Step::Delete { path } => delete_tree(path)?,
    }
    Ok(())
}

fn save(path: &Path, journal: &Journal) -> Result<()> {
    let text = toml::to_string(journal).map_err(|e| Error::BadMeta {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot write the journal: {e}"),
    })?;
    atomic::write_file(path, text.as_bytes(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal killed after any number of steps (the step itself done or not) is finished
    /// to the same end state by the next command.
    #[test]
    fn an_interrupted_journal_is_finished_from_any_step() {
        for killed_after in 0..4 {
            for step_ran in [false, true] {
                let root = tempfile::tempdir().unwrap();
                let d = root.path().to_path_buf();
                for n in ["cur", "prev"] {
                    fs::create_dir(d.join(n)).unwrap();
                    fs::write(d.join(n).join("id"), n).unwrap();
                }
                std::os::unix::fs::symlink("/x", d.join("lnk")).unwrap();
                // Swap cur and prev through tmp, point the link at prev, delete nothing.
                let steps = vec![
                    Step::Rename {
                        from: d.join("cur"),
                        to: d.join("tmp"),
                    },
                    Step::Rename {
                        from: d.join("prev"),
                        to: d.join("cur"),
                    },
                    Step::Rename {
                        from: d.join("tmp"),
                        to: d.join("prev"),
                    },
                    Step::Link {
                        link: d.join("lnk"),
                        target: PathBuf::from("/prev"),
                    },
                ];
                let path = d.join(format!("{JOURNAL_PREFIX}img"));
                for s in &steps[..killed_after] {
                    apply(s).unwrap();
                }
                if step_ran {
                    apply(&steps[killed_after]).unwrap();
                }
                let journal = Journal {
                    done: killed_after,
                    steps: steps.clone(),
                };
                save(&path, &journal).unwrap();
                finish_all(&d, &|_| Ok(())).unwrap();
                assert_eq!(fs::read_to_string(d.join("cur/id")).unwrap(), "prev");
                assert_eq!(fs::read_to_string(d.join("prev/id")).unwrap(), "cur");
                assert_eq!(fs::read_link(d.join("lnk")).unwrap(), Path::new("/prev"));
                assert!(!path.exists() && !d.join("tmp").exists());
            }
        }
    }
}
