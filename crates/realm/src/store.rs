//! The realm store at `/realms` (really `/storage/realms`): realm directories, the config
//! template, skel, Shared, the default and current symlinks, and the store lock.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use realms_image::{ImageKind, ImageStore, validate_name};
use realms_sys::{atomic, btrfs, lock::StoreLock};

use crate::config::RealmConfig;
use crate::executor::Executor;
use crate::{Error, Result};
use realms_sys::event::{Event, Report};

/// The config template written into a new store: the seed's options with their defaults.
pub const CONFIG_TEMPLATE: &str = "\
# Template for the config of new realms; each realm gets a copy at /realms/realm-NAME/config.
use-shared-dir = true
use-sound = true
use-x11 = true
use-wayland = true
use-gpu = false
use-kvm = false
use-network = true
network-zone = \"clear\"
";

/// The uid and gid of the realm user whose home is `/realms/realm-NAME/home`.
pub const REALM_UID: u32 = 1000;

/// A realm store rooted at the `--root` directory.
///
/// Opening it reads nothing and creates nothing; the first command that changes something
/// creates the layout ([`RealmStore::init`], run by [`RealmStore::lock`]).
#[derive(Clone)]
pub struct RealmStore {
    root: PathBuf,
    dir: PathBuf,
    run: PathBuf,
    images: ImageStore,
    notes: Arc<dyn Report + Send + Sync>,
    executor: Executor,
    owner: u32,
}

impl std::fmt::Debug for RealmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmStore")
            .field("root", &self.root)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a realm's root filesystem is made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootKind {
    /// A writable btrfs snapshot of the image at `rootfs/`.
    Snapshot,
    /// An overlay mounted at start: the image (`lower` symlink) below `overlay/upper`.
    Overlay,
}

impl RealmStore {
    /// Opens the store under `root` without touching the disk beyond checking that `root`
    /// exists (a `--root` with a typo is an error, never a new empty store). A store that
    /// does not exist yet reads as empty.
    pub fn open(root: &Path) -> Result<RealmStore> {
        if !root.is_dir() {
            return Err(Error::NoRoot(root.to_path_buf()));
        }
        Ok(RealmStore {
            root: root.to_path_buf(),
            dir: root.join("storage/realms"),
            run: root.join("run/realms"),
            images: ImageStore::open(root)?,
            notes: Arc::new(|event: Event| tracing::info!("{}", event.text())),
            executor: Executor::detect(),
            owner: REALM_UID,
        })
    }

    /// Takes the lock file `path`; a wait for another process is said through the notes.
    pub(crate) fn acquire(&self, path: &Path) -> Result<StoreLock> {
        Ok(StoreLock::acquire_with(path, &mut |event| {
            self.notes.report(event.into())
        })?)
    }

    /// Where notes about side effects the user did not ask for go (the store being created).
    pub fn with_notes(mut self, notes: impl Report + Send + Sync + 'static) -> RealmStore {
        self.notes = Arc::new(notes);
        self
    }

    /// Runs realms with `executor` instead of the one detected from the host at [`open`](Self::open).
    pub fn with_executor(mut self, executor: Executor) -> RealmStore {
        self.executor = executor;
        self
    }

    /// Gives realm homes, skel and Shared to `uid` (as uid and gid) instead of the realm user
    /// [`REALM_UID`]: tests that run without root pass their own uid.
    pub fn with_owner(mut self, uid: u32) -> RealmStore {
        self.owner = uid;
        self
    }

    /// The uid (and gid) that owns realm homes, skel and Shared: [`REALM_UID`] unless set
    /// with [`with_owner`](Self::with_owner).
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Gives `path` itself (not a symlink's target) to the [`owner`](Self::owner).
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        chown(path, self.owner)
    }

    /// Who runs realms' nspawn, decided once when the store was opened.
    pub fn executor(&self) -> Executor {
        self.executor
    }

