//! The image store at `/storage/appimg`: lookup, listing, staging, commit, rollback, removal.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::{atomic, btrfs};
use serde::Serialize;

pub use crate::journal::delete_tree;
use crate::journal::{self, Step};
use crate::meta::compare_versions;
use crate::record::{Record, next_after};
use crate::{Error, Result, validate_name};

/// What kind of root filesystem an image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// A tree of files: a btrfs subvolume or a directory.
    Tree,
    /// A filesystem image file (`image.raw`) mounted through a loop device.
    Block,
    /// A block image with a dm-verity hash tree and a signed root hash.
    Sealed,
}

/// One image as `realms appimg list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// The image.
    pub name: String,
    /// Tree, block or sealed.
    pub kind: ImageKind,
    /// Its directory (`NAME.appimg`).
    pub path: PathBuf,
    /// True when the tree is a btrfs subvolume (realms are then O(1) snapshots of it).
    pub subvolume: bool,
    /// True when `NAME.appimg.prev` exists (`realms appimg rollback NAME` can go back to it).
    pub has_previous: bool,
    /// PRETTY_NAME from the image's os-release, when it has one.
    pub os: Option<String>,
    /// The version (`None` for a tree imported before versions were recorded).
    pub version: Option<String>,
    /// When this version was made, in seconds since the epoch.
    pub created: Option<u64>,
    /// Bytes (the apparent size of the tree, or of the image files).
    pub size: Option<u64>,
    /// The version of `NAME.appimg.prev`, if known.
    pub previous_version: Option<String>,
}

/// The store of application images under `ROOT/storage/appimg`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// Work in progress: a tree under a dot-name in the store, deleted on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    path: Option<PathBuf>,
}

impl Staged {
    /// The staged tree (a dot-name in the store).
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a staged tree is used only until it is committed")
    }

    fn take(mut self) -> PathBuf {
        self.path.take().expect("a staged tree is committed once")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(err) = delete_tree(&path)
        {
            tracing::warn!(
                "could not remove the staging tree {}: {err}",
                path.display()
            );
        }
    }
}

const STAGING_PREFIX: &str = ".staging-";

impl ImageStore {
    /// Opens the store under `root` (the `--root` directory) without creating anything; a
    /// store that does not exist yet lists as empty.
    pub fn open(root: &Path) -> Result<ImageStore> {
        Ok(ImageStore {
            dir: root.join("storage/appimg"),
        })
    }

    /// Creates the store directory if it is missing (commands that add images call it);
    /// returns true when it was created.
    pub fn init(&self) -> Result<bool> {
        let created = !self.dir.is_dir();
        // Images hold other people's setuid binaries and device nodes: only root may reach them
        // (as /var/lib/machines), from the moment the directory exists. A store made before
        // this is closed at its next use.
        realms_sys::perms::create_private_dir(&self.dir)?;
        Ok(created)
    }

