//! Snapshots of a realm: `realms snapshot NAME [SNAP]`, `snapshot list|restore|remove`. A
//! snapshot holds the realm's config, a copy of its home and its root: a read-only btrfs snapshot
//! on btrfs, a copy of the overlay's upper layer (and the image version it sits on) otherwise.
//! They live at `/realms/snapshots/NAME/SNAP`, are staged and renamed into place, and are taken
//! and restored only while the realm is stopped.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_image::validate_name;
use realms_sys::atomic;
use serde::{Deserialize, Serialize};

use crate::copy::{Parts, Staging};
use crate::store::{RealmStore, RootKind, delete_realm_tree};
use crate::{Error, Result, launch};

/// One snapshot, as `realms snapshot list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// The realm.
    pub realm: String,
    /// The snapshot.
    pub name: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// How the realm's root was made.
    pub root: RootKind,
    /// The image the realm was on.
    pub appimg: String,
    /// The version of the image the realm was on.
    pub image_version: Option<String>,
}

const INFO: &str = "snapshot.toml";

/// `/realms/snapshots/NAME`.
pub fn dir(store: &RealmStore, realm: &str) -> PathBuf {
    store.snapshot_dir(realm)
}

/// Refuses a running realm: its home (and an overlay's changes) are copied, which is only
/// consistent while nothing writes to them.
pub(crate) fn refuse_running(store: &RealmStore, name: &str, what: &str) -> Result<()> {
    if launch::is_running(store, name) {
        return Err(Error::MustBeStopped {
            name: name.to_string(),
            because: format!(", and {what} is only consistent while it is stopped"),
        });
    }
    Ok(())
}

/// `realms snapshot NAME [SNAP]`: takes a snapshot (named `snapN` when no name is given).
pub fn create(store: &RealmStore, realm: &str, snap: Option<&str>) -> Result<Snapshot> {
    store.check_exists(realm)?;
    let _lock = store.lock()?;
    refuse_running(store, realm, "copying its home and root")?;
    let base = dir(store, realm);
    let snap = match snap {
        Some(s) => {
            validate_name("snapshot", s)?;
            s.to_string()
        }
        None => (0..)
            .map(|n| format!("snap{n}"))
            .find(|s| !base.join(s).exists())
            .expect("an unused snapshot name"),
    };
    let dest = base.join(&snap);
    if dest.exists() {
        return Err(Error::SnapshotExists {
            realm: realm.to_string(),
            snapshot: snap.to_string(),
        });
    }
    crate::store::mkdir(&base)?;
    let config = store.config(realm)?;
    let on = crate::rebase::on_image(store, realm, config.appimg());
    let info = Snapshot {
        realm: realm.to_string(),
        name: snap.clone(),
        created: realms_image::record::now(),
        root: store.root_kind(realm),
        appimg: config.appimg().to_string(),
        image_version: on.version,
    };
    let staging = Staging::new(base.join(format!(".staging-{snap}-{}", std::process::id())));
    Parts::of_realm(store, realm)?.write_snapshot(staging.path(), store.owner())?;
    realms_sys::failpoint::hit("realm-snapshot-written");
    let text = toml::to_string(&info).map_err(|source| Error::Serialize {
        path: dest.join(INFO),
        source,
    })?;
    atomic::write_file(staging.path().join(INFO), text.as_bytes(), 0o644)?;
    atomic::rename_noreplace(staging.path(), &dest)?;
    staging.committed();
    Ok(info)
}

/// `realms snapshot list NAME`, oldest first.
pub fn list(store: &RealmStore, realm: &str) -> Result<Vec<Snapshot>> {
    store.check_exists(realm)?;
    let base = dir(store, realm);
    let mut out = Vec::new();
    for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if validate_name("snapshot", &name).is_err() {
            continue;
        }
        // Taken in the same second, the file times (in nanoseconds) still tell the order.
        let taken = fs::metadata(entry.path().join(INFO))
            .and_then(|m| m.modified())
            .ok();
        out.push((taken, read_info(&entry.path(), realm, &name)?));
    }
    out.sort_by(|(ta, a), (tb, b)| (a.created, ta, &a.name).cmp(&(b.created, tb, &b.name)));
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

