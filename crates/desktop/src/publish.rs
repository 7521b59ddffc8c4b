//! `realms desktop sync`: the current realm's entries and icons (or every running realm's),
//! rewritten and published as one set at `/run/realms/desktop/{applications,icons}`.
//!
//! `/run/realms/desktop` is a symlink to a generation directory under `/run/realms/.desktop`;
//! a new set is built beside the old one and the symlink is swapped with one rename, so a
//! reader sees the old set or the new one, never an empty or mixed one. The previous
//! generation is kept (a reader may still be in it), older ones are removed.

use std::collections::BTreeMap;
use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use realms_realm::{RealmStore, launch, select};
use realms_sys::IoContext;
use realms_sys::event::{Event, Report};
use realms_sys::root::RootDir;
use serde::Serialize;

use crate::entry::DesktopEntry;
use crate::icons::Icons;
use crate::identity::Identity;
use crate::rewrite::{Context, rewrite};
use crate::{Error, Result};

/// Where a realm keeps desktop entries, most important first (the first of two entries with
/// the same desktop file id wins, as on a desktop).
pub const APPLICATION_DIRS: &[&str] = &[
    "/home/user/.local/share/applications",
    "/home/user/.local/share/flatpak/exports/share/applications",
    "/usr/local/share/applications",
    "/var/lib/flatpak/exports/share/applications",
    "/usr/share/applications",
];

/// The published directory, relative to the root (add it to `XDG_DATA_DIRS`).
pub const PUBLISHED: &str = "run/realms/desktop";

/// Which realms to publish.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Every running realm side by side, instead of only the current one.
    pub all: bool,
    /// The command that runs `realms` (the program and its global options such as `--root`);
    /// published entries run `LAUNCHER launch REALM -- COMMAND`.
    pub launcher: Vec<String>,
}

/// What a sync published.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Published {
    /// The published directory (`/run/realms/desktop`).
    pub dir: PathBuf,
    /// The realms whose entries it holds.
    pub realms: Vec<String>,
    /// How many entries it holds.
    pub entries: usize,
    /// How many icon files it holds.
    pub icons: usize,
    /// False when the set was the same as the one already published (nothing was swapped).
    pub changed: bool,
}