    /// True when the store has been created.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Creates whatever is missing of the store's layout (`/storage/realms`, the `/realms`
    /// symlink, `/run/realms`, the config template, skel, Shared, the image store); says so
    /// when the store itself is new. Returns true when it was.
    pub fn init(&self) -> Result<bool> {
        let created = !self.exists();
        // Realm roots hold their images' setuid binaries: only root may reach them.
        realms_sys::perms::create_private_dir(&self.dir)?;
        realms_sys::failpoint::hit("realm-store-init-dir");
        let link = self.root.join("realms");
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("storage/realms", &link)
                .ctx("creating the symlink", &link)?;
        }
        mkdir(&self.run)?;
        let template = self.dir.join("config");
        if !template.exists() {
            atomic::write_file(&template, CONFIG_TEMPLATE.as_bytes(), 0o644)?;
        }
        for sub in ["skel", "Shared"] {
            let path = self.dir.join(sub);
            if !path.exists() {
                // Given to the owner under a temporary name, then renamed: a kill in between
                // must not leave a `skel` of root's that no later init would hand over.
                let staging = self.dir.join(format!(".{sub}.new"));
                let _ = fs::remove_dir(&staging);
                fs::create_dir(&staging).ctx("creating the directory", &staging)?;
                self.chown(&staging)?;
                realms_sys::failpoint::hit("realm-store-init-staged");
                fs::rename(&staging, &path).ctx("creating the directory", &path)?;
            }
        }
        let images_created = self.images.init()?;
        if created {
            self.notes.report(Event::note(format!(
                "Created the realm store at {} (and the image store at {})",
                self.dir.display(),
                self.images.dir().display()
            )));
        } else if images_created {
            self.notes.report(Event::note(format!(
                "Created the image store at {}",
                self.images.dir().display()
            )));
        }
        Ok(created)
    }

    /// The `--root` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `/realms` (the real directory, `/storage/realms`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/run/realms`: pid files, logs, leases, the current symlink.
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// The image store under the same root.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// `/realms/snapshots/REALM`: the snapshots of realm `realm`.
    pub fn snapshot_dir(&self, realm: &str) -> PathBuf {
        self.dir.join("snapshots").join(realm)
    }

    /// `/realms/realm-NAME`.
    pub fn realm_dir(&self, name: &str) -> PathBuf {
        self.dir.join(format!("realm-{name}"))
    }

    /// Fails unless realm `name` exists.
    pub fn check_exists(&self, name: &str) -> Result<()> {
        validate_name("realm", name)?;
        if self.realm_dir(name).is_dir() {
            Ok(())
        } else {
            Err(Error::NoSuchRealm(name.to_string()))
        }
    }

    /// The names of all realms, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(realms_sys::Error::io("reading the realm store", &self.dir, e).into());
            }
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("realm-"))
                    .map(str::to_string)
            })
            .filter(|n| validate_name("realm", n).is_ok() && self.realm_dir(n).is_dir())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The config file of a realm.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.realm_dir(name).join("config")
    }

    /// The parsed config of a realm (defaults for what its file doesn't say).
    pub fn config(&self, name: &str) -> Result<RealmConfig> {
        self.check_exists(name)?;
        RealmConfig::load(&self.config_path(name))
    }

    /// How the realm's root is made.
    pub fn root_kind(&self, name: &str) -> RootKind {
        if self.realm_dir(name).join("overlay").is_dir() {
            RootKind::Overlay
        } else {
            RootKind::Snapshot
        }
    }

    /// The image tree an overlay realm sits on (where its `lower` symlink points, in the root).
    pub fn overlay_lower(&self, name: &str) -> Result<PathBuf> {
        let link = self.realm_dir(name).join("lower");
        let target = fs::read_link(&link).ctx("reading the symlink", &link)?;
        Ok(self.root.join(target.strip_prefix("/").unwrap_or(&target)))
    }

    /// The default realm (`/realms/default.realm -> realm-NAME`).
    pub fn default_realm(&self) -> Option<String> {
        link_realm(&self.dir.join("default.realm"))
    }

    /// Points `/realms/default.realm` at realm `name` atomically; returns the previous default.
    pub fn set_default(&self, name: &str) -> Result<Option<String>> {
        self.check_exists(name)?;
        let old = self.default_realm();
        atomic::replace_symlink(format!("realm-{name}"), self.dir.join("default.realm"))?;
        Ok(old)
    }

    /// The current realm (`/run/realms/current.realm -> /realms/realm-NAME`).
    pub fn current_realm(&self) -> Option<String> {
        link_realm(&self.run.join("current.realm"))
    }

    /// Points `/run/realms/current.realm` at realm `name` atomically.
    pub fn set_current(&self, name: &str) -> Result<()> {
        atomic::replace_symlink(
            format!("/realms/realm-{name}"),
            self.run.join("current.realm"),
        )?;
        Ok(())
    }

    /// Removes the current symlink if it points at `name`.
    pub fn clear_current(&self, name: &str) -> Result<()> {
        if self.current_realm().as_deref() == Some(name) {
            let link = self.run.join("current.realm");
            fs::remove_file(&link).ctx("removing", &link)?;
        }
        Ok(())
    }

    /// Removes what interrupted creations and removals left in the store.
    pub(crate) fn cleanup_leftovers(&self) -> Result<()> {
        // Temporary files of atomic writes that a killed command left (configs, symlinks,
        // intent files), in the store and in each realm directory; in the run directory only
        // those of files written under the lock (the current-realm link, a start's pid file,
        // intent and label) and the leader record (also cached by readers without the lock,
        // whose write is best-effort): other writers there take no lock.
        remove_temp_files(&self.dir, |_| true);
        for name in self.names()? {
            remove_temp_files(&self.realm_dir(&name), |_| true);
        }
        remove_temp_files(&self.run, |n| {
            n.starts_with(".#current.realm.")
                || (n.starts_with(".#realm-")
                    && [".pid.", ".starting.", ".label.", ".leader."]
                        .iter()
                        .any(|kind| n.contains(kind)))
        });
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = match name.strip_prefix(".staging-realm-") {
                Some(rest) => rest
                    .rsplit('-')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|pid| {
                        pid != std::process::id() && !realms_sys::proc::pid_alive(pid)
                    }),
                None => name.starts_with(".removing-realm-"),
            };
            if stale {
                tracing::info!("removing the leftover {}", entry.path().display());
                delete_realm_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Which realms sit on image `image` as overlays (they depend on it), and which are
    /// independent btrfs snapshots of it.
    pub fn image_users(&self, image: &str) -> Result<(Vec<String>, Vec<String>)> {
        let mut overlays = Vec::new();
        let mut snapshots = Vec::new();
        let image_path = self.images.path(image);
        for name in self.names()? {
            let uses = match self.root_kind(&name) {
                RootKind::Overlay => {
                    self.overlay_lower(&name).ok().as_deref() == Some(image_path.as_path())
                }
                RootKind::Snapshot => self
                    .config(&name)
                    .map(|c| c.appimg() == image)
                    .unwrap_or(false),
            };
            if uses {
                match self.root_kind(&name) {
                    RootKind::Overlay => overlays.push(name),
                    RootKind::Snapshot => snapshots.push(name),
                }
            }
        }
        Ok((overlays, snapshots))
    }

    /// Decides how a new realm on `image` gets its root: a snapshot where btrfs allows it (the
    /// snapshot itself may still fail across filesystems; the caller then falls back).
    pub(crate) fn root_kind_for(&self, image: &realms_image::ImageInfo) -> RootKind {
        if image.kind == ImageKind::Tree
            && image.subvolume
            && btrfs::is_btrfs(&self.dir).unwrap_or(false)
        {
            RootKind::Snapshot
        } else {
            RootKind::Overlay
        }
    }
}

