//! `realms clone SRC DST` and `realms rename OLD NEW`. A clone is staged and renamed into place
//! (a btrfs snapshot of the root, or a copy of the overlay's changes on the same image version;
//! config and home copied). A rename moves the realm directory, its snapshots, the default and
//! current links, its address leases and its log; an intent file written first lets the next
//! command finish a rename that was interrupted half-way.

use realms_sys::IoContext;
use std::fs;

use realms_image::validate_name;
use realms_sys::atomic;

use crate::copy::{Parts, Staging};
use crate::snapshot::refuse_running;
use crate::store::{RealmStore, RootKind};
use crate::{Error, Result, launch};

/// `realms clone SRC DST`; returns how the root was made.
pub fn clone(store: &RealmStore, src: &str, dst: &str) -> Result<RootKind> {
    store.check_exists(src)?;
    validate_name("realm", dst)?;
    let _lock = store.lock()?;
    if store.realm_dir(dst).exists() {
        return Err(Error::RealmExists(dst.to_string()));
    }
    refuse_running(store, src, "copying its home and root")?;
    let staging = Staging::new(
        store
            .dir()
            .join(format!(".staging-realm-{dst}-{}", std::process::id())),
    );
    Parts::of_realm(store, src)?.assemble_realm(store, staging.path())?;
    realms_sys::failpoint::hit("realm-clone-assembled");
    atomic::rename_noreplace(staging.path(), store.realm_dir(dst))?;
    staging.committed();
    Ok(store.root_kind(dst))
}

/// `realms rename OLD NEW`: refused while the realm runs (its directory, machine name and veth
/// are named after it).
pub fn rename(store: &RealmStore, old: &str, new: &str) -> Result<()> {
    store.check_exists(old)?;
    validate_name("realm", new)?;
    let _lock = store.lock()?;
    if store.realm_dir(new).exists() {
        return Err(Error::RealmExists(new.to_string()));
    }
    let orphans = crate::snapshot::dir(store, new);
    if orphans.exists() {
        return Err(Error::OrphanSnapshots {
            name: new.to_string(),
            dir: orphans,
        });
    }
    if launch::is_running(store, old) {
        return Err(Error::MustBeStopped {
            name: old.to_string(),
            because: ", and its directory, machine name and network interface are named after it"
                .into(),
        });
    }
    // Cookies of a realm that stopped on its own would stay behind under the old name.
    for warning in crate::xauth::revoke(store, old) {
        tracing::warn!("{warning}");
    }
    let intent = store.dir().join(format!(
        "{}{}",
        crate::recover::INTENT_PREFIX,
        std::process::id()
    ));
    atomic::write_file(&intent, format!("{old} {new}\n").as_bytes(), 0o644)?;
    crate::recover::finish_rename(store, old, new)?;
    fs::remove_file(&intent).ctx("removing", &intent)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_rename_is_finished_and_every_step_runs_once() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        let dir = store.dir().to_path_buf();
        fs::create_dir_all(store.realm_dir("old").join("home")).unwrap();
        fs::create_dir_all(crate::snapshot::dir(&store, "old").join("snap0")).unwrap();
        fs::create_dir_all(store.run_dir().join("leases/zone")).unwrap();
        fs::write(store.run_dir().join("leases/zone/7"), "old").unwrap();
        fs::write(store.run_dir().join("leases/zone/8"), "other").unwrap();
        fs::write(launch::log_file(&store, "old"), "log").unwrap();
        std::os::unix::fs::symlink("realm-old", dir.join("default.realm")).unwrap();
        store.set_current("old").unwrap();
        fs::write(dir.join(".renaming-1"), "old new\n").unwrap();

        crate::recover::finish_renames(&store).unwrap();
        assert!(store.realm_dir("new").join("home").is_dir());
        assert!(!store.realm_dir("old").exists());
        assert!(crate::snapshot::dir(&store, "new").join("snap0").is_dir());
        assert_eq!(store.default_realm().as_deref(), Some("new"));
        assert_eq!(store.current_realm().as_deref(), Some("new"));
        let lease = |h: &str| fs::read_to_string(store.run_dir().join("leases/zone").join(h));
        assert_eq!(lease("7").unwrap(), "new");
        assert_eq!(lease("8").unwrap(), "other");
        assert_eq!(
            fs::read_to_string(launch::log_file(&store, "new")).unwrap(),
            "log"
        );
        assert!(!dir.join(".renaming-1").exists());

        // Running the steps again changes nothing.
        crate::recover::finish_rename(&store, "old", "new").unwrap();
        assert!(store.realm_dir("new").join("home").is_dir());
        assert_eq!(store.default_realm().as_deref(), Some("new"));
    }
}