fn read_info(path: &Path, realm: &str, name: &str) -> Result<Snapshot> {
    let file = path.join(INFO);
    let text = fs::read_to_string(&file).ctx("reading", &file)?;
    let mut info: Snapshot =
        toml::from_str(&text).map_err(|e| crate::error::bad_file(&file, &text, &e))?;
    // The realm may have been renamed since.
    info.realm = realm.to_string();
    info.name = name.to_string();
    Ok(info)
}

fn existing(store: &RealmStore, realm: &str, snap: &str) -> Result<PathBuf> {
    store.check_exists(realm)?;
    validate_name("snapshot", snap)?;
    let path = dir(store, realm).join(snap);
    if !path.is_dir() {
        return Err(Error::NoSuchSnapshot {
            realm: realm.to_string(),
            snapshot: snap.to_string(),
        });
    }
    Ok(path)
}

/// `realms snapshot restore NAME SNAP`: the realm's config, home and root become the
/// snapshot's, in one rename of the whole realm directory. The snapshot is kept.
pub fn restore(store: &RealmStore, realm: &str, snap: &str) -> Result<Snapshot> {
    let path = existing(store, realm, snap)?;
    let _lock = store.lock()?;
    refuse_running(store, realm, "replacing its home and root")?;
    let info = read_info(&path, realm, snap)?;
    let staging = Staging::new(
        store
            .dir()
            .join(format!(".staging-realm-{realm}-{}", std::process::id())),
    );
    Parts::of_snapshot(&path)?.assemble_realm(store, staging.path())?;
    realms_sys::failpoint::hit("realm-restore-assembled");
    let live = store.realm_dir(realm);
    let old_lower = crate::pins::target(store, &live.join("lower"));
    atomic::exchange(staging.path(), &live)?;
    // The staging name now holds the old realm; it goes the way removed realms go.
    let aside = store
        .dir()
        .join(format!(".removing-realm-{realm}-{}", std::process::id()));
    atomic::rename(staging.path(), &aside)?;
    staging.committed();
    delete_realm_tree(&aside)?;
    prune(store, old_lower)?;
    Ok(info)
}

/// `realms snapshot remove NAME SNAP`.
pub fn remove(store: &RealmStore, realm: &str, snap: &str) -> Result<()> {
    let path = existing(store, realm, snap)?;
    let _lock = store.lock()?;
    let aside = dir(store, realm).join(format!(".removing-{snap}-{}", std::process::id()));
    let lower = crate::pins::target(store, &path.join("lower"));
    atomic::rename(&path, &aside)?;
    delete_realm_tree(&aside)?;
    prune(store, lower)
}

/// Deletes a kept image version that nothing uses any more.
fn prune(store: &RealmStore, lower: Option<PathBuf>) -> Result<()> {
    match lower {
        Some(l) => crate::rebase::prune_kept(store, &l),
        None => Ok(()),
    }
}

/// Deletes every snapshot of a realm (when the realm is removed).
pub(crate) fn remove_all(store: &RealmStore, realm: &str) -> Result<()> {
    let base = dir(store, realm);
    if !base.exists() {
        return Ok(());
    }
    let aside = store
        .dir()
        .join("snapshots")
        .join(format!(".removing-{realm}-{}", std::process::id()));
    atomic::rename(&base, &aside)?;
    let mut lowers = Vec::new();
    for entry in fs::read_dir(&aside).into_iter().flatten().flatten() {
        lowers.push(crate::pins::target(store, &entry.path().join("lower")));
        delete_realm_tree(&entry.path())?;
    }
    delete_realm_tree(&aside)?;
    for lower in lowers {
        prune(store, lower)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_interrupted_snapshot_commands_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        let base = dir(&store, "r");
        let staged = base.join(".staging-s0-4194305/home");
        let removing = store.dir().join("snapshots/.removing-q-1/snap0/home");
        let kept = base.join("s1/home");
        for d in [&staged, &removing, &kept] {
            fs::create_dir_all(d).unwrap();
        }
        // Taking the store lock cleans up what interrupted commands left.
        drop(store.lock().unwrap());
        assert!(!base.join(".staging-s0-4194305").exists());
        assert!(!store.dir().join("snapshots/.removing-q-1").exists());
        assert!(kept.exists());
    }
}