fn link_realm(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    let name = target
        .file_name()?
        .to_str()?
        .strip_prefix("realm-")?
        .to_string();
    validate_name("realm", &name).ok().map(|_| name)
}

/// Removes the temporary files of atomic writes (`.#NAME.SUFFIX`) in `dir` that `keep_if`
/// accepts (by file name); call with the store lock held.
pub(crate) fn remove_temp_files(dir: &Path, which: impl Fn(&str) -> bool) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
        if is_file && atomic::is_temp_name(&name) && which(&name.to_string_lossy()) {
            tracing::info!("removing the leftover {}", entry.path().display());
            let _ = fs::remove_file(entry.path());
        }
    }
}

pub(crate) fn mkdir(path: &Path) -> Result<()> {
    Ok(fs::create_dir_all(path).ctx("creating the directory", path)?)
}

pub(crate) fn chown(path: &Path, uid: u32) -> Result<()> {
    Ok(std::os::unix::fs::lchown(path, Some(uid), Some(uid)).ctx("changing the owner of", path)?)
}

/// Deletes a realm directory: its rootfs subvolume (with nested ones) and everything else,
/// never crossing into a mounted filesystem.
pub(crate) fn delete_realm_tree(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    if btrfs::is_subvolume(&rootfs).unwrap_or(false) {
        btrfs::delete_subvolume_recursive(&rootfs)?;
    }
    if dir.exists() {
        realms_sys::fs::remove_dir_all_one_fs(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_commands_never_create_the_store() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        assert!(store.names().unwrap().is_empty());
        assert!(store.images().list().unwrap().is_empty());
        assert_eq!(store.default_realm(), None);
        assert!(store.config("a").is_err());
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            0,
            "opening wrote"
        );
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let typo = root.path().join("tpyo");
        let err = RealmStore::open(&typo).unwrap_err().to_string();
        assert!(err.contains("tpyo") && err.contains("--root"), "{err}");
        assert!(!typo.exists());
    }
}
