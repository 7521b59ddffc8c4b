//! The store side of `realms doctor`: leftovers of interrupted commands, dangling default and
//! current links, realms without a root or a config, overlay realms on a version that is gone,
//! images no realm uses, and pid files of processes that are gone.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_image::validate_name;
use realms_sys::doctor::{Finding, Kind};
use realms_sys::{atomic, btrfs};

use super::Action;
use crate::store::{CONFIG_TEMPLATE, RealmStore, RootKind, delete_realm_tree, mkdir};
use crate::{Result, recover};

type Found = Vec<(Finding, Action)>;

pub(super) fn check(store: &RealmStore) -> Result<Found> {
    let mut out = Vec::new();
    leftovers(store, &mut out);
    links(store, &mut out);
    realms(store, &mut out)?;
    images(store, &mut out)?;
    pid_files(store, &mut out)?;
    Ok(out)
}

/// True for `PREFIX...-PID` names whose process is gone.
fn of_dead_process(rest: &str) -> bool {
    rest.rsplit('-')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && !realms_sys::proc::pid_alive(pid))
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

fn leftover(path: PathBuf, what: &str, out: &mut Found) {
    out.push((
        Finding::new(
            Kind::StaleStaging,
            path,
            format!("{what} left by an interrupted command"),
            "the store's recovery removes it (or finishes the rename)",
        ),
        Action::Recover,
    ));
}

/// What [`RealmStore::lock`]'s recovery would clean up, and the retired image versions it
/// does not.
fn leftovers(store: &RealmStore, out: &mut Found) {
    for (name, path) in entries(store.dir()) {
        if name.strip_prefix(".staging-").is_some_and(of_dead_process) {
            leftover(path, "a staging directory", out);
        } else if name.starts_with(".removing-") {
            leftover(path, "a half-removed realm", out);
        } else if name.starts_with(recover::INTENT_PREFIX) {
            leftover(path, "an unfinished rename", out);
        }
    }
    let snapshots = store.dir().join("snapshots");
    let mut dirs = vec![snapshots.clone()];
    dirs.extend(
        entries(&snapshots)
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.is_dir()),
    );
    for dir in dirs {
        for (name, path) in entries(&dir) {
            if name.starts_with(".removing-")
                || name.strip_prefix(".staging-").is_some_and(of_dead_process)
            {
                leftover(path, "a snapshot staging directory", out);
            }
        }
    }
    for realm in store.names().unwrap_or_default() {
        for (name, path) in entries(&store.realm_dir(&realm)) {
            let pid = [".rootfs-new-", ".overlay-new-"]
                .iter()
                .find_map(|p| name.strip_prefix(p));
            if pid.is_some_and(of_dead_process) {
                leftover(path, "the new root of an interrupted rebase", out);
            }
        }
    }
    for (name, path) in entries(store.images().dir()) {
        if name.strip_prefix(".staging-").is_some_and(of_dead_process)
            || name.starts_with(".removing-")
        {
            leftover(path, "an image staging tree", out);
        } else if name.starts_with(".retired-") {
            out.push((
                Finding::new(
                    Kind::StaleStaging,
                    &path,
                    "an image version retired by an update that was interrupted",
                    "deletes it",
                ),
                Action::DeleteImageTree(path),
            ));
        }
    }
}

/// `NAME` of a `realm-NAME` link target, and whether that realm exists.
fn link_target(store: &RealmStore, link: &Path) -> Option<(PathBuf, bool)> {
    let target = fs::read_link(link).ok()?;
    let exists = target
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("realm-"))
        .is_some_and(|n| validate_name("realm", n).is_ok() && store.realm_dir(n).is_dir());
    Some((target, exists))
}

fn links(store: &RealmStore, out: &mut Found) {
    let checks = [
        (
            store.dir().join("default.realm"),
            Kind::DanglingDefault,
            "the default realm",
        ),
        (
            store.run_dir().join("current.realm"),
            Kind::DanglingCurrent,
            "the current realm",
        ),
    ];
    for (link, kind, what) in checks {
        if let Some((target, false)) = link_target(store, &link) {
            out.push((
                Finding::new(
                    kind,
                    &link,
                    format!(
                        "{what} link points at {}, which does not exist",
                        target.display()
                    ),
                    "removes the link (set another with `realms default NAME` / `realms current NAME`)",
                ),
                Action::RemoveFile(link),
            ));
        }
    }
}

/// A snapshot realm's root is a non-empty `rootfs`; an overlay realm's (whose `rootfs` is an
/// empty mount point) is `overlay/` with a `lower` link.
fn has_root(store: &RealmStore, name: &str) -> bool {
    let dir = store.realm_dir(name);
    let populated = fs::read_dir(dir.join("rootfs")).is_ok_and(|mut d| d.next().is_some());
    populated || (dir.join("overlay").is_dir() && dir.join("lower").is_symlink())
}

