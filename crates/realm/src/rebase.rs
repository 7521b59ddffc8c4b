//! `realms rebase NAME [--appimg IMG]`: moves a realm to the current version of its image (or to
//! another image), keeping its home and config and replacing its root (Incus `rebuild`,
//! distrobox `upgrade`); and which version of its image a realm is on, for `list` and `status`.

use std::path::Path;

use realms_image::record::Record;
use realms_image::{ImageInfo, ImageKind};
use realms_sys::{atomic, btrfs};
use serde::Serialize;

use crate::store::{RealmStore, RootKind, delete_realm_tree, mkdir};
use crate::{Error, Result, launch};
use realms_sys::event::{Event, Report};

/// Which version of its image a realm is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OnImage {
    /// The version the realm's root was made from (`None`: not recorded).
    pub version: Option<String>,
    /// The image's current version.
    pub current_version: Option<String>,
    /// True when the realm is not on the current version (`realms rebase NAME` moves it).
    pub behind: bool,
}

/// Which version of image `image` realm `name` is on.
pub fn on_image(store: &RealmStore, name: &str, image: &str) -> OnImage {
    let current = store.images().path(image);
    if !current.is_dir() {
        return OnImage::default();
    }
    let current_version = Record::read(&current).version;
    match store.root_kind(name) {
        RootKind::Overlay => {
            let lower = store.overlay_lower(name).ok();
            let version = lower.as_deref().and_then(|l| Record::read(l).version);
            OnImage {
                version,
                current_version,
                behind: lower.is_some_and(|l| l != current),
            }
        }
        RootKind::Snapshot => {
            let rootfs = store.realm_dir(name).join("rootfs");
            let version = realms_image::record::read_xattr(&rootfs).and_then(|r| r.version);
            OnImage {
                behind: version != current_version,
                version,
                current_version,
            }
        }
    }
}

/// What a rebase did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Rebased {
    /// The realm.
    pub realm: String,
    /// The image it is on now.
    pub appimg: String,
    /// The image version it was on.
    pub from_version: Option<String>,
    /// The image version it is on now.
    pub version: Option<String>,
}

/// `realms rebase NAME [--appimg IMG]`: a fresh root from the current version of the realm's
/// image (or of `appimg`, which then becomes its image); home and config are kept. Refused
/// while the realm runs.
pub fn rebase(
    store: &RealmStore,
    name: &str,
    appimg: Option<&str>,
    say: &dyn Report,
) -> Result<Rebased> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    if launch::is_running(store, name) {
        return Err(Error::MustBeStopped {
            name: name.to_string(),
            because: " and rebase replaces its root".into(),
        });
    }
    let config = store.config(name)?;
    let image = appimg.unwrap_or(config.appimg()).to_string();
    let info = store.images().get(&image)?;
    if info.kind == ImageKind::Sealed {
        realms_image::sealed::check_signature(store.root(), &info)?;
    }
    let before = on_image(store, name, config.appimg());
    let old_lower = store.overlay_lower(name).ok();
    let kind = store.root_kind(name);
    if kind != store.root_kind_for(&info) {
        return Err(Error::RootKindMismatch {
            name: name.to_string(),
            image,
            has: describe(&kind),
            needs: describe(&store.root_kind_for(&info)),
        });
    }
    if image != config.appimg() {
        // The config first: a crash before the root is replaced leaves a realm that `list`
        // shows as behind, and another rebase finishes the move.
        let path = store.config_path(name);
        let text = crate::config::read_text(&path)?;
        let text = crate::config::set_line(&text, "appimg", &toml::Value::String(image.clone()));
        atomic::write_file(&path, text.as_bytes(), 0o644)?;
    }
    match kind {
        RootKind::Snapshot => new_snapshot_root(store, name, &info)?,
        RootKind::Overlay => new_overlay_root(store, name, &image, &info)?,
    }
    if let Some(old) = old_lower {
        prune_kept(store, &old)?;
    }
    let after = on_image(store, name, &image);
    say.report(Event::progress(format!(
        "Realm '{name}' rebased on {image} appimg{}; its home and config are kept",
        after
            .current_version
            .as_deref()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default()
    )));
    Ok(Rebased {
        realm: name.to_string(),
        appimg: image,
        from_version: before.version,
        version: after.current_version,
    })
}

fn describe(kind: &RootKind) -> &'static str {
    match kind {
        RootKind::Snapshot => "a btrfs snapshot",
        RootKind::Overlay => "an overlay",
    }
}

/// Snapshots the image beside the realm's root and swaps the two in one step.
fn new_snapshot_root(store: &RealmStore, name: &str, info: &ImageInfo) -> Result<()> {
    let dir = store.realm_dir(name);
    let staging = dir.join(format!(".rootfs-new-{}", std::process::id()));
    btrfs::snapshot(&info.path, &staging, false)?;
    if let Err(e) = atomic::exchange(&staging, dir.join("rootfs")) {
        let _ = btrfs::delete_subvolume_recursive(&staging);
        return Err(e.into());
    }
    btrfs::delete_subvolume_recursive(&staging)?;
    Ok(())
}

/// An empty upper layer swapped in for the old one, then the `lower` link moved to the image.
fn new_overlay_root(store: &RealmStore, name: &str, image: &str, info: &ImageInfo) -> Result<()> {
    let dir = store.realm_dir(name);
    let staging = dir.join(format!(".overlay-new-{}", std::process::id()));
    for d in ["upper", "work"] {
        mkdir(&staging.join(d))?;
    }
    if let Err(e) = atomic::exchange(&staging, dir.join("overlay")) {
        let _ = realms_sys::fs::remove_dir_all_one_fs(&staging);
        return Err(e.into());
    }
    delete_realm_tree(&staging)?;
    if info.kind != ImageKind::Tree {
        mkdir(&dir.join("image"))?;
    }
    let lower = Path::new("/storage/appimg").join(format!("{image}.appimg"));
    atomic::replace_symlink(&lower, dir.join("lower"))?;
    Ok(())
}

/// Deletes a kept older version (`IMG.appimg.old-N`) once no overlay realm is on it.
pub(crate) fn prune_kept(store: &RealmStore, version: &Path) -> Result<()> {
    let is_kept = version
        .file_name()
        .is_some_and(|f| f.to_string_lossy().contains(".appimg.old-"));
    if !is_kept || !version.exists() {
        return Ok(());
    }
    let used = !crate::pins::owners_of(&crate::pins::overlay_pins(store)?, version).is_empty();
    if !used {
        realms_image::delete_tree(version)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn leftovers_of_an_interrupted_rebase_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        let dir = store.realm_dir("r");
        // A pid that cannot be alive (above the kernel's limit), and our own (in progress).
        let dead = dir.join(".overlay-new-4194305/upper");
        let ours = dir.join(format!(".rootfs-new-{}", std::process::id()));
        fs::create_dir_all(&dead).unwrap();
        fs::create_dir_all(&ours).unwrap();
        fs::create_dir_all(dir.join("overlay/upper")).unwrap();
        // Taking the store lock cleans up what interrupted commands left.
        drop(store.lock().unwrap());
        assert!(!dir.join(".overlay-new-4194305").exists());
        assert!(ours.exists() && dir.join("overlay/upper").exists());
    }
}