/// Publishes the entries of the current realm (or of every running realm with `all`).
pub fn sync(store: &RealmStore, opts: &SyncOptions, say: &dyn Report) -> Result<Published> {
    crate::reap::reap(store, say)?;
    let realms: Vec<String> = if opts.all {
        store
            .names()?
            .into_iter()
            .filter(|n| launch::is_running(store, n))
            .collect()
    } else {
        select::current(store).into_iter().collect()
    };
    let mut files = BTreeMap::new();
    for realm in &realms {
        match collect(store, realm, &opts.launcher, say) {
            Ok(set) => files.extend(set),
            // A realm that stopped in between has nothing to publish.
            Err(Error::Realm(realms_realm::Error::NotRunning { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    let entries = files
        .keys()
        .filter(|p| p.starts_with("applications"))
        .count();
    let icons = files.len() - entries;
    let changed = publish(store.run_dir(), &files)?;
    Ok(Published {
        dir: store.root().join(PUBLISHED),
        realms,
        entries,
        icons,
        changed,
    })
}

/// The published files of one running realm: relative path -> bytes.
pub fn collect(
    store: &RealmStore,
    realm: &str,
    launcher: &[String],
    say: &dyn Report,
) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let leader = launch::leader(store, realm)?;
    let root = RootDir::open(format!("/proc/{leader}/root"))?;
    let identity = Identity::of(store, realm);
    let prefix = format!("realms-{realm}-");
    let icons = Icons::new(&root, &prefix, &identity.color);
    let mut launch_argv = launcher.to_vec();
    launch_argv.extend(["launch".to_string(), realm.to_string(), "--".to_string()]);
    let has_program = |p: &str| has_program(&root, p);
    let icon = |i: &str| icons.publish(i);
    let cx = Context {
        realm,
        label: &identity.label,
        color: &identity.color,
        launcher: &launch_argv,
        has_program: &has_program,
        icon: &icon,
    };
    let mut out = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for dir in APPLICATION_DIRS {
        for (id, path) in entry_files(&root, Path::new(dir)) {
            if !seen.insert(id.clone()) {
                continue;
            }
            let published = root
                .read(&path)
                .map_err(Error::from)
                .and_then(|bytes| DesktopEntry::parse(&bytes, &path))
                .and_then(|entry| rewrite(&entry, &id, &path, &cx));
            match published {
                Ok(entry) => {
                    let name = PathBuf::from(format!("applications/{prefix}{id}"));
                    out.insert(name, entry.to_text().into_bytes());
                }
                Err(Error::Skipped { path, reason }) => {
                    tracing::debug!(
                        "realm '{realm}': not published: {}: {reason}",
                        path.display()
                    )
                }
                Err(e) => say.report(Event::warning(format!(
                    "realm '{realm}': {e}; the entry is not published"
                ))),
            }
        }
    }
    out.extend(icons.files.into_inner());
    Ok(out)
}

/// The `.desktop` files under an applications directory, with their desktop file ids
/// (`kde/app.desktop` is `kde-app.desktop`).
fn entry_files(root: &RootDir, dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((dir, id_prefix, depth)) = stack.pop() {
        let Ok(mut items) = root.read_dir(&dir) else {
            continue;
        };
        items.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind) in items {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if kind.is_dir() && depth < 3 {
                stack.push((dir.join(name), format!("{id_prefix}{name}-"), depth + 1));
            } else if (kind.is_file() || kind.is_symlink()) && name.ends_with(".desktop") {
                out.push((format!("{id_prefix}{name}"), dir.join(name)));
            }
        }
    }
    out
}

/// True when `program` is an executable file in the realm (a bare name is looked up in the
/// realm's standard PATH).
fn has_program(root: &RootDir, program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        root.metadata(p)
            .ok()
            .flatten()
            .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.starts_with('/') {
        return runnable(Path::new(program));
    }
    if program.contains('/') {
        return false;
    }
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|d| runnable(&Path::new(d).join(program)))
}

/// Publishes `files` under `run/desktop` as a new generation unless the published one holds
/// the same; returns true when it swapped.
pub fn publish(run: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<bool> {
    let gens = run.join(".desktop");
    fs::create_dir_all(&gens).ctx("creating", &gens)?;
    let _lock = realms_sys::lock::StoreLock::acquire(gens.join(".lock"))?;
    let digest = digest(files);
    let link = run.join("desktop");
    let current = fs::read_link(&link).ok();
    if let Some(target) = &current
        && fs::read_to_string(run.join(target).join(".digest"))
            .ok()
            .as_deref()
            == Some(&digest)
    {
        return Ok(false);
    }
    let name = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    let staging = gens.join(&name);
    for dir in ["applications", "icons/hicolor"] {
        fs::create_dir_all(staging.join(dir)).ctx("creating", staging.join(dir))?;
    }
    for (path, bytes) in files {
        let dest = staging.join(path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        fs::write(&dest, bytes).ctx("writing", &dest)?;
    }
    fs::write(staging.join(".digest"), &digest).ctx("writing", staging.join(".digest"))?;
    realms_sys::atomic::replace_symlink(Path::new(".desktop").join(&name), &link)?;
    remove_replaced(&gens, &name, REPLACED_FOR)?;
    Ok(true)
}

/// How long a replaced set stays (a reader that opened it just before the swap is done long
/// before).
pub const REPLACED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The creation time (ns since the epoch) in a generation's name, `NANOS-PID`.
fn created(name: &str) -> Option<u128> {
    name.split('-').next()?.parse().ok()
}

/// Removes the generations in `gens` other than `current` that were replaced (their successor
/// was created) at least `age` ago.
fn remove_replaced(gens: &Path, current: &str, age: std::time::Duration) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut all: Vec<(u128, PathBuf, bool)> = fs::read_dir(gens)
        .ctx("reading", gens)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_current = name == current;
            Some((created(&name)?, e.path(), is_current))
        })
        .collect();
    all.sort();
    for pair in all.windows(2) {
        let ((_, path, is_current), (successor, ..)) = (&pair[0], &pair[1]);
        if !is_current && now.saturating_sub(*successor) >= age.as_nanos() {
            realms_sys::fs::remove_dir_all_one_fs(path)?;
        }
    }
    // A generation newer than the published one is a leftover of an interrupted publish.
    if let Some((created_current, ..)) = all.iter().find(|g| g.2) {
        for (t, path, _) in &all {
            if t > created_current && now.saturating_sub(*t) >= age.as_nanos() {
                realms_sys::fs::remove_dir_all_one_fs(path)?;
            }
        }
    }
    Ok(())
}

/// Removes the sets replaced at least `age` ago (the watcher does this a moment after each
/// swap, once readers of the previous set are done with it).
pub fn prune(run: &Path, age: std::time::Duration) -> Result<()> {
    let gens = run.join(".desktop");
    let _lock = realms_sys::lock::StoreLock::acquire(gens.join(".lock"))?;
    let Ok(target) = fs::read_link(run.join("desktop")) else {
        return Ok(());
    };
    let current = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_replaced(&gens, &current, age)
}

/// Removes the published set and every generation (when the desktop integration is turned
/// off: nothing is left behind).
pub fn clear(run: &Path) -> Result<()> {
    let link = run.join("desktop");
    match fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(realms_sys::Error::io("removing", &link, e).into()),
    }
    let gens = run.join(".desktop");
    if gens.exists() {
        realms_sys::fs::remove_dir_all_one_fs(&gens)?;
    }
    Ok(())
}

