//! Who keeps a version of an image alive: overlay realms and the snapshots of overlay realms
//! each hold a `lower` symlink to the image version they sit on (`IMG.appimg`, `.prev` or
//! `.old-N`). Updates, rollbacks and rebases move and delete versions only as these allow.

use std::fs;
use std::path::{Path, PathBuf};

use realms_image::validate_name;

use crate::Result;
use crate::store::{RealmStore, RootKind};

/// One `lower` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// `REALM`, or `REALM (snapshot SNAP)`.
    pub owner: String,
    /// The symlink.
    pub link: PathBuf,
    /// The image version it points at, as a path on the host (inside the root).
    pub lower: PathBuf,
}

/// Every `lower` link of overlay realms and their snapshots.
pub fn overlay_pins(store: &RealmStore) -> Result<Vec<Pin>> {
    let mut pins = Vec::new();
    for name in store.names()? {
        if store.root_kind(&name) == RootKind::Overlay {
            push(
                store,
                &mut pins,
                name.clone(),
                store.realm_dir(&name).join("lower"),
            );
        }
    }
    let snapshots = store.dir().join("snapshots");
    for realm in fs::read_dir(&snapshots).into_iter().flatten().flatten() {
        let realm_name = realm.file_name().to_string_lossy().into_owned();
        if validate_name("realm", &realm_name).is_err() {
            continue;
        }
        for snap in fs::read_dir(realm.path()).into_iter().flatten().flatten() {
            let snap_name = snap.file_name().to_string_lossy().into_owned();
            if validate_name("snapshot", &snap_name).is_ok() {
                let owner = format!("{realm_name} (snapshot {snap_name})");
                push(store, &mut pins, owner, snap.path().join("lower"));
            }
        }
    }
    Ok(pins)
}

fn push(store: &RealmStore, pins: &mut Vec<Pin>, owner: String, link: PathBuf) {
    if let Some(lower) = target(store, &link) {
        pins.push(Pin { owner, link, lower });
    }
}

/// Where a `lower` link points, as a path on the host (inside the root).
pub fn target(store: &RealmStore, link: &Path) -> Option<PathBuf> {
    let target = fs::read_link(link).ok()?;
    Some(
        store
            .root()
            .join(target.strip_prefix("/").unwrap_or(&target)),
    )
}

/// The owners of the pins on `version`.
pub fn owners_of(pins: &[Pin], version: &Path) -> Vec<String> {
    pins.iter()
        .filter(|p| p.lower == version)
        .map(|p| p.owner.clone())
        .collect()
}