    /// The directory of the images (`/storage/appimg`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/storage/appimg/NAME.appimg`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.appimg"))
    }

    /// `/storage/appimg/NAME.appimg.prev`, the version before the last update.
    pub fn prev_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.appimg.prev"))
    }

    /// True when the store is on btrfs, so images are subvolumes and realms are snapshots.
    pub fn on_btrfs(&self) -> bool {
        btrfs::is_btrfs(&self.dir).unwrap_or(false)
    }

    /// Looks up one image.
    pub fn get(&self, name: &str) -> Result<ImageInfo> {
        validate_name("image", name)?;
        let path = self.path(name);
        if !path.is_dir() {
            return Err(Error::NotFound {
                name: name.to_string(),
                path,
            });
        }
        Ok(self.info(name, path))
    }

    /// The image at `path` in the store: `NAME.appimg`, or a kept version of it
    /// (`NAME.appimg.prev`, `NAME.appimg.old-N`) that realms made before an update still use.
    pub fn info_at(&self, path: &Path) -> Result<ImageInfo> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.split(".appimg").next().unwrap_or_default().to_string();
        validate_name("image", &name)?;
        if !path.is_dir() {
            return Err(Error::NotFound {
                name,
                path: path.to_path_buf(),
            });
        }
        Ok(self.info(&name, path.to_path_buf()))
    }

    fn info(&self, name: &str, path: PathBuf) -> ImageInfo {
        // Any trace of sealing makes an image sealed, so that deleting the signature cannot
        // turn a sealed image into a block image that is mounted unchecked.
        // So does the store's record that the name was sealed: deleting every file of the seal
        // is then refused too.
        let sealed = ["image.sig", "image.verity", "image.roothash"]
            .iter()
            .any(|f| path.join(f).exists())
            || crate::seals::is_sealed(&self.dir, name);
        let kind = match (path.join("image.raw").exists(), sealed) {
            (_, true) => ImageKind::Sealed,
            (true, false) => ImageKind::Block,
            (false, false) => ImageKind::Tree,
        };
        let os = match kind {
            ImageKind::Tree => pretty_name(&path),
            _ => None,
        };
        let record = Record::read(&path);
        let prev = self.prev_path(name);
        ImageInfo {
            name: name.to_string(),
            kind,
            subvolume: btrfs::is_subvolume(&path).unwrap_or(false),
            has_previous: prev.exists(),
            previous_version: prev.exists().then(|| Record::read(&prev).version).flatten(),
            path,
            os,
            version: record.version,
            created: record.created,
            size: record.size,
        }
    }

    /// Every image in the store, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::from(realms_sys::Error::io(
                    "reading the image store",
                    &self.dir,
                    e,
                )));
            }
        };
        let mut images = Vec::new();
        for entry in entries {
            let entry = entry.ctx("reading the image store", &self.dir)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".appimg")) else {
                continue;
            };
            if validate_name("image", name).is_ok() && entry.path().is_dir() {
                images.push(self.info(name, entry.path()));
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// A new empty staging tree (a subvolume on btrfs) for building image `name`.
    pub fn stage_empty(&self, name: &str) -> Result<Staged> {
        self.init()?;
        let path = self.staging_path(name);
        if self.on_btrfs() {
            btrfs::create_subvolume(&path)?;
        } else {
            fs::create_dir(&path).ctx("creating the staging directory", &path)?;
        }
        Ok(Staged { path: Some(path) })
    }

    /// A new empty plain staging directory (block and sealed images are files, not trees).
    pub fn stage_plain(&self, name: &str) -> Result<Staged> {
        self.init()?;
        let path = self.staging_path(name);
        fs::create_dir(&path).ctx("creating the staging directory", &path)?;
        Ok(Staged { path: Some(path) })
    }

    /// A writable copy of image `name` to change: a snapshot on btrfs, a reflink copy otherwise.
    pub fn stage_copy(&self, name: &str) -> Result<Staged> {
        let src = self.get(name)?.path;
        let path = self.staging_path(name);
        if btrfs::is_subvolume(&src).unwrap_or(false) {
            btrfs::snapshot(&src, &path, false)?;
        } else {
            copy_tree(&src, &path)?;
        }
        Ok(Staged { path: Some(path) })
    }

    fn staging_path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{STAGING_PREFIX}{name}-{}", std::process::id()))
    }

    /// Moves a finished staging tree into place as the new image `name` (read-only from now on).
    pub fn commit_new(&self, staged: Staged, name: &str) -> Result<PathBuf> {
        let dest = self.path(name);
        if dest.exists() {
            return Err(Error::Exists {
                name: name.to_string(),
                path: dest,
            });
        }
        record_tree(staged.path(), "1".to_string())?;
        seal_tree(staged.path())?;
        realms_sys::failpoint::hit("image-new-sealed");
        // Journaled with the seal record, so a kill between the two is finished by the next command.
        let steps = vec![Step::Rename {
            from: staged.take(),
            to: dest.clone(),
        }];
        journal::run(&self.dir, name, steps, &|n| self.remember_seal(n))?;
        Ok(dest)
    }

    /// Replaces image `name` with a staging tree; the old version becomes `NAME.appimg.prev`,
    /// and the former `.prev` is kept as `NAME.appimg.old-N` while `users.prev` point at it
    /// (deleted otherwise). Each `lower` link follows the version it points at. Journaled: a
    /// command killed at any step is finished by the next one under the store lock.
    pub fn commit_update(&self, staged: Staged, name: &str, users: &Users) -> Result<()> {
        let current = self.get(name)?.path;
        let prev = self.prev_path(name);
        let known: Vec<Option<String>> = [current.clone(), prev.clone()]
            .into_iter()
            .chain(self.kept_versions(name))
            .map(|p| Record::read(&p).version)
            .collect();
        record_tree(
            staged.path(),
            next_after(known.iter().map(|v| v.as_deref())),
        )?;
        seal_tree(staged.path())?;
        realms_sys::failpoint::hit("image-update-staged");
        let mut steps = Vec::new();
        let mut delete = None;
        if prev.exists() {
            let retired = if users.prev.is_empty() {
                let aside = self
                    .dir
                    .join(format!(".retired-{name}-{}", unique_suffix()));
                delete = Some(aside.clone());
                aside
            } else {
                self.next_kept_path(name)
            };
            steps.push(Step::Rename {
                from: prev.clone(),
                to: retired.clone(),
            });
            steps.extend(links(&users.prev, &retired));
        }
        steps.push(Step::Rename {
            from: current.clone(),
            to: prev.clone(),
        });
        steps.extend(links(&users.current, &prev));
        steps.push(Step::Rename {
            from: staged.take(),
            to: current,
        });
        steps.extend(delete.map(|path| Step::Delete { path }));
        journal::run(&self.dir, name, steps, &|n| self.remember_seal(n))
    }

    /// `NAME.appimg.old-N` with N past every kept version.
    fn next_kept_path(&self, name: &str) -> PathBuf {
        let n = self
            .kept_versions(name)
            .iter()
            .filter_map(|p| {
                p.to_string_lossy()
                    .rsplit("old-")
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        self.dir.join(format!("{name}.appimg.old-{n}"))
    }

    /// Records a sealed image's version, now current by the user's command (a build, an
    /// update or a rollback), as the highest accepted ([`crate::seals`]).
    fn remember_seal(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        if !path.join("image.sig").exists() {
            return Ok(());
        }
        match Record::read(&path).version {
            Some(version) => crate::seals::accept(&self.dir, name, &version, true),
            None => Ok(()),
        }
    }

    /// The older versions of image `name` kept for overlay realms made on them
    /// (`NAME.appimg.old-N`), sorted.
    pub fn kept_versions(&self, name: &str) -> Vec<PathBuf> {
        let prefix = format!("{name}.appimg.old-");
        let mut kept: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        kept.sort();
        kept
    }

    /// Swaps `NAME.appimg` and `NAME.appimg.prev` (journaled); returns the versions
    /// (before, after). Refused when the previous version is the newer one (the image was
    /// rolled back already): swapping again would roll forward. The `lower` links of `users`
    /// follow the versions they point at.
    pub fn rollback(&self, name: &str, users: &Users) -> Result<(Option<String>, Option<String>)> {
        let current = self.get(name)?.path;
        let prev = self.prev_path(name);
        if !prev.is_dir() {
            return Err(Error::NoPrevious {
                name: name.to_string(),
                path: prev,
            });
        }
        let (now, before) = (Record::read(&current).version, Record::read(&prev).version);
        // A version that was never recorded (an image older than version records) is older
        // than every recorded one.
        let prev_is_newer = match (&before, &now) {
            (Some(before), Some(now)) => compare_versions(before, now).is_gt(),
            (Some(_), None) => true,
            _ => false,
        };
        if prev_is_newer {
            return Err(Error::AlreadyRolledBack {
                name: name.to_string(),
                current: now.clone().unwrap_or_else(|| "(unrecorded)".into()),
                newer: before.clone().unwrap_or_default(),
            });
        }
        let aside = self
            .dir
            .join(format!(".rollback-{name}-{}", unique_suffix()));
        let mut steps = vec![
            Step::Rename {
                from: current.clone(),
                to: aside.clone(),
            },
            Step::Rename {
                from: prev.clone(),
                to: current.clone(),
            },
            Step::Rename {
                from: aside,
                to: prev.clone(),
            },
        ];
        steps.extend(links(&users.current, &prev));
        steps.extend(links(&users.prev, &current));
        journal::run(&self.dir, name, steps, &|n| self.remember_seal(n))?;
        Ok((now, before))
    }

    /// Deletes image `name`, its previous version and the `also` trees (kept versions), all
    /// or nothing (journaled).
    pub fn remove(&self, name: &str, also: &[PathBuf]) -> Result<()> {
        let path = self.get(name)?.path;
        let prev = self.prev_path(name);
        let trees = std::iter::once(path)
            .chain(prev.exists().then_some(prev))
            .chain(also.iter().cloned());
        let mut steps = Vec::new();
        let mut deletes = Vec::new();
        for (i, tree) in trees.enumerate() {
            // Renamed first so that a crash never leaves half an image under a real name.
            let aside = self
                .dir
                .join(format!(".removing-{name}-{i}-{}", unique_suffix()));
            steps.push(Step::Rename {
                from: tree,
                to: aside.clone(),
            });
            deletes.push(Step::Delete { path: aside });
        }
        steps.extend(deletes);
        journal::run(&self.dir, name, steps, &|n| self.remember_seal(n))
    }

    /// Removes what interrupted commands left behind (staging trees of dead processes, trees
    /// being removed). Call it with the store lock held. Returns what was removed.
    pub fn cleanup_leftovers(&self) -> Result<Vec<PathBuf>> {
        let mut removed = journal::finish_all(&self.dir, &|n| self.remember_seal(n))?;
        // A seal record being written when the command was killed (its temporary file).
        let seals = self.dir.join(crate::seals::DIR);
        for entry in fs::read_dir(&seals).into_iter().flatten().flatten() {
            if atomic::is_temp_name(&entry.file_name()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(removed);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if atomic::is_temp_name(&entry.file_name())
                && entry.file_type().is_ok_and(|t| !t.is_dir())
            {
                // A journal being written when the command was killed (never started).
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let stale = if let Some(rest) = name.strip_prefix(STAGING_PREFIX) {
                rest.rsplit('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| {
                        pid != std::process::id() && !realms_sys::proc::pid_alive(pid)
                    })
            } else if let Some(rest) = name.strip_prefix(".mount-") {
                // An image mounted to be unpacked by an update that was killed.
                let dead = rest
                    .rsplit('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| !realms_sys::proc::pid_alive(pid));
                if dead {
                    let _ = realms_sys::mount::umount(entry.path(), true);
                    let _ = fs::remove_dir(entry.path());
                }
                false
            } else {
                // Journals are finished above, so what is set aside here belongs to no one.
                name.starts_with(".removing-") || name.starts_with(".retired-")
            };
            if stale {
                // Whatever still runs in it (the container of a killed update) goes first.
                kill_rooted_below(&entry.path());
                delete_tree(&entry.path())?;
                removed.push(entry.path());
            }
        }
        Ok(removed)
    }
}

/// The `lower` links (of overlay realms and their snapshots) on the current and on the
/// previous version of an image: they follow the version they point at when it is renamed.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Links to `NAME.appimg`.
    pub current: Vec<PathBuf>,
    /// Links to `NAME.appimg.prev`.
    pub prev: Vec<PathBuf>,
}

/// Steps pointing each link at `tree` as the realms see it (`/storage/appimg/...`).
fn links(links: &[PathBuf], tree: &Path) -> Vec<Step> {
    let inside = Path::new("/storage/appimg").join(tree.file_name().unwrap_or_default());
    links
        .iter()
        .map(|link| Step::Link {
            link: link.clone(),
            target: inside.clone(),
        })
        .collect()
}

/// Kills the processes whose root is `dir` (or a directory below it: a container started on
/// a staging tree) and waits for them to go, so the tree is not deleted under them.
fn kill_rooted_below(dir: &Path) {
    let Ok(pids) = realms_sys::proc::rooted_at(dir) else {
        return;
    };
    for pid in &pids {
        tracing::info!("killing process {pid}, left running in {}", dir.display());
        let _ = realms_sys::proc::kill(*pid, realms_sys::proc::Signal::KILL);
    }
    for _ in 0..100 {
        if pids.iter().all(|p| !realms_sys::proc::pid_alive(*p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Records version `version` on a finished tree image (block and sealed images have
/// `image.meta` instead). A filesystem without extended attributes leaves it unrecorded.
fn record_tree(path: &Path, version: String) -> Result<()> {
    if path.join("image.meta").exists() {
        return Ok(());
    }
    if let Err(err) = Record::new_for_tree(path, version).write(path) {
        tracing::warn!("the version of {} is not recorded: {err}", path.display());
    }
    Ok(())
}

/// Makes a finished tree read-only where btrfs allows it.
fn seal_tree(path: &Path) -> Result<()> {
    if btrfs::is_subvolume(path).unwrap_or(false) {
        btrfs::set_readonly(path, true)?;
    }
    Ok(())
}

/// Copies a tree with everything preserved, sharing extents where the filesystem can.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir(dest).ctx("creating", dest)?;
    realms_sys::cmd::Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(src.join("."))
        .arg(dest)
        .run()?;
    Ok(())
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// PRETTY_NAME of a tree's os-release (`/etc` first, then `/usr/lib`), read inside the tree and
/// bounded (a FIFO or a huge file is no name, never a hang).
fn pretty_name(tree: &Path) -> Option<String> {
    let root = realms_sys::root::RootDir::open(tree).ok()?;
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            root.read_capped_to_string(p, realms_sys::untrusted::TEXT_CAP)
                .ok()
        })?;
    let release = realms_unit::os_release::OsRelease::parse(&text).ok()?;
    release.get("PRETTY_NAME").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged_tree(store: &ImageStore, name: &str, file: &str) -> Staged {
        let staged = store.stage_empty(name).unwrap();
        fs::create_dir(staged.path().join("usr")).unwrap();
        fs::write(staged.path().join(file), b"x").unwrap();
        staged
    }

    #[test]
    fn opening_creates_nothing_and_a_missing_store_lists_empty() {
        let root = tempfile::tempdir().unwrap();
        let store = ImageStore::open(root.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(!store.dir().exists());
        assert!(store.init().unwrap());
        assert!(!store.init().unwrap());
    }

    #[test]
    fn appimg_rollback_twice_does_not_roll_forward() {
        let root = tempfile::tempdir().unwrap();
        let store = ImageStore::open(root.path()).unwrap();
        store
            .commit_new(staged_tree(&store, "img", "one"), "img")
            .unwrap();
        store
            .commit_update(staged_tree(&store, "img", "two"), "img", &Users::default())
            .unwrap();
        let info = store.get("img").unwrap();
        assert_eq!(info.version.as_deref(), Some("2"));
        assert_eq!(info.previous_version.as_deref(), Some("1"));
        assert!(info.size.is_some() && info.created.is_some());

        let (from, to) = store.rollback("img", &Users::default()).unwrap();
        assert_eq!((from.as_deref(), to.as_deref()), (Some("2"), Some("1")));
        assert!(store.path("img").join("one").exists());
        let err = store
            .rollback("img", &Users::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already rolled back") && err.contains("version 1"),
            "{err}"
        );
        assert!(store.path("img").join("one").exists(), "rolled forward");

        // The next update is newer than every version there was.
        store
            .commit_update(
                staged_tree(&store, "img", "three"),
                "img",
                &Users::default(),
            )
            .unwrap();
        assert_eq!(store.get("img").unwrap().version.as_deref(), Some("3"));
    }
}