fn realms(store: &RealmStore, out: &mut Found) -> Result<()> {
    for name in store.names()? {
        let dir = store.realm_dir(&name);
        let config = store.config_path(&name);
        if !config.exists() {
            out.push((
                Finding::new(
                    Kind::RealmWithoutConfig,
                    &config,
                    format!("realm '{name}' has no config"),
                    "writes the template config (/realms/config) there",
                ),
                Action::WriteConfig(name.clone()),
            ));
        }
        if !has_root(store, &name) {
            let image = store.config(&name).map(|c| c.appimg().to_string());
            let finding = Finding::new(
                Kind::RealmWithoutRoot,
                &dir,
                format!("realm '{name}' has no root (rootfs, or overlay and lower)"),
                "",
            );
            let fix = match image {
                Ok(image) if store.images().get(&image).is_ok() => (
                    Finding {
                        fix: format!(
                            "makes a new root from image '{image}' (home and config are kept)"
                        ),
                        ..finding
                    },
                    Action::NewRoot(name.clone()),
                ),
                _ => (
                    Finding {
                        fix: format!(
                            "removes {} with its home (its image is gone)",
                            dir.display()
                        ),
                        ..finding
                    }
                    .forced(),
                    Action::RemoveRealm(name.clone()),
                ),
            };
            out.push(fix);
            continue;
        }
        if store.root_kind(&name) == RootKind::Overlay
            && let Ok(lower) = store.overlay_lower(&name)
            && !lower.exists()
        {
            let link = dir.join("lower");
            out.push((
                Finding::new(
                    Kind::MissingLower,
                    &link,
                    format!(
                        "realm '{name}' is an overlay on {}, which is gone",
                        lower.display()
                    ),
                    "rebases it on the current version of its image: its root \
                     changes (overlay/upper) are replaced; home and config are kept",
                )
                .forced(),
                Action::Rebase(name.clone()),
            ));
        }
    }
    Ok(())
}

fn images(store: &RealmStore, out: &mut Found) -> Result<()> {
    let names = store.names()?;
    let configured: Vec<String> = names
        .iter()
        .filter_map(|n| store.config(n).ok().map(|c| c.appimg().to_string()))
        .collect();
    let lowers: Vec<PathBuf> = names
        .iter()
        .filter_map(|n| store.overlay_lower(n).ok())
        .collect();
    for image in store.images().list()? {
        if configured.contains(&image.name) || lowers.contains(&image.path) {
            continue;
        }
        out.push((
            Finding::new(
                Kind::UnusedImage,
                &image.path,
                format!("image '{}' is used by no realm", image.name),
                format!("removes it (`realms appimg remove {}`)", image.name),
            )
            .forced(),
            Action::RemoveImage(image.name.clone()),
        ));
        for kept in store.images().kept_versions(&image.name) {
            if !lowers.contains(&kept) {
                out.push(unused_kept(kept));
            }
        }
    }
    for image in store.images().list()? {
        if !(configured.contains(&image.name) || lowers.contains(&image.path)) {
            continue;
        }
        for kept in store.images().kept_versions(&image.name) {
            if !lowers.contains(&kept) {
                out.push(unused_kept(kept));
            }
        }
    }
    Ok(())
}

fn unused_kept(kept: PathBuf) -> (Finding, Action) {
    (
        Finding::new(
            Kind::UnusedImage,
            &kept,
            "an older image version kept for overlay realms, and no realm is on it",
            "deletes it",
        ),
        Action::DeleteImageTree(kept),
    )
}

fn pid_files(store: &RealmStore, out: &mut Found) -> Result<()> {
    for (name, path) in entries(store.run_dir()) {
        let Some(realm) = name
            .strip_prefix("realm-")
            .and_then(|n| n.strip_suffix(".pid").or_else(|| n.strip_suffix(".leader")))
        else {
            continue;
        };
        let pid = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok());
        let problem = match pid {
            None => "it holds no pid".to_string(),
            Some(pid) if !realms_sys::proc::pid_alive(pid) => format!("process {pid} is gone"),
            Some(_) if !store.realm_dir(realm).is_dir() => {
                format!("realm '{realm}' does not exist")
            }
            Some(_) => continue,
        };
        out.push((
            Finding::new(
                Kind::StalePidFile,
                &path,
                format!("a stale pid file of realm '{realm}': {problem}"),
                "removes it",
            ),
            Action::RemoveFile(path),
        ));
    }
    Ok(())
}

pub(super) fn write_config(store: &RealmStore, name: &str) -> Result<()> {
    let template = store.dir().join("config");
    let text = fs::read(&template).unwrap_or_else(|_| CONFIG_TEMPLATE.as_bytes().to_vec());
    atomic::write_file(store.config_path(name), &text, 0o644)?;
    Ok(())
}

/// A new root for a realm that has none, the way `realms new` makes one.
pub(super) fn new_root(store: &RealmStore, name: &str) -> Result<()> {
    let _lock = store.lock()?;
    let image = store.config(name)?.appimg().to_string();
    let info = store.images().get(&image)?;
    let dir = store.realm_dir(name);
    match store.root_kind_for(&info) {
        RootKind::Snapshot => {
            let staging = dir.join(format!(".rootfs-new-{}", std::process::id()));
            // An empty mount point left where the root was goes first.
            let _ = fs::remove_dir(dir.join("rootfs"));
            btrfs::snapshot(&info.path, &staging, false)?;
            atomic::rename_noreplace(&staging, dir.join("rootfs"))?;
        }
        RootKind::Overlay => {
            for d in ["overlay/upper", "overlay/work", "rootfs"] {
                mkdir(&dir.join(d))?;
            }
            if info.kind != realms_image::ImageKind::Tree {
                mkdir(&dir.join("image"))?;
            }
            let lower = Path::new("/storage/appimg").join(format!("{image}.appimg"));
            atomic::replace_symlink(&lower, dir.join("lower"))?;
        }
    }
    Ok(())
}

pub(super) fn remove_realm(store: &RealmStore, name: &str) -> Result<()> {
    let _lock = store.lock()?;
    if store.default_realm().as_deref() == Some(name) {
        let link = store.dir().join("default.realm");
        fs::remove_file(&link).ctx("removing", &link)?;
    }
    store.clear_current(name)?;
    crate::launch::forget(store, name);
    delete_realm_tree(&store.realm_dir(name))
}
