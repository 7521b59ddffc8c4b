//! Recovery from interrupted commands, run under the store lock by every command that changes
//! something: staging directories of creations, clones and snapshots whose process died,
//! half-done rebases, and renames that stopped half-way (finished from their intent file).
//! It sits below the operations that leave these leftovers and knows only their names on disk.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_image::validate_name;
use realms_sys::lock::StoreLock;
use realms_sys::{atomic, btrfs};

use crate::store::{RealmStore, delete_realm_tree};
use crate::{Result, launch};

/// The prefix of a rename's intent file in the store (`.renaming-PID`, holding `OLD NEW`).
pub(crate) const INTENT_PREFIX: &str = ".renaming-";

impl RealmStore {
    /// Takes the store lock (every mutating command does) and removes leftovers of interrupted
    /// commands.
    pub fn lock(&self) -> Result<StoreLock> {
        self.init()?;
        let lock = self.acquire(&self.dir().join(".lock"))?;
        // First: finishing a journaled image change puts back the `lower` links of realms.
        self.images().cleanup_leftovers()?;
        realms_image::keys::finish_interrupted(self.root());
        finish_removals(self)?;
        self.cleanup_leftovers()?;
        cleanup_snapshots(self)?;
        cleanup_rebases(self)?;
        finish_renames(self)?;
        launch::roll_back_interrupted(self);
        launch::forget_dead(self);
        Ok(lock)
    }

    /// `realms init`: creates what is missing of the stores and, under the lock, removes what
    /// interrupted commands left (an interrupted `init` too). True when the store was new.
    pub fn init_and_recover(&self) -> Result<bool> {
        let created = !self.exists();
        drop(self.lock()?);
        Ok(created)
    }
}

/// The rest of `realms remove NAME` once the realm directory is renamed to `aside`: its root,
/// its snapshots, the kept image version only it used, the current-realm link, runtime files.
pub(crate) fn finish_removal(store: &RealmStore, name: &str, aside: &Path) -> Result<()> {
    let lower = crate::pins::target(store, &aside.join("lower"));
    store.clear_current(name)?;
    crate::snapshot::remove_all(store, name)?;
    realms_sys::failpoint::hit("realm-remove-snapshots");
    if let Some(lower) = lower {
        crate::rebase::prune_kept(store, &lower)?;
    }
    launch::forget(store, name);
    // Last: while the set-aside directory is there, the next command finishes all of this.
    delete_realm_tree(aside)?;
    realms_sys::failpoint::hit("realm-remove-deleted");
    Ok(())
}

/// Finishes removals of realms whose command was killed after the realm directory was
/// renamed aside (`.removing-realm-NAME-PID`).
fn finish_removals(store: &RealmStore) -> Result<()> {
    for entry in fs::read_dir(store.dir()).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some((name, pid)) = file
            .strip_prefix(".removing-realm-")
            .and_then(|rest| rest.rsplit_once('-'))
        else {
            continue;
        };
        let dead = pid
            .parse::<u32>()
            .is_ok_and(|p| p != std::process::id() && !realms_sys::proc::pid_alive(p));
        if dead && validate_name("realm", name).is_ok() && !store.realm_dir(name).exists() {
            tracing::info!("finishing the interrupted removal of realm '{name}'");
            finish_removal(store, name, &entry.path())?;
        }
    }
    Ok(())
}

/// Removes what interrupted snapshot commands left (staging and half-removed snapshots).
pub(crate) fn cleanup_snapshots(store: &RealmStore) -> Result<()> {
    let top = store.dir().join("snapshots");
    let mut dirs = vec![top.clone()];
    dirs.extend(
        fs::read_dir(&top)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    );
    for d in dirs {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with(".removing-")
                || name.strip_prefix(".staging-").is_some_and(|rest| {
                    rest.rsplit('-')
                        .next()
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|pid| {
                            pid != std::process::id() && !realms_sys::proc::pid_alive(pid)
                        })
                });
            if stale {
                tracing::info!("removing the leftover {}", entry.path().display());
                if d == top {
                    for inner in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                        delete_realm_tree(&inner.path())?;
                    }
                }
                delete_realm_tree(&entry.path())?;
            }
        }
        // An empty directory of a realm's snapshots (made by a snapshot command killed
        // before its snapshot was in place, or left by the last removal) is no state: it goes,
        // so that it does not block a later realm of that name.
        if d != top {
            let _ = fs::remove_dir(&d);
        }
    }
    let _ = fs::remove_dir(&top);
    Ok(())
}

