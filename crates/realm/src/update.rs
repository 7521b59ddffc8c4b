//! `realms update-appimg` and the image operations that must know about realms: a container
//! on a writable copy of the image; on success the copy atomically replaces the image (the old
//! one kept as `IMG.appimg.prev`), otherwise it is discarded. Realms made before are unaffected:
//! snapshots are independent, and overlay realms are re-pointed at the version they were made on.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use realms_image::ImageStore;
use realms_sys::{atomic, cmd::Cmd};

use crate::store::{RealmStore, RootKind};
use crate::{Error, Result, launch::Executor};

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The command exited 0 and the image was replaced.
    Committed,
    /// The command failed with this exit code; the image is unchanged.
    Discarded(i32),
}

/// Updates image `image` by running `command` (a root shell when empty) in a container on a
/// writable copy of it.
pub fn update_appimg(
    store: &RealmStore,
    image: &str,
    command: &[OsString],
    say: &dyn Fn(&str),
) -> Result<UpdateOutcome> {
    let _lock = store.lock()?;
    let images = store.images();
    let staged = images.stage_copy(image)?;
    let machine = format!("{image}-appimg-update");
    if command.is_empty() {
        say(&format!("[+]: Entering root shell on {image} appimg"));
    } else {
        say(&format!(
            "[+]: Running {} on {image} appimg",
            command_line(command)
        ));
    }
    let mut cmd = Cmd::new("systemd-nspawn");
    cmd.args([
        "--quiet",
        "--resolv-conf=bind-host",
        "--timezone=off",
        "--link-journal=no",
    ])
    .arg(format!("--machine={machine}"))
    .arg("--directory")
    .arg(staged.path());
    if Executor::detect() == Executor::Direct {
        cmd.args(["--register=no", "--keep-unit"]);
    }
    if command.is_empty() {
        cmd.args(["/bin/bash", "-l"]);
    } else {
        cmd.arg("--").args(command);
    }
    let status = cmd.status_inherit()?;
    if !status.success() {
        let code = status.code().unwrap_or(1);
        say(&format!(
            "[+]: The update exited with status {code}; {image} appimg is unchanged"
        ));
        return Ok(UpdateOutcome::Discarded(code));
    }
    let users = overlay_users(store, images, image)?;
    let retired = images.commit_update(staged, image)?;
    repoint(store, &users.current, &images.prev_path(image))?;
    keep_or_delete(store, images, image, retired, &users.prev)?;
    say(&format!(
        "[+]: Updated {image} appimg; the previous version is kept as {image}.appimg.prev"
    ));
    Ok(UpdateOutcome::Committed)
}

/// `realms appimg rollback IMG`: swaps the image and its previous version.
pub fn rollback(store: &RealmStore, image: &str, say: &dyn Fn(&str)) -> Result<()> {
    let _lock = store.lock()?;
    let images = store.images();
    let users = overlay_users(store, images, image)?;
    images.rollback(image)?;
    repoint(store, &users.current, &images.prev_path(image))?;
    repoint(store, &users.prev, &images.path(image))?;
    say(&format!(
        "[+]: Rolled {image} appimg back to its previous version"
    ));
    Ok(())
}

/// `realms appimg remove IMG`: refused while an overlay realm sits on it.
pub fn remove_image(store: &RealmStore, image: &str, say: &dyn Fn(&str)) -> Result<()> {
    let _lock = store.lock()?;
    store.images().get(image)?;
    let (overlays, snapshots) = store.image_users(image)?;
    let kept = kept_versions(store.images(), image);
    let on_old: Vec<String> = store
        .names()?
        .into_iter()
        .filter(|n| store.root_kind(n) == RootKind::Overlay)
        .filter(|n| {
            store
                .overlay_lower(n)
                .is_ok_and(|l| kept.contains(&l) || l == store.images().prev_path(image))
        })
        .collect();
    let blocking: Vec<String> = overlays.into_iter().chain(on_old).collect();
    if !blocking.is_empty() {
        return Err(Error::ImageInUse {
            image: image.to_string(),
            realms: quote_list(&blocking),
        });
    }
    store.images().remove(image)?;
    for old in kept {
        realms_image::delete_tree(&old)?;
    }
    say(&format!("[+]: Removed {image} appimg"));
    if !snapshots.is_empty() {
        say(&format!(
            "[+]: Realm(s) {} were made from it; they are independent btrfs snapshots and keep working",
            quote_list(&snapshots)
        ));
    }
    Ok(())
}

/// Overlay realms on the current and on the previous version of an image.
struct Users {
    current: Vec<String>,
    prev: Vec<String>,
}

fn overlay_users(store: &RealmStore, images: &ImageStore, image: &str) -> Result<Users> {
    let (current_path, prev_path) = (images.path(image), images.prev_path(image));
    let mut users = Users {
        current: Vec::new(),
        prev: Vec::new(),
    };
    for name in store.names()? {
        if store.root_kind(&name) != RootKind::Overlay {
            continue;
        }
        match store.overlay_lower(&name) {
            Ok(l) if l == current_path => users.current.push(name),
            Ok(l) if l == prev_path => users.prev.push(name),
            _ => {}
        }
    }
    Ok(users)
}

/// Points the `lower` symlink of each realm at `tree` (a path on the host, inside the root).
fn repoint(store: &RealmStore, realms: &[String], tree: &Path) -> Result<()> {
    let inside = Path::new("/").join(tree.strip_prefix(store.root()).unwrap_or(tree));
    for name in realms {
        atomic::replace_symlink(&inside, store.realm_dir(name).join("lower"))?;
    }
    Ok(())
}

/// The former `.prev` is kept (as `IMG.appimg.old-N`) while overlay realms still use it.
fn keep_or_delete(
    store: &RealmStore,
    images: &ImageStore,
    image: &str,
    retired: Option<PathBuf>,
    users: &[String],
) -> Result<()> {
    let Some(retired) = retired else {
        return Ok(());
    };
    if users.is_empty() {
        return Ok(realms_image::delete_tree(&retired)?);
    }
    let n = kept_versions(images, image).len() + 1;
    let kept = images.dir().join(format!("{image}.appimg.old-{n}"));
    atomic::rename_noreplace(&retired, &kept)?;
    repoint(store, users, &kept)
}

fn kept_versions(images: &ImageStore, image: &str) -> Vec<PathBuf> {
    let prefix = format!("{image}.appimg.old-");
    fs::read_dir(images.dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn command_line(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