fn digest(files: &BTreeMap<PathBuf, Vec<u8>>) -> String {
    let mut h = siphasher::sip128::SipHasher13::new();
    for (path, bytes) in files {
        h.write(path.as_os_str().as_encoded_bytes());
        h.write_u8(0);
        h.write_usize(bytes.len());
        h.write(bytes);
    }
    use siphasher::sip128::Hasher128;
    format!("{:032x}", h.finish128().as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, &str)]) -> BTreeMap<PathBuf, Vec<u8>> {
        items
            .iter()
            .map(|(p, b)| (PathBuf::from(p), b.as_bytes().to_vec()))
            .collect()
    }

    fn published(run: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(run.join("desktop/applications"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_set_replaces_the_old_and_two_generations_at_most_remain() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        let a = set(&[("applications/realms-a-x.desktop", "a")]);
        let b = set(&[
            ("applications/realms-b-y.desktop", "b"),
            ("icons/hicolor/48x48/apps/realms-b-y.png", "png"),
        ]);
        assert!(publish(run, &a).unwrap());
        assert_eq!(published(run), ["realms-a-x.desktop"]);
        assert!(
            !publish(run, &a).unwrap(),
            "the same set is not published again"
        );
        assert!(publish(run, &b).unwrap());
        assert_eq!(published(run), ["realms-b-y.desktop"]);
        assert!(
            run.join("desktop/icons/hicolor/48x48/apps/realms-b-y.png")
                .is_file()
        );
        for _ in 0..3 {
            publish(run, &a).unwrap();
            publish(run, &b).unwrap();
        }
        let gens = || {
            fs::read_dir(run.join(".desktop"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name() != ".lock")
                .count()
        };
        assert_eq!(
            gens(),
            8,
            "sets replaced a moment ago stay for their readers"
        );
        prune(run, REPLACED_FOR).unwrap();
        assert_eq!(gens(), 8);
        prune(run, std::time::Duration::ZERO).unwrap();
        let gens = fs::read_dir(run.join(".desktop")).unwrap().count();
        assert_eq!(gens, 2, "the published generation and the lock");
        assert_eq!(published(run), ["realms-b-y.desktop"]);
        // An empty set is a set: no current realm publishes no entries.
        publish(run, &BTreeMap::new()).unwrap();
        assert!(published(run).is_empty());
        clear(run).unwrap();
        assert!(!run.join("desktop").exists() && !run.join(".desktop").exists());
    }

    #[test]
    fn entry_files_have_desktop_file_ids() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("usr/share/applications");
        fs::create_dir_all(apps.join("kde")).unwrap();
        fs::write(apps.join("a.desktop"), "").unwrap();
        fs::write(apps.join("kde/b.desktop"), "").unwrap();
        fs::write(apps.join("mimeinfo.cache"), "").unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let mut ids: Vec<String> = entry_files(&root, Path::new("/usr/share/applications"))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["a.desktop", "kde-b.desktop"]);
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::write(dir.path().join("usr/bin/tool"), "").unwrap();
        assert!(!has_program(&root, "tool"), "not executable");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            dir.path().join("usr/bin/tool"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(has_program(&root, "tool") && has_program(&root, "/usr/bin/tool"));
        assert!(!has_program(&root, "bin/tool"));
    }
}