/// Removes what interrupted rebases left in realm directories (a new root not yet swapped in,
/// or an old one not yet deleted). Call with the store lock held.
pub(crate) fn cleanup_rebases(store: &RealmStore) -> Result<()> {
    for name in store.names()? {
        let dir = store.realm_dir(&name);
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let pid = [".rootfs-new-", ".overlay-new-"]
                .iter()
                .find_map(|p| file.strip_prefix(p))
                .and_then(|rest| rest.parse::<u32>().ok());
            if pid.is_some_and(|p| p != std::process::id() && !realms_sys::proc::pid_alive(p)) {
                tracing::info!("removing the leftover {}", entry.path().display());
                if btrfs::is_subvolume(entry.path()).unwrap_or(false) {
                    btrfs::delete_subvolume_recursive(entry.path())?;
                } else {
                    delete_realm_tree(&entry.path())?;
                }
            }
        }
    }
    Ok(())
}

/// Every step of a rename, each one done only if it is not done yet.
pub(crate) fn finish_rename(store: &RealmStore, old: &str, new: &str) -> Result<()> {
    move_if_there(&store.realm_dir(old), &store.realm_dir(new))?;
    realms_sys::failpoint::hit("realm-rename-moved");
    move_if_there(&store.snapshot_dir(old), &store.snapshot_dir(new))?;
    realms_sys::failpoint::hit("realm-rename-snapshots-moved");
    if store.default_realm().as_deref() == Some(old) {
        atomic::replace_symlink(format!("realm-{new}"), store.dir().join("default.realm"))?;
    }
    if store.current_realm().as_deref() == Some(old) {
        store.set_current(new)?;
    }
    rewrite_leases(store, old, new)?;
    move_if_there(&launch::log_file(store, old), &launch::log_file(store, new))?;
    // Runtime leftovers of the old name (pid files, a unit file) go.
    launch::forget(store, old);
    Ok(())
}

fn move_if_there(from: &Path, to: &Path) -> Result<()> {
    if fs::symlink_metadata(from).is_ok() && fs::symlink_metadata(to).is_err() {
        atomic::rename_noreplace(from, to)?;
    }
    Ok(())
}

/// Address leases (`/run/realms/leases/ZONE/HOST`, holding the realm's name) follow the realm.
fn rewrite_leases(store: &RealmStore, old: &str, new: &str) -> Result<()> {
    let leases = store.run_dir().join("leases");
    for zone in fs::read_dir(&leases).into_iter().flatten().flatten() {
        for lease in fs::read_dir(zone.path()).into_iter().flatten().flatten() {
            if fs::read_to_string(lease.path()).is_ok_and(|o| o.trim() == old) {
                atomic::write_file(lease.path(), new.as_bytes(), 0o644)?;
            }
        }
    }
    Ok(())
}

/// Finishes renames that were interrupted (called with the store lock held).
pub(crate) fn finish_renames(store: &RealmStore) -> Result<()> {
    let intents: Vec<PathBuf> = fs::read_dir(store.dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(INTENT_PREFIX))
        .map(|e| e.path())
        .collect();
    for intent in intents {
        let text = fs::read_to_string(&intent).unwrap_or_default();
        if let Some((old, new)) = text.trim().split_once(' ')
            && validate_name("realm", old).is_ok()
            && validate_name("realm", new).is_ok()
        {
            tracing::info!("finishing the interrupted rename of realm '{old}' to '{new}'");
            finish_rename(store, old, new)?;
        }
        fs::remove_file(&intent).ctx("removing", &intent)?;
    }
    Ok(())
}
